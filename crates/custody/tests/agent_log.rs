//! The transparency-log check of `custody agent` (issue #7, part 4), end to
//! end: a real `custody serve` process, agent processes, and a man-in-the-
//! middle proxy on loopback between them that can replace the log's
//! answers (a malicious log, or an attacker in front of it).
//!
//! - happy path: the device installs, its stored checkpoint advances;
//! - a target published outside the log (evidence 404), and a valid entry
//!   for another target: refused and reported;
//! - a fork (same size as stored, another root, signed by the log key):
//!   refused by the agent and alarmed by `custody witness`;
//! - a rolled-back checkpoint: refused and reported;
//! - k = 1 witnesses: deferred (not installed, not reported) until a
//!   `custody witness` cosigns, then installed;
//! - an enrolment whose server offers another log key than pinned: refused;
//! - an offline bundle: carries the evidence and is checked like online.

mod agent_support;

use std::path::Path;

use agent_support::proxy::Proxy;
use agent_support::*;
use base64::Engine as _;
use custody_log::{inclusion_proof, Appender, MemoryStore, NoteSigner};
use serde_json::{json, Value};

fn enroll_at(url: &str, dir: &Path, name: &str, hw: &str, token: &str, extra: &[&str]) -> Agent {
    Agent::enroll_at(url, dir, name, hw, token, PAYLOAD_NOT_EMPTY, extra)
}

/// Stage `data` as `name` for board-a with `release_counter`, and publish.
fn stage_and_publish(setup: &Setup, s: &Server, name: &str, data: &[u8], release_counter: u64) {
    setup.stage(
        s,
        name,
        data,
        json!({"hardware_ids": ["board-a"], "release_counter": release_counter}),
    );
    setup.publish(s);
}

/// Mint one enrolment token for group `lab` and enrol a board-a device
/// called `name` through `url` (the server or a proxy in front of it).
fn enroll_one(setup: &Setup, s: &Server, url: &str, dir: &Path, name: &str) -> Agent {
    let tokens = setup.fleet(
        s,
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(json!({"group": "lab", "count": 1})),
    );
    enroll_at(
        url,
        dir,
        name,
        "board-a",
        tokens["tokens"][0].as_str().unwrap(),
        &[],
    )
}

/// Roll `target` out to every board-a device as campaign `version`.
fn rollout_to_all(setup: &Setup, s: &Server, version: &str, target: &str) {
    rollout(
        setup,
        s,
        version,
        target,
        "board-a",
        json!([{"percent": 100.0}]),
        "s",
    );
}

fn log_signer(s: &Server) -> NoteSigner {
    let k = std::fs::read_to_string(s.data.join("keys/log/log.key")).unwrap();
    NoteSigner::parse_private_key(k.trim()).unwrap()
}

fn log_vkey(s: &Server) -> String {
    let r = http(&s.url, "GET", "/log/v1/key", None, b"");
    assert_eq!(r.status, 200);
    r.text().trim().to_owned()
}

fn stored_size(a: &Agent) -> u64 {
    let (c, v, e) = a.run(&["status", "--json"]);
    assert_eq!(c, 0, "{e}");
    v["log_size"].as_u64().unwrap_or(0)
}

