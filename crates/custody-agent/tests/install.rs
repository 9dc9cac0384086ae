//! Installer, health-check and report-queue behaviour (in-process, real
//! files, real `/bin/sh` hook commands).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custody_agent::report::report_id;
use custody_agent::{
    Agent, AgentConfig, AgentError, CommandInstaller, HookCommand, InstallPlan, InstallerConfig,
    MemorySink, Outcome, Phase, Probe, Report, ReportQueue, Slot, SlotInstaller, TargetMeta,
};

fn target_for(name: &str, bytes: &[u8], counter: u64) -> TargetMeta {
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes));
    TargetMeta {
        name: name.to_owned(),
        length: bytes.len() as u64,
        hashes: [("sha256".to_owned(), sha256)].into_iter().collect(),
        release_counter: counter,
        custom: Some(serde_json::json!({"hw": "board-7"})),
    }
}

fn sh(script: &str, timeout: Duration) -> HookCommand {
    HookCommand::new(["/bin/sh", "-c", script], timeout)
}

fn slot_agent(dir: &Path, health: Option<HookCommand>) -> Agent {
    let mut config = AgentConfig::new(dir.join("agent"));
    config.health_check = health;
    config.reserve_bytes = 0;
    let installer = SlotInstaller::open(dir.join("device")).unwrap();
    Agent::open(config, Box::new(installer), Probe::none()).unwrap()
}

/// begin → write payload → downloaded → install.
fn install(agent: &mut Agent, target: TargetMeta, bytes: &[u8]) -> Outcome {
    agent.recover().unwrap();
    let id = agent.begin(target).unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, bytes).unwrap();
    agent.downloaded(id, &dest).unwrap();
    agent.install(id).unwrap()
}

fn slots(dir: &Path) -> SlotInstaller {
    SlotInstaller::open(dir.join("device")).unwrap()
}

/// v1 committed through the slot installer with a passing health check.
fn device_with_v1(dir: &Path) -> Agent {
    let mut agent = slot_agent(dir, None);
    let out = install(
        &mut agent,
        target_for("app-v1", b"version one", 1),
        b"version one",
    );
    assert_eq!(out, Outcome::Installed);
    assert_eq!(slots(dir).current_slot().unwrap(), Some(Slot::A));
    agent
}

fn reports(agent: &Agent) -> Vec<Report> {
    agent
        .queue()
        .pending()
        .unwrap()
        .into_iter()
        .map(|q| q.report)
        .collect()
}

fn committed_name(agent: &Agent) -> String {
    agent
        .state()
        .committed
        .as_ref()
        .unwrap()
        .target
        .name
        .clone()
}

#[test]
fn healthy_slot_install_switches_current_and_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = device_with_v1(tmp.path());
    drop(agent);
    let env_file = tmp.path().join("health-env");
    let health = sh(
        &format!(
            "env | grep '^CUSTODY_' | sort > {}; test \"$(cat \"$CUSTODY_PAYLOAD\")\" = 'version two'",
            env_file.display()
        ),
        Duration::from_secs(10),
    );
    let mut agent = slot_agent(tmp.path(), Some(health));
    let out = install(
        &mut agent,
        target_for("app-v2", b"version two", 2),
        b"version two",
    );
    assert_eq!(out, Outcome::Installed);
    let s = slots(tmp.path());
    assert_eq!(s.current_slot().unwrap(), Some(Slot::B));
    let m = s.verify_slot(Slot::B).unwrap();
    assert_eq!((m.target.name.as_str(), m.attempt), ("app-v2", 2));
    // the old slot is untouched, ready for the next rollback
    assert_eq!(s.verify_slot(Slot::A).unwrap().target.name, "app-v1");
    let env = fs::read_to_string(&env_file).unwrap();
    for var in [
        "CUSTODY_SLOT_NAME=b",
        "CUSTODY_TARGET_NAME=app-v2",
        "CUSTODY_TARGET_LENGTH=11",
        "CUSTODY_RELEASE_COUNTER=2",
        "CUSTODY_ATTEMPT=2",
        "CUSTODY_TARGET_CUSTOM={\"hw\":\"board-7\"}",
    ] {
        assert!(env.lines().any(|l| l == var), "{var} missing in\n{env}");
    }
    assert!(env.contains("CUSTODY_SLOT=") && env.contains("CUSTODY_TARGET_SHA256="));
    let r = reports(&agent);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].committed.as_ref().unwrap().name, "app-v2");
}

