//! Latency of a server publish of ONE new target into a repository that
//! already lists `CUSTODY_BENCH_TARGETS` (default 20,000) targets, through
//! the same code the API runs (`Authoring::publish` then
//! `Authoring::merge_signatures` with the offline targets key, which makes
//! it go live into a new hosting generation).
//!
//! With `CUSTODY_BENCH_BINS=N` (default 256) the repository delegates to N
//! succinct hash bins signed by the server's online bins key (the create
//! endpoint's `hash_bins`): a publish goes live at once, no offline
//! signature. With `CUSTODY_BENCH_BINS=0` it is flat and every publish
//! waits for the offline targets signature (merged here). A flat
//! 100,000-target role is about 15 MB, over custody-tuf's 5 MB targets
//! limit: flat repositories of that size are (rightly) refused.
//!
//! CUSTODY_BENCH_TARGETS=100000 CUSTODY_BENCH_BINS=256 cargo bench -p custody-server --bench publish_latency

use std::path::Path;
use std::time::Instant;

use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::KeyRing;
use custody_server::testing::Hosting;
use custody_server::testing::{Authoring, WantedTarget};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn main() {
    let n: usize = std::env::var("CUSTODY_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bins: u32 = std::env::var("CUSTODY_BENCH_BINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rounds: usize = 5;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    std::fs::create_dir_all(data.join("tmp")).expect("tmp");
    let pass = data.join("pass");
    std::fs::write(&pass, "bench passphrase").expect("pass");
    let auth = Authoring::new(data, Some(&pass)).expect("authoring");
    let hosting = Hosting::new(data.join("repos"), 4 << 20, 64 << 20);
    let root = MemorySigner::generate_ed25519().expect("key");
    let targets = MemorySigner::generate_ed25519().expect("key");
    let (root_id, targets_id) = (root.keyid().to_string(), targets.keyid().to_string());
    auth.create_with_bins(
        "bench",
        (vec![root.key().clone()], 1),
        (vec![targets.key().clone()], 1),
        (bins > 0).then_some(bins),
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
            provenance: None,
        });
    }
    match auth.publish("bench", &wanted, &[], &hosting, chrono::Utc::now()) {
        Ok(o) if bins > 0 => assert!(o.generation.is_some(), "bins: live at once"),
        Err(custody_server::testing::AuthoringError::Unsigned { .. }) if bins == 0 => {
            let (_, _, live) = sign("targets", &targets_id);
            assert!(live.is_some(), "setup: signature makes it live");
        }
        other => panic!("setup publish: unexpected {other:?}"),
    }
    println!(
        "setup: {n} targets ({}) published in {:.1} s",
        if bins > 0 {
            format!("{bins} hash bins")
        } else {
            "flat".to_string()
        },
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
            provenance: None,
        });
        let t = Instant::now();
        if bins > 0 {
            let o = auth
                .publish("bench", &wanted, &[], &hosting, chrono::Utc::now())
                .expect("publish");
            assert!(o.generation.is_some(), "bins: live at once");
            println!(
                "round {round}: publish 1 new target into {n} ({bins} bins): add to its bin, sign bin + snapshot + timestamp online, save, go live: {:.3} s",
                t.elapsed().as_secs_f64()
            );
            continue;
        }
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
