//! Fleet API over loopback HTTP: a staged rollout over 1,000 simulated
//! devices (shares within ±2 points, canary gate advances on success and
//! pauses on injected failures, same seed → same buckets), maintenance
//! windows, anti-rollback with and without a rollback authorisation, pins,
//! yank remediation with "who installed X and when", drift.

mod common;
mod director_common;

use custody_director::policy::bucket;
use director_common::{fleet, fleet_with, Device, Fleet};
use serde_json::{json, Value};

const FW1: &[u8] = b"firmware 1.0";
const FW2: &[u8] = b"firmware 2.0 with the fix";
const FW3: &[u8] = b"firmware 3.0 remediation";

async fn rollout(f: &Fleet, id: &str) -> Value {
    let r = f
        .fleet_api("GET", &format!("/api/v1/fleet/rollouts/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Check in every device (8 at a time); returns the indexes that were
/// assigned `target`.
async fn checkin_all(f: &Fleet, devs: &mut [Device], target: &str) -> Vec<usize> {
    let mut assigned = Vec::new();
    for (chunk_i, chunk) in devs.chunks_mut(8).enumerate() {
        let mut futs = Vec::new();
        for d in chunk.iter_mut() {
            futs.push(f.checkin(d));
        }
        let results = futures_util::future::join_all(futs).await;
        for (j, (r, c)) in results.into_iter().enumerate() {
            assert_eq!(r.status, 200, "{}", r.text());
            let c = c.unwrap();
            let t: Value = serde_json::from_slice(&c.director.targets).unwrap();
            if t["signed"]["targets"].get(target).is_some() {
                assigned.push(chunk_i * 8 + j);
            }
        }
    }
    assigned
}

async fn wait_stage(f: &Fleet, id: &str, want: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let r = rollout(f, id).await;
        if want(&r) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "rollout {id} never reached the wanted state: {}",
        rollout(f, id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rollout_over_1000_devices() {
    let f = fleet().await;
    f.publish(&[("fw/1.0.bin", FW1, 1), ("fw/2.0.bin", FW2, 2)])
        .await;
    // 1,000 devices, stable keys, all running fw 1.0.
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/enrolment-tokens",
            Some(json!({"group": "fleet-a", "count": 1000})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let tokens: Vec<String> = serde_json::from_value(r.json()["tokens"].clone()).unwrap();
    let mut devs: Vec<Device> = (0..1000)
        .map(|i| {
            let mut d = Device::seeded(&format!("device-{i}"), "board-a", "fleet-a");
            d.install("fw/1.0.bin", FW1, 1, "installed");
            d.reports.clear();
            d
        })
        .collect();
    let enrol_url = format!("{}/device/v1/enrol", f.s.url);
    for (chunk, toks) in devs.chunks_mut(8).zip(tokens.chunks(8)) {
        let futs: Vec<_> = chunk
            .iter_mut()
            .zip(toks)
            .map(|(d, t)| {
                let body = d.enrol_body(custody_director::wire::EnrolmentCredential::Token {
                    token: t.clone(),
                });
                common::http(
                    "POST",
                    &enrol_url,
                    &[("content-type", "application/json")],
                    Some(body),
                )
            })
            .collect();
        for r in futures_util::future::join_all(futs).await {
            assert_eq!(r.status, 201, "{}", r.text());
        }
    }

    // Any seed's shares over a fixed set of 1,000 devices are one sample
    // (σ ≈ 1.6 points at 50 %); with the device keys fixed, the test uses
    // the first seed whose sample is within the issue's ±2 points, so the
    // run is deterministic. Uniformity of the bucket hash itself is
    // custody-director's property test.
    let seed = (1..100)
        .map(|i| format!("seed-{i}"))
        .find(|seed| {
            [1000u32, 5000].iter().all(|&share| {
                let n = devs.iter().filter(|d| bucket(seed, &d.id) < share).count() as i64;
                (n - i64::from(share) / 10).abs() <= 20
            })
        })
        .unwrap();
    let gate = json!({"min_success_percent": 95, "max_failure_percent": 5, "min_sample": 20});
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/rollouts",
            Some(json!({
                "id": "fw2",
                "target": "fw/2.0.bin",
                "selector": {"groups": ["fleet-a"], "hardware_ids": ["board-a"]},
                "stages": [
                    {"percent": 10, "gate": gate},
                    {"percent": 50, "gate": gate},
                    {"percent": 100, "gate": gate},
                ],
                "seed": seed,
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["release_counter"],
        2,
        "from the image target's custom"
    );
    assert_eq!(r.json()["selected_devices"], 1000);

    // Stage 0: 10 % ± 2 points, exactly the devices whose bucket is below
    // 1000 for this seed (a re-run with the same seed gives the same set).
    let s0 = checkin_all(&f, &mut devs, "fw/2.0.bin").await;
    assert!(
        (80..=120).contains(&s0.len()),
        "stage 0 got {} of 1000",
        s0.len()
    );
    let want: Vec<usize> = (0..1000)
        .filter(|&i| bucket(&seed, &devs[i].id) < 1000)
        .collect();
    assert_eq!(s0, want, "buckets are the seeded ones");
    let st = rollout(&f, "fw2").await;
    assert_eq!(
        st["stages"][0]["devices"].as_u64().unwrap() as usize,
        s0.len()
    );

    // They install it and report success: the gate advances to 50 %.
    for &i in &s0 {
        devs[i].install("fw/2.0.bin", FW2, 2, "installed");
    }
    checkin_all(&f, &mut devs, "fw/2.0.bin").await;
    let st = wait_stage(&f, "fw2", |r| r["stage"] == 1).await;
    assert_eq!(
        st["stages"][0]["successes"].as_u64().unwrap() as usize,
        s0.len()
    );
    assert_eq!(st["stages"][0]["state"], "done");
    assert_eq!(st["installed_devices"].as_u64().unwrap() as usize, s0.len());

    let s1 = checkin_all(&f, &mut devs, "fw/2.0.bin").await;
    assert!(
        (480..=520).contains(&s1.len()),
        "stage 1 got {} of 1000",
        s1.len()
    );
    assert!(s0.iter().all(|i| s1.contains(i)), "stages are nested");

    // Injected failures among the new stage-1 devices: 30 of the first 100
    // report failed, the rest installed → failure rate 30 % > 5 %: the
    // rollout pauses itself at this stage.
    let new: Vec<usize> = s1.iter().copied().filter(|i| !s0.contains(i)).collect();
    for (k, &i) in new.iter().take(100).enumerate() {
        let outcome = if k < 30 { "failed" } else { "installed" };
        devs[i].install("fw/2.0.bin", FW2, 2, outcome);
    }
    checkin_all(&f, &mut devs, "fw/2.0.bin").await;
    let st = wait_stage(&f, "fw2", |r| r["state"] == "paused").await;
    assert_eq!(st["stage"], 1, "paused at the canary stage");
    assert!(
        st["reason"].as_str().unwrap().contains("failure rate"),
        "{st}"
    );
    assert_eq!(st["stages"][1]["failures"], 30);
    let audit = f.audit_actions().await;
    assert!(
        audit.iter().any(|(a, _)| a == "fleet.rollout.gate"),
        "gate decisions are audited"
    );
    // Paused: nobody is assigned the release.
    assert!(checkin_all(&f, &mut devs, "fw/2.0.bin").await.is_empty());
    // An operator resumes: stage 1 again.
    let r = f
        .fleet_api("POST", "/api/v1/fleet/rollouts/fw2/resume", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let again = checkin_all(&f, &mut devs, "fw/2.0.bin").await;
    assert_eq!(again, s1);
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/rollouts/fw2/abort",
            Some(json!({"reason": "bad build"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "aborted");
    // Device list filters: drift and the running target.
    let r = f
        .fleet_api(
            "GET",
            "/api/v1/fleet/devices?target=fw/2.0.bin&limit=1000",
            None,
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), s0.len() + 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_gate_assignments() {
    let f = fleet().await;
    f.publish(&[("fw/2.0.bin", FW2, 2)]).await;
    let mut inside = f.enrolled("board-a", "fleet-a").await;
    let mut outside = f.enrolled("board-a", "fleet-b").await;
    // A window that is open now (every minute, 10 minutes long) for
    // fleet-a; one that only opens on 29 February at 03:00 for fleet-b.
    for (id, group, cron) in [
        ("open", "fleet-a", "* * * * *"),
        ("closed", "fleet-b", "0 3 29 2 *"),
    ] {
        let r = f
            .fleet_api(
                "POST",
                "/api/v1/fleet/rollouts",
                Some(json!({
                    "id": id,
                    "target": "fw/2.0.bin",
                    "selector": {"groups": [group]},
                    "windows": [{"cron": cron, "time_zone": "Europe/Berlin", "duration_seconds": 600}],
                })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["window_open_now"], id == "open");
    }
    let (_, c) = f.checkin(&mut inside).await;
    let t: Value = serde_json::from_slice(&c.unwrap().director.targets).unwrap();
    assert!(t["signed"]["targets"].get("fw/2.0.bin").is_some());
    let (_, c) = f.checkin(&mut outside).await;
    let t: Value = serde_json::from_slice(&c.unwrap().director.targets).unwrap();
    assert_eq!(
        t["signed"]["targets"],
        json!({}),
        "outside its window: nothing"
    );
    let r = f
        .fleet_api(
            "GET",
            &format!("/api/v1/fleet/devices/{}", outside.id),
            None,
        )
        .await;
    assert!(
        r.json()["assignment_now"]
            .as_str()
            .unwrap()
            .contains("maintenance window"),
        "{}",
        r.text()
    );
    // A bad cron or zone is refused with the reason.
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/rollouts",
            Some(json!({
                "target": "fw/2.0.bin",
                "windows": [{"cron": "0 3 * *", "time_zone": "Mars/Olympus", "duration_seconds": 60}],
            })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_needs_a_rollback_authorisation() {
    use custody_director::rollback::{RollbackAuthorization, RollbackBody, TYPE_ROLLBACK};
    use custody_keys::Signer;
    let rollback_key = custody_keys::MemorySigner::generate_ed25519().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("rollback-keys.json");
    std::fs::write(
        &keys_file,
        serde_json::to_vec(&json!({"threshold": 1, "keys": [rollback_key.key()]})).unwrap(),
    )
    .unwrap();
    let f = fleet_with(|c| c.director.rollback_keys_file = Some(keys_file.clone())).await;
    f.publish(&[("fw/1.0.bin", FW1, 1), ("fw/2.0.bin", FW2, 2)])
        .await;
    let mut dev = f.enrolled("board-a", "fleet-a").await;
    dev.install("fw/2.0.bin", FW2, 2, "installed");
    let (r, _) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200);
    // Pin to the older release: refused by anti-rollback, nothing assigned,
    // recorded.
    let r = f
        .fleet_api(
            "PUT",
            &format!("/api/v1/fleet/devices/{}/pin", dev.id),
            Some(json!({"target": "fw/1.0.bin", "reason": "field issue"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, c) = f.checkin(&mut dev).await;
    let t: Value = serde_json::from_slice(&c.unwrap().director.targets).unwrap();
    assert_eq!(t["signed"]["targets"], json!({}));
    let attacks = f.attacks(&dev.id).await;
    assert!(
        attacks.iter().any(|a| a["code"] == "downgrade_refused"
            && a["detail"]
                .as_str()
                .unwrap()
                .contains("rollback authorisation")),
        "{attacks:?}"
    );
    let r = f
        .fleet_api("GET", &format!("/api/v1/fleet/devices/{}", dev.id), None)
        .await;
    assert!(r.json()["assignment_now"]
        .as_str()
        .unwrap()
        .starts_with("refused"));

    // A rollback authorisation signed by a key that is not a rollback key
    // is refused at filing.
    let body = RollbackBody {
        type_: TYPE_ROLLBACK.into(),
        wire_version: 1,
        device_ids: [dev.id.clone()].into(),
        target: "fw/1.0.bin".into(),
        release_counter: 1,
        expires: chrono::Utc::now().timestamp() + 3600,
        reason: "field issue".into(),
    };
    let roller =
        f.s.credential("rollback signer", &["role:sign:rollback"])
            .await;
    let rt = f.s.token(&roller, None).await;
    let wrong = custody_keys::MemorySigner::generate_ed25519().unwrap();
    let bad = RollbackAuthorization::sign(body.clone(), &[&wrong]).unwrap();
    let r = common::http(
        "POST",
        &format!("{}/api/v1/fleet/rollback-authorizations", f.s.url),
        &[("authorization", &format!("Bearer {rt}"))],
        Some(serde_json::to_vec(&bad).unwrap()),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    // fleet:admin alone may not file one.
    let good = RollbackAuthorization::sign(body, &[&rollback_key]).unwrap();
    let r =
        f.s.api(
            "POST",
            "/api/v1/fleet/rollback-authorizations",
            &f.admin,
            Some(serde_json::to_value(&good).unwrap()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = common::http(
        "POST",
        &format!("{}/api/v1/fleet/rollback-authorizations", f.s.url),
        &[("authorization", &format!("Bearer {rt}"))],
        Some(serde_json::to_vec(&good).unwrap()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Now the downgrade is assigned, with the authorisation for the device.
    let (_, c) = f.checkin(&mut dev).await;
    let t: Value = serde_json::from_slice(&c.unwrap().director.targets).unwrap();
    let entry = &t["signed"]["targets"]["fw/1.0.bin"];
    assert_eq!(entry["custom"]["release_counter"], 1);
    assert!(
        entry["custom"]["rollback_authorization"]["signed"]["device_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(dev.id))
    );
    let r = f
        .fleet_api("GET", &format!("/api/v1/fleet/devices/{}", dev.id), None)
        .await;
    let j = r.json();
    assert_eq!(j["drift"], true, "installed 2.0, assigned 1.0: {j}");
    assert_eq!(j["pinned_to"]["target"], "fw/1.0.bin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yank_remediates_and_answers_who_installed() {
    let f = fleet().await;
    f.publish(&[("fw/2.0.bin", FW2, 2), ("fw/3.0.bin", FW3, 3)])
        .await;
    let mut a = f.enrolled("board-a", "fleet-a").await;
    let mut b = f.enrolled("board-a", "fleet-a").await;
    let mut c = f.enrolled("board-a", "fleet-a").await;
    a.install("fw/2.0.bin", FW2, 2, "installed");
    b.install("fw/2.0.bin", FW2, 2, "installed");
    for d in [&mut a, &mut b, &mut c] {
        let (r, _) = f.checkin(d).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/yanks",
            Some(
                json!({"target": "fw/2.0.bin", "replacement": "fw/3.0.bin", "reason": "boot loop"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    let mut rem: Vec<String> = serde_json::from_value(j["remediation"].clone()).unwrap();
    rem.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(rem, want);
    assert_eq!(j["installed"].as_array().unwrap().len(), 2);
    assert!(j["installed"][0]["first_seen"].as_i64().unwrap() > 0);
    let r = f
        .fleet_api("GET", "/api/v1/fleet/installs?target=fw/2.0.bin", None)
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    // Devices running the yanked target get the replacement; c gets nothing.
    for (d, expect) in [(&mut a, true), (&mut b, true), (&mut c, false)] {
        let (_, resp) = f.checkin(d).await;
        let t: Value = serde_json::from_slice(&resp.unwrap().director.targets).unwrap();
        assert_eq!(t["signed"]["targets"].get("fw/3.0.bin").is_some(), expect);
    }
    // Installed fw 2.0, assigned fw 3.0: drift, listed by the filter.
    let r = f
        .fleet_api("GET", "/api/v1/fleet/devices?drift=true", None)
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 2, "{}", r.text());
    // Yanking again is a conflict.
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/fleet/yanks",
            Some(json!({"target": "fw/2.0.bin", "replacement": "fw/3.0.bin", "reason": "again"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
}

/// One yank: `POST /api/v1/repos/{repo}/yanks` with a replacement in the
/// director's image repository remediates the devices running the target,
/// lists the yank in the one table, and the next publish leaves the target
/// out. The fleet API's route is a deprecated alias of the same record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_yank_for_repositories_and_the_fleet() {
    let f = fleet().await;
    f.publish(&[("fw/2.0.bin", FW2, 2), ("fw/3.0.bin", FW3, 3)])
        .await;
    let mut a = f.enrolled("board-a", "fleet-a").await;
    let mut c = f.enrolled("board-a", "fleet-a").await;
    a.install("fw/2.0.bin", FW2, 2, "installed");
    for d in [&mut a, &mut c] {
        let (r, _) = f.checkin(d).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let yanks = |f: &Fleet| {
        let s = f.s.url.clone();
        let t = f.admin.clone();
        async move {
            let r = common::http(
                "GET",
                &format!("{s}/api/v1/repos/main/yanks"),
                &[("authorization", &format!("Bearer {t}"))],
                None,
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        }
    };

    // A replacement decides what devices run: it needs fleet:admin, and
    // target:revoke is not enough. Refused, and nothing is recorded.
    let revoker = f.s.credential("revoker", &["target:revoke@main"]).await;
    let revoker = f.s.token(&revoker, None).await;
    let body = json!({"target": "fw/2.0.bin", "reason": "boot loop", "replacement": "fw/3.0.bin"});
    let r =
        f.s.api(
            "POST",
            "/api/v1/repos/main/yanks",
            &revoker,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(yanks(&f).await, json!([]));

    // A replacement only applies in the image repository.
    let ops =
        f.s.credential("ops", &["target:revoke", "fleet:admin"])
            .await;
    let ops = f.s.token(&ops, None).await;
    let r =
        f.s.api(
            "POST",
            "/api/v1/repos/other/yanks",
            &ops,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("image repository"), "{}", r.text());
    // A replacement that the image repository does not hold.
    let r = f
        .fleet_api(
            "POST",
            "/api/v1/repos/main/yanks",
            Some(json!({"target": "fw/2.0.bin", "reason": "x", "replacement": "fw/9.bin"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(yanks(&f).await, json!([]));

    let r = f
        .fleet_api("POST", "/api/v1/repos/main/yanks", Some(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["repo"], "main");
    assert_eq!(j["replacement"]["target"], "fw/3.0.bin");
    assert_eq!(j["replacement"]["release_counter"], 3);
    assert_eq!(j["remediation"], json!([a.id.clone()]));
    assert_eq!(j["installed"].as_array().unwrap().len(), 1);
    // The device running it gets the replacement; the other nothing.
    for (d, expect) in [(&mut a, true), (&mut c, false)] {
        let (_, resp) = f.checkin(d).await;
        let t: Value = serde_json::from_slice(&resp.unwrap().director.targets).unwrap();
        assert_eq!(t["signed"]["targets"].get("fw/3.0.bin").is_some(), expect);
    }
    // Yanked once is yanked: a second yank is a conflict.
    let r = f
        .fleet_api("POST", "/api/v1/repos/main/yanks", Some(body.clone()))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());

    // The same record through the deprecated alias, marked as such.
    let r = f.fleet_api("GET", "/api/v1/fleet/yanks", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("deprecation"), Some("true"));
    assert!(r
        .header("link")
        .is_some_and(|l| l.contains("/api/v1/repos/main/yanks")));
    let listed = yanks(&f).await;
    assert_eq!(r.json(), listed);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["reason"], "boot loop");
    assert_eq!(listed[0]["replacement"]["target"], "fw/3.0.bin");
    assert!(listed[0].get("remediation").is_none(), "{listed}");

    // The next publish leaves the yanked target out of the image
    // repository; the replacement stays.
    f.publish(&[("fw/4.0.bin", b"firmware 4.0", 4)]).await;
    let meta = |name: String| {
        let url = format!("{}/repos/main/metadata/{name}", f.s.url);
        async move {
            let r = common::http("GET", &url, &[], None).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text());
            r.json()
        }
    };
    let ts = meta("timestamp.json".into()).await;
    let snap_v = &ts["signed"]["meta"]["snapshot.json"]["version"];
    let snap = meta(format!("{snap_v}.snapshot.json")).await;
    let targets_v = &snap["signed"]["meta"]["targets.json"]["version"];
    let top = meta(format!("{targets_v}.targets.json")).await;
    let targets = &top["signed"]["targets"];
    assert!(targets.get("fw/2.0.bin").is_none(), "{targets}");
    assert!(targets.get("fw/3.0.bin").is_some(), "{targets}");
}
