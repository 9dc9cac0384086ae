//! `custody fleet rollout …`: the request a rollout is created from, and
//! `watch`, a live view of its stages until it ends.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};

use super::table::{text, when, Table};

/// What to roll out, to whom, in which stages.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Stages are cumulative shares of the selected devices; each stage's canary
gate must pass before the next one starts (the last stage is 100). A gate
pauses the rollout when failures exceed --max-failure percent of at least
--min-sample reports, and advances it when successes reach --min-success.

Examples:
  custody fleet rollout create --target fw/board-a-2.5.img --hardware-id board-a
  custody fleet rollout create --id fw-2.5 --target fw/board-a-2.5.img \\
      --hardware-id board-a --stages 1,10,50,100 --min-sample 10 \\
      --window '0 2 * * *;Europe/Berlin;4h'
  custody fleet rollout create --from-file rollout.json   # the API body, all fields")]
pub(super) struct CreateArgs {
    /// Target path in the image repository.
    #[arg(long, required_unless_present = "from_file")]
    target: Option<String>,
    /// Rollout id (1..=64 of [A-Za-z0-9._-]; default: random).
    #[arg(long)]
    id: Option<String>,
    /// Release counter (default: the target's custom.release_counter).
    #[arg(long)]
    release_counter: Option<u64>,
    /// Select devices of this hardware id (repeatable).
    #[arg(long = "hardware-id", value_name = "ID")]
    hardware_ids: Vec<String>,
    /// Select devices in this environment (repeatable).
    #[arg(long = "environment", value_name = "ENV")]
    environments: Vec<String>,
    /// Select devices in this group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Select devices carrying this tag (repeatable: all must be carried).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Select exactly these devices (repeatable).
    #[arg(long = "device", value_name = "ID")]
    devices: Vec<String>,
    /// Cumulative stage shares in percent, increasing, ending at 100.
    #[arg(long, value_delimiter = ',', value_name = "P,P,…")]
    stages: Vec<f64>,
    /// Gate of every stage: advance at this success percent (default 95).
    #[arg(long, value_name = "PERCENT")]
    min_success: Option<f64>,
    /// Gate of every stage: pause above this failure percent (default 5).
    #[arg(long, value_name = "PERCENT")]
    max_failure: Option<f64>,
    /// Gate of every stage: decide only with this many reports (default 20).
    #[arg(long, value_name = "N")]
    min_sample: Option<u64>,
    /// Maintenance window 'CRON;TIME_ZONE;DURATION' (repeatable), e.g.
    /// '0 2 * * SAT,SUN;Europe/Berlin;4h'; DURATION in s, m or h.
    #[arg(long = "window", value_name = "SPEC")]
    windows: Vec<String>,
    /// Bucket seed (default: the rollout id).
    #[arg(long)]
    seed: Option<String>,
    /// The whole request body as JSON (POST /api/v1/fleet/rollouts), instead
    /// of the flags above.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "stages", "windows"])]
    from_file: Option<PathBuf>,
}

