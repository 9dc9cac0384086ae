//! A crash during the A/B trial, end to end: a real `custody serve` and real
//! `custody agent` processes on loopback (issue #13, defect 2).
//!
//! The agent is killed with SIGKILL while release 2's health check runs (the
//! trial phase: the new slot is active, nothing committed). The restarted
//! agent rolls back to release 1 during recovery. That recovered rollback
//! must count exactly like a rollback inside an install: one final report
//! for the attempt, the target given up, no second install on later polls
//! (else a release that crashes the device in its trial is reinstalled on
//! every poll, and every loop sends a `rolled_back` report to the canary
//! gate). An operator re-offers the target by changing the assignment for
//! one check-in (here: pause the rollout, resume it).

mod agent_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::*;
use serde_json::{json, Value};

fn reports_for(setup: &Setup, s: &Server, id: &str, target: &str) -> Vec<Value> {
    let d = setup.fleet(s, "GET", &format!("/api/v1/fleet/devices/{id}"), None);
    d["reports"]
        .as_array()
        .expect("reports array")
        .iter()
        .filter(|r| r["target"] == target)
        .cloned()
        .collect()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

fn net_given_up(a: &Agent) -> Vec<Value> {
    let net: Value =
        serde_json::from_slice(&std::fs::read(a.state.join("net.json")).unwrap()).unwrap();
    net["given_up"].as_array().cloned().unwrap_or_default()
}

#[test]
fn kill9_in_trial_then_restart_gives_one_report_no_second_install_and_target_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let size = 64 * 1024;
    let v1 = payload("r1", size);
    let v2 = payload("r2", size);
    setup.stage_release(&s, "board-r/fw-1.img", &v1, "board-r", 1);
    setup.stage_release(&s, "board-r/fw-2.img", &v2, "board-r", 2);
    setup.publish(&s);
    let token = setup.enrolment_tokens(&s, "lab", 1).remove(0);

    // Release 2's health check logs every run; the first run hangs (the
    // trial the agent is killed in), later runs would pass, so a retry by
    // a later poll would install release 2.
    let trial_log = tmp.path().join("trial-runs");
    let hang_once = tmp.path().join("hung-once");
    let health = format!(
        r#"if [ "$CUSTODY_RELEASE_COUNTER" -ge 2 ]; then echo "$CUSTODY_TARGET_NAME" >> '{log}'; if [ ! -e '{mark}' ]; then touch '{mark}'; sleep 60; fi; fi; test -s "$CUSTODY_PAYLOAD""#,
        log = trial_log.display(),
        mark = hang_once.display()
    );
    let agent = Agent::enroll(&s, tmp.path(), "dev", "board-r", &token, &health);
    let all = json!([{"percent": 100.0}]);
    rollout(
        &setup,
        &s,
        "v1",
        "board-r/fw-1.img",
        "board-r",
        all.clone(),
        "s1",
    );
    let (c, v) = agent.check();
    assert_eq!((c, &v["action"]["result"]), (0, &json!("installed")), "{v}");
    assert_eq!(agent.current_payload(), v1);

    // Release 2: kill -9 the agent in its trial.
    rollout(&setup, &s, "v2", "board-r/fw-2.img", "board-r", all, "s2");
    let mut child = common::cli::command()
        .args(["agent", "--state-dir"])
        .arg(&agent.state)
        .arg("--config")
        .arg(&agent.config)
        .args(["check", "--once", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !hang_once.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the agent never reached release 2's trial"
        );
        assert!(child.try_wait().unwrap().is_none(), "agent ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = child.wait();
    assert_eq!(lines(&trial_log), 1);
    let state: Value =
        serde_json::from_slice(&std::fs::read(agent.state.join("agent/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["attempt"]["phase"]["phase"], "trial",
        "killed in the trial: {state}"
    );
    assert_eq!(agent.current_payload(), v2, "release 2 is active on trial");

    // Restart and three polls.
    let mut delivered = 0;
    for poll in 1..=3 {
        let (c, v) = agent.check();
        assert_eq!(c, 0, "poll {poll}: {v}");
        assert_eq!(
            v["action"]["result"], "skipped",
            "poll {poll}: the rolled-back target must not be retried: {v}"
        );
        assert_eq!(v["action"]["target"], "board-r/fw-2.img", "{v}");
        assert_eq!(v["installed"], "board-r/fw-1.img", "{v}");
        delivered += v["reports_delivered"].as_u64().unwrap();
    }
    assert_eq!(
        delivered, 1,
        "the recovered rollback's report went out once"
    );
    assert_eq!(lines(&trial_log), 1, "no second install of release 2");
    assert_eq!(agent.current_payload(), v1, "release 1 runs");
    assert_eq!(agent.installed(), Some(("board-r/fw-1.img".to_owned(), 1)));
    let r2 = reports_for(&setup, &s, &agent.id, "board-r/fw-2.img");
    assert_eq!(r2.len(), 1, "one final report for the attempt: {r2:?}");
    assert_eq!(r2[0]["outcome"], "rolled_back", "{r2:?}");
    assert!(
        r2[0]["reason"].as_str().unwrap().contains("trial"),
        "{r2:?}"
    );
    let given_up = net_given_up(&agent);
    assert_eq!(
        given_up,
        vec![json!(["board-r/fw-2.img", sha256_hex(&v2)])],
        "release 2 is given up"
    );
    let (c, st, e) = agent.run(&["status", "--json"]);
    assert_eq!(c, 0, "{e}");
    assert_eq!(
        st["given_up"],
        json!([{"target": "board-r/fw-2.img", "sha256": sha256_hex(&v2)}]),
        "{st}"
    );

    // The operator re-offers release 2: pause the rollout for one check-in
    // (the device is assigned release 1, which it runs: the mark goes),
    // then resume it.
    setup.fleet(&s, "POST", "/api/v1/fleet/rollouts/v2/pause", None);
    let (c, v) = agent.check();
    assert_eq!(
        (c, &v["action"]["result"]),
        (0, &json!("up_to_date")),
        "{v}"
    );
    assert!(
        net_given_up(&agent).is_empty(),
        "assignment changed: mark cleared"
    );
    setup.fleet(&s, "POST", "/api/v1/fleet/rollouts/v2/resume", None);
    let (c, v) = agent.check();
    assert_eq!((c, &v["action"]["result"]), (0, &json!("installed")), "{v}");
    assert_eq!(agent.current_payload(), v2);
    assert_eq!(lines(&trial_log), 2, "re-offered: tried once more");
    let r2 = reports_for(&setup, &s, &agent.id, "board-r/fw-2.img");
    let mut outcomes: Vec<&str> = r2.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["installed", "rolled_back"], "{r2:?}");
}
