//! Issue 13, defect 1, end to end: another device's director metadata,
//! swapped into a check-in answer on the path (a relay or a TLS-terminating
//! proxy), must change nothing this device trusts.
//!
//! A real `custody serve`, two agents A (board-a) and B (board-b), and a
//! tampering proxy on loopback in front of the server. A checks in a dozen
//! times, so its director versions run far ahead of B's. Then the proxy
//! replaces the `director` field of one answer to B with A's latest
//! director metadata (validly signed by the director, bound to A). B must
//! refuse it and report an attack, keep its trusted director directory
//! byte-identical, and its next honest check-in must succeed with no new
//! attack report (before the fix, B persisted A's timestamp/snapshot/targets
//! and every honest answer after that was refused as a rollback).

mod agent_support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use agent_support::proxy::{Proxy, Request};
use agent_support::*;
use serde_json::{json, Value};

/// What the proxy remembers and does to check-in answers.
#[derive(Default)]
struct Tamper {
    /// device id of A (its answers are remembered)
    a: String,
    /// device id of B (one answer is rewritten when armed)
    b: String,
    /// A's latest director metadata set
    latest_a: Option<Value>,
    /// swap the next answer to B
    armed: bool,
    swapped: usize,
}

/// The proxy's rewrite: remember A's check-in answers; swap A's latest
/// director metadata into one answer to B when armed.
fn swap_director(tamper: &Mutex<Tamper>, req: &Request, status: u16, out: Vec<u8>) -> Vec<u8> {
    if !(req.method == "POST" && req.path.starts_with("/device/v1/checkin") && status == 200) {
        return out;
    }
    let device = req
        .header(custody_director::wire::headers::DEVICE)
        .unwrap_or_default();
    let mut t = tamper.lock().unwrap();
    let mut answer: Value = serde_json::from_slice(&out).unwrap();
    if device == t.a {
        t.latest_a = Some(answer["director"].clone());
    } else if device == t.b && t.armed {
        t.armed = false;
        t.swapped += 1;
        answer["director"] = t.latest_a.clone().expect("A checked in");
        return serde_json::to_vec(&answer).unwrap();
    }
    out
}

fn enroll_at(url: &str, dir: &Path, name: &str, hw: &str, token: &str) -> Agent {
    Agent::enroll_at(url, dir, name, hw, token, PAYLOAD_NOT_EMPTY, &[])
}

fn director_version(dir: &Path, role: &str) -> u64 {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{role}.json"))).unwrap()).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn attack_count(setup: &Setup, s: &Server, id: &str) -> usize {
    let v = setup.fleet(
        s,
        "GET",
        &format!("/api/v1/fleet/attacks?device={id}"),
        None,
    );
    v.as_array()
        .unwrap_or_else(|| panic!("attacks list: {v}"))
        .len()
}

#[test]
fn another_devices_director_metadata_changes_nothing_this_device_trusts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let proxy = Proxy::start(&s.url);
    let tamper: Arc<Mutex<Tamper>> = Arc::default();
    let t = tamper.clone();
    proxy.rewrite(move |req, status, out| swap_director(&t, req, status, out));
    let setup = Setup::new(&s);
    let fw = payload("bind-fw-1", 16 * 1024);
    setup.stage_release(&s, "board-a/fw-1.img", &fw, "board-a", 1);
    setup.publish(&s);
    let tokens = setup.enrolment_tokens(&s, "lab", 2);
    let a = enroll_at(&proxy.url, tmp.path(), "a", "board-a", &tokens[0]);
    let b = enroll_at(&proxy.url, tmp.path(), "b", "board-b", &tokens[1]);
    {
        let mut t = tamper.lock().unwrap();
        t.a = a.id.clone();
        t.b = b.id.clone();
    }
    rollout(
        &setup,
        &s,
        "v1",
        "board-a/fw-1.img",
        "board-a",
        json!([{"percent": 100.0}]),
        "s",
    );

    // B checks in once, honestly.
    let (c, v) = b.check();
    assert_eq!(
        (c, &v["action"]["result"]),
        (0, &json!("up_to_date")),
        "{v}"
    );
    // A checks in a dozen times: its director versions run ahead.
    for i in 0..12 {
        let (c, v) = a.check();
        assert_eq!(c, 0, "A check-in {i}: {v}");
    }
    assert_eq!(a.installed(), Some(("board-a/fw-1.img".to_owned(), 1)));
    let b_dir = b.state.join("director");
    let a_ts = director_version(&a.state.join("director"), "timestamp");
    let b_ts = director_version(&b_dir, "timestamp");
    assert!(a_ts > b_ts + 5, "A {a_ts} must be well ahead of B {b_ts}");
    let before = tree(&b_dir);
    let attacks_before = attack_count(&setup, &s, &b.id);

    // One answer to B carries A's latest director metadata.
    tamper.lock().unwrap().armed = true;
    let (c, v) = b.check();
    assert_eq!(tamper.lock().unwrap().swapped, 1);
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "refused", "{v}");
    assert_eq!(v["action"]["subject"], "director", "{v}");
    let reason = v["action"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&a.id) || reason.contains("board-a"),
        "{reason}"
    );
    assert_eq!(v["attacks_delivered"], 1, "reported at once: {v}");
    assert_eq!(attack_count(&setup, &s, &b.id), attacks_before + 1);
    assert_eq!(b.installed(), None);
    // Nothing B trusts changed: not a single byte of its director store.
    assert_eq!(
        tree(&b_dir),
        before,
        "B's trusted director directory changed"
    );

    // B's next honest answer (its own, lower versions) is accepted.
    let (c, v) = b.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "up_to_date", "{v}");
    assert_eq!(v["attacks_delivered"], 0, "{v}");
    assert_eq!(attack_count(&setup, &s, &b.id), attacks_before + 1);
    assert!(director_version(&b_dir, "timestamp") < a_ts);
    let st = b.run(&["status", "--json"]).1;
    assert_eq!(st["pending_attacks"], json!([]), "{st}");
}