impl CreateArgs {
    /// The request body.
    pub(super) fn body(&self) -> Result<Value> {
        if let Some(f) = &self.from_file {
            let bytes = crate::repo::read_limited(f, 1 << 20)?;
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not JSON", f.display()))?;
            if !v.is_object() {
                bail!("{}: the rollout request must be a JSON object", f.display());
            }
            return Ok(v);
        }
        let mut body = Map::new();
        put(&mut body, "id", self.id.as_ref().map(|s| json!(s)));
        put(&mut body, "target", self.target.as_ref().map(|s| json!(s)));
        put(
            &mut body,
            "release_counter",
            self.release_counter.map(|c| json!(c)),
        );
        put(&mut body, "seed", self.seed.as_ref().map(|s| json!(s)));
        let mut selector = Map::new();
        let set = |v: &[String]| (!v.is_empty()).then(|| json!(v));
        put(&mut selector, "hardware_ids", set(&self.hardware_ids));
        put(&mut selector, "environments", set(&self.environments));
        put(&mut selector, "groups", set(&self.groups));
        put(&mut selector, "device_ids", set(&self.devices));
        put(&mut selector, "tags", set(&self.tags));
        body.insert("selector".into(), Value::Object(selector));
        let mut gate = Map::new();
        put(
            &mut gate,
            "min_success_percent",
            self.min_success.map(|p| json!(p)),
        );
        put(
            &mut gate,
            "max_failure_percent",
            self.max_failure.map(|p| json!(p)),
        );
        put(&mut gate, "min_sample", self.min_sample.map(|n| json!(n)));
        let gate = (!gate.is_empty()).then_some(Value::Object(gate));
        let stages: Vec<f64> = if self.stages.is_empty() && gate.is_some() {
            vec![100.0]
        } else {
            self.stages.clone()
        };
        if !stages.is_empty() {
            let list: Vec<Value> = stages
                .iter()
                .map(|p| json!({ "percent": p, "gate": gate }))
                .collect();
            body.insert("stages".into(), Value::Array(list));
        }
        let windows = self
            .windows
            .iter()
            .map(|w| window(w))
            .collect::<Result<Vec<_>>>()?;
        if !windows.is_empty() {
            body.insert("windows".into(), Value::Array(windows));
        }
        Ok(Value::Object(body))
    }
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v);
    }
}

/// `CRON;TIME_ZONE;DURATION` as the API's window object.
fn window(spec: &str) -> Result<Value> {
    let parts: Vec<&str> = spec.split(';').map(str::trim).collect();
    let [cron, tz, dur] = parts.as_slice() else {
        bail!("--window {spec:?}: expected 'CRON;TIME_ZONE;DURATION', e.g. '0 2 * * *;UTC;4h'");
    };
    let (num, unit) = dur.split_at(dur.len().saturating_sub(1));
    let n: i64 = num.parse().with_context(|| {
        format!("--window {spec:?}: duration {dur:?} is not a number with s, m or h")
    })?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => bail!("--window {spec:?}: duration {dur:?} must end in s, m or h"),
    };
    Ok(json!({ "cron": cron, "time_zone": tz, "duration_seconds": seconds }))
}

/// A gate as people read it: `≥95% ok, >5% fails pause, n≥20`.
fn gate(g: &Value) -> String {
    let pct = |bp: &Value| bp.as_f64().map(|b| b / 100.0).unwrap_or(f64::NAN);
    format!(
        "≥{}% ok, >{}% failed pauses, n≥{}",
        pct(&g["min_success_bp"]),
        pct(&g["max_failure_bp"]),
        text(&g["min_sample"])
    )
}

/// One rollout's status as text.
pub(super) fn print_status(v: &Value) {
    let selected = v["selected_devices"].as_u64().unwrap_or(0);
    let installed = v["installed_devices"].as_u64().unwrap_or(0);
    println!(
        "rollout {}: {} (release {})",
        text(&v["id"]),
        text(&v["target"]),
        text(&v["release_counter"])
    );
    let reason = v["reason"]
        .as_str()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    println!("  state     {}{reason}", text(&v["state"]));
    println!(
        "  devices   {installed} of {selected} selected run it ({:.1}%)",
        percent(installed, selected)
    );
    println!(
        "  window    {}",
        if v["window_open_now"].as_bool() == Some(true) {
            "open now"
        } else {
            "closed now"
        }
    );
    println!(
        "  created   {} by {}",
        when(&v["created_at"]),
        text(&v["created_by"])
    );
    let mut t = Table::new(&["STAGE", "SHARE", "DEVICES", "OK", "FAILED", "STATE", "GATE"]);
    for s in v["stages"].as_array().into_iter().flatten() {
        t.row(vec![
            (s["index"].as_u64().unwrap_or(0) + 1).to_string(),
            format!("{}%", text(&s["percent"])),
            text(&s["devices"]),
            text(&s["successes"]),
            text(&s["failures"]),
            text(&s["state"]),
            gate(&s["gate"]),
        ]);
    }
    println!();
    t.print();
}