#[test]
fn health_check_failure_rolls_back_to_old_slot() {
    let tmp = tempfile::tempdir().unwrap();
    drop(device_with_v1(tmp.path()));
    let health = sh(
        "echo 'service did not start' >&2; exit 7",
        Duration::from_secs(10),
    );
    let mut agent = slot_agent(tmp.path(), Some(health));
    let out = install(
        &mut agent,
        target_for("app-v2", b"version two", 2),
        b"version two",
    );
    let Outcome::RolledBack { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("exited with status 7"), "{reason}");
    assert!(reason.contains("service did not start"), "{reason}");
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::A));
    assert_eq!(committed_name(&agent), "app-v1");
    let r = reports(&agent);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].outcome.kind(), "rolled_back");
    assert_eq!(r[1].committed.as_ref().unwrap().name, "app-v1");
}

#[test]
fn health_check_timeout_rolls_back_and_kills_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    drop(device_with_v1(tmp.path()));
    let marker = tmp.path().join("still-running");
    // The check forks a grandchild; the whole process group must die.
    let health = sh(
        &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        Duration::from_millis(300),
    );
    let mut agent = slot_agent(tmp.path(), Some(health));
    let started = Instant::now();
    let out = install(
        &mut agent,
        target_for("app-v2", b"version two", 2),
        b"version two",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timeout not enforced"
    );
    let Outcome::RolledBack { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("timed out after 300ms"), "{reason}");
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::A));
    assert_eq!(committed_name(&agent), "app-v1");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !marker.exists(),
        "a process of the timed-out health check survived"
    );
}

#[test]
fn first_install_that_fails_its_health_check_leaves_no_current() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = slot_agent(tmp.path(), Some(sh("exit 1", Duration::from_secs(5))));
    let out = install(&mut agent, target_for("app-v1", b"one", 1), b"one");
    assert_eq!(out.kind(), "rolled_back");
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), None);
    assert!(agent.state().committed.is_none());
}

#[test]
fn payload_changed_after_verification_is_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    let id = agent
        .begin(target_for("app-v2", b"version two", 2))
        .unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, b"version tw0").unwrap();
    agent.downloaded(id, &dest).unwrap();
    let Outcome::Failed { reason } = agent.install(id).unwrap() else {
        panic!()
    };
    assert!(
        reason.contains("sha256 hash") && reason.contains("differs from the signed hash"),
        "{reason}"
    );
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::A));
    assert!(slots(tmp.path()).manifest(Slot::B).unwrap().is_none());
}

#[test]
fn downgrade_is_refused_and_reported_as_attack() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    drop(install(
        &mut agent,
        target_for("app-v5", b"five", 5),
        b"five",
    ));
    let err = agent.begin(target_for("app-v3", b"three", 3)).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Downgrade {
                offered: 3,
                installed: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("release counter 3 is lower than the installed 5"));
    let r = reports(&agent);
    assert_eq!(r.last().unwrap().outcome.kind(), "attack_detected");
    assert!(agent.state().attempt.is_none());
    assert_eq!(committed_name(&agent), "app-v5");
}

