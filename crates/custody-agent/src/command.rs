//! Running hook commands (installers, health checks) with a time limit.
//!
//! The command runs in its own process group with stdin closed and
//! stdout/stderr going to an anonymous temp file; on timeout the whole group
//! gets SIGKILL, so a hung health check cannot keep a trial alive. The last
//! [`OUTPUT_TAIL`] bytes of its output go into the failure reason.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::fsutil::{read_json, remove_file_durable, write_json, Probe};

/// How much of a failed command's output is kept in the reason.
pub const OUTPUT_TAIL: u64 = 2048;

/// A configured command: argv and a time limit. In configuration files:
/// `{"argv": ["/usr/bin/rauc", "install"], "timeout_secs": 600}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookCommand {
    /// program and arguments; `argv[0]` is looked up in `PATH`
    pub argv: Vec<String>,
    /// the command is killed (whole process group) after this long
    #[serde(rename = "timeout_secs", with = "duration_secs")]
    pub timeout: Duration,
}

/// `Duration` as whole seconds in configuration files.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl HookCommand {
    /// A command with a timeout.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>, timeout: Duration) -> Self {
        HookCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout,
        }
    }

    /// Run it with extra environment variables. `Ok(())` iff it exited 0
    /// within the timeout; otherwise a reason naming the command, what
    /// happened and the tail of its output.
    pub fn run(&self, env: &[(String, String)]) -> Result<(), String> {
        self.run_tracked(env, &Probe::none(), None)
    }

    /// [`run`](Self::run), and while the command runs keep its process
    /// group id in the file `track` (written atomically after the spawn,
    /// removed after the wait), so that an agent restarted after a crash can
    /// kill a hook that outlived it ([`kill_orphaned_hook`]) before it
    /// decides anything. `probe` is hit with `"command:spawned"` once the
    /// child runs and is tracked (the crash test kills the agent there).
    pub fn run_tracked(
        &self,
        env: &[(String, String)],
        probe: &Probe,
        track: Option<&Path>,
    ) -> Result<(), String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("command has an empty argv".to_owned());
        };
        let shown = format!("{:?}", self.argv);
        let mut out =
            tempfile::tempfile().map_err(|e| format!("{shown}: cannot create output file: {e}"))?;
        let stdout = out
            .try_clone()
            .map_err(|e| format!("{shown}: cannot clone output file: {e}"))?;
        let stderr = out
            .try_clone()
            .map_err(|e| format!("{shown}: cannot clone output file: {e}"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{shown}: cannot start: {e}"))?;
        let pid = rustix::process::Pid::from_child(&child);
        if let Some(track) = track {
            let running = RunningHook {
                pgid: child.id(),
                start_time: process_start_time(child.id()),
                argv: self.argv.clone(),
            };
            if let Err(e) = write_json(track, &running) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown}: cannot record the running hook: {e}"));
            }
        }
        probe.hit("command:spawned");
        let result = self.wait(&mut child, pid, &shown, &mut out);
        if let Some(track) = track {
            if let Err(e) = remove_file_durable(track) {
                tracing::warn!(error = %e, "cannot remove hook tracking file");
            }
        }
        result
    }

    fn wait(
        &self,
        child: &mut std::process::Child,
        pid: rustix::process::Pid,
        shown: &str,
        out: &mut std::fs::File,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(format!("{shown}: wait failed: {e}")),
            }
            if Instant::now() >= deadline {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown}: timed out after {:?} and was killed{}",
                    self.timeout,
                    output_tail(out)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.success() {
            return Ok(());
        }
        let what = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => "failed".to_owned(),
        };
        Err(format!("{shown}: {what}{}", output_tail(out)))
    }
}

/// `"; output: ..."` with the last [`OUTPUT_TAIL`] bytes, or "" when empty.
fn output_tail(out: &mut std::fs::File) -> String {
    let len = out.seek(SeekFrom::End(0)).unwrap_or(0);
    if len == 0 {
        return String::new();
    }
    let start = len.saturating_sub(OUTPUT_TAIL);
    if out.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if out.take(OUTPUT_TAIL).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    format!("; output: {}", String::from_utf8_lossy(&buf).trim_end())
}

