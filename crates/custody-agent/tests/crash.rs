//! kill -9 crash-safety test.
//!
//! A fresh device gets v1 committed (attempt 1). Then the install of v2
//! (attempt 2) runs in a child process (`custody-agent-crashtest`) that
//! SIGKILLs itself at the n-th probe point, for every n the flow reaches
//! (state writes before/after, each copy chunk of download and slot write,
//! symlink temp/rename, health check running, commit, report queued, ...).
//! A fresh process then runs recovery, once more crashing early in it, then
//! to completion. After that the device must be in exactly one of two
//! states — v1 committed or v2 committed — with `current` pointing at a
//! complete slot whose manifest matches, and exactly one report for each
//! attempt.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use custody_agent::{AgentState, InstallPlan, MemorySink, Outcome, ReportQueue, SlotInstaller};

const BIN: &str = env!("CARGO_BIN_EXE_custody-agent-crashtest");

/// Deterministic payload bytes: several 64 KiB copy chunks.
fn payload(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    /// `slot` or `command`
    installer: &'static str,
    base: PathBuf,
    v1: PathBuf,
    v2: PathBuf,
    /// device with v1 committed, copied for every run
    template: PathBuf,
}

fn run(args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    cmd.env_remove("CUSTODY_CRASH_AT")
        .env_remove("CUSTODY_CRASH_TRACE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {BIN}: {e}"),
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fixture(installer: &'static str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let v1 = base.join("v1.img");
    let v2 = base.join("v2.img");
    // 150 KiB and 200 KiB: three and four copy chunks
    fs::write(&v1, payload(1, 150 * 1024)).unwrap();
    fs::write(&v2, payload(2, 200 * 1024 + 17)).unwrap();
    let template = base.join("template");
    let out = run(
        &[
            "install",
            template.to_str().unwrap(),
            v1.to_str().unwrap(),
            "app-v1.img",
            "1",
            "pass",
            installer,
        ],
        &[],
    );
    let stdout = ok(&out, "install v1");
    assert!(stdout.contains("installed"), "v1: {stdout}");
    Fixture {
        _tmp: tmp,
        installer,
        base,
        v1,
        v2,
        template,
    }
}

fn copy_template(fx: &Fixture, name: &str) -> PathBuf {
    let dir = fx.base.join(name);
    let _ = fs::remove_dir_all(&dir);
    let status = Command::new("cp")
        .args(["-a", fx.template.to_str().unwrap(), dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn install_v2(fx: &Fixture, dir: &Path, health: &str, envs: &[(&str, String)]) -> Output {
    run(
        &[
            "install",
            dir.to_str().unwrap(),
            fx.v2.to_str().unwrap(),
            "app-v2.img",
            "2",
            health,
            fx.installer,
        ],
        envs,
    )
}

/// The probe labels of a full, uncrashed v2 install, in order.
fn trace(fx: &Fixture, health: &str) -> Vec<String> {
    let dir = copy_template(fx, &format!("trace-{health}"));
    let trace = fx.base.join(format!("trace-{health}.txt"));
    let out = install_v2(
        fx,
        &dir,
        health,
        &[("CUSTODY_CRASH_TRACE", trace.display().to_string())],
    );
    ok(&out, "traced install");
    fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, label)| label.to_owned())
                .unwrap()
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Old,
    New,
}

/// Assert the device invariants; return which version is committed and the
/// outcome reported for attempt 2 (`None` if the kill came before attempt 2
/// was durably begun: then it never existed and nothing may be reported).
fn check_device(fx: &Fixture, dir: &Path, ctx: &str) -> (End, Option<Outcome>) {
    let state: AgentState =
        serde_json::from_slice(&fs::read(dir.join("agent/state.json")).unwrap()).unwrap();
    assert!(
        state.attempt.is_none(),
        "{ctx}: attempt left in progress: {state:?}"
    );
    let begun = state.next_attempt == 3;
    if !begun {
        assert_eq!(state.next_attempt, 2, "{ctx}");
    }
    assert_eq!(
        state.last_reported,
        Some(if begun { 2 } else { 1 }),
        "{ctx}"
    );
    let committed = state.committed.clone().expect("committed");
    let end = match committed.target.name.as_str() {
        "app-v1.img" => End::Old,
        "app-v2.img" => End::New,
        other => panic!("{ctx}: committed {other}"),
    };
    let want = fs::read(if end == End::New { &fx.v2 } else { &fx.v1 }).unwrap();
    if fx.installer == "slot" {
        let slots = SlotInstaller::open(dir.join("device")).unwrap();
        let current = slots.current_slot().unwrap().expect("current link");
        let InstallPlan::Slot { new, .. } = committed.plan else {
            panic!("{ctx}: plan {:?}", committed.plan)
        };
        assert_eq!(current, new, "{ctx}: current is not the committed slot");
        let manifest = slots
            .verify_slot(current)
            .unwrap_or_else(|e| panic!("{ctx}: current slot incomplete: {e}"));
        assert_eq!(
            manifest.target, committed.target,
            "{ctx}: manifest vs committed"
        );
        assert!(
            fs::read(slots.payload_path(current)).unwrap() == want,
            "{ctx}: slot payload is not the committed {end:?} version"
        );
    } else {
        assert_eq!(committed.plan, InstallPlan::Command, "{ctx}");
        assert!(
            fs::read(dir.join("device/installed")).unwrap() == want,
            "{ctx}: device/installed is not the committed {end:?} version"
        );
        assert!(
            !dir.join("agent/hook.json").exists(),
            "{ctx}: hook record left"
        );
    }
    // exactly one report per attempt, in attempt order
    let queue = ReportQueue::open(dir.join("agent/reports")).unwrap();
    let pending = queue.pending().unwrap();
    let ids: Vec<&str> = pending.iter().map(|q| q.report.id.as_str()).collect();
    assert_eq!(pending[0].report.outcome, Outcome::Installed, "{ctx}");
    if !begun {
        assert_eq!(ids, ["attempt-1"], "{ctx}: reports");
        assert_eq!(end, End::Old, "{ctx}");
        return (end, None);
    }
    assert_eq!(ids, ["attempt-1", "attempt-2"], "{ctx}: reports");
    let outcome = pending[1].report.outcome.clone();
    assert_eq!(
        outcome == Outcome::Installed,
        end == End::New,
        "{ctx}: report {outcome:?} vs committed {end:?}"
    );
    assert_eq!(
        pending[1]
            .report
            .committed
            .as_ref()
            .map(|c| c.name.as_str()),
        Some(committed.target.name.as_str()),
        "{ctx}"
    );
    // no temp file of an interrupted write survives recovery
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".custody-") && !name.ends_with(".new"),
                "{ctx}: leftover temp file {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    // nothing left in downloads/
    let leftovers: Vec<_> = fs::read_dir(dir.join("agent/downloads")).unwrap().collect();
    assert!(leftovers.is_empty(), "{ctx}: downloads left: {leftovers:?}");
    (end, Some(outcome))
}

fn assert_killed(out: &Output, ctx: &str) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{ctx}: expected SIGKILL, got {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Crash the v2 install at every probe point; recover (crashing the first
/// recovery at its `recover_crash`-th probe, if it gets that far); check.
fn crash_everywhere(
    installer: &'static str,
    health: &str,
) -> Vec<(usize, String, End, Option<Outcome>)> {
    let fx = fixture(installer);
    let labels = trace(&fx, health);
    eprintln!(
        "installer={installer} health={health}: {} kill points: {labels:?}",
        labels.len()
    );
    let mut results = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let n = i + 1;
        let ctx = format!("installer={installer} health={health} crash at {n} ({label})");
        let dir = copy_template(&fx, &format!("run-{installer}-{health}-{n}"));
        let out = install_v2(&fx, &dir, health, &[("CUSTODY_CRASH_AT", n.to_string())]);
        assert_killed(&out, &ctx);
        // First recovery is killed too (at its 2nd probe), when it has one.
        let out = run(
            &["recover", dir.to_str().unwrap(), health, installer],
            &[("CUSTODY_CRASH_AT", "2".to_owned())],
        );
        assert!(
            out.status.success() || out.status.signal() == Some(9),
            "{ctx}: first recovery: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ok(
            &run(&["recover", dir.to_str().unwrap(), health, installer], &[]),
            &ctx,
        );
        if installer == "command" && label.starts_with("command:") {
            // An install command orphaned by the kill would write v2 after
            // its 0.3 s pause: recovery must have killed it.
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        // A further restart changes nothing.
        ok(
            &run(&["recover", dir.to_str().unwrap(), health, installer], &[]),
            &ctx,
        );
        let (end, outcome) = check_device(&fx, &dir, &ctx);
        results.push((n, label.clone(), end, outcome));
        fs::remove_dir_all(&dir).unwrap();
    }
    results
}

#[test]
fn kill_9_at_every_point_of_a_healthy_install() {
    let results = crash_everywhere("slot", "pass");
    assert!(results.len() >= 20, "only {} kill points", results.len());
    let labels: BTreeSet<&str> = results.iter().map(|r| r.1.as_str()).collect();
    for needed in [
        "persist-after:begin",
        "copy:chunk",
        "persist-before:downloaded",
        "persist-after:installing",
        "slot:manifest-removed",
        "slot:payload-written",
        "slot:manifest-written",
        "persist-after:trial",
        "symlink:temp-created",
        "symlink:renamed",
        "trial:activated",
        "command:spawned",
        "trial:health-done",
        "persist-after:committed",
        "report:enqueued",
        "persist-after:idle",
    ] {
        assert!(
            labels.contains(needed),
            "kill point {needed} not reached: {labels:?}"
        );
    }
    for (n, label, end, outcome) in &results {
        // Before `Downloaded` is durable the attempt fails; during the trial
        // it is rolled back; once `Committed` is durable it stays committed.
        let ctx = format!("crash at {n} ({label}): {end:?} {outcome:?}");
        match outcome {
            None => assert_eq!((*n, label.as_str()), (1, "persist-before:begin"), "{ctx}"),
            Some(Outcome::Installed) => assert_eq!(*end, End::New, "{ctx}"),
            Some(Outcome::Failed { .. } | Outcome::RolledBack { .. }) => {
                assert_eq!(*end, End::Old, "{ctx}")
            }
            Some(Outcome::AttackDetected { .. }) => panic!("{ctx}"),
        }
    }
    let committed_from = results
        .iter()
        .position(|r| r.1 == "persist-after:committed")
        .unwrap();
    assert!(
        results[committed_from..].iter().all(|r| r.2 == End::New),
        "a crash after the commit was persisted must keep the new version"
    );
    let trial_from = results
        .iter()
        .position(|r| r.1 == "persist-after:trial")
        .unwrap();
    assert!(
        results[trial_from..committed_from]
            .iter()
            .all(|r| matches!(r.3, Some(Outcome::RolledBack { .. }))),
        "a crash during the trial must roll back"
    );
    assert!(
        results.iter().any(|r| r.2 == End::New) && results.iter().any(|r| r.2 == End::Old),
        "both endings must be exercised"
    );
}

#[test]
fn kill_9_at_every_point_of_an_unhealthy_install() {
    let results = crash_everywhere("slot", "fail");
    assert!(results.len() >= 20, "only {} kill points", results.len());
    for (n, label, end, outcome) in &results {
        let ctx = format!("crash at {n} ({label}): {end:?} {outcome:?}");
        assert_eq!(*end, End::Old, "{ctx}");
        match outcome {
            Some(Outcome::RolledBack { .. }) => {}
            // only a crash before the download was recorded as verified
            Some(Outcome::Failed { reason }) => {
                assert!(reason.contains("downloaded"), "{ctx}: unexpected failure")
            }
            None => assert_eq!(*n, 1, "{ctx}"),
            other => panic!("{ctx}: {other:?}"),
        }
    }
}

#[test]
fn uncrashed_unhealthy_install_rolls_back_and_reports_are_uploaded_once() {
    let fx = fixture("slot");
    let dir = copy_template(&fx, "plain-fail");
    let stdout = ok(&install_v2(&fx, &dir, "fail", &[]), "install v2");
    assert!(stdout.contains("rolled_back"), "{stdout}");
    let (end, outcome) = check_device(&fx, &dir, "plain fail");
    assert_eq!(end, End::Old);
    let Some(Outcome::RolledBack { reason }) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.contains("exited with status 3") && reason.contains("unhealthy"),
        "{reason}"
    );

    let queue = ReportQueue::open(dir.join("agent/reports")).unwrap();
    let mut sink = MemorySink::default();
    assert_eq!(queue.upload(&mut sink).unwrap(), 2);
    let ids: Vec<_> = sink.received.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["attempt-1", "attempt-2"]);
    assert!(queue.pending().unwrap().is_empty());
    // restart: nothing re-queued, nothing re-sent
    ok(
        &run(&["recover", dir.to_str().unwrap(), "fail", "slot"], &[]),
        "recover",
    );
    assert!(queue.pending().unwrap().is_empty());
}

#[test]
fn kill_9_at_every_point_of_a_command_install() {
    for health in ["pass", "fail"] {
        let results = crash_everywhere("command", health);
        assert!(results.len() >= 20, "only {} kill points", results.len());
        let labels: BTreeSet<&str> = results.iter().map(|r| r.1.as_str()).collect();
        for needed in [
            "command:install-start",
            "command:spawned",
            "command:install-done",
        ] {
            assert!(labels.contains(needed), "{needed} not reached: {labels:?}");
        }
        for (n, label, end, outcome) in &results {
            let ctx = format!("health={health} crash at {n} ({label}): {end:?} {outcome:?}");
            match outcome {
                Some(Outcome::Installed) => {
                    assert_eq!((*end, health), (End::New, "pass"), "{ctx}")
                }
                Some(Outcome::Failed { .. } | Outcome::RolledBack { .. }) | None => {
                    assert_eq!(*end, End::Old, "{ctx}")
                }
                Some(Outcome::AttackDetected { .. }) => panic!("{ctx}"),
            }
        }
    }
}
