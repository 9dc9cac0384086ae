//! `custody audit` over what a real director logged for a real agent: a
//! `custody serve` process, one `custody agent` process that enrols, is
//! assigned a release, installs it and reports, then is decommissioned.
//! `audit device` / `who-has` must show the delivery (once, over several
//! check-ins), the install report (its device-signed manifest verified)
//! and the decommission, each with an inclusion proof this test checks
//! on its own against the signed checkpoint; a root rotation of the image
//! repository is one `key_change` entry; `audit verify` must pass.

mod agent_support;

use agent_support::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use custody_keys::Signer as _;
use custody_log::tile::{new_bundles, parse_entry_bundle};
use custody_log::{leaf_hash, verify_inclusion, Hash, LogVerifier, VerifierKey};
use serde_json::{json, Value};

fn json_of(args: &[&str]) -> (i32, Value) {
    let o = custody(args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

/// The log as an auditor fetches it: checkpoint verified with the pinned
/// key, every entry's bytes from the bundles.
fn fetch(s: &Server, vkey: &str) -> (u64, Hash, Vec<Vec<u8>>) {
    let key = VerifierKey::parse(vkey).unwrap();
    let cp = http(&s.url, "GET", "/log/v1/checkpoint", None, b"");
    assert_eq!(cp.status, 200);
    let vc = LogVerifier::new(key.name(), key.clone())
        .unwrap()
        .verify(&cp.body)
        .unwrap();
    let mut entries = Vec::new();
    for b in new_bundles(0, vc.checkpoint.size) {
        let r = http(&s.url, "GET", &format!("/log/v1/{}", b.path()), None, b"");
        assert_eq!(r.status, 200, "{}", b.path());
        entries.extend(
            parse_entry_bundle(&r.body)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec),
        );
    }
    (vc.checkpoint.size, vc.checkpoint.root, entries)
}

/// Each row's inclusion proof verifies for the entry at its index, at a
/// size and root this test verified itself.
fn proofs_verify(rows: &[Value], size: u64, root: &Hash, entries: &[Vec<u8>]) {
    for row in rows {
        let inc = &row["inclusion"];
        let index = inc["index"].as_u64().unwrap();
        assert_eq!(inc["size"].as_u64().unwrap(), size, "{row}");
        assert_eq!(inc["root"].as_str().unwrap(), B64.encode(root), "{row}");
        let proof: Vec<Hash> = inc["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let bytes = &entries[usize::try_from(index).unwrap()];
        verify_inclusion(&leaf_hash(bytes), index, size, &proof, root).unwrap();
        // and the row is that entry
        let e: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(e["type"], row["type"], "{row}");
        assert_eq!(e["time"], row["time"], "{row}");
    }
}

fn of_type<'a>(rows: &'a [Value], t: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["type"] == t).collect()
}

