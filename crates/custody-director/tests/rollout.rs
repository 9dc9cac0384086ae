//! A staged rollout over 1,000 simulated devices.
mod common;

use chrono::{Duration, TimeZone, Utc};
use common::t0;
use custody_director::policy::{
    assign, bucket, Assignment, DeviceView, FleetPolicy, Gate, GateDecision, MaintenanceWindow,
    Release, RollbackKeys, Rollout, RolloutState, Selector, Stage, StageStats, BUCKETS,
};
use ring::digest;

fn fleet(n: usize) -> Vec<DeviceView> {
    (0..n)
        .map(|i| DeviceView {
            // device ids have the shape of key ids
            id: hex::encode(digest::digest(
                &digest::SHA256,
                format!("device-{i}").as_bytes(),
            )),
            hardware_id: if i % 10 == 9 {
                "board-y".into()
            } else {
                "board-x".into()
            },
            environment: if i % 5 == 4 {
                "staging".into()
            } else {
                "production".into()
            },
            group: format!("g{}", i % 3),
            tags: if i % 2 == 0 {
                ["even".to_owned()].into()
            } else {
                Default::default()
            },
            usable: true,
            installed: None,
        })
        .collect()
}

fn release() -> Release {
    Release {
        name: "app-2.0".into(),
        length: 10,
        hashes: [("sha256".to_owned(), "aa".repeat(32))].into(),
        release_counter: 2,
        hardware_ids: Default::default(),
    }
}

const SHARES: [u32; 4] = [100, 1_000, 5_000, 10_000];

fn stages() -> Vec<Stage> {
    SHARES
        .iter()
        .map(|&s| Stage {
            share_bp: s,
            gate: Gate {
                min_success_bp: 9_000,
                max_failure_bp: 1_000,
                min_sample: 5,
            },
        })
        .collect()
}

fn policy(r: Rollout) -> FleetPolicy {
    FleetPolicy {
        rollouts: vec![r],
        pins: Default::default(),
        yanks: vec![],
        rollback_authorizations: vec![],
        rollback_keys: RollbackKeys {
            keys: Default::default(),
            threshold: 1,
        },
    }
}

fn assigned(devs: &[DeviceView], p: &FleetPolicy, now: chrono::DateTime<Utc>) -> Vec<usize> {
    devs.iter()
        .enumerate()
        .filter(|(_, d)| matches!(assign(d, p, now), Assignment::Install { .. }))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn stage_shares_match_their_percentages_within_two_points() {
    let devs = fleet(1000);
    let mut r = Rollout::new(
        "r1",
        "seed-1",
        release(),
        Selector::default(),
        stages(),
        vec![],
    )
    .unwrap();
    for (i, &share) in SHARES.iter().enumerate() {
        r.stage = i;
        let p = policy(r.clone());
        let n = assigned(&devs, &p, t0()).len() as f64 / devs.len() as f64;
        let want = f64::from(share) / f64::from(BUCKETS);
        assert!(
            (n - want).abs() <= 0.02,
            "stage {i}: share {n}, want {want}"
        );
    }
    // stages are nested: everyone in stage 1 is in stage 2
    r.stage = 1;
    let s1 = assigned(&devs, &policy(r.clone()), t0());
    r.stage = 2;
    let s2 = assigned(&devs, &policy(r.clone()), t0());
    assert!(s1.iter().all(|i| s2.contains(i)));
}

#[test]
fn selector_limits_the_rollout() {
    let devs = fleet(1000);
    let sel = Selector {
        hardware_ids: Some(["board-x".to_owned()].into()),
        environments: Some(["production".to_owned()].into()),
        tags: ["even".to_owned()].into(),
        ..Default::default()
    };
    let mut r = Rollout::new("r", "s", release(), sel, stages(), vec![]).unwrap();
    r.stage = 3;
    let got = assigned(&devs, &policy(r), t0());
    assert!(!got.is_empty());
    for i in got {
        let d = &devs[i];
        assert!(
            d.hardware_id == "board-x" && d.environment == "production" && d.tags.contains("even")
        );
    }
    let only = devs[7].id.clone();
    let sel = Selector {
        device_ids: Some([only.clone()].into()),
        ..Default::default()
    };
    let mut r = Rollout::new("r", "s", release(), sel, stages(), vec![]).unwrap();
    r.stage = 3;
    assert_eq!(assigned(&devs, &policy(r), t0()), vec![7]);
}

#[test]
fn canary_gates_advance_on_success_and_pause_on_injected_failures() {
    let devs = fleet(1000);
    let mut r = Rollout::new(
        "r1",
        "seed-1",
        release(),
        Selector::default(),
        stages(),
        vec![],
    )
    .unwrap();
    // healthy canary: every covered device reports success
    let covered = assigned(&devs, &policy(r.clone()), t0()).len() as u64;
    assert!(covered >= 5, "canary too small: {covered}");
    let d = r.evaluate(&StageStats {
        successes: 2,
        failures: 0,
    });
    assert!(
        matches!(d, GateDecision::Hold { .. }),
        "below min sample: {d:?}"
    );
    let d = r.evaluate(&StageStats {
        successes: covered,
        failures: 0,
    });
    assert_eq!(d, GateDecision::Advance { to: 1 });
    r.apply(&d);
    assert_eq!(r.stage, 1);

    // a fresh rollout whose canary fails 30% of the time pauses at the canary
    let mut bad = Rollout::new(
        "r2",
        "seed-2",
        release(),
        Selector::default(),
        stages(),
        vec![],
    )
    .unwrap();
    let canary = assigned(&devs, &policy(bad.clone()), t0());
    let failures = (canary.len() as u64 * 3).div_ceil(10);
    let stats = StageStats {
        successes: canary.len() as u64 - failures,
        failures,
    };
    let d = bad.evaluate(&stats);
    let GateDecision::Pause { reason } = &d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("exceeds the limit"), "{reason}");
    bad.apply(&d);
    assert!(matches!(bad.state, RolloutState::Paused { .. }));
    assert_eq!(bad.stage, 0, "paused at the canary stage");
    // paused: nobody gets it, not even the canary devices
    assert!(assigned(&devs, &policy(bad.clone()), t0()).is_empty());
    // resume puts the canary back; abort stops it for good
    assert!(bad.resume());
    assert_eq!(assigned(&devs, &policy(bad.clone()), t0()), canary);
    bad.abort("operator");
    assert!(!bad.resume());
    assert!(assigned(&devs, &policy(bad), t0()).is_empty());

    // the last stage passing completes the rollout
    r.stage = 3;
    let d = r.evaluate(&StageStats {
        successes: 100,
        failures: 1,
    });
    assert_eq!(d, GateDecision::Complete);
    r.apply(&d);
    assert_eq!(assigned(&devs, &policy(r), t0()).len(), 1000);
}

