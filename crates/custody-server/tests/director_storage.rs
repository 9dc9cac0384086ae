//! The director's SQL store, the same checks on SQLite (embedded default)
//! and PostgreSQL (CUSTODY_TEST_DATABASE_URL; see common::pg_url): atomic
//! token consume, nonce insert-or-conflict and expiry sweep, counter
//! compare-and-set in the check-in transaction, idempotent install reports,
//! install history, re-attestation sweep, rollout compare-and-set. Plus the
//! device API end to end on PostgreSQL.

mod common;
mod director_common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use custody_director::director::DeviceDirectorState;
use custody_director::enrol::{issue_token, TokenRefusal};
use custody_director::policy::Installed;
use custody_director::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
use custody_director::wire::DeviceAttributes;
use custody_keys::Signer;
use custody_server::testing::{
    CheckinWrite, DeviceFilter, DirectorDb, PgDirectorDb, ReportRow, RolloutRow, SqliteDirectorDb,
    TokenRow, WriteOutcome,
};

fn record(i: usize, attested: chrono::DateTime<Utc>) -> DeviceRecord {
    let k = director_common::Device::seeded(&format!("store-{i}"), "board-a", "g").key;
    DeviceRecord {
        id: k.keyid().to_owned(),
        key: k.key().clone(),
        hardware_id: "board-a".into(),
        group: "g".into(),
        attributes: DeviceAttributes {
            environment: "production".into(),
            tags: ["eu".to_owned(), "50%_off".to_owned()].into(),
            group: Some("g".into()),
        },
        enrolled_at: attested,
        enrolled_with: EnrolledWith::Token {
            token_hash_prefix: "x".into(),
        },
        status: DeviceStatus::Active,
        last_attestation: attested,
    }
}

fn write(
    id: &str,
    nonce: &str,
    old: Option<u64>,
    new: u64,
    reports: Vec<ReportRow>,
) -> CheckinWrite {
    CheckinWrite {
        device_id: id.into(),
        nonce: nonce.into(),
        nonce_expires: Utc::now().timestamp() + 600,
        old_counter: old,
        new_counter: new,
        at: Utc::now().timestamp(),
        installed_json: "{}".into(),
        running: Some(Installed {
            name: "fw/1".into(),
            release_counter: 1,
            max_release_counter: 1,
        }),
        running_changed: true,
        director: DeviceDirectorState {
            targets_version: new,
            snapshot_version: new,
            timestamp_version: new,
        },
        assigned: None,
        assignment_note: "n".into(),
        reports,
        attacks: vec![],
    }
}

fn report(id: &str, rid: &str) -> ReportRow {
    ReportRow {
        device_id: id.into(),
        report_id: rid.into(),
        target: "fw/1".into(),
        release_counter: 1,
        outcome: "installed".into(),
        reason: None,
        device_time: 0,
        received_at: 0,
        rollout_id: Some("r1".into()),
        stage: Some(0),
        log_index: None,
    }
}

