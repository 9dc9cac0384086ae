//! `custody witness` against a log the test controls: cosigns an honest
//! log as it grows, and refuses with an alarm (exit 2, stderr, JSON event,
//! unchanged state) a fork at the same size, a fork at a larger size and a
//! rolled-back checkpoint.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::custody_async as custody;
use custody_log::{
    consistency_proof, Appender, LogVerifier, MemoryStore, NoteSigner, VerifierKey, WitnessPolicy,
};
use serde_json::{json, Value};

const ORIGIN: &str = "log.test/custody";

#[derive(Default)]
struct Served {
    checkpoint: Vec<u8>,
    store: MemoryStore,
    posted: Vec<Value>,
}

type Shared = Arc<Mutex<Served>>;

fn tree(prefix: &str, n: usize) -> Appender<MemoryStore> {
    let mut a = Appender::open(MemoryStore::new()).unwrap();
    let e: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect();
    a.append_entries(&e).unwrap();
    a
}

fn serve(shared: &Shared, key: &NoteSigner, a: &Appender<MemoryStore>) {
    let note = a.checkpoint(ORIGIN).unwrap().sign(key).unwrap();
    let mut s = shared.lock().unwrap();
    s.checkpoint = note.to_bytes();
    s.store = a.store().clone();
}

async fn start(shared: Shared, vkey: String) -> String {
    let app = Router::new()
        .route(
            "/log/v1/key",
            get(move || async move { format!("{vkey}\n") }),
        )
        .route(
            "/log/v1/checkpoint",
            get(|State(s): State<Shared>| async move { s.lock().unwrap().checkpoint.clone() }),
        )
        .route(
            "/log/v1/proof/consistency",
            get(
                |State(s): State<Shared>, Query(q): Query<HashMap<String, u64>>| async move {
                    let s = s.lock().unwrap();
                    let p = consistency_proof(&s.store, q["old"], q["new"]).unwrap();
                    Json(json!({"old": q["old"], "new": q["new"],
                        "proof": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>()}))
                },
            ),
        )
        .route(
            "/log/v1/cosign",
            post(|State(s): State<Shared>, Json(v): Json<Value>| async move {
                s.lock().unwrap().posted.push(v);
                Json(json!({"size": 0, "cosignatures": 1}))
            }),
        )
        .with_state(shared);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

async fn witness_once(url: &str, key: &Path, state: &Path) -> Output {
    let (key, state) = (key.display().to_string(), state.display().to_string());
    custody(&[
        "witness", "--log", url, "--key", &key, "--state", &state, "--once", "--json",
    ])
    .await
}

fn event(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_cosigns_an_honest_log_and_alarms_on_fork_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("witness.key");
    let state = dir.path().join("state");
    let keyfile_arg = keyfile.display().to_string();
    let o = custody(&["witness", "--key", &keyfile_arg, "--new-key", "w1.test"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wkey = VerifierKey::parse(String::from_utf8_lossy(&o.stdout).trim()).unwrap();

    let log_key = NoteSigner::from_seed(ORIGIN, [3; 32]).unwrap();
    let shared: Shared = Arc::default();
    let url = start(shared.clone(), log_key.verifier_key().to_vkey()).await;
    let policy = WitnessPolicy::new(vec![wkey.clone()], 1).unwrap();
    let verifier = LogVerifier::new(ORIGIN, log_key.verifier_key())
        .unwrap()
        .with_witness_policy(policy);

    // Honest log, first sight (log key pinned on first use).
    let a10 = tree("a", 10);
    serve(&shared, &log_key, &a10);
    let o = witness_once(&url, &keyfile, &state).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(event(&o)["event"], "cosigned");
    assert_eq!(event(&o)["update"], "first");
    let posted = shared.lock().unwrap().posted.last().unwrap().clone();
    let mut note = posted["checkpoint"].as_str().unwrap().to_owned();
    note.push_str(posted["signature"].as_str().unwrap());
    let v = verifier.verify(note.as_bytes()).unwrap();
    assert_eq!(v.checkpoint.size, 10);
    assert_eq!(v.cosignatures.len(), 1);

    // The log grows consistently.
    let a15 = tree("a", 15);
    serve(&shared, &log_key, &a15);
    let o = witness_once(&url, &keyfile, &state).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(event(&o)["update"], "advanced");
    assert_eq!(event(&o)["from"], 10);
    let stored = std::fs::read(state.join("checkpoint")).unwrap();
    let posted_before = shared.lock().unwrap().posted.len();

    // Fork: same size, different root, validly signed by the log key.
    serve(&shared, &log_key, &tree("b", 15));
    let o = witness_once(&url, &keyfile, &state).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ALARM") && err.contains("fork"), "{err}");
    assert_eq!(event(&o)["kind"], "fork");

    // Fork at a larger size: no consistency proof can link it.
    serve(&shared, &log_key, &tree("b", 20));
    let o = witness_once(&url, &keyfile, &state).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(event(&o)["kind"], "inconsistent");

    // Rollback to an older checkpoint.
    serve(&shared, &log_key, &a10);
    let o = witness_once(&url, &keyfile, &state).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(event(&o)["kind"], "rollback");
    assert!(String::from_utf8_lossy(&o.stderr).contains("rollback"));

    // Nothing was cosigned and the state did not move.
    assert_eq!(shared.lock().unwrap().posted.len(), posted_before);
    assert_eq!(std::fs::read(state.join("checkpoint")).unwrap(), stored);
    assert!(std::fs::read_dir(&state).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("alarm-")));

    // The honest log continues and is cosigned again.
    serve(&shared, &log_key, &tree("a", 20));
    let o = witness_once(&url, &keyfile, &state).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(event(&o)["from"], 15);

    // A checkpoint signed by another key is refused (error, not cosigned).
    let other = NoteSigner::from_seed(ORIGIN, [4; 32]).unwrap();
    serve(&shared, &other, &tree("a", 25));
    let o = witness_once(&url, &keyfile, &state).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused")
            || String::from_utf8_lossy(&o.stderr).contains("signature")
    );
}
