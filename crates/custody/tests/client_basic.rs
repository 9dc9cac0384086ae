//! The `custody client` workflow over loopback HTTP: request pattern (as
//! tuf-conformance expects it), persistence, caching, root rotation, role
//! name quoting, CLI behaviour.

mod common;

use common::{run, Client, Repo, TestServer};
use serde_json::json;

fn repo(consistent: bool) -> (tempfile::TempDir, Repo) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(&tmp.path().join("repo"), consistent);
    (tmp, repo)
}

#[test]
fn init_and_refresh_request_pattern() {
    let (_t, repo) = repo(false);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    assert!(server.requests().is_empty(), "init makes no requests");
    assert_eq!(client.trusted().keys().collect::<Vec<_>>(), ["root.json"]);

    client.refresh(&server, &[]).ok();
    assert_eq!(
        server.requests(),
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/snapshot.json",
            "metadata/targets.json"
        ]
    );
    assert_eq!(
        client.trusted().keys().collect::<Vec<_>>(),
        [
            "root.json",
            "snapshot.json",
            "targets.json",
            "timestamp.json"
        ]
    );
    // files are the verified bytes as served
    for role in ["timestamp", "snapshot", "targets"] {
        assert_eq!(
            client.trusted()[&format!("{role}.json")],
            std::fs::read(repo.metadata_path(role)).unwrap()
        );
    }

    // Second refresh: local snapshot and targets are still valid.
    server.clear_requests();
    client.refresh(&server, &[]).ok();
    assert_eq!(
        server.requests(),
        ["metadata/2.root.json", "metadata/timestamp.json"]
    );
}

#[test]
fn consistent_snapshot_request_pattern() {
    let (_t, mut repo) = repo(true);
    repo.add_target("targets", "dir/a.txt", b"aaa");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    let run = client.download(&server, &["dir/a.txt"], &["--json"]);
    run.ok();
    let hash = common::repo::sha256_hex(b"aaa");
    assert_eq!(
        server.requests(),
        [
            "metadata/2.root.json".to_owned(),
            "metadata/timestamp.json".to_owned(),
            "metadata/2.snapshot.json".to_owned(),
            "metadata/2.targets.json".to_owned(),
            format!("targets/dir/{hash}.a.txt"),
        ]
    );
    assert_eq!(client.downloaded()["dir%2Fa.txt"], b"aaa");
    let out = run.json();
    assert_eq!(out["ok"], json!(true));
    assert_eq!(out["targets"][0]["path"], json!("dir/a.txt"));
    assert_eq!(out["targets"][0]["length"], json!(3));
    assert_eq!(out["targets"][0]["hashes"]["sha256"], json!(hash));
    assert_eq!(out["targets"][0]["cached"], json!(false));
    assert_eq!(out["roles"]["targets"], json!(2));
}

#[test]
fn downloaded_target_is_not_fetched_again() {
    let (_t, mut repo) = repo(false);
    repo.add_target("targets", "app.bin", b"version one");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.download(&server, &["app.bin"], &[]).ok();
    assert!(server.requests().contains(&"targets/app.bin".to_owned()));

    server.clear_requests();
    let again = client.download(&server, &["app.bin"], &["--json"]);
    again.ok();
    assert_eq!(again.json()["targets"][0]["cached"], json!(true));
    assert!(
        !server.requests().iter().any(|r| r.starts_with("targets/")),
        "cached target fetched again: {:?}",
        server.requests()
    );

    // A new version of the target is downloaded, under the same name.
    repo.add_target("targets", "app.bin", b"version two!");
    repo.bump_targets("targets");
    repo.update_snapshot();
    client.download(&server, &["app.bin"], &[]).ok();
    let files = client.downloaded();
    assert_eq!(files.len(), 1);
    assert_eq!(files["app.bin"], b"version two!");
}

#[test]
fn tampered_local_target_is_downloaded_again() {
    let (_t, mut repo) = repo(false);
    repo.add_target("targets", "app.bin", b"good bytes");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.download(&server, &["app.bin"], &[]).ok();
    std::fs::write(client.target_dir.join("app.bin"), b"evil bytes").unwrap();
    server.clear_requests();
    client.download(&server, &["app.bin"], &[]).ok();
    assert!(server.requests().contains(&"targets/app.bin".to_owned()));
    assert_eq!(client.downloaded()["app.bin"], b"good bytes");
}

#[test]
fn several_targets_in_order_stop_at_first_failure() {
    let (_t, mut repo) = repo(false);
    repo.add_target("targets", "a", b"A");
    repo.add_target("targets", "c", b"C");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client
        .download(&server, &["a", "missing", "c"], &[])
        .fails_with(&["\"missing\"", "not listed"]);
    let files = client.downloaded();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["a"]);
    // one updater instance: metadata fetched once
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| *r == "metadata/timestamp.json")
            .count(),
        1
    );
}