#[test]
fn audit_shows_a_real_agents_delivery_install_and_decommission_with_proofs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let fw = payload("audit-fw1", 64 * 1024);
    let target = "board-a/fw-1.img";
    setup.stage(
        &s,
        target,
        &fw,
        json!({"hardware_ids": ["board-a"], "release_counter": 1}),
    );
    setup.publish(&s);
    let tokens = setup.fleet(
        &s,
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(json!({"group": "lab", "count": 1})),
    );
    let agent = Agent::enroll(
        &s,
        tmp.path(),
        "dev1",
        "board-a",
        tokens["tokens"][0].as_str().unwrap(),
        r#"test -s "$CUSTODY_PAYLOAD""#,
    );
    rollout(
        &setup,
        &s,
        "v1",
        target,
        "board-a",
        json!([{"percent": 100.0}]),
        "v1",
    );
    let (c, v) = agent.check();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    // More check-ins: the report goes out, the same assignment is served
    // again (and must not be logged again).
    for _ in 0..3 {
        let (c, v) = agent.check();
        assert_eq!(c, 0, "{v}");
    }
    assert_eq!(agent.installed(), Some((target.to_string(), 1)));

    // Restart the server process on the same data directory and address:
    // the store remembers the delivery is logged, so serving the same
    // assignment again appends nothing.
    let data = s.data.clone();
    let listen = s.url.trim_start_matches("http://").to_string();
    drop(s);
    let s = start_on(&data, &listen);
    for _ in 0..2 {
        let (c, v) = agent.check();
        assert_eq!(c, 0, "{v}");
    }

    let vkey = std::fs::read_to_string(s.data.join("keys/log/log.vkey")).unwrap();
    let vkey = vkey.trim();
    let common = ["--log", s.url.as_str(), "--log-key", vkey, "--json"];
    let run = |cmd: &[&str]| {
        let mut a: Vec<&str> = cmd.to_vec();
        a.extend(common);
        json_of(&a)
    };

    // audit device: one delivery, one verified install report, enrolment.
    let (c, v) = run(&["audit", "device", &agent.id]);
    assert_eq!(c, 0, "{v}");
    let rows = v["entries"].as_array().unwrap().clone();
    let d = of_type(&rows, "assignment_delivered");
    assert_eq!(d.len(), 1, "one delivery over four check-ins: {v}");
    assert_eq!(d[0]["target"], target);
    assert_eq!(d[0]["release_counter"], 1);
    assert_eq!(d[0]["hashes"]["sha256"], sha256_hex(&fw));
    let r = of_type(&rows, "install_report");
    assert_eq!(r.len(), 1, "{v}");
    assert_eq!(r[0]["outcome"], "installed");
    assert_eq!(r[0]["manifest_check"], "verified", "{v}");
    assert!(
        rows.iter().any(|r| r["action"] == "device.enrol"),
        "enrolment (admin action on the device) is in its history: {v}"
    );
    let (size, root, entries) = fetch(&s, vkey);
    assert_eq!(v["size"].as_u64().unwrap(), size);
    proofs_verify(&rows, size, &root, &entries);

    // who-has: the device received and installed it.
    let (c, v) = run(&["audit", "who-has", target]);
    assert_eq!(c, 0, "{v}");
    let dev = &v["devices"][&agent.id];
    assert_eq!(dev["received"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(dev["reports"][0]["outcome"], "installed", "{v}");
    let rows = v["entries"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{v}");
    let (size, root, entries) = fetch(&s, vkey);
    proofs_verify(&rows, size, &root, &entries);

    // Decommission: logged, in the device's history, the agent refused.
    setup.fleet(
        &s,
        "POST",
        &format!("/api/v1/fleet/devices/{}/decommission", agent.id),
        Some(json!({"reason": "returned by the customer"})),
    );
    let o = custody(&[
        "agent",
        "--state-dir",
        agent.state.to_str().unwrap(),
        "--config",
        agent.config.to_str().unwrap(),
        "check",
        "--once",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("decommissioned"),
        "a decommissioned device's check-in is refused: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (c, v) = run(&["audit", "device", &agent.id]);
    assert_eq!(c, 0, "{v}");
    let rows = v["entries"].as_array().unwrap().clone();
    let dc = of_type(&rows, "decommission");
    assert_eq!(dc.len(), 1, "{v}");
    assert_eq!(dc[0]["reason"], "returned by the customer");
    let (size, root, entries) = fetch(&s, vkey);
    proofs_verify(&rows, size, &root, &entries);

    // A root rotation of the image repository: the targets key is
    // replaced offline (custody-repo on the repository the server hosts),
    // the new key signs targets through the API, that publish goes live:
    // one key_change entry names the role and both key ids.
    let mut setup = setup;
    let new_targets = custody_keys::MemorySigner::generate_ed25519().unwrap();
    let (new_key, new_id) = (new_targets.key().clone(), new_targets.keyid().to_string());
    setup.ring.add(Box::new(new_targets));
    let mut repo =
        custody_repo::repository::Repository::open(&s.data.join("authoring").join(REPO)).unwrap();
    let root_id = repo.root().signed.roles["root"].keyids[0].clone();
    // The repository's online keys (snapshot, timestamp) re-sign; the
    // offline root key signs the new root through the API below.
    let pass = tmp.path().join("online-passphrase");
    std::fs::write(&pass, "test passphrase for online keys").unwrap();
    let mut online =
        custody_repo::keyring::KeyRing::new(custody_keys::passphrase::SecretSource::File(pass));
    repo.change_root_role(
        "targets",
        &[(
            new_key,
            new_id.clone(),
            custody_repo::keyring::KeyLocation::Offline,
        )],
        std::slice::from_ref(&setup.targets_key),
        None,
        false,
        &mut online,
        chrono::Utc::now(),
    )
    .unwrap();
    repo.save().unwrap();
    drop(repo);
    let r = setup.sign(&s, "root", &root_id);
    assert!(
        r["published"].is_null(),
        "targets still needs the new key: {r}"
    );
    let r = setup.sign(&s, "targets", &new_id);
    assert!(
        r["published"]["version"].is_i64(),
        "the rotation went live: {r}"
    );
    let (c, v) = run(&["audit", "verify"]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["entries_by_type"]["key_change"], 1, "{v}");
    let (_, _, entries) = fetch(&s, vkey);
    let kc: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::from_slice::<Value>(e).unwrap())
        .filter(|e| e["type"] == "key_change")
        .collect();
    assert_eq!(kc.len(), 1);
    assert_eq!(kc[0]["repo"], REPO);
    assert_eq!(kc[0]["role"], "targets");
    assert_eq!(kc[0]["action"], "rotate");
    assert_eq!(kc[0]["added_keyids"], json!([new_id]));
    assert_eq!(kc[0]["removed_keyids"], json!([setup.targets_key]));
    assert!(!kc[0]["by"].as_str().unwrap().is_empty());
    // Another publish does not log the same rotation again.
    setup.stage(
        &s,
        "board-a/fw-2.img",
        &payload("audit-fw2", 1024),
        json!({"hardware_ids": ["board-a"], "release_counter": 2}),
    );
    let t = token(&s, &setup.publisher);
    let r = api(
        &s,
        "POST",
        &format!("/api/v1/repos/{REPO}/publish"),
        &t,
        None,
    );
    if r.status == 409 {
        let r = setup.sign(&s, "targets", &new_id);
        assert!(r["published"]["version"].is_i64(), "{r}");
    } else {
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // The whole log replays and every install report verifies.
    let (c, v) = run(&["audit", "verify"]);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["install_reports"]["verified"], 1, "{v}");
    assert_eq!(v["entries_by_type"]["assignment_delivered"], 1, "{v}");
    assert_eq!(v["entries_by_type"]["decommission"], 1, "{v}");
    assert_eq!(v["entries_by_type"]["key_change"], 1, "{v}");
}