#[test]
fn insufficient_space_fails_before_download_with_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    drop(agent);
    let mut config = AgentConfig::new(tmp.path().join("agent"));
    config.reserve_bytes = u64::MAX / 2;
    let installer = SlotInstaller::open(tmp.path().join("device")).unwrap();
    agent = Agent::open(config, Box::new(installer), Probe::none()).unwrap();
    let err = agent.begin(target_for("app-v2", b"two", 2)).unwrap_err();
    assert!(matches!(err, AgentError::InsufficientSpace { .. }), "{err}");
    assert!(err.to_string().contains("only") && err.to_string().contains("available"));
    assert_eq!(reports(&agent).last().unwrap().outcome.kind(), "failed");
    assert!(agent.state().attempt.is_none());
}

#[test]
fn abort_reports_attack_and_keeps_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    let id = agent.begin(target_for("app-v2", b"two", 2)).unwrap();
    let out = agent
        .abort(
            id,
            Outcome::AttackDetected {
                reason: "targets: signature threshold 1 not met".to_owned(),
            },
        )
        .unwrap();
    assert_eq!(out.kind(), "attack_detected");
    assert_eq!(reports(&agent).len(), 2);
    assert_eq!(committed_name(&agent), "app-v1");
    // an aborted attempt cannot be installed
    assert!(agent.install(id).is_err());
}

#[test]
fn wrong_order_of_calls_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    let id = agent.begin(target_for("app-v2", b"two", 2)).unwrap();
    assert!(matches!(
        agent.install(id),
        Err(AgentError::WrongState { .. })
    ));
    assert!(matches!(
        agent.begin(target_for("app-v3", b"3", 3)),
        Err(AgentError::WrongState { .. })
    ));
    assert!(matches!(
        agent.downloaded(id + 1, Path::new("/nonexistent")),
        Err(AgentError::UnknownAttempt { .. })
    ));
    let mut sink = MemorySink::default();
    assert!(matches!(
        agent.upload_reports(&mut sink),
        Err(AgentError::WrongState { .. })
    ));
}

#[test]
fn second_agent_on_the_same_directory_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let _agent = slot_agent(tmp.path(), None);
    let installer = SlotInstaller::open(tmp.path().join("device")).unwrap();
    let err = Agent::open(
        AgentConfig::new(tmp.path().join("agent")),
        Box::new(installer),
        Probe::none(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("another agent"), "{err}");
}

#[test]
fn invalid_target_metadata_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = slot_agent(tmp.path(), None);
    let mut t = target_for("x", b"x", 1);
    t.hashes.clear();
    t.hashes.insert("md5".to_owned(), "00".to_owned());
    let err = agent.begin(t).unwrap_err();
    assert!(err.to_string().contains("needs sha256 or sha512"), "{err}");
    let mut t = target_for("x", b"x", 1);
    t.hashes.insert("sha256".to_owned(), "zz".to_owned());
    assert!(agent
        .begin(t)
        .unwrap_err()
        .to_string()
        .contains("64 hex digits"));
    let t = target_for("", b"x", 1);
    assert!(agent.begin(t).is_err());
    assert!(agent.state().attempt.is_none());
}

/// Rewrite the persisted attempt's phase, as a crash at that point leaves it.
fn force_phase(state_path: &Path, phase: Phase, plan: InstallPlan) {
    let mut state: custody_agent::AgentState =
        serde_json::from_slice(&fs::read(state_path).unwrap()).unwrap();
    let a = state.attempt.as_mut().unwrap();
    a.plan = Some(plan);
    a.phase = phase;
    custody_agent::fsutil::write_json(state_path, &state).unwrap();
}