/// The real evidence for `target` (asked of the server directly).
fn evidence(s: &Server, target: &str, data: &[u8], old: u64) -> Value {
    let r = http(
        &s.url,
        "GET",
        &format!(
            "/log/v1/evidence?repo={REPO}&target={target}&sha256={}&old={old}",
            sha256_hex(data)
        ),
        None,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// A forked log: `size` entries of another history, the last one being
/// `entry`, signed by the log key. Returns the checkpoint note and the
/// entry's inclusion proof in that tree.
fn forge(signer: &NoteSigner, size: u64, entry: &[u8]) -> (String, Vec<String>) {
    let mut log = Appender::open(MemoryStore::new()).unwrap();
    let mut entries: Vec<Vec<u8>> = (0..size - 1)
        .map(|i| format!("{{\"forged\":{i}}}").into_bytes())
        .collect();
    entries.push(entry.to_vec());
    log.append_entries(&entries).unwrap();
    let note = log.checkpoint(signer.name()).unwrap().sign(signer).unwrap();
    let proof = inclusion_proof(log.store(), size - 1, size).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        String::from_utf8(note.to_bytes()).unwrap(),
        proof.iter().map(|h| b64.encode(h)).collect(),
    )
}

fn attacks(setup: &Setup, s: &Server, id: &str) -> String {
    setup
        .fleet(
            s,
            "GET",
            &format!("/api/v1/fleet/attacks?device={id}"),
            None,
        )
        .to_string()
}

fn is_evidence(m: &str, p: &str) -> bool {
    m == "GET" && p.starts_with("/log/v1/evidence")
}

#[test]
fn agent_refuses_unlogged_wrong_entry_fork_and_rollback_then_installs_from_the_honest_log() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let proxy = Proxy::start(&s.url);
    let setup = Setup::new(&s);
    let v1 = payload("log-v1", 64 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-1.img", &v1, 1);
    let early_checkpoint = http(&s.url, "GET", "/log/v1/checkpoint", None, b"").text();
    let tokens = setup.fleet(
        &s,
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(json!({"group": "lab", "count": 2})),
    );
    let tok = |i: usize| tokens["tokens"][i].as_str().unwrap().to_owned();
    // The device pins the log key out of band and talks through the proxy.
    let vkey = log_vkey(&s);
    let dev = enroll_at(
        &proxy.url,
        tmp.path(),
        "dev1",
        "board-a",
        &tok(0),
        &["--log-key", &vkey],
    );
    let device_json: Value =
        serde_json::from_slice(&std::fs::read(dev.state.join("device.json")).unwrap()).unwrap();
    assert_eq!(
        device_json["log"]["log_key"],
        vkey.as_str(),
        "{device_json}"
    );
    assert_eq!(stored_size(&dev), 0);

    // Happy path: installed, the checkpoint stored.
    rollout_to_all(&setup, &s, "v1", "board-a/fw-1.img");
    let (c, v) = dev.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    let s1 = stored_size(&dev);
    assert!(s1 > 0, "a checkpoint is stored");
    let early_size: u64 = early_checkpoint.lines().nth(1).unwrap().parse().unwrap();
    assert!(early_size < s1);

    // Release 2.
    let v2 = payload("log-v2", 64 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-2.img", &v2, 2);
    rollout_to_all(&setup, &s, "v2", "board-a/fw-2.img");
    let real_v2 = evidence(&s, "board-a/fw-2.img", &v2, 0);
    let b64 = base64::engine::general_purpose::STANDARD;
    let v2_entry = b64.decode(real_v2["entry"].as_str().unwrap()).unwrap();

    let refused = |dev: &Agent, what: &str| -> String {
        let (c, v) = dev.check();
        assert_eq!(c, 2, "{what}: {v}");
        assert_eq!(v["action"]["result"], "refused", "{what}: {v}");
        assert_eq!(
            dev.installed(),
            Some(("board-a/fw-1.img".to_owned(), 1)),
            "{what}: nothing installed"
        );
        assert_eq!(v["attacks_delivered"], 1, "{what}: reported at once: {v}");
        v["action"]["reason"].as_str().unwrap().to_owned()
    };

    // 1. Published outside the log: the log has no entry (404).
    proxy.set(|m, p| {
        is_evidence(m, p).then(|| {
            (
                404,
                br#"{"error":"not_logged","message":"no target_publish entry"}"#.to_vec(),
            )
        })
    });
    let why = refused(&dev, "not in log");
    assert!(why.contains("not in the log"), "{why}");
    assert!(attacks(&setup, &s, &dev.id).contains("not_in_log"));
    assert_eq!(stored_size(&dev), s1, "state unchanged");

    // 2. A valid, included entry, but for another target (release 1).
    let real_v1 = evidence(&s, "board-a/fw-1.img", &v1, s1);
    let body = serde_json::to_vec(&real_v1).unwrap();
    proxy.set(move |m, p| is_evidence(m, p).then(|| (200, body.clone())));
    let why = refused(&dev, "wrong entry");
    assert!(
        why.contains("not the target_publish entry of \"board-a/fw-2.img\""),
        "{why}"
    );
    assert!(attacks(&setup, &s, &dev.id).contains("wrong_log_entry"));

    // 3. A fork: a checkpoint of the device's stored size with another
    // root, signed by the log key, that does include release 2.
    let signer = log_signer(&s);
    let (forged, proof) = forge(&signer, s1, &v2_entry);
    let mut fake = real_v2.clone();
    fake["index"] = json!(s1 - 1);
    fake["checkpoint"] = json!(forged);
    fake["inclusion_proof"] = json!(proof);
    fake["consistency"] = json!([]);
    let body = serde_json::to_vec(&fake).unwrap();
    proxy.set(move |m, p| is_evidence(m, p).then(|| (200, body.clone())));
    let why = refused(&dev, "fork");
    assert!(why.contains("fork"), "{why}");
    assert!(attacks(&setup, &s, &dev.id).contains("log_fork"));
    assert_eq!(stored_size(&dev), s1, "the forked checkpoint is not stored");

    // 4. A rollback: an older checkpoint the log really signed.
    let mut old = real_v2.clone();
    old["checkpoint"] = json!(early_checkpoint);
    old["consistency"] = json!([]);
    let body = serde_json::to_vec(&old).unwrap();
    proxy.set(move |m, p| is_evidence(m, p).then(|| (200, body.clone())));
    let why = refused(&dev, "rollback");
    assert!(why.contains("rollback"), "{why}");
    assert!(attacks(&setup, &s, &dev.id).contains("log_rollback"));

    // 5. The log unreachable: deferred, not reported, not installed.
    proxy.set(|m, p| is_evidence(m, p).then(|| (503, b"{}".to_vec())));
    let (c, v) = dev.check();
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "deferred", "{v}");
    assert_eq!(v["attacks_delivered"], 0, "{v}");

    // 6. The honest log: installed, the stored checkpoint advanced
    // (consistency proven from s1).
    proxy.pass();
    let (c, v) = dev.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(dev.current_payload(), v2);
    assert!(stored_size(&dev) > s1);
}

#[test]
fn witness_detects_the_fork_the_agent_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let proxy = Proxy::start(&s.url);
    let setup = Setup::new(&s);
    let v1 = payload("w-v1", 32 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-1.img", &v1, 1);
    let wkey = tmp.path().join("w.key");
    let o = custody(&[
        "witness",
        "--key",
        wkey.to_str().unwrap(),
        "--new-key",
        "witness.test/w1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wstate = tmp.path().join("wstate");
    let vkey = log_vkey(&s);
    let witness = || {
        custody(&[
            "witness",
            "--log",
            &proxy.url,
            "--log-key",
            &vkey,
            "--key",
            wkey.to_str().unwrap(),
            "--state",
            wstate.to_str().unwrap(),
            "--once",
            "--json",
        ])
    };
    let o = witness();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cp = std::fs::read_to_string(wstate.join("checkpoint")).unwrap();
    let wsize: u64 = cp.lines().nth(1).unwrap().parse().unwrap();

    let dev = enroll_one(&setup, &s, &proxy.url, tmp.path(), "dev1");
    rollout_to_all(&setup, &s, "v1", "board-a/fw-1.img");
    let (c, v) = dev.check();
    assert_eq!(c, 0, "{v}");
    let dsize = stored_size(&dev);

    let v2 = payload("w-v2", 32 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-2.img", &v2, 2);
    rollout_to_all(&setup, &s, "v2", "board-a/fw-2.img");
    let real = evidence(&s, "board-a/fw-2.img", &v2, 0);
    let b64 = base64::engine::general_purpose::STANDARD;
    let entry = b64.decode(real["entry"].as_str().unwrap()).unwrap();
    // The malicious log shows each its own history of the size it stored.
    let signer = log_signer(&s);
    let (w_forged, _) = forge(&signer, wsize, &entry);
    let (d_forged, d_proof) = forge(&signer, dsize, &entry);
    let mut fake = real.clone();
    fake["index"] = json!(dsize - 1);
    fake["checkpoint"] = json!(d_forged);
    fake["inclusion_proof"] = json!(d_proof);
    fake["consistency"] = json!([]);
    let body = serde_json::to_vec(&fake).unwrap();
    proxy.set(move |m, p| {
        if is_evidence(m, p) {
            Some((200, body.clone()))
        } else if m == "GET" && p == "/log/v1/checkpoint" {
            Some((200, w_forged.clone().into_bytes()))
        } else {
            None
        }
    });
    let o = witness();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"kind\":\"fork\""), "{out}");
    let (c, v) = dev.check();
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "refused", "{v}");
    assert!(
        v["action"]["reason"].as_str().unwrap().contains("fork"),
        "{v}"
    );
    assert!(attacks(&setup, &s, &dev.id).contains("log_fork"));
}

#[test]
fn witness_threshold_defers_until_cosigned_and_a_contradicting_server_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let wkey = tmp.path().join("w.key");
    let o = custody(&[
        "witness",
        "--key",
        wkey.to_str().unwrap(),
        "--new-key",
        "witness.test/w1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wvkey = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let v1 = payload("k-v1", 32 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-1.img", &v1, 1);
    let tokens = setup.fleet(
        &s,
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(json!({"group": "lab", "count": 2})),
    );
    let tok = |i: usize| tokens["tokens"][i].as_str().unwrap().to_owned();

    // A server offering another log key than the one pinned: refused.
    let other = NoteSigner::generate("custody.local/log").unwrap();
    let o = custody(&[
        "agent",
        "--state-dir",
        tmp.path().join("bad").to_str().unwrap(),
        "enroll",
        "--server",
        &s.url,
        "--token",
        &tok(1),
        "--hardware-id",
        "board-a",
        "--log-key",
        &other.verifier_key().to_vkey(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("offers log key"), "{err}");
    // Refused before anything is kept: no enrolment to resume from.
    assert!(
        !tmp.path().join("bad").join("device.json").exists(),
        "an enrolment refused over the log key left a device.json"
    );

    let dev = enroll_at(
        &s.url,
        tmp.path(),
        "dev1",
        "board-a",
        &tok(0),
        &["--witness", &wvkey, "--witness-threshold", "1"],
    );
    rollout_to_all(&setup, &s, "v1", "board-a/fw-1.img");
    // No witness has cosigned: not installed, not an attack.
    let (c, v) = dev.check();
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "deferred", "{v}");
    assert!(
        v["action"]["reason"]
            .as_str()
            .unwrap()
            .contains("cosignatures"),
        "{v}"
    );
    assert_eq!(v["attacks_delivered"], 0, "{v}");
    assert_eq!(dev.installed(), None);
    assert_eq!(stored_size(&dev), 0);
    // The witness cosigns; the device installs.
    let o = custody(&[
        "witness",
        "--log",
        &s.url,
        "--key",
        wkey.to_str().unwrap(),
        "--state",
        tmp.path().join("wstate").to_str().unwrap(),
        "--once",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (c, v) = dev.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert!(stored_size(&dev) > 0);
    let stored = std::fs::read_to_string(dev.state.join("log-checkpoint")).unwrap();
    assert!(stored.contains("witness.test/w1"), "cosigned: {stored}");
}

#[test]
fn bundles_carry_the_log_evidence_and_are_checked_like_online() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let v1 = payload("b-v1", 32 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-1.img", &v1, 1);
    let dev = enroll_one(&setup, &s, &s.url, tmp.path(), "dev1");
    rollout_to_all(&setup, &s, "v1", "board-a/fw-1.img");
    let (c, v) = dev.check();
    assert_eq!(c, 0, "{v}");
    let s1 = stored_size(&dev);
    assert!(s1 > 0);

    let v2 = payload("b-v2", 32 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-2.img", &v2, 2);
    rollout_to_all(&setup, &s, "v2", "board-a/fw-2.img");
    let bundle = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "bundle",
            "create",
            "--device",
            &dev.id,
            "--server",
            &s.url,
            "--credential",
            &setup.fleet,
        ];
        args.extend_from_slice(extra);
        args.push(out.to_str().unwrap());
        let o = custody(&args);
        assert!(
            o.status.success(),
            "bundle create: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let install = |file: &Path| {
        let (c, v, e) = dev.run(&["install-bundle", file.to_str().unwrap(), "--json"]);
        assert!(c == 0 || c == 2, "install-bundle ({c}): {e}");
        (c, v)
    };

    // Without a proof from the device's stored size: deferred, named.
    let b = bundle("no-since.cbundle", &[]);
    let (c, v) = install(&b);
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "deferred", "{v}");
    let why = v["action"]["reason"].as_str().unwrap();
    assert!(why.contains(&format!("--log-since {s1}")), "{why}");
    assert_eq!(stored_size(&dev), s1);

    // Without evidence at all: a target the log does not prove, refused
    // and reported.
    let b = bundle("no-log.cbundle", &["--no-log"]);
    let (c, v) = install(&b);
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "refused", "{v}");
    assert!(
        v["action"]["reason"]
            .as_str()
            .unwrap()
            .contains("not in the log"),
        "{v}"
    );
    let (_, st, _) = dev.run(&["status", "--json"]);
    assert!(
        st["pending_attacks"].to_string().contains("not_in_log"),
        "{st}"
    );

    // With the proof from its size: installed, the checkpoint advanced.
    let since = s1.to_string();
    let b = bundle(
        "since.cbundle",
        &["--log-since", "1", "--log-since", &since],
    );
    let (c, v) = install(&b);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(dev.current_payload(), v2);
    assert!(stored_size(&dev) > s1);
}

#[test]
fn tuf_client_checks_the_log_before_writing_a_target() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let proxy = Proxy::start(&s.url);
    let setup = Setup::new(&s);
    let v1 = payload("c-v1", 16 * 1024);
    stage_and_publish(&setup, &s, "board-a/fw-1.img", &v1, 1);
    let root = http(&s.url, "GET", "/repos/main/metadata/1.root.json", None, b"");
    assert_eq!(root.status, 200);
    let root_file = tmp.path().join("root.json");
    std::fs::write(&root_file, &root.body).unwrap();
    let meta = tmp.path().join("meta");
    let o = custody(&[
        "client",
        "--metadata-dir",
        meta.to_str().unwrap(),
        "init",
        root_file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vkey = log_vkey(&s);
    let murl = format!("{}/repos/main/metadata/", proxy.url);
    let turl = format!("{}/repos/main/targets/", proxy.url);
    let lurl = format!("{}/log/v1/", proxy.url);
    let download = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "client",
            "--metadata-dir",
            meta.to_str().unwrap(),
            "--metadata-url",
            &murl,
            "--target-base-url",
            &turl,
            "--target-dir",
            out.to_str().unwrap(),
            "--target-name",
            "board-a/fw-1.img",
            "--log",
            &lurl,
            "--log-key",
            &vkey,
            "--json",
        ];
        args.extend_from_slice(extra);
        args.push("download");
        let o = custody(&args);
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code().unwrap_or(-1), v)
    };
    let empty = |d: &Path| std::fs::read_dir(d).map_or(true, |mut r| r.next().is_none());

    // Not in the log: refused, nothing written.
    proxy.set(|m, p| is_evidence(m, p).then(|| (404, b"{}".to_vec())));
    let out = tmp.path().join("out-refused");
    let (c, v) = download(&out, &[]);
    assert_eq!(c, 1, "{v}");
    assert_eq!(v["kind"], "not_in_log", "{v}");
    assert!(empty(&out), "nothing written");

    // The honest log: written, the checkpoint kept next to the metadata.
    proxy.pass();
    let out = tmp.path().join("out");
    let (c, v) = download(&out, &[]);
    assert_eq!(c, 0, "{v}");
    assert!(v["targets"][0]["log"]["index"].is_u64(), "{v}");
    assert!(meta.join("log-checkpoint").exists());
    let file = v["targets"][0]["file"].as_str().unwrap();
    assert_eq!(std::fs::read(file).unwrap(), v1);

    // One witness required, none cosigned: refused (not an attack kind).
    let wkey = tmp.path().join("w.key");
    let o = custody(&[
        "witness",
        "--key",
        wkey.to_str().unwrap(),
        "--new-key",
        "witness.test/w1",
    ]);
    let wvkey = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let out = tmp.path().join("out-k1");
    let (c, v) = download(&out, &["--witness", &wvkey]);
    assert_eq!(c, 1, "{v}");
    assert_eq!(v["kind"], "log_too_few_cosignatures", "{v}");
    assert!(empty(&out), "nothing written");
}
