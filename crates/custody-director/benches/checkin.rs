//! Per check-in cost of the director core, and the raw Ed25519 ceiling.
//!
//! One check-in = parse the signed manifest bytes + verify the device's
//! signature and counter + build the device view and compute its assignment
//! over a fleet policy (3 rollouts with maintenance windows, a pin table, a
//! yank) + sign the device's director targets, snapshot and timestamp.
//! Variants: with the signed-request check (a second Ed25519 verify, nonce
//! cache insert), and the cached path (assignment unchanged: only the
//! timestamp is re-signed).
//!
//! `cargo bench -p custody-director --bench checkin` prints figures for one
//! thread and for 2 threads (the target machine has 2 cores).

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use custody_director::director::{
    build_director_metadata, refresh_timestamp, DeviceDirectorState, DirectorConfig,
    DirectorSigners,
};
use custody_director::manifest::verify_manifest;
use custody_director::policy::{
    assign, DeviceView, FleetPolicy, Gate, MaintenanceWindow, Release, RollbackKeys, Rollout,
    Selector, Stage, Yank,
};
use custody_director::registry::{
    DeviceRecord, DeviceStatus, EnrolledWith, Purpose, ReattestationPolicy,
};
use custody_director::request::{
    fresh_nonce, sign_request, verify_device_request, MemoryNonceCache, RequestPolicy, Route,
};
use custody_director::wire::{
    DeviceAttributes, InstalledTarget, ManifestBody, SignedManifest, SignedRequest, TYPE_MANIFEST,
    WIRE_VERSION,
};
use custody_keys::MemorySigner;
use custody_keys::Signer;

struct Dev {
    rec: DeviceRecord,
    manifest: Vec<u8>,
    request: SignedRequest,
}

fn release(name: &str, rc: u64) -> Release {
    Release {
        name: name.into(),
        length: 1 << 20,
        hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
        release_counter: rc,
        hardware_ids: ["board-x".to_owned()].into(),
    }
}

/// Process CPU time (user + system, all threads).
fn cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
            tv(u.user_time()) + tv(u.system_time())
        })
        .unwrap_or(0.0)
}

/// Run `f` `n` times; (wall ops/s, CPU µs per op).
fn measure(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (w, c) = (Instant::now(), cpu());
    for _ in 0..n {
        f();
    }
    let (wall, cpu_s) = (w.elapsed().as_secs_f64(), cpu() - c);
    (n as f64 / wall, cpu_s * 1e6 / n as f64)
}