fn percent(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

/// Poll a rollout and draw a bar per stage until it completes (exit 0) or
/// is aborted (exit 1); with `exit_on_pause`, a pause ends it too (exit 2).
pub(super) fn watch(
    fetch: impl Fn() -> Result<Value>,
    interval: Duration,
    exit_on_pause: bool,
) -> Result<ExitCode> {
    let first = fetch()?;
    let multi = MultiProgress::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let head = multi.add(ProgressBar::new_spinner());
    let style =
        ProgressStyle::with_template("  stage {prefix:>2} [{bar:30}] {pos}/{len} installed {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let stages = first["stages"].as_array().cloned().unwrap_or_default();
    let bars: Vec<ProgressBar> = stages
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let b = multi.add(ProgressBar::new(0).with_style(style.clone()));
            b.set_prefix((i + 1).to_string());
            b
        })
        .collect();
    let mut last_line = String::new();
    let mut v = first;
    loop {
        let state = text(&v["state"]);
        let line = format!(
            "rollout {} ({}): {state}{} | stage {}/{} | {} of {} devices run it",
            text(&v["id"]),
            text(&v["target"]),
            v["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            v["stage"].as_u64().unwrap_or(0) + 1,
            bars.len(),
            text(&v["installed_devices"]),
            text(&v["selected_devices"]),
        );
        head.set_message(line.clone());
        for (b, s) in bars
            .iter()
            .zip(v["stages"].as_array().into_iter().flatten())
        {
            b.set_length(s["devices"].as_u64().unwrap_or(0));
            b.set_position(s["successes"].as_u64().unwrap_or(0));
            b.set_message(format!(
                "{} failed, {}",
                text(&s["failures"]),
                text(&s["state"])
            ));
        }
        if multi.is_hidden() && line != last_line {
            // not a terminal: one line per change, for logs
            println!("{line}");
        }
        last_line = line;
        let code = match state.as_str() {
            "completed" => Some(0),
            "aborted" => Some(1),
            "paused" if exit_on_pause => Some(2),
            _ => None,
        };
        if let Some(code) = code {
            head.finish();
            for b in &bars {
                b.finish();
            }
            if !multi.is_hidden() {
                eprintln!("{last_line}");
            }
            return Ok(ExitCode::from(code));
        }
        std::thread::sleep(interval);
        v = fetch()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> CreateArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: CreateArgs,
        }
        let mut argv = vec!["p"];
        argv.extend_from_slice(extra);
        P::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn flags_become_the_api_request() {
        let b = args(&[
            "--target",
            "fw/a.img",
            "--hardware-id",
            "board-a",
            "--stages",
            "1,50,100",
            "--min-sample",
            "10",
            "--window",
            "0 2 * * *;Europe/Berlin;4h",
        ])
        .body()
        .unwrap();
        assert_eq!(b["target"], "fw/a.img");
        assert_eq!(b["selector"]["hardware_ids"], json!(["board-a"]));
        assert_eq!(b["stages"][1]["percent"], json!(50.0));
        assert_eq!(b["stages"][2]["gate"]["min_sample"], json!(10));
        assert_eq!(b["windows"][0]["duration_seconds"], json!(14400));
        assert!(b.get("id").is_none());
    }

    #[test]
    fn a_bad_window_names_the_flag_and_the_form() {
        for bad in ["0 2 * * *;UTC", "0 2 * * *;UTC;4d", "0 2 * * *;UTC;xh"] {
            let e = args(&["--target", "t", "--window", bad])
                .body()
                .unwrap_err();
            assert!(e.to_string().contains("--window"), "{e}");
        }
    }
}
