//! The same storage suite against SQLite and PostgreSQL, plus concurrent
//! publishers proving versions never repeat and are never lost.

mod common;

use std::sync::Arc;

use custody_server::testing::{
    BlobRecord, CredentialRecord, NewAudit, NewYank, PgStorage, SqliteStorage, StagedTarget,
    Storage, StorageError,
};
use serde_json::json;

fn cred(id: &str) -> CredentialRecord {
    CredentialRecord {
        id: id.into(),
        name: format!("name-{id}"),
        secret_hash: "ab".repeat(32),
        scopes: vec!["target:upload@app".into()],
        generation: 1,
        created_at: 100,
        revoked_at: None,
    }
}

async fn suite(s: Arc<dyn Storage>) {
    s.migrate().await.unwrap();
    // migrate is idempotent
    s.migrate().await.unwrap();
    s.ping().await.unwrap();

    // secrets: first writer wins
    let a = s.get_or_create_secret("k", b"first").await.unwrap();
    let b = s.get_or_create_secret("k", b"second").await.unwrap();
    assert_eq!(a, b"first");
    assert_eq!(b, b"first");

    // credentials
    assert_eq!(s.count_credentials().await.unwrap(), 0);
    s.insert_credential(&cred("c1")).await.unwrap();
    let dup = s.insert_credential(&cred("c1")).await.unwrap_err();
    assert!(matches!(dup, StorageError::Conflict { .. }), "{dup}");
    s.insert_credential(&cred("c2")).await.unwrap();
    assert_eq!(s.count_credentials().await.unwrap(), 2);
    assert_eq!(s.get_credential("c1").await.unwrap().unwrap(), cred("c1"));
    assert!(s.get_credential("nope").await.unwrap().is_none());
    assert_eq!(s.list_credentials().await.unwrap().len(), 2);
    assert_eq!(s.rotate_credential("c1", "new").await.unwrap(), Some(2));
    let c1 = s.get_credential("c1").await.unwrap().unwrap();
    assert_eq!((c1.generation, c1.secret_hash.as_str()), (2, "new"));
    assert!(s.revoke_credential("c1", 200).await.unwrap());
    assert!(
        !s.revoke_credential("c1", 300).await.unwrap(),
        "second revoke is a no-op"
    );
    assert_eq!(
        s.get_credential("c1").await.unwrap().unwrap().revoked_at,
        Some(200)
    );
    assert_eq!(
        s.rotate_credential("c1", "x").await.unwrap(),
        None,
        "revoked cannot rotate"
    );

    // token revocation
    assert!(!s.is_token_revoked("j1").await.unwrap());
    s.revoke_token("j1", 999).await.unwrap();
    s.revoke_token("j1", 999).await.unwrap();
    assert!(s.is_token_revoked("j1").await.unwrap());
    s.revoke_token("j2", 2000).await.unwrap();
    assert_eq!(s.purge_revoked_tokens(1000).await.unwrap(), 1);
    assert!(
        !s.is_token_revoked("j1").await.unwrap(),
        "expired revocation purged"
    );
    assert!(
        s.is_token_revoked("j2").await.unwrap(),
        "live revocation kept"
    );

    // blobs are per repository
    let blob = BlobRecord {
        repo: "app".into(),
        sha256: "cd".repeat(32),
        size: 42,
        uploaded_at: 5,
        uploaded_by: "u".into(),
    };
    s.upsert_blob(&blob).await.unwrap();
    s.upsert_blob(&blob).await.unwrap();
    assert_eq!(
        s.get_blob("app", &blob.sha256).await.unwrap().unwrap(),
        blob
    );
    assert!(s.get_blob("other", &blob.sha256).await.unwrap().is_none());
    assert_eq!(s.list_blobs("app").await.unwrap(), vec![blob.clone()]);

    // staged targets: upsert replaces
    let mut t = StagedTarget {
        repo: "app".into(),
        name: "dir/app.bin".into(),
        blob_sha256: blob.sha256.clone(),
        length: 42,
        custom: json!({"hw": ["a", "b"]}),
        staged_at: 6,
        staged_by: "s".into(),
    };
    s.stage_target(&t).await.unwrap();
    t.custom = json!({"hw": ["c"]});
    s.stage_target(&t).await.unwrap();
    assert_eq!(
        s.get_staged("app", "dir/app.bin").await.unwrap().unwrap(),
        t
    );
    assert_eq!(s.list_staged("app").await.unwrap().len(), 1);
    assert!(s.list_staged("other").await.unwrap().is_empty());

    // yanks: one table, with or without a replacement, oldest first
    let yank = |target, reason, at, replacement_json| NewYank {
        repo: "app",
        target,
        reason,
        by: "r",
        at,
        replacement_json,
    };
    let y = s
        .insert_yank(&yank("dir/app.bin", "CVE-1", 7, None))
        .await
        .unwrap();
    assert_eq!(y.reason, "CVE-1");
    assert_eq!(y.replacement_json, None);
    let y2 = s
        .insert_yank(&yank("x", "bad", 8, Some(r#"{"name":"y"}"#)))
        .await
        .unwrap();
    assert!(y2.id > y.id);
    assert_eq!(y2.replacement_json.as_deref(), Some(r#"{"name":"y"}"#));
    assert_eq!(s.list_yanks("app").await.unwrap(), vec![y, y2]);
    assert!(s.list_yanks("other").await.unwrap().is_empty());

    // audit: newest first, paging, repo filter
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.append_audit(&NewAudit {
                at: i,
                identity: "id".into(),
                scopes: vec!["a".into()],
                action: format!("act{i}"),
                repo: if i % 2 == 0 { Some("app".into()) } else { None },
                target: None,
                outcome: "ok".into(),
                detail: String::new(),
            })
            .await
            .unwrap(),
        );
    }
    let all = s.list_audit(100, None, None).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].entry.action, "act4");
    assert_eq!(all[0].entry.scopes, vec!["a".to_string()]);
    let page = s.list_audit(2, Some(ids[3]), None).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|a| a.entry.action.as_str())
            .collect::<Vec<_>>(),
        ["act2", "act1"]
    );
    let app = s.list_audit(100, None, Some("app")).await.unwrap();
    assert_eq!(app.len(), 3);

    // publish versions
    assert_eq!(s.next_publish_version("app", "p", 1).await.unwrap(), 1);
    assert_eq!(s.next_publish_version("app", "p", 2).await.unwrap(), 2);
    assert_eq!(s.next_publish_version("other", "p", 3).await.unwrap(), 1);
    let pubs = s.list_publishes("app").await.unwrap();
    assert_eq!(pubs.iter().map(|p| p.version).collect::<Vec<_>>(), [1, 2]);
}