#[test]
fn implicit_refresh_on_download_of_unknown_target() {
    let (_t, repo) = repo(false);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client
        .download(&server, &["nonexistent artifact"], &[])
        .fails_with(&["nonexistent artifact", "not listed"]);
    assert_eq!(client.version("targets"), 1);
    assert_eq!(client.version("snapshot"), 1);
}

#[test]
fn root_rotation_walks_every_version() {
    let (_t, mut repo) = repo(true);
    // v2: new root key, signed by old and new
    let old = repo.rotate_keys("root");
    repo.bump_root(&[&old[0]]);
    // v3: same keys
    repo.bump_root(&[]);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.refresh(&server, &[]).ok();
    assert_eq!(client.version("root"), 3);
    let roots: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.ends_with(".root.json"))
        .collect();
    assert_eq!(
        roots,
        [
            "metadata/2.root.json",
            "metadata/3.root.json",
            "metadata/4.root.json"
        ]
    );
    assert_eq!(
        client.trusted()["root.json"],
        std::fs::read(repo.metadata_dir().join("3.root.json")).unwrap()
    );
}

#[test]
fn max_root_rotations_caps_the_walk() {
    let (_t, mut repo) = repo(false);
    repo.bump_root(&[]);
    repo.bump_root(&[]);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.refresh(&server, &["--max-root-rotations", "1"]).ok();
    assert_eq!(client.version("root"), 2);
    assert!(!server
        .requests()
        .contains(&"metadata/3.root.json".to_owned()));
}

#[test]
fn delegated_roles_with_unusual_names_are_quoted() {
    for role in ["?", "#", "/delegatedrole", "../delegatedrole"] {
        let (_t, mut repo) = repo(false);
        repo.add_delegation("targets", role, &["*"], false);
        repo.bump_targets(role);
        repo.bump_targets("targets");
        repo.update_snapshot();
        let server = TestServer::start(&repo.dir);
        let client = Client::new();
        client.init(&repo).ok();
        client
            .download(&server, &["nonexistent target"], &[])
            .fails_with(&["not listed"]);
        let quoted = custody_client::encoding::encode_component(role);
        assert!(
            server
                .requests()
                .contains(&format!("metadata/{quoted}.json")),
            "{role}: {:?}",
            server.requests()
        );
        let files = client.trusted();
        assert!(
            files.contains_key(&format!("{quoted}.json")),
            "{role}: {:?}",
            files.keys()
        );
        assert_eq!(files.len(), 5);
        // nothing was written outside the metadata dir
        for e in std::fs::read_dir(client.tmp.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                ["metadata", "targets", "initial_root.json"].contains(&name.as_str()),
                "{role}: {name} escaped the metadata dir"
            );
        }
    }
}

#[test]
fn delegation_search_order_and_terminating() {
    let (_t, mut repo) = repo(true);
    repo.add_delegation("targets", "a", &["x/*"], true);
    repo.add_delegation("targets", "b", &["x/*"], false);
    repo.add_target("a", "x/1", b"from a");
    repo.add_target("b", "x/2", b"from b");
    for r in ["a", "b", "targets"] {
        repo.bump_targets(r);
    }
    repo.update_snapshot();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    client.download(&server, &["x/1"], &[]).ok();
    // "a" is terminating: x/2 is not searched in "b"
    client
        .download(&server, &["x/2"], &[])
        .fails_with(&["x/2", "not listed"]);
    assert!(!server.requests().iter().any(|r| r.contains(".b.json")));
}

#[test]
fn init_rejects_garbage_and_refresh_without_root_fails_offline() {
    let client = Client::new();
    client
        .init_bytes(b"not json")
        .fails_with(&["initial_root.json", "root"]);
    assert!(client.trusted().is_empty());
    let (_t, repo) = repo(false);
    let server = TestServer::start(&repo.dir);
    client
        .refresh(&server, &[])
        .fails_with(&["root.json", "no trusted root"]);
    assert!(server.requests().is_empty());
}

#[test]
fn unsigned_initial_root_fails_without_requests() {
    let (_t, repo) = repo(false);
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.metadata_dir().join("1.root.json")).unwrap())
            .unwrap();
    root["signatures"][0]["sig"] = json!("00".repeat(64));
    let client = Client::new();
    // init checks the self-signature
    client
        .init_bytes(&serde_json::to_vec(&root).unwrap())
        .fails_with(&["root", "threshold not met"]);
    // even if a bad root is put there by hand, refresh makes no request
    std::fs::write(
        client.metadata_dir.join("root.json"),
        serde_json::to_vec(&root).unwrap(),
    )
    .unwrap();
    let server = TestServer::start(&repo.dir);
    client
        .refresh(&server, &[])
        .fails_with(&["root.json", "threshold not met"]);
    assert!(server.requests().is_empty());
}

#[test]
fn json_errors_and_options_after_the_command() {
    let (_t, mut repo) = repo(false);
    repo.timestamp["expires"] = json!(common::repo::expiry(chrono::Duration::days(-1)));
    repo.update_timestamp();
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    let url = server.url("metadata");
    let out = run(&[
        "client",
        "refresh",
        "--metadata-dir",
        common::s(&client.metadata_dir),
        "--metadata-url",
        &url,
        "--json",
    ]);
    out.fails_with(&["timestamp", "expired"]);
    let v = out.json();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["kind"], json!("expired"));
    assert!(v["error"].as_str().unwrap().contains("timestamp"));
}

