//! `custody inventory` through the real binary: a local repository with
//! hash bins, statuses at three reference times, and the CI gate's exit
//! codes (0 passes, 1 fails, 2 cannot tell).
mod common;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::cli::Cli;
use serde_json::Value;

const PW: &str = "test passphrase";

fn repo_with_bins() -> Cli {
    let env = Cli::new(PW);
    env.init_standard_repo();
    env.keys(&["bins"]);
    env.ok(&[
        "repo",
        "hash-bins",
        "repo",
        "--bits",
        "4",
        "--key",
        "bins.pem",
        "--passphrase-env",
        "KP",
    ]);
    env
}

fn inventory(env: &Cli, at: DateTime<Utc>, extra: &[&str]) -> (i32, Value, String) {
    let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut args = vec!["inventory", "--repo", "repo", "--json", "--at", &at];
    args.extend_from_slice(extra);
    let o = env.run(&args);
    let doc = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (
        o.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn status_of(doc: &Value, kind: &str) -> String {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == kind)
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {kind} item in {doc}"))
}

#[test]
fn roles_bins_and_keys_with_their_status_at_three_times_and_the_gate() {
    let env = repo_with_bins();
    let (code, doc, err) = inventory(&env, Utc::now(), &[]);
    assert_eq!(code, 0, "{err}");
    let items = doc["items"].as_array().unwrap();
    for kind in [
        "root",
        "targets",
        "snapshot",
        "timestamp",
        "hash_bins",
        "key",
    ] {
        assert!(items.iter().any(|i| i["kind"] == kind), "{kind}: {doc}");
    }
    let bins = items.iter().find(|i| i["kind"] == "hash_bins").unwrap();
    assert_eq!(bins["members"], 16, "{bins}");
    assert_eq!(bins["scope"], "repo");
    assert_eq!(
        items.iter().filter(|i| i["kind"] == "key").count(),
        5,
        "four role keys and the bins' key, once each: {doc}"
    );

    // The timestamp's own expiry decides its status: outside its 12-hour
    // window, inside it, and past it.
    let ts = items.iter().find(|i| i["kind"] == "timestamp").unwrap();
    let expires: DateTime<Utc> = ts["expires"].as_str().unwrap().parse().unwrap();
    let (_, before, _) = inventory(&env, expires - Duration::hours(13), &[]);
    let (_, inside, _) = inventory(&env, expires - Duration::hours(1), &[]);
    let (_, after, _) = inventory(&env, expires + Duration::hours(1), &[]);
    assert_eq!(status_of(&before, "timestamp"), "ok");
    assert_eq!(status_of(&inside, "timestamp"), "renew");
    assert_eq!(status_of(&after, "timestamp"), "expired");
    // Most urgent first.
    assert_eq!(after["items"][0]["status"], "expired", "{after}");

    // The gate: renew fails inside the window, expired only after it.
    let at = expires - Duration::hours(1);
    let (code, doc, err) = inventory(&env, at, &["--fail-on", "expired"]);
    assert_eq!(code, 0, "{err} {doc}");
    let (code, doc, err) = inventory(&env, at, &["--fail-on", "renew"]);
    assert_eq!(code, 1, "{doc}");
    assert!(err.contains("timestamp") && err.contains("renew"), "{err}");
    assert!(doc["failed"].as_u64().unwrap() >= 1, "{doc}");
    let (code, _, err) = inventory(
        &env,
        expires + Duration::hours(1),
        &["--fail-on", "expired"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("expired"), "{err}");
    // A wider window for this repository moves the timestamp into it.
    let (_, doc, _) = inventory(
        &env,
        expires - Duration::hours(13),
        &["--window", "repo:timestamp=1d"],
    );
    assert_eq!(status_of(&doc, "timestamp"), "renew");

    // The table for people names the statuses and counts them.
    let out = env.ok(&["inventory", "--repo", "repo"]);
    assert!(out.contains("STATUS") && out.contains("EXPIRES"), "{out}");
    assert!(
        out.contains("hash_bins") && out.contains("16 bins"),
        "{out}"
    );
    assert!(out.contains(" ok"), "{out}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let env = repo_with_bins();
    for (args, want) in [
        (vec!["--window", "root=3w"], "unit"),
        (vec!["--window", "nope=3d"], "unknown kind"),
        (vec!["--fail-on", "later"], "--fail-on"),
    ] {
        let (code, _, err) = inventory(&env, Utc::now(), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let o = env.run(&["inventory", "--at", "yesterday", "--repo", "repo"]);
    assert_eq!(o.status.code(), Some(2), "a usage error: {o:?}");
    let o = env.run(&["inventory", "--repo", "missing"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing"),
        "{o:?}"
    );
}