fn main() {
    let now = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 30, 0)
        .single()
        .unwrap_or_default();
    let n_dev = 1000;
    let devs: Vec<Dev> = (0..n_dev)
        .map(|i| {
            let k = MemorySigner::generate_ed25519().expect("keygen");
            let rec = DeviceRecord {
                id: k.keyid().to_owned(),
                key: k.key().clone(),
                hardware_id: "board-x".into(),
                group: format!("g{}", i % 4),
                attributes: DeviceAttributes {
                    environment: "production".into(),
                    tags: ["eu".to_owned()].into(),
                    group: None,
                },
                enrolled_at: now,
                enrolled_with: EnrolledWith::Token {
                    token_hash_prefix: "0".into(),
                },
                status: DeviceStatus::Active,
                last_attestation: now,
            };
            let body = ManifestBody {
                type_: TYPE_MANIFEST.into(),
                wire_version: WIRE_VERSION,
                device_id: rec.id.clone(),
                hardware_id: rec.hardware_id.clone(),
                report_counter: 2,
                device_time: now.timestamp(),
                installed: [
                    (
                        "a".to_owned(),
                        InstalledTarget {
                            name: "app-1".into(),
                            length: 1 << 20,
                            hashes: [("sha256".to_owned(), "cd".repeat(32))].into(),
                            release_counter: 1,
                        },
                    ),
                    (
                        "b".to_owned(),
                        InstalledTarget {
                            name: "app-0".into(),
                            length: 1 << 20,
                            hashes: [("sha256".to_owned(), "ef".repeat(32))].into(),
                            release_counter: 0,
                        },
                    ),
                ]
                .into(),
                active_slot: Some("a".into()),
                attacks_detected: vec![],
                install_reports: vec![],
            };
            let manifest = SignedManifest::sign(body, &k)
                .and_then(|m| m.to_bytes())
                .expect("manifest");
            let request = sign_request(
                &k,
                "POST",
                "/api/v1/device/checkin",
                manifest.clone(),
                now,
                fresh_nonce().expect("nonce"),
            )
            .expect("request");
            Dev {
                rec,
                manifest,
                request,
            }
        })
        .collect();
    let window =
        MaintenanceWindow::new("0 2 * * *", "Europe/Berlin", Duration::hours(2)).expect("window");
    let stages = vec![
        Stage {
            share_bp: 1_000,
            gate: Gate::default(),
        },
        Stage {
            share_bp: 10_000,
            gate: Gate::default(),
        },
    ];
    let rollouts = (0..3)
        .map(|i| {
            let mut r = Rollout::new(
                &format!("r{i}"),
                &format!("seed{i}"),
                release(&format!("app-{}", i + 2), i + 2),
                Selector {
                    environments: Some(["production".to_owned()].into()),
                    ..Default::default()
                },
                stages.clone(),
                vec![window.clone()],
            )
            .expect("rollout");
            r.stage = 1;
            r
        })
        .collect();
    let policy = FleetPolicy {
        rollouts,
        pins: Default::default(),
        yanks: vec![Yank {
            target: "app-x".into(),
            replacement: release("app-9", 9),
        }],
        rollback_authorizations: vec![],
        rollback_keys: RollbackKeys {
            keys: Default::default(),
            threshold: 1,
        },
    };
    let online = MemorySigner::generate_ed25519().expect("director key");
    let online = &online;
    let signers = move || DirectorSigners {
        targets: online,
        snapshot: online,
        timestamp: online,
    };
    let cfg = DirectorConfig::default();
    let reatt = ReattestationPolicy::default();

    // One check-in; `with_request` adds the signed-request check.
    // Each device checks in once per round; every round has a fresh nonce
    // cache, so the replayed bench request is not refused.
    let checkin = |d: &Dev, with_request: bool, cache: &MemoryNonceCache| -> usize {
        if with_request {
            let route = Route {
                method: "POST",
                path: "/api/v1/device/checkin",
                purpose: Purpose::Normal,
            };
            verify_device_request(
                &d.rec,
                &d.request,
                route,
                now,
                &RequestPolicy::default(),
                cache,
            )
            .expect("request");
        }
        let m = SignedManifest::from_bytes(&d.manifest).expect("parse");
        let body = verify_manifest(&d.rec, &m, Some(1), now, &reatt).expect("verify");
        let view = DeviceView::new(&d.rec, Some(body), now, &reatt);
        let a = assign(&view, &policy, now);
        let targets: Vec<_> = a.director_target().into_iter().collect();
        let md = build_director_metadata(
            signers(),
            &d.rec.id,
            &d.rec.hardware_id,
            &targets,
            &DeviceDirectorState::default(),
            now,
            &cfg,
        )
        .expect("sign");
        md.targets.len() + md.snapshot.len() + md.timestamp.len()
    };

    // sanity: the bench devices do get an assignment
    {
        let d = &devs[0];
        let m = SignedManifest::from_bytes(&d.manifest).expect("parse");
        let view = DeviceView::new(&d.rec, Some(&m.signed), now, &reatt);
        let a = assign(&view, &policy, now);
        assert!(a.director_target().is_some(), "{a:?}");
    }

    let rounds = std::env::var("CHECKIN_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5usize);
    let run = |threads: usize, with_request: bool| -> (f64, f64) {
        let start = Instant::now();
        let c0 = cpu();
        let mut total = 0usize;
        for _ in 0..rounds {
            let cache = MemoryNonceCache::new(4 * n_dev);
            std::thread::scope(|s| {
                let chunk = devs.len().div_ceil(threads);
                let hs: Vec<_> = devs
                    .chunks(chunk)
                    .map(|c| {
                        let cache = &cache;
                        s.spawn(move || {
                            c.iter()
                                .map(|d| checkin(d, with_request, cache))
                                .sum::<usize>()
                        })
                    })
                    .collect();
                for h in hs {
                    total += h.join().expect("thread");
                }
            });
        }
        let n = (rounds * devs.len()) as f64;
        std::hint::black_box(total);
        (n / start.elapsed().as_secs_f64(), (cpu() - c0) * 1e6 / n)
    };

    // cached path: only the timestamp is re-signed
    let md = build_director_metadata(
        signers(),
        &devs[0].rec.id,
        "board-x",
        &[],
        &DeviceDirectorState::default(),
        now,
        &cfg,
    )
    .expect("md");
    let n = 5_000;
    let d0 = &devs[0];
    let parsed = SignedManifest::from_bytes(&d0.manifest).expect("parse");
    let view = DeviceView::new(&d0.rec, Some(&parsed.signed), now, &reatt);
    let assigned = assign(&view, &policy, now);
    let targets: Vec<_> = assigned.director_target().into_iter().collect();
    let k = MemorySigner::generate_ed25519().expect("k");
    let pk = custody_tuf::PublicKey::from_key(k.key()).expect("pk");
    let msg = [7u8; 300];
    let sig = k.sign(&msg).expect("sign");
    let steps: Vec<(&str, (f64, f64))> = vec![
        (
            "raw ed25519 sign (ring)",
            measure(n, || {
                std::hint::black_box(k.sign(std::hint::black_box(&msg)).expect("sign"));
            }),
        ),
        (
            "raw ed25519 verify (ring)",
            measure(n, || {
                assert!(pk.verify(std::hint::black_box(&msg), &sig));
            }),
        ),
        (
            "parse manifest bytes",
            measure(n, || {
                std::hint::black_box(SignedManifest::from_bytes(&d0.manifest).expect("parse"));
            }),
        ),
        (
            "verify_manifest",
            measure(n, || {
                std::hint::black_box(
                    verify_manifest(&d0.rec, &parsed, Some(1), now, &reatt).expect("v"),
                );
            }),
        ),
        (
            "verify_device_request",
            measure(n, || {
                let cache = MemoryNonceCache::new(4);
                let route = Route {
                    method: "POST",
                    path: "/api/v1/device/checkin",
                    purpose: Purpose::Normal,
                };
                verify_device_request(
                    &d0.rec,
                    &d0.request,
                    route,
                    now,
                    &RequestPolicy::default(),
                    &cache,
                )
                .expect("r");
            }),
        ),
        (
            "assign (3 rollouts, windows, yank)",
            measure(n, || {
                std::hint::black_box(assign(&view, &policy, now));
            }),
        ),
        (
            "build targets+snapshot+timestamp",
            measure(n, || {
                std::hint::black_box(
                    build_director_metadata(
                        signers(),
                        &d0.rec.id,
                        "board-x",
                        &targets,
                        &DeviceDirectorState::default(),
                        now,
                        &cfg,
                    )
                    .expect("b"),
                );
            }),
        ),
        (
            "refresh_timestamp only",
            measure(n, || {
                std::hint::black_box(
                    refresh_timestamp(online, &md.snapshot, &md.state, now, &cfg).expect("ts"),
                );
            }),
        ),
    ];

    println!(
        "custody-director check-in bench ({} devices x {rounds} rounds)",
        devs.len()
    );
    println!("CPU µs are process user+sys time per operation: on this shared machine wall time");
    println!("mostly measures other jobs; capacity = 2 cores / CPU cost.");
    println!(
        "{:<38} {:>10} {:>10}",
        "step (1 thread)", "wall op/s", "CPU µs"
    );
    for (name, (rate, us)) in &steps {
        println!("{name:<38} {rate:>10.0} {us:>10.1}");
    }
    let us = |name: &str| steps.iter().find(|s| s.0 == name).map_or(0.0, |s| s.1 .1);
    let ceiling = us("raw ed25519 verify (ring)") + 3.0 * us("raw ed25519 sign (ring)");
    println!(
        "ed25519 ceiling, 1 verify + 3 signs: {ceiling:.1} CPU µs = {:.0} check-ins/s on 2 cores",
        2e6 / ceiling
    );
    for threads in [1, 2] {
        for (label, with_request) in [("full", false), ("full + signed request", true)] {
            let (rate, us) = run(threads, with_request);
            println!(
                "check-in {label:<22} {threads} thread(s): wall {rate:>7.0}/s, CPU {us:>6.1} µs => {:>6.0}/s on 2 cores",
                2e6 / us
            );
        }
    }
    let cached = us("verify_device_request")
        + us("parse manifest bytes")
        + us("verify_manifest")
        + us("assign (3 rollouts, windows, yank)")
        + us("refresh_timestamp only");
    println!(
        "cached check-in (request + manifest verify + assign + timestamp re-sign, sum of steps): {cached:.1} CPU µs => {:.0}/s on 2 cores",
        2e6 / cached
    );
}
