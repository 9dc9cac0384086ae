//! Latency of a server publish of ONE new target into a repository that
//! already lists `CUSTODY_BENCH_TARGETS` (default 20,000) targets, through
//! the same code the API runs (`Authoring::publish` then
//! `Authoring::merge_signatures` with the offline targets key, which makes
//! it go live into a new hosting generation).
//!
//! The repository is flat (every target in the top-level targets role):
//! the create endpoint does not set up hash bins yet. A flat 100,000-target
//! role is about 15 MB, over custody-tuf's 5 MB targets limit: the publish
//! is (rightly) refused, so 100,000 targets need hash bins.
//!
//! cargo bench -p custody-server --bench publish_latency

use std::path::Path;
use std::time::Instant;

use custody_repo::keyring::KeyRing;
use custody_repo::memsigner::MemorySigner;
use custody_repo::passphrase::SecretSource;
use custody_repo::Signer;
use custody_server::authoring::{Authoring, WantedTarget};
use custody_server::hosting::Hosting;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn main() {
    let n: usize = std::env::var("CUSTODY_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    std::fs::create_dir_all(data.join("tmp")).expect("tmp");
    let pass = data.join("pass");
    std::fs::write(&pass, "bench passphrase").expect("pass");
    let auth = Authoring::new(data, Some(&pass)).expect("authoring");
    let hosting = Hosting::new(data.join("repos"), 4 << 20, 64 << 20);
    let root = MemorySigner::generate().expect("key");
    let targets = MemorySigner::generate().expect("key");
    let (root_id, targets_id) = (root.keyid().to_string(), targets.keyid().to_string());
    auth.create(
        "bench",
        (vec![root.key().clone()], 1),
        (vec![targets.key().clone()], 1),
        chrono::Utc::now(),
    )
    .expect("create");
    let mut ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    ring.add(Box::new(root));
    ring.add(Box::new(targets));
    let sign = |role: &str, id: &str| {
        let draft = auth.export_role("bench", role).expect("export");
        let (_, signed) = custody_repo::repository::sign_metadata_bytes(
            &draft,
            Path::new("draft"),
            &[id.to_string()],
            &ring,
        )
        .expect("sign");
        auth.merge_signatures("bench", role, &signed, &hosting, chrono::Utc::now())
            .expect("merge")
    };
    sign("root", &root_id);
    sign("targets", &targets_id);

    // n small blobs, published in one go (one add_targets over a tree).
    let blobs = data.join("blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let mut wanted = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let bytes = format!("target {i}\n").into_bytes();
        let sha = sha256_hex(&bytes);
        let p = blobs.join(&sha);
        std::fs::write(&p, &bytes).expect("blob");
        wanted.push(WantedTarget {
            name: format!("d{}/t{i}.bin", i % 100),
            blob: p,
            sha256: sha,
            length: bytes.len() as u64,
            custom: None,
        });
    }
    match auth.publish("bench", &wanted, &[], &hosting, chrono::Utc::now()) {
        Err(custody_server::authoring::AuthoringError::Unsigned { .. }) => {}
        other => panic!("setup publish: expected a draft, got {other:?}"),
    }
    let (_, _, live) = sign("targets", &targets_id);
    assert!(live.is_some(), "setup: signature makes it live");
    println!(
        "setup: {n} targets published in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    for round in 0..rounds {
        let bytes = format!("new target {round}\n").into_bytes();
        let sha = sha256_hex(&bytes);
        let p = blobs.join(&sha);
        std::fs::write(&p, &bytes).expect("blob");
        wanted.push(WantedTarget {
            name: format!("new/{round}.bin"),
            blob: p,
            sha256: sha,
            length: bytes.len() as u64,
            custom: None,
        });
        let t = Instant::now();
        let draft = auth.publish("bench", &wanted, &[], &hosting, chrono::Utc::now());
        let t_draft = t.elapsed();
        assert!(
            draft.is_err(),
            "offline targets key: the publish is a draft"
        );
        let t2 = Instant::now();
        let (_, _, live) = sign("targets", &targets_id);
        let t_live = t2.elapsed();
        assert!(live.is_some(), "signature makes it live");
        println!(
            "round {round}: publish 1 new target into {n}: draft (add, re-sign snapshot/timestamp, save) {:.2} s; sign + go live (verify all, new generation) {:.2} s; total {:.2} s",
            t_draft.as_secs_f64(),
            t_live.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
}