/// The tracking file of a running hook command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningHook {
    /// process id of the command = its process group id
    pub pgid: u32,
    /// start time of that process (`/proc/<pid>/stat` field 22), so a
    /// reused pid is never killed
    pub start_time: Option<u64>,
    /// what was running
    pub argv: Vec<String>,
}

/// Start time of process `pid` in clock ticks since boot, from
/// `/proc/<pid>/stat`; `None` when it does not exist or is a zombie.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and ')'.
    let rest = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" {
        return None;
    }
    // field 22 is the 19th after the state
    fields.nth(18)?.parse().ok()
}

/// If `track` names a hook command that is still running (a previous agent
/// process was killed while it ran), SIGKILL its process group and wait
/// (up to `wait`) until it is gone; then remove `track`. Returns the hook
/// that was killed, if any. Called by recovery before any decision, so an
/// orphaned install command cannot finish after the rollback.
pub fn kill_orphaned_hook(track: &Path, wait: Duration) -> Result<Option<RunningHook>, AgentError> {
    let Some(hook) = read_json::<RunningHook>(track, "running hook record")? else {
        return Ok(None);
    };
    // Only a process that is provably the one we started: a known start
    // time that still matches. Never pgid 0 or 1 (kill(0)/kill(-1) would hit
    // our own group or every process) and never our own process.
    let ours = u32::try_from(rustix::process::getpid().as_raw_nonzero().get()).ok();
    let alive = |h: &RunningHook| {
        h.pgid > 1
            && Some(h.pgid) != ours
            && h.start_time.is_some()
            && process_start_time(h.pgid) == h.start_time
    };
    let mut killed = None;
    if alive(&hook) {
        if let Some(pid) = i32::try_from(hook.pgid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let deadline = Instant::now() + wait;
            while alive(&hook) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            tracing::warn!(argv = ?hook.argv, pgid = hook.pgid, "killed a hook command left running by a previous agent process");
            killed = Some(hook);
        }
    }
    remove_file_durable(track)?;
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_hook_is_killed_but_never_pid_1_or_a_reused_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let track = tmp.path().join("hook.json");
        // a record pointing at init, or without a start time, kills nothing
        for (pgid, start_time) in [(1, None), (1, process_start_time(1)), (0, None)] {
            let rec = RunningHook {
                pgid,
                start_time,
                argv: vec![],
            };
            write_json(&track, &rec).unwrap();
            assert_eq!(
                kill_orphaned_hook(&track, Duration::from_secs(1)).unwrap(),
                None
            );
            assert!(!track.exists());
        }
        // a live hook in its own process group is killed
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let rec = RunningHook {
            pgid: child.id(),
            start_time: process_start_time(child.id()),
            argv: vec!["sleep".to_owned()],
        };
        assert!(rec.start_time.is_some());
        // a start time that does not match (pid reused) kills nothing
        let mut reused = rec.clone();
        reused.start_time = rec.start_time.map(|t| t + 1);
        write_json(&track, &reused).unwrap();
        assert_eq!(
            kill_orphaned_hook(&track, Duration::from_secs(1)).unwrap(),
            None
        );
        assert_eq!(
            child.try_wait().unwrap(),
            None,
            "an unrelated process was killed"
        );
        write_json(&track, &rec).unwrap();
        let killed = kill_orphaned_hook(&track, Duration::from_secs(5)).unwrap();
        assert_eq!(killed, Some(rec));
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn empty_argv_and_missing_program_are_failures_not_panics() {
        let none: [&str; 0] = [];
        assert!(HookCommand::new(none, Duration::from_secs(1))
            .run(&[])
            .is_err());
        let err = HookCommand::new(["/nonexistent/hook"], Duration::from_secs(1))
            .run(&[])
            .unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }
}
