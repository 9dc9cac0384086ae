//! `custody agent` end to end: a real `custody serve` (director + image
//! repository) and three agent processes on loopback, two hardware ids.
//!
//! 1. release 1 for both hardware ids reaches every device;
//! 2. release 2 rolls out in two stages for board-a (the stage-1 device
//!    reports success, the gate opens, the stage-2 device gets it) and in
//!    one stage for board-b, whose device fails its health check: it rolls
//!    back to release 1 and reports it;
//! 3. the fleet API shows each device's true state and its reports;
//! 4. `custody agent run` checks in and stops cleanly on SIGTERM.
//!
//! Rejections are in `agent_rejections.rs`.

mod agent_support;

use agent_support::*;
use serde_json::json;

#[test]
fn staged_rollout_reaches_three_agents_failed_health_check_rolls_back_and_fleet_api_tells_the_truth(
) {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let size = 256 * 1024;
    let v1a = payload("a1", size);
    let v1b = payload("b1", size);
    setup.stage_release(&s, "board-a/fw-1.img", &v1a, "board-a", 1);
    setup.stage_release(&s, "board-b/fw-1.img", &v1b, "board-b", 1);
    setup.publish(&s);

    let tokens = setup.enrolment_tokens(&s, "lab", 3);
    let tok = |i: usize| tokens[i].clone();
    let ok = r#"test -s "$CUSTODY_PAYLOAD""#;
    // board-b's device fails the health check of any release above 1
    let fails_v2 = r#"test "$CUSTODY_RELEASE_COUNTER" -lt 2"#;
    let agents = [
        Agent::enroll(&s, tmp.path(), "dev1", "board-a", &tok(0), ok),
        // an ECDSA P-256 device key (secure elements that only do P-256)
        Agent::enroll_at(
            &s.url,
            tmp.path(),
            "dev2",
            "board-a",
            &tok(1),
            ok,
            &["--key-type", "ecdsa-p256"],
        ),
        Agent::enroll(&s, tmp.path(), "dev3", "board-b", &tok(2), fails_v2),
    ];
    for a in &agents {
        assert_eq!(a.installed(), None);
    }
    // nothing assigned yet
    let (c, v) = agents[0].check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "up_to_date", "{v}");

    // 1. release 1 everywhere
    let all = json!([{"percent": 100.0}]);
    rollout(
        &setup,
        &s,
        "v1-a",
        "board-a/fw-1.img",
        "board-a",
        all.clone(),
        "v1a",
    );
    rollout(
        &setup,
        &s,
        "v1-b",
        "board-b/fw-1.img",
        "board-b",
        all.clone(),
        "v1b",
    );
    for a in &agents {
        let (c, v) = a.check();
        assert_eq!(c, 0, "{v}");
        assert_eq!(v["action"]["result"], "installed", "{v}");
    }
    assert_eq!(agents[0].current_payload(), v1a);
    assert_eq!(agents[2].current_payload(), v1b);

    // 2. release 2: board-a in two stages, board-b in one
    let v2a = payload("a2", size);
    let v2b = payload("b2", size);
    setup.stage_release(&s, "board-a/fw-2.img", &v2a, "board-a", 2);
    setup.stage_release(&s, "board-b/fw-2.img", &v2b, "board-b", 2);
    setup.publish(&s);
    // a seed that puts dev1 in the first half and dev2 in the second
    let seed = (0..10_000)
        .map(|i| format!("seed-{i}"))
        .find(|seed| {
            custody_director::policy::bucket(seed, &agents[0].id) < 5_000
                && custody_director::policy::bucket(seed, &agents[1].id) >= 5_000
        })
        .unwrap();
    let gate = json!({"min_success_percent": 100.0, "max_failure_percent": 0.0, "min_sample": 1});
    rollout(
        &setup,
        &s,
        "v2-a",
        "board-a/fw-2.img",
        "board-a",
        json!([{"percent": 50.0, "gate": gate}, {"percent": 100.0}]),
        &seed,
    );
    rollout(
        &setup,
        &s,
        "v2-b",
        "board-b/fw-2.img",
        "board-b",
        all,
        "v2b",
    );

    // stage 1: only dev2 is outside it
    let (c, v) = agents[1].check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(
        v["action"]["result"], "up_to_date",
        "dev2 is in stage 2: {v}"
    );
    let (c, v) = agents[0].check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(v["reports_delivered"], 1, "{v}");
    // the server evaluates the gate right after recording the report
    let mut st = serde_json::Value::Null;
    for _ in 0..50 {
        st = setup.fleet(&s, "GET", "/api/v1/fleet/rollouts/v2-a", None);
        if st["stages"][0]["state"] == "done" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(st["stages"][0]["state"], "done", "gate opened: {st}");
    // stage 2 reaches dev2
    let (c, v) = agents[1].check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    // dev3: activated, health check fails, rolled back to release 1
    let (c, v) = agents[2].check();
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "rolled_back", "{v}");
    assert!(
        v["action"]["reason"]
            .as_str()
            .unwrap()
            .contains("health check"),
        "{v}"
    );
    assert_eq!(
        v["reports_delivered"], 1,
        "the outcome went out at once: {v}"
    );
    assert_eq!(agents[2].current_payload(), v1b);
    assert_eq!(
        agents[2].installed(),
        Some(("board-b/fw-1.img".to_owned(), 1))
    );
    // not retried on the next poll, and nothing left queued
    let (c, v) = agents[2].check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "skipped", "{v}");

    // 3. the fleet API: each device's true state
    let expect = [
        (&agents[0], "board-a/fw-2.img", 2, "installed"),
        (&agents[1], "board-a/fw-2.img", 2, "installed"),
        (&agents[2], "board-b/fw-1.img", 1, "rolled_back"),
    ];
    for (a, target, counter, last) in expect {
        let d = setup.fleet(&s, "GET", &format!("/api/v1/fleet/devices/{}", a.id), None);
        assert_eq!(d["installed"]["target"], target, "{d}");
        assert_eq!(d["installed"]["release_counter"], counter, "{d}");
        let reports = d["reports"].as_array().unwrap();
        let newest = reports
            .iter()
            .max_by_key(|r| {
                (
                    r["device_time"].as_i64(),
                    r["report_id"].as_str().map(str::to_owned),
                )
            })
            .unwrap();
        assert_eq!(newest["outcome"], last, "{d}");
        if last == "rolled_back" {
            assert!(
                newest["reason"].as_str().unwrap().contains("health check"),
                "{d}"
            );
        }
    }

    // 4. the daemon: checks in at once, then SIGTERM stops it cleanly
    let mut child = common::cli::command()
        .args(["agent", "--state-dir"])
        .arg(&agents[0].state)
        .arg("--config")
        .arg(&agents[0].config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("up to date") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "daemon ended early: {seen}");
        seen.push_str(&line);
    }
    let t0 = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {seen}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
}