#[test]
fn slot_install_interrupted_too_often_is_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    let id = agent.begin(target_for("app-v2", b"two", 2)).unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, b"two").unwrap();
    agent.downloaded(id, &dest).unwrap();
    drop(agent);
    let plan = InstallPlan::Slot {
        new: Slot::B,
        old: Some(Slot::A),
    };
    let state_path = tmp.path().join("agent/state.json");
    // after two interrupted tries, recovery stages a third time
    force_phase(
        &state_path,
        Phase::Installing {
            payload: dest.clone(),
            tries: 2,
        },
        plan.clone(),
    );
    let mut agent = slot_agent(tmp.path(), None);
    assert_eq!(agent.recover().unwrap(), Some(Outcome::Installed));
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::B));
    drop(agent);
    // a third interrupted try is the last
    let mut agent = slot_agent(tmp.path(), None);
    let id = agent.begin(target_for("app-v3", b"three", 3)).unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, b"three").unwrap();
    agent.downloaded(id, &dest).unwrap();
    drop(agent);
    let plan = InstallPlan::Slot {
        new: Slot::A,
        old: Some(Slot::B),
    };
    force_phase(
        &state_path,
        Phase::Installing {
            payload: dest,
            tries: 3,
        },
        plan,
    );
    let mut agent = slot_agent(tmp.path(), None);
    let Some(Outcome::Failed { reason }) = agent.recover().unwrap() else {
        panic!()
    };
    assert!(reason.contains("3 times (limit 3)"), "{reason}");
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::B));
    assert_eq!(committed_name(&agent), "app-v2");
}

#[test]
fn downloaded_payload_lost_in_a_crash_fails_the_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = device_with_v1(tmp.path());
    let id = agent.begin(target_for("app-v2", b"two", 2)).unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, b"two").unwrap();
    agent.downloaded(id, &dest).unwrap();
    drop(agent);
    fs::remove_file(&dest).unwrap();
    let mut agent = slot_agent(tmp.path(), None);
    let Some(Outcome::Failed { reason }) = agent.recover().unwrap() else {
        panic!()
    };
    assert!(
        reason.contains("no longer matches") && reason.contains("attempt-2"),
        "{reason}"
    );
    assert_eq!(slots(tmp.path()).current_slot().unwrap(), Some(Slot::A));
}

// ---- command installer ------------------------------------------------

struct CmdDevice {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl CmdDevice {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        fs::write(root.join("installed"), b"version one").unwrap();
        CmdDevice { _tmp: tmp, root }
    }
    fn installed(&self) -> String {
        fs::read_to_string(self.root.join("installed")).unwrap()
    }
    fn agent(&self, install: &str, health: Option<&str>) -> Agent {
        let r = self.root.display();
        // install keeps a backup; rollback restores it (idempotent).
        let installer = CommandInstaller::new(sh(
            &format!("env | grep '^CUSTODY_' | sort > {r}/install-env; cp {r}/installed {r}/backup && {install}"),
            Duration::from_secs(10),
        ))
        .with_rollback(sh(
            &format!("if [ -f {r}/backup ]; then cp {r}/backup {r}/installed; fi; echo rolled >> {r}/rollbacks"),
            Duration::from_secs(10),
        ));
        let mut config = AgentConfig::new(self.root.join("agent"));
        config.health_check = health.map(|h| sh(h, Duration::from_secs(10)));
        config.reserve_bytes = 0;
        Agent::open(config, Box::new(installer), Probe::none()).unwrap()
    }
}

#[test]
fn command_installer_success_passes_target_in_environment() {
    let d = CmdDevice::new();
    let r = d.root.display().to_string();
    let mut agent = d.agent(
        &format!("cp \"$CUSTODY_PAYLOAD\" {r}/installed"),
        Some("exit 0"),
    );
    let out = install(
        &mut agent,
        target_for("pkg-2.0.deb", b"version two", 2),
        b"version two",
    );
    assert_eq!(out, Outcome::Installed);
    assert_eq!(d.installed(), "version two");
    let env = fs::read_to_string(d.root.join("install-env")).unwrap();
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"version two"));
    for var in [
        "CUSTODY_TARGET_NAME=pkg-2.0.deb".to_owned(),
        "CUSTODY_TARGET_LENGTH=11".to_owned(),
        format!("CUSTODY_TARGET_SHA256={sha}"),
        "CUSTODY_RELEASE_COUNTER=2".to_owned(),
        "CUSTODY_TARGET_CUSTOM={\"hw\":\"board-7\"}".to_owned(),
        format!("CUSTODY_PAYLOAD={}", agent.download_path(1).display()),
    ] {
        assert!(env.lines().any(|l| l == var), "{var} missing in\n{env}");
    }
    assert_eq!(
        agent.state().committed.as_ref().unwrap().plan,
        InstallPlan::Command
    );
    assert!(!d.root.join("rollbacks").exists());
}