/// Two independent handles (two "replicas") publish concurrently.
async fn concurrent_publishers(a: Arc<dyn Storage>, b: Arc<dyn Storage>) {
    a.migrate().await.unwrap();
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for (who, s) in [("a", a.clone()), ("b", b.clone())] {
        for _ in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..EACH / 4 {
                    got.push(s.next_publish_version("race", who, 1).await.unwrap());
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let expected: Vec<i64> = (1..=(2 * EACH) as i64).collect();
    assert_eq!(all, expected, "versions repeated or lost");
    let recorded: Vec<i64> = a
        .list_publishes("race")
        .await
        .unwrap()
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(recorded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteStorage::open(&dir.path().join("t.db")).await.unwrap());
    suite(s.clone()).await;
    // WAL mode is on. Checked while the pool is still open: SQLite removes
    // the -wal file when the last connection closes, which raced with the
    // pool's shutdown when the storage was dropped first.
    let wal = dir.path().join("t.db-wal");
    assert!(
        wal.exists(),
        "SQLite must run in WAL mode ({} missing)",
        wal.display()
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a = SqliteStorage::open(&path).await.unwrap();
    a.migrate().await.unwrap();
    let b = SqliteStorage::open(&path).await.unwrap();
    concurrent_publishers(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_postgres() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    suite(Arc::new(PgStorage::connect(&url).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_postgres() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let a = PgStorage::connect(&url).await.unwrap();
    a.migrate().await.unwrap();
    let b = PgStorage::connect(&url).await.unwrap();
    concurrent_publishers(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_postgres() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            PgStorage::connect(&url).await.unwrap().migrate().await
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("concurrent migrations must not race");
    }
}
