//! `custody agent` refusing updates, against a real `custody serve`: each
//! refusal names its reason in the device's report (and in the fleet API
//! once the device checked in), and the installed version is unchanged.
//!
//! - a payload tampered with on the server (online check-in);
//! - bundles (`custody bundle create` + `custody agent install-bundle`,
//!   the same verification as online): a tampered bundle payload, a bundle
//!   for another device, an expired one, a downgrade, director and image
//!   repository disagreeing, a target built for another hardware id; and a
//!   good bundle that installs.
//!
//! Director metadata for the bundles is signed here with the server's own
//! director keys (`<data-dir>/keys/director/*.pem`): for the good bundle
//! this stands in for a director export, for the bad ones it plays a
//! compromised director; the device's checks are what is under test.

mod agent_support;

use std::path::{Path, PathBuf};

use agent_support::*;
use chrono::{Duration, Utc};
use custody_director::director::{
    build_director_metadata, DeviceDirectorState, DirectorConfig, DirectorSigners, DirectorTarget,
};
use serde_json::{json, Value};

const PASS: &[u8] = b"test passphrase for online keys";

struct Forger {
    targets: custody_keys::keyfile::FileSigner,
    snapshot: custody_keys::keyfile::FileSigner,
    timestamp: custody_keys::keyfile::FileSigner,
    version: u64,
}

impl Forger {
    fn new(data: &Path) -> Forger {
        let k = |n: &str| {
            custody_keys::keyfile::load(&data.join(format!("keys/director/{n}.pem")), PASS).unwrap()
        };
        Forger {
            targets: k("targets"),
            snapshot: k("snapshot"),
            timestamp: k("timestamp"),
            version: 100_000,
        }
    }

    /// Director metadata for `device`, written as files to `dir`.
    fn sign(
        &mut self,
        dir: &Path,
        device: &str,
        hw: &str,
        targets: &[DirectorTarget],
        at: chrono::DateTime<Utc>,
    ) -> PathBuf {
        self.version += 10;
        let prev = DeviceDirectorState {
            targets_version: self.version,
            snapshot_version: self.version,
            timestamp_version: self.version,
        };
        let m = build_director_metadata(
            DirectorSigners {
                targets: &self.targets,
                snapshot: &self.snapshot,
                timestamp: &self.timestamp,
            },
            device,
            hw,
            targets,
            &prev,
            at,
            &DirectorConfig::default(),
        )
        .unwrap();
        let out = dir.join(format!("director-{}", self.version));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("timestamp.json"), &m.timestamp).unwrap();
        std::fs::write(out.join("snapshot.json"), &m.snapshot).unwrap();
        std::fs::write(out.join("targets.json"), &m.targets).unwrap();
        out
    }
}

fn target(name: &str, data: &[u8], counter: u64) -> DirectorTarget {
    DirectorTarget {
        name: name.into(),
        length: data.len() as u64,
        hashes: [("sha256".to_owned(), sha256_hex(data))].into(),
        release_counter: counter,
        rollback_authorization: None,
    }
}

