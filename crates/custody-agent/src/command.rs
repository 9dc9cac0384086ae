//! Running hook commands (installers, health checks) with a time limit.
//!
//! The command runs in its own process group with stdin closed and
//! stdout/stderr going to an anonymous temp file; on timeout the whole group
//! gets SIGKILL, so a hung health check cannot keep a trial alive. The last
//! [`OUTPUT_TAIL`] bytes of its output go into the failure reason.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fsutil::Probe;

/// How much of a failed command's output is kept in the reason.
pub const OUTPUT_TAIL: u64 = 2048;

/// A configured command: argv and a time limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCommand {
    /// program and arguments; `argv[0]` is looked up in `PATH`
    pub argv: Vec<String>,
    /// the command is killed (whole process group) after this long
    pub timeout: Duration,
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
        self.run_probed(env, &Probe::none())
    }

    /// [`run`](Self::run), hitting `probe` with `"command:spawned"` once the
    /// child runs (the crash test kills the agent there, mid-command).
    pub fn run_probed(&self, env: &[(String, String)], probe: &Probe) -> Result<(), String> {
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
        probe.hit("command:spawned");
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
                    output_tail(&mut out)
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
        Err(format!("{shown}: {what}{}", output_tail(&mut out)))
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