#[test]
fn outside_the_maintenance_window_a_device_gets_nothing() {
    let devs = fleet(1000);
    // 02:00-04:00 Berlin time, every day
    let w = MaintenanceWindow::new("0 2 * * *", "Europe/Berlin", Duration::hours(2)).unwrap();
    let mut r = Rollout::new("r", "s", release(), Selector::default(), stages(), vec![w]).unwrap();
    r.stage = 3;
    let p = policy(r);
    // 2026-06-01 is CEST (UTC+2): 02:30 Berlin = 00:30 UTC
    let inside = Utc.with_ymd_and_hms(2026, 6, 1, 0, 30, 0).unwrap();
    let outside = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let edge = Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(); // 04:00 Berlin: closed
    assert_eq!(assigned(&devs, &p, inside).len(), 1000);
    assert!(assigned(&devs, &p, outside).is_empty());
    assert!(assigned(&devs, &p, edge).is_empty());
    match assign(&devs[0], &p, outside) {
        Assignment::Nothing { reason } => {
            assert!(reason.contains("maintenance window"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // winter: CET (UTC+1): 02:30 Berlin = 01:30 UTC
    let winter = Utc.with_ymd_and_hms(2026, 1, 15, 1, 30, 0).unwrap();
    assert_eq!(assigned(&devs, &p, winter).len(), 1000);
    // each refusal names the value that broke its rule
    for (cron, tz, named) in [
        ("not cron", "Europe/Berlin", "not cron"),
        ("0 2 31 2 *", "UTC", "0 2 31 2 *"),
        ("0 2 * * *", "Mars/Olympus", "Mars/Olympus"),
    ] {
        let e = MaintenanceWindow::new(cron, tz, Duration::hours(1))
            .expect_err(cron)
            .to_string();
        assert!(e.contains(named), "expected {named:?} in: {e}");
    }
    assert!(MaintenanceWindow::new("0 2 29 2 *", "UTC", Duration::hours(1)).is_ok());
}

#[test]
fn same_seeds_give_same_buckets_and_seeds_reshuffle() {
    let devs = fleet(1000);
    let a: Vec<u32> = devs.iter().map(|d| bucket("seed-1", &d.id)).collect();
    let b: Vec<u32> = devs.iter().map(|d| bucket("seed-1", &d.id)).collect();
    let c: Vec<u32> = devs.iter().map(|d| bucket("seed-2", &d.id)).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // pinned value: the bucket function is part of the wire contract
    assert_eq!(bucket("seed", "device"), 8132); // u64_be(sha256("seed\0device")[..8]) % 10000
    let r1 = Rollout::new(
        "r",
        "seed-1",
        release(),
        Selector::default(),
        stages(),
        vec![],
    )
    .unwrap();
    let r2 = Rollout::new(
        "r",
        "seed-1",
        release(),
        Selector::default(),
        stages(),
        vec![],
    )
    .unwrap();
    assert_eq!(
        assigned(&devs, &policy(r1), t0()),
        assigned(&devs, &policy(r2), t0())
    );
}

#[test]
fn stage_lists_are_checked() {
    let s = |v: &[u32]| {
        v.iter()
            .map(|&share_bp| Stage {
                share_bp,
                gate: Gate::default(),
            })
            .collect::<Vec<_>>()
    };
    assert!(Rollout::new("r", "s", release(), Selector::default(), s(&[]), vec![]).is_err());
    assert!(Rollout::new(
        "r",
        "s",
        release(),
        Selector::default(),
        s(&[500, 500, 10_000]),
        vec![]
    )
    .is_err());
    assert!(Rollout::new(
        "r",
        "s",
        release(),
        Selector::default(),
        s(&[500, 5_000]),
        vec![]
    )
    .is_err());
    assert!(Rollout::new(
        "r",
        "s",
        release(),
        Selector::default(),
        s(&[500, 10_001]),
        vec![]
    )
    .is_err());
}