/// A bundle installed by `to`: its transparency-log evidence carries a
/// consistency proof from the checkpoint size `to` stored.
fn bundle(s: &Server, device: &str, director: &Path, out: &Path, to: &Agent) {
    let (_, st, _) = to.run(&["status", "--json"]);
    let since = st["log_size"].as_u64().unwrap_or(0).to_string();
    let o = custody(&[
        "bundle",
        "create",
        "--device",
        device,
        "--server",
        &s.url,
        "--director-metadata",
        director.to_str().unwrap(),
        "--log-since",
        &since,
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "bundle create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn install_bundle(a: &Agent, file: &Path) -> (i32, Value) {
    let (c, v, e) = a.run(&["install-bundle", file.to_str().unwrap(), "--json"]);
    assert!(c == 0 || c == 2, "install-bundle failed ({c}): {e}");
    (c, v)
}

fn refused(v: &Value, needle: &str) {
    assert_eq!(v["action"]["result"], "refused", "{v}");
    let reason = v["action"]["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "expected {needle:?} in {reason}");
}

/// Find the hosted file of `name` under the server's current generation.
fn hosted_target(data: &Path, name: &str) -> PathBuf {
    let base = name.rsplit('/').next().unwrap();
    let mut stack = vec![data
        .join("repos")
        .join(REPO)
        .join("current")
        .join("targets")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!(".{base}"))
            {
                return p;
            }
        }
    }
    panic!("{name} not hosted under {}", data.display());
}

#[test]
fn refusals_keep_the_installed_version_and_report_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let size = 128 * 1024;
    let v1 = payload("a1", size);
    let b1 = payload("b1", size);
    setup.stage_release(&s, "board-a/fw-1.img", &v1, "board-a", 1);
    setup.stage_release(&s, "board-b/fw-1.img", &b1, "board-b", 1);
    setup.publish(&s);
    let tokens = setup.enrolment_tokens(&s, "lab", 2);
    let tok = |i: usize| tokens[i].clone();
    let ok = r#"test -s "$CUSTODY_PAYLOAD""#;
    let dev1 = Agent::enroll(&s, tmp.path(), "dev1", "board-a", &tok(0), ok);
    let dev2 = Agent::enroll(&s, tmp.path(), "dev2", "board-a", &tok(1), ok);
    let all = json!([{"percent": 100.0}]);
    rollout(
        &setup,
        &s,
        "v1",
        "board-a/fw-1.img",
        "board-a",
        all.clone(),
        "v1",
    );
    for a in [&dev1, &dev2] {
        let (c, v) = a.check();
        assert_eq!((c, &v["action"]["result"]), (0, &json!("installed")), "{v}");
    }

    // --- online: a payload tampered with on the server
    let v2 = payload("a2", size);
    setup.stage_release(&s, "board-a/fw-2.img", &v2, "board-a", 2);
    // release 3, for the bundles below (published before the tampering:
    // the server refuses to publish over a blob changed on disk)
    let v3 = payload("a3", size);
    setup.stage_release(&s, "board-a/fw-3.img", &v3, "board-a", 3);
    setup.publish(&s);
    let hosted = hosted_target(&s.data, "board-a/fw-2.img");
    let mut bytes = std::fs::read(&hosted).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&hosted, &bytes).unwrap();
    rollout(&setup, &s, "v2", "board-a/fw-2.img", "board-a", all, "v2");
    let (c, v) = dev1.check();
    assert_eq!(c, 2, "{v}");
    refused(&v, "differs from the signed hash");
    assert_eq!(dev1.installed(), Some(("board-a/fw-1.img".into(), 1)));
    assert_eq!(dev1.current_payload(), v1);
    let d = setup.fleet(
        &s,
        "GET",
        &format!("/api/v1/fleet/devices/{}", dev1.id),
        None,
    );
    let reports = d["reports"].as_array().unwrap();
    assert!(
        reports.iter().any(|r| r["outcome"] == "attack_detected"
            && r["target"] == "board-a/fw-2.img"
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("differs from the signed hash")),
        "{d}"
    );
    assert_eq!(d["installed"]["target"], "board-a/fw-1.img", "{d}");

    // --- bundles for dev2 (on release 1)
    let mut forge = Forger::new(&s.data);
    let work = tmp.path().join("bundles");
    std::fs::create_dir_all(&work).unwrap();
    let now = Utc::now();
    let good = forge.sign(
        &work,
        &dev2.id,
        "board-a",
        &[target("board-a/fw-3.img", &v3, 3)],
        now,
    );
    let good_bundle = work.join("good.cbundle");
    bundle(&s, &dev2.id, &good, &good_bundle, &dev2);

    // a tampered bundle payload (last bytes of the file are the payload)
    let tampered = work.join("tampered.cbundle");
    let mut b = std::fs::read(&good_bundle).unwrap();
    let n = b.len();
    b[n - 10] ^= 1;
    std::fs::write(&tampered, &b).unwrap();
    let (c, v) = install_bundle(&dev2, &tampered);
    assert_eq!(c, 2, "{v}");
    refused(&v, "differs from the signed hash");
    assert_eq!(dev2.installed(), Some(("board-a/fw-1.img".into(), 1)));

    // the good bundle installs (the same target, now with intact bytes)
    let (c, v) = install_bundle(&dev2, &good_bundle);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(dev2.installed(), Some(("board-a/fw-3.img".into(), 3)));
    assert_eq!(dev2.current_payload(), v3);

    let unchanged = || {
        assert_eq!(dev2.installed(), Some(("board-a/fw-3.img".into(), 3)));
        assert_eq!(dev2.current_payload(), v3);
    };

    // a bundle for another device
    let other = forge.sign(
        &work,
        &dev1.id,
        "board-a",
        &[target("board-a/fw-3.img", &v3, 3)],
        now,
    );
    let f = work.join("other.cbundle");
    bundle(&s, &dev1.id, &other, &f, &dev2);
    let (c, v) = install_bundle(&dev2, &f);
    assert_eq!(c, 2, "{v}");
    refused(&v, "not for this device");
    unchanged();

    // an expired bundle: director metadata signed two days ago (1-day expiry)
    let old = forge.sign(
        &work,
        &dev2.id,
        "board-a",
        &[target("board-a/fw-3.img", &v3, 3)],
        now - Duration::days(2),
    );
    let f = work.join("expired.cbundle");
    bundle(&s, &dev2.id, &old, &f, &dev2);
    let (c, v) = install_bundle(&dev2, &f);
    assert_eq!(c, 2, "{v}");
    refused(&v, "expired");
    unchanged();

    // a downgrade without a rollback authorisation
    let down = forge.sign(
        &work,
        &dev2.id,
        "board-a",
        &[target("board-a/fw-1.img", &v1, 1)],
        now,
    );
    let f = work.join("downgrade.cbundle");
    bundle(&s, &dev2.id, &down, &f, &dev2);
    let (c, v) = install_bundle(&dev2, &f);
    assert_eq!(c, 2, "{v}");
    refused(&v, "below the installed 3");
    unchanged();

    // director and image repository disagree (director signs other bytes)
    let mismatch = forge.sign(
        &work,
        &dev2.id,
        "board-a",
        &[target("board-a/fw-3.img", b"other bytes", 3)],
        now,
    );
    let f = work.join("disagree.cbundle");
    bundle(&s, &dev2.id, &mismatch, &f, &dev2);
    let (c, v) = install_bundle(&dev2, &f);
    assert_eq!(c, 2, "{v}");
    refused(&v, "director and image repository disagree");
    unchanged();

    // a target built for another hardware id
    let wrong_hw = forge.sign(
        &work,
        &dev2.id,
        "board-a",
        &[target("board-b/fw-1.img", &b1, 1)],
        now,
    );
    let f = work.join("hardware.cbundle");
    bundle(&s, &dev2.id, &wrong_hw, &f, &dev2);
    let (c, v) = install_bundle(&dev2, &f);
    assert_eq!(c, 2, "{v}");
    refused(&v, "custom.hardware_ids");
    unchanged();

    // every refusal is queued and reaches the server with the next check-in
    let (_, st, _) = dev2.run(&["status", "--json"]);
    let attacks = st["pending_attacks"].as_array().unwrap().len();
    assert!(attacks >= 5, "{st}");
    // the two bundle attempts (tampered: attack_detected; good: installed)
    // are install reports, queued on disk until a server acknowledges them
    assert_eq!(st["queued_reports"], 2, "{st}");
    let (_, v) = dev2.check();
    assert!(v["attacks_delivered"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(v["reports_delivered"], 2, "{v}");
    let (_, st, _) = dev2.run(&["status", "--json"]);
    assert_eq!(
        st["queued_reports"], 0,
        "acknowledged reports are dropped: {st}"
    );
    let d = setup.fleet(
        &s,
        "GET",
        &format!("/api/v1/fleet/devices/{}", dev2.id),
        None,
    );
    let text = d["attacks"].to_string() + &d["reports"].to_string();
    for needle in [
        "not for this device",
        "expired",
        "below the installed 3",
        "disagree",
        "custom.hardware_ids",
        "differs from the signed hash",
    ] {
        assert!(text.contains(needle), "fleet API lacks {needle:?}: {d}");
    }
}