#[test]
fn file_transport_mirror() {
    let (_t, mut repo) = repo(true);
    repo.add_target("targets", "f", b"file mirror");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let client = Client::new();
    client.init(&repo).ok();
    let md = url::Url::from_directory_path(repo.metadata_dir()).unwrap();
    let tg = url::Url::from_directory_path(repo.dir.join("targets")).unwrap();
    run(&[
        "client",
        "--metadata-dir",
        common::s(&client.metadata_dir),
        "--metadata-url",
        md.as_str(),
        "--target-base-url",
        tg.as_str(),
        "--target-dir",
        common::s(&client.target_dir),
        "--target-name",
        "f",
        "download",
    ])
    .ok();
    assert_eq!(client.downloaded()["f"], b"file mirror");
}

#[test]
fn help_teaches() {
    let out = run(&["client", "--help"]);
    out.ok();
    for needle in [
        "init",
        "refresh",
        "download",
        "--reference-time",
        "Examples:",
        "--target-name",
    ] {
        assert!(out.stdout.contains(needle), "help lacks {needle}");
    }
}

/// Pre-order depth-first delegation walk, as tuf-conformance's
/// test_updater_delegation_graphs expects it: (delegations, visited order).
#[test]
fn delegation_graph_traversal_order() {
    type Graph = (
        &'static str,
        &'static [(&'static str, &'static str, bool, &'static str)],
        &'static [&'static str],
    );
    let graphs: &[Graph] = &[
        (
            "dfs",
            &[
                ("targets", "A", false, "*"),
                ("targets", "B", false, "*"),
                ("A", "C", false, "*"),
                ("A", "D", false, "*"),
            ],
            &["A", "C", "D", "B"],
        ),
        (
            "terminating",
            &[
                ("targets", "A", false, "*"),
                ("targets", "B", false, "*"),
                ("A", "C", true, "*"),
                ("A", "D", false, "*"),
            ],
            &["A", "C"],
        ),
        (
            "paths",
            &[
                ("targets", "A", false, "*.py"),
                ("targets", "B", false, "*"),
                ("A", "C", false, "*"),
            ],
            &["B"],
        ),
        (
            "cycle",
            &[
                ("targets", "A", false, "*"),
                ("targets", "B", false, "*"),
                ("B", "C", false, "*"),
                ("C", "D", false, "*"),
                ("D", "B", false, "*"),
            ],
            &["A", "B", "C", "D"],
        ),
        (
            "shared child",
            &[
                ("targets", "A", false, "*"),
                ("targets", "B", false, "*"),
                ("B", "C", false, "*"),
                ("A", "C", false, "*"),
            ],
            &["A", "C", "B"],
        ),
    ];
    for (name, delegations, expected) in graphs {
        let (_t, mut repo) = repo(false);
        for (parent, child, terminating, pattern) in delegations.iter() {
            repo.add_delegation(parent, child, &[pattern], *terminating);
        }
        let roles: std::collections::BTreeSet<&str> = delegations
            .iter()
            .flat_map(|(p, c, _, _)| [*p, *c])
            .collect();
        for r in roles {
            repo.bump_targets(r);
        }
        repo.update_snapshot();
        let server = TestServer::start(&repo.dir);
        let client = Client::new();
        client.init(&repo).ok();
        client
            .download(&server, &["missingpath"], &[])
            .fails_with(&["missingpath", "not listed"]);
        let visited: Vec<String> = server.requests()[4..].to_vec();
        let want: Vec<String> = expected
            .iter()
            .map(|r| format!("metadata/{r}.json"))
            .collect();
        assert_eq!(visited, want, "graph {name}");
    }
}

#[test]
fn root_walk_ends_on_403_but_not_on_500() {
    let (_t, repo) = repo(false);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    server.attack("metadata/2.root.json", common::Attack::Status(403));
    client.refresh(&server, &["--json"]).ok();
    server.attack("metadata/2.root.json", common::Attack::Status(500));
    let before = client.trusted();
    client
        .refresh(&server, &[])
        .fails_with(&["2.root.json", "HTTP 500"]);
    assert_eq!(client.trusted(), before);
}

#[test]
fn overall_time_budget_stops_a_trickling_server() {
    let (_t, repo) = repo(false);
    let server = TestServer::start(&repo.dir);
    let client = Client::new();
    client.init(&repo).ok();
    // one byte every 100 ms never trips the per-read timeout, but the
    // overall budget runs out
    server.attack(
        "metadata/timestamp.json",
        common::Attack::Slow(std::time::Duration::from_millis(100)),
    );
    client
        .refresh(&server, &["--timeout", "1", "--read-timeout", "30"])
        .fails_with(&["timestamp.json", "slow retrieval"]);
    assert_eq!(client.trusted().len(), 1, "only root.json");
}