#[test]
fn command_installer_nonzero_exit_fails_and_keeps_old_version() {
    let d = CmdDevice::new();
    let r = d.root.display().to_string();
    // writes half the new version, then fails
    let mut agent = d.agent(
        &format!("echo partial > {r}/installed; echo 'disk error' >&2; exit 4"),
        None,
    );
    let out = install(
        &mut agent,
        target_for("pkg-2.0.deb", b"version two", 2),
        b"version two",
    );
    let Outcome::Failed { reason } = out else {
        panic!("{out:?}")
    };
    assert!(
        reason.contains("install command") && reason.contains("exited with status 4"),
        "{reason}"
    );
    assert!(reason.contains("disk error"), "{reason}");
    assert_eq!(
        d.installed(),
        "version one",
        "rollback command restores the old version"
    );
    assert_eq!(
        fs::read_to_string(d.root.join("rollbacks")).unwrap(),
        "rolled\n"
    );
    assert!(agent.state().committed.is_none());
    let r = reports(&agent);
    assert_eq!((r.len(), r[0].outcome.kind()), (1, "failed"));
}

#[test]
fn command_installer_health_failure_runs_rollback_command() {
    let d = CmdDevice::new();
    let r = d.root.display().to_string();
    let mut agent = d.agent(
        &format!("cp \"$CUSTODY_PAYLOAD\" {r}/installed"),
        Some("exit 2"),
    );
    let out = install(
        &mut agent,
        target_for("pkg-2.0.deb", b"version two", 2),
        b"version two",
    );
    assert_eq!(out.kind(), "rolled_back");
    assert_eq!(d.installed(), "version one");
}

#[test]
fn command_installer_interrupted_install_is_rolled_back_not_rerun() {
    let d = CmdDevice::new();
    let r = d.root.display().to_string();
    let mut agent = d.agent(&format!("cp \"$CUSTODY_PAYLOAD\" {r}/installed"), None);
    agent.recover().unwrap();
    let id = agent.begin(target_for("pkg-2.0.deb", b"two", 2)).unwrap();
    let dest = agent.download_path(id);
    fs::write(&dest, b"two").unwrap();
    agent.downloaded(id, &dest).unwrap();
    drop(agent);
    // Simulate a crash while the install command ran: the state says
    // Installing, the command half-wrote the new version.
    force_phase(
        &d.root.join("agent/state.json"),
        Phase::Installing {
            payload: dest,
            tries: 1,
        },
        InstallPlan::Command,
    );
    fs::copy(d.root.join("installed"), d.root.join("backup")).unwrap();
    fs::write(d.root.join("installed"), b"tw").unwrap();

    let mut agent = d.agent("exit 99", None);
    let out = agent.recover().unwrap().unwrap();
    let Outcome::Failed { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("cannot redo it"), "{reason}");
    assert_eq!(d.installed(), "version one");
    assert_eq!(reports(&agent).len(), 1);
}

// ---- report queue -----------------------------------------------------

fn report(n: u64) -> Report {
    Report {
        id: report_id(n),
        attempt: n,
        target: target_for(&format!("t{n}"), b"x", n),
        outcome: Outcome::Installed,
        committed: None,
        decided_at: 0,
    }
}