async fn exercise(db: Arc<dyn DirectorDb>) {
    db.migrate().await.unwrap();
    db.migrate().await.unwrap(); // idempotent
    let now = Utc::now();

    // Tokens: one success, then AlreadyUsed; expired; unknown.
    let (_, rec) = issue_token("g", None, now, Duration::hours(1)).unwrap();
    let hash = rec.hash.clone();
    db.insert_token(&TokenRow {
        rec,
        created_by: "t".into(),
    })
    .await
    .unwrap();
    // Two concurrent consumers: exactly one wins.
    let (a, b) = tokio::join!(
        db.consume_token(&hash, now.timestamp()),
        db.consume_token(&hash, now.timestamp())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    assert!(matches!(
        a.err().or(b.err()),
        Some(TokenRefusal::AlreadyUsed { .. })
    ));
    let (_, rec) = issue_token("g", None, now - Duration::hours(2), Duration::hours(1)).unwrap();
    let old = rec.hash.clone();
    db.insert_token(&TokenRow {
        rec,
        created_by: "t".into(),
    })
    .await
    .unwrap();
    assert!(matches!(
        db.consume_token(&old, now.timestamp()).await.unwrap(),
        Err(TokenRefusal::Expired { .. })
    ));
    assert!(matches!(
        db.consume_token("00", now.timestamp()).await.unwrap(),
        Err(TokenRefusal::Unknown { .. })
    ));

    // Devices.
    let d0 = record(0, now);
    let d1 = record(1, now - Duration::days(40));
    db.insert_device(&d0).await.unwrap();
    db.insert_devices(std::slice::from_ref(&d1)).await.unwrap();
    assert!(db.insert_device(&d0).await.is_err(), "no second enrolment");
    assert_eq!(db.count_devices().await.unwrap(), 2);
    let got = db.get_device(&d0.id).await.unwrap().unwrap();
    assert_eq!(got.record, d0_trunc(&d0));
    assert_eq!(got.last_counter, None);
    // Tag filter with LIKE wildcards in the tag itself.
    let f = DeviceFilter {
        tag: Some("50%_off".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(db.list_devices(&f).await.unwrap().len(), 2);
    let f = DeviceFilter {
        tag: Some("50".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(db.list_devices(&f).await.unwrap().len(), 0);

    // Nonces: insert-or-conflict, sweep.
    assert!(db
        .insert_nonce(&d0.id, "n1", now.timestamp() - 1)
        .await
        .unwrap());
    assert!(!db
        .insert_nonce(&d0.id, "n1", now.timestamp() + 9)
        .await
        .unwrap());
    assert_eq!(db.purge_nonces(now.timestamp()).await.unwrap(), 1);
    assert!(db
        .insert_nonce(&d0.id, "n1", now.timestamp() + 9)
        .await
        .unwrap());

    // Check-ins in one batch: first accepted, a racing second with the
    // same old counter refused, a replayed nonce refused; reports are
    // idempotent on their id.
    let out = db
        .apply_checkins(&[
            write(
                &d0.id,
                "c1",
                None,
                1,
                vec![ReportRow {
                    log_index: Some(41),
                    ..report(&d0.id, "attempt-1")
                }],
            ),
            write(&d0.id, "c2", None, 2, vec![]),
            write(&d0.id, "n1", Some(1), 3, vec![]),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Committed {
                rollouts_with_new_reports: vec!["r1".into()]
            },
            WriteOutcome::Conflict,
            WriteOutcome::ReplayedNonce,
        ]
    );
    let out = db
        .apply_checkins(&[write(
            &d0.id,
            "c3",
            Some(1),
            2,
            vec![ReportRow {
                log_index: Some(99),
                ..report(&d0.id, "attempt-1")
            }],
        )])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![WriteOutcome::Committed {
            rollouts_with_new_reports: vec![]
        }],
        "the same report id again is not new"
    );
    let got = db.get_device(&d0.id).await.unwrap().unwrap();
    assert_eq!(got.last_counter, Some(2));
    assert_eq!(got.director.targets_version, 2);
    assert_eq!(got.running.unwrap().name, "fw/1");
    let reports = db.list_reports(&d0.id, 10).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].log_index,
        Some(41),
        "the first receipt's log entry is the report's"
    );
    assert_eq!(db.who_installed("fw/1").await.unwrap().len(), 1);
    let counts = db.report_counts("r1").await.unwrap();
    assert_eq!(counts, vec![(Some(0), "installed".to_string(), 1)]);

    // A suspended device's check-in does not commit.
    assert!(db
        .set_device_status(
            &d0.id,
            &DeviceStatus::Suspended {
                reason: "r".into(),
                since: now
            },
            None
        )
        .await
        .unwrap());
    let out = db
        .apply_checkins(&[write(&d0.id, "c4", Some(2), 3, vec![])])
        .await
        .unwrap();
    assert_eq!(out, vec![WriteOutcome::Conflict]);
    assert!(db
        .set_device_status(&d0.id, &DeviceStatus::Decommissioned { since: now }, None)
        .await
        .unwrap());
    assert!(
        !db.set_device_status(&d0.id, &DeviceStatus::Active, Some(now.timestamp()))
            .await
            .unwrap(),
        "decommissioning is final"
    );

    // Re-attestation sweep: d1 (attested 40 days ago) is suspended.
    let cutoff = (now - Duration::days(30)).timestamp();
    let ids = db.suspend_overdue(cutoff, now.timestamp()).await.unwrap();
    assert_eq!(ids, vec![d1.id.clone()]);
    let got = db.get_device(&d1.id).await.unwrap().unwrap();
    assert!(matches!(got.record.status, DeviceStatus::Suspended { .. }));

    // Rollouts: compare-and-set.
    db.insert_rollout(&RolloutRow {
        id: "r1".into(),
        spec: "{}".into(),
        stage: 0,
        state: "a".into(),
        created_at: 0,
        created_by: "t".into(),
        updated_at: 0,
    })
    .await
    .unwrap();
    assert!(db
        .update_rollout("r1", (0, "a"), (1, "a"), 1)
        .await
        .unwrap());
    assert!(!db
        .update_rollout("r1", (0, "a"), (2, "b"), 2)
        .await
        .unwrap());
    assert_eq!(db.list_rollouts().await.unwrap()[0].stage, 1);
}

/// Times are stored in whole seconds.
fn d0_trunc(d: &DeviceRecord) -> DeviceRecord {
    use chrono::SubsecRound;
    let mut d = d.clone();
    d.enrolled_at = d.enrolled_at.trunc_subsecs(0);
    d.last_attestation = d.last_attestation.trunc_subsecs(0);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = custody_server::testing::SqliteStorage::open(&dir.path().join("t.db"))
        .await
        .unwrap();
    exercise(Arc::new(SqliteDirectorDb::new(s.pool().clone()))).await;
}

/// The same checks through the device-row cache the server puts in front
/// of SQLite: every read after a write must see the write (status changes,
/// counter compare-and-set, sweep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_store_on_sqlite_cached() {
    let dir = tempfile::tempdir().unwrap();
    let s = custody_server::testing::SqliteStorage::open(&dir.path().join("t.db"))
        .await
        .unwrap();
    exercise(Arc::new(custody_server::testing::CachedDirectorDb::wrap(
        SqliteDirectorDb::new(s.pool().clone()),
        custody_server::testing::DEFAULT_CAPACITY,
    )))
    .await;

    // A cached row must not outlive a status change: decommission and the
    // re-attestation sweep are seen by the very next read.
    let s2 = custody_server::testing::SqliteStorage::open(&dir.path().join("t2.db"))
        .await
        .unwrap();
    let db = custody_server::testing::CachedDirectorDb::wrap(
        SqliteDirectorDb::new(s2.pool().clone()),
        custody_server::testing::DEFAULT_CAPACITY,
    );
    db.migrate().await.unwrap();
    let now = Utc::now();
    let a = record(90, now);
    let b = record(91, now - Duration::days(400));
    db.insert_devices(&[a.clone(), b.clone()]).await.unwrap();
    assert!(matches!(
        db.get_device(&a.id).await.unwrap().unwrap().record.status,
        DeviceStatus::Active
    ));
    assert!(matches!(
        db.get_device(&b.id).await.unwrap().unwrap().record.status,
        DeviceStatus::Active
    ));
    assert_eq!(db.cached(), 2, "both rows cached after a read");
    assert!(db
        .set_device_status(&a.id, &DeviceStatus::Decommissioned { since: now }, None)
        .await
        .unwrap());
    assert!(matches!(
        db.get_device(&a.id).await.unwrap().unwrap().record.status,
        DeviceStatus::Decommissioned { .. }
    ));
    let swept = db
        .suspend_overdue((now - Duration::days(30)).timestamp(), now.timestamp())
        .await
        .unwrap();
    assert_eq!(swept, vec![b.id.clone()]);
    assert!(matches!(
        db.get_device(&b.id).await.unwrap().unwrap().record.status,
        DeviceStatus::Suspended { .. }
    ));
    // A committed check-in updates the cached row exactly as the database.
    let c = record(92, now);
    db.insert_device(&c).await.unwrap();
    db.get_device(&c.id).await.unwrap().unwrap();
    let out = db
        .apply_checkins(&[write(&c.id, "n1", None, 1, vec![])])
        .await
        .unwrap();
    assert!(matches!(out[..], [WriteOutcome::Committed { .. }]));
    let cached = db.get_device(&c.id).await.unwrap().unwrap();
    let stored = SqliteDirectorDb::new(s2.pool().clone())
        .get_device(&c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_store_on_postgresql() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let s = custody_server::testing::PgStorage::connect(&url)
        .await
        .unwrap();
    exercise(Arc::new(PgDirectorDb::new(s.pool().clone()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_api_on_postgresql() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let f = director_common::fleet_with(|c| c.database_url = Some(url.clone())).await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let old = dev.manifest_with(1);
    let r = f
        .signed_as(&dev, "POST", "/device/v1/checkin?root=1", old, None, None)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(f
        .attacks(&dev.id)
        .await
        .iter()
        .any(|a| a["code"] == "replayed_counter"));
}

/// A database from before there was one yank: the fleet API's yanks sat in
/// `director_yanks` and `yanks` had no replacement column. Migration adds
/// the column, and the director moves those rows into `yanks` under its
/// image repository (once: a second start moves nothing).
async fn adopts_fleet_yanks(
    storage: Arc<dyn custody_server::testing::Storage>,
    db: Arc<dyn DirectorDb>,
) {
    storage.migrate().await.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(db.adopt_fleet_yanks("main").await.unwrap(), 1);
    assert_eq!(db.adopt_fleet_yanks("main").await.unwrap(), 0);
    let all = storage.list_yanks("main").await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].target, "fw/old.bin");
    assert_eq!(all[0].replacement_json, None);
    assert_eq!(all[1].target, "fw/2.0.bin");
    assert_eq!(all[1].requested_by, "ops");
    assert_eq!(all[1].requested_at, 1_700_000_000);
    assert_eq!(all[1].replacement_json.as_deref(), Some(r#"{"r":1}"#));
    let rem = db.list_remediations("main").await.unwrap();
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0].target, "fw/2.0.bin");
    assert!(db.list_remediations("other").await.unwrap().is_empty());
    // migrations stay idempotent afterwards
    storage.migrate().await.unwrap();
    db.migrate().await.unwrap();
}

/// The tables as they were before one yank (`id` is the backend's
/// auto-increment column type), with a yank of each kind.
fn old_yank_tables(id: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE yanks (id {id}, repo TEXT NOT NULL, target TEXT NOT NULL, \
             reason TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at BIGINT NOT NULL)"
        ),
        "INSERT INTO yanks (repo, target, reason, requested_by, requested_at) \
         VALUES ('main', 'fw/old.bin', 'cve', 'ci', 1)"
            .into(),
        "CREATE TABLE director_yanks (target TEXT PRIMARY KEY, replacement_json TEXT NOT NULL, \
         reason TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)"
            .into(),
        "INSERT INTO director_yanks VALUES ('fw/2.0.bin', '{\"r\":1}', 'boot loop', 1700000000, 'ops')"
            .into(),
    ]
}

/// Run each statement on `pool` (any backend).
macro_rules! run_sql {
    ($pool:expr, $stmts:expr) => {
        for q in $stmts {
            sqlx::query(q.as_ref()).execute($pool).await.unwrap();
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_yanks_move_into_the_one_table_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = custody_server::testing::SqliteStorage::open(&dir.path().join("t.db"))
        .await
        .unwrap();
    run_sql!(
        s.pool(),
        old_yank_tables("INTEGER PRIMARY KEY AUTOINCREMENT")
    );
    let db = Arc::new(SqliteDirectorDb::new(s.pool().clone()));
    adopts_fleet_yanks(Arc::new(s), db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_yanks_move_into_the_one_table_on_postgresql() {
    let Some(admin) = common::pg_url() else {
        return;
    };
    let url = common::fresh_pg_database(&admin).await;
    let s = custody_server::testing::PgStorage::connect(&url)
        .await
        .unwrap();
    run_sql!(s.pool(), old_yank_tables("BIGSERIAL PRIMARY KEY"));
    let db = Arc::new(PgDirectorDb::new(s.pool().clone()));
    adopts_fleet_yanks(Arc::new(s), db).await;
}

/// A database from before the report log index and the delivery mark: the
/// director's migration adds both columns, and rows written before keep
/// reading (with no log index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_adds_the_columns_added_since_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = custody_server::testing::SqliteStorage::open(&dir.path().join("t.db"))
        .await
        .unwrap();
    let pool = s.pool().clone();
    run_sql!(
        &pool,
        [
            "CREATE TABLE director_reports (device_id TEXT NOT NULL, report_id TEXT NOT NULL, \
             target TEXT NOT NULL, release_counter BIGINT NOT NULL, outcome TEXT NOT NULL, \
             reason TEXT, device_time BIGINT NOT NULL, received_at BIGINT NOT NULL, \
             rollout_id TEXT, stage BIGINT, PRIMARY KEY (device_id, report_id))",
            "INSERT INTO director_reports VALUES ('dev', 'old-1', 'fw/0', 1, 'installed', NULL, 0, 0, NULL, NULL)",
        ]
    );
    let db = SqliteDirectorDb::new(pool.clone());
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();
    let old = db.list_reports("dev", 10).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].log_index, None);
    for (table, column) in [
        ("director_reports", "log_index"),
        ("director_devices", "log_delivery"),
    ] {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
                .bind(table)
                .bind(column)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(n, 1, "{table}.{column}");
    }
}