#[test]
fn report_queue_keeps_order_and_never_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let q = ReportQueue::open(tmp.path().join("reports")).unwrap();
    for n in 1..=5 {
        assert_eq!(q.enqueue(&report(n)).unwrap(), n);
    }
    // re-queueing (a recovery re-running the step) writes nothing new
    assert_eq!(q.enqueue(&report(3)).unwrap(), 3);
    assert_eq!(fs::read_dir(q.dir()).unwrap().count(), 5);
    let ids: Vec<_> = q
        .pending()
        .unwrap()
        .into_iter()
        .map(|p| p.report.attempt)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);

    // the sink refuses after two: those two are gone, the rest stay in order
    let mut sink = MemorySink {
        fail_after: Some(2),
        ..MemorySink::default()
    };
    let err = q.upload(&mut sink).unwrap_err();
    assert!(err.to_string().contains("report 3 (attempt-3)"), "{err}");
    let sent: Vec<_> = sink.received.iter().map(|(s, r)| (*s, r.attempt)).collect();
    assert_eq!(sent, [(1, 1), (2, 2)]);
    let left: Vec<_> = q.pending().unwrap().into_iter().map(|p| p.seq).collect();
    assert_eq!(left, [3, 4, 5]);

    sink.fail_after = None;
    assert_eq!(q.upload(&mut sink).unwrap(), 3);
    let sent: Vec<_> = sink.received.iter().map(|(_, r)| r.attempt).collect();
    assert_eq!(sent, [1, 2, 3, 4, 5]);
    assert!(q.pending().unwrap().is_empty());

    // sequence numbers keep growing after the queue drained, also across
    // a reopen
    let q = ReportQueue::open(tmp.path().join("reports")).unwrap();
    assert_eq!(q.enqueue(&report(6)).unwrap(), 6);
}

#[test]
fn report_queue_ignores_temp_and_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let q = ReportQueue::open(tmp.path()).unwrap();
    fs::write(tmp.path().join(".custody-tmp-abc"), b"{").unwrap();
    fs::write(tmp.path().join("notes.txt"), b"hi").unwrap();
    fs::write(tmp.path().join("12-attempt-1.json"), b"{").unwrap();
    q.enqueue(&report(1)).unwrap();
    assert_eq!(q.pending().unwrap().len(), 1);
}

#[test]
fn corrupt_queued_report_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let q = ReportQueue::open(tmp.path()).unwrap();
    fs::write(
        tmp.path().join(format!("{:020}-attempt-9.json", 9)),
        b"{not json",
    )
    .unwrap();
    let err = q.pending().unwrap_err().to_string();
    assert!(
        err.contains("attempt-9.json") && err.contains("queued report"),
        "{err}"
    );
}

#[test]
fn configuration_files_parse_and_build() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().display();
    let agent: AgentConfig = serde_json::from_str(&format!(
        r#"{{"root": "{root}/agent",
            "health_check": {{"argv": ["/bin/true"], "timeout_secs": 30}}}}"#
    ))
    .unwrap();
    assert_eq!(agent.health_check.unwrap().timeout, Duration::from_secs(30));
    assert_eq!(agent.reserve_bytes, 1024 * 1024);
    let slot: InstallerConfig =
        serde_json::from_str(&format!(r#"{{"kind": "slot", "root": "{root}/device"}}"#)).unwrap();
    assert_eq!(slot.build().unwrap().kind(), "slot");
    assert!(tmp.path().join("device/slots/b").is_dir());
    let cmd: InstallerConfig = serde_json::from_str(
        r#"{"kind": "command",
            "install":  {"argv": ["rauc", "install"], "timeout_secs": 1800},
            "rollback": {"argv": ["rauc", "status", "mark-active", "other"], "timeout_secs": 60}}"#,
    )
    .unwrap();
    assert_eq!(cmd.build().unwrap().kind(), "command");
    // typos are errors, not silently ignored settings
    let err = serde_json::from_str::<InstallerConfig>(
        r#"{"kind": "command", "install": {"argv": ["x"], "timeout_secs": 1}, "rolback": null}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("rolback"), "{err}");
    assert!(serde_json::from_str::<AgentConfig>(r#"{"root": "/x", "reserve": 1}"#).is_err());
}
