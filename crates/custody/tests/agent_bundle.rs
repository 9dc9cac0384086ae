//! `custody bundle create --server …` with director metadata exported by a
//! real `custody serve` (`POST /api/v1/fleet/devices/{id}/bundle-metadata`),
//! installed by `custody agent install-bundle`:
//! - the exported bundle installs on the device it was made for;
//! - the same bundle is refused by another device, naming the reason;
//! - the device still checks in online afterwards (the export bumped its
//!   director versions, so the check-in's metadata is newer than the
//!   bundle's, not a rollback);
//! - an unknown device is refused, naming the device and the rule;
//! - every export is in the audit log, and the endpoint is in /openapi.json.

mod agent_support;

use agent_support::*;
use serde_json::{json, Value};

fn install_bundle(a: &Agent, file: &std::path::Path) -> (i32, Value) {
    let (c, v, e) = a.run(&["install-bundle", file.to_str().unwrap(), "--json"]);
    assert!(c == 0 || c == 2, "install-bundle failed ({c}): {e}");
    (c, v)
}

#[test]
fn bundle_from_server_export_installs_on_its_device_only() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("server"));
    let setup = Setup::new(&s);
    let v1 = payload("bundle-a1", 64 * 1024);
    setup.stage_release(&s, "board-a/fw-1.img", &v1, "board-a", 1);
    setup.publish(&s);
    let tokens = setup.enrolment_tokens(&s, "lab", 2);
    let tok = |i: usize| tokens[i].clone();
    let ok = r#"test -s "$CUSTODY_PAYLOAD""#;
    let dev1 = Agent::enroll(&s, tmp.path(), "dev1", "board-a", &tok(0), ok);
    let dev2 = Agent::enroll(&s, tmp.path(), "dev2", "board-a", &tok(1), ok);
    rollout(
        &setup,
        &s,
        "v1",
        "board-a/fw-1.img",
        "board-a",
        json!([{"percent": 100.0}]),
        "v1",
    );

    // export + bundle for dev1, from the server
    let out = tmp.path().join("dev1.cbundle");
    let o = custody(&[
        "bundle",
        "create",
        "--device",
        &dev1.id,
        "--server",
        &s.url,
        "--credential",
        &setup.fleet,
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "bundle create: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // device B refuses A's bundle, naming the reason; nothing installed
    let (c, v) = install_bundle(&dev2, &out);
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["action"]["result"], "refused", "{v}");
    let reason = v["action"]["reason"].as_str().unwrap();
    assert!(reason.contains("not for this device"), "{reason}");
    assert_eq!(dev2.installed(), None);

    // device A installs it
    let (c, v) = install_bundle(&dev1, &out);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(dev1.installed(), Some(("board-a/fw-1.img".into(), 1)));
    assert_eq!(dev1.current_payload(), v1);

    // and still checks in online: the check-in's director metadata has
    // higher versions than the bundle's (no rollback refusal)
    let (c, v) = dev1.check();
    assert_eq!(c, 0, "{v}");
    assert_ne!(v["action"]["result"], "refused", "{v}");
    assert_eq!(dev1.installed(), Some(("board-a/fw-1.img".into(), 1)));

    // an unknown device: the error names the device and the rule
    let unknown = "0".repeat(64);
    let o = custody(&[
        "bundle",
        "create",
        "--device",
        &unknown,
        "--server",
        &s.url,
        "--credential",
        &setup.fleet,
        tmp.path().join("unknown.cbundle").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&unknown) && err.contains("not enrolled"),
        "{err}"
    );

    // a hardware id: one bundle with a director metadata set per device
    let all = tmp.path().join("board-a.cbundle");
    let o = custody(&[
        "bundle",
        "create",
        "--hardware-id",
        "board-a",
        "--server",
        &s.url,
        "--credential",
        &setup.fleet,
        all.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "bundle create --hardware-id: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (c, v) = install_bundle(&dev2, &all);
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["action"]["result"], "installed", "{v}");
    assert_eq!(dev2.installed(), Some(("board-a/fw-1.img".into(), 1)));

    // a suspended device gets no metadata (refusal named, and audited)
    setup.fleet(
        &s,
        "POST",
        &format!("/api/v1/fleet/devices/{}/suspend", dev2.id),
        None,
    );
    let o = custody(&[
        "bundle",
        "create",
        "--device",
        &dev2.id,
        "--server",
        &s.url,
        "--credential",
        &setup.fleet,
        tmp.path().join("suspended.cbundle").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&dev2.id) && err.contains("not active"),
        "{err}"
    );

    // audited: who exported for which device
    let admin = token(&s, s.credential.as_deref().unwrap());
    let r = api(&s, "GET", "/api/v1/audit?limit=1000", &admin, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let exports: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains("fleet.device.bundle_export"))
        .cloned()
        .collect();
    for id in [&dev1.id, &dev2.id] {
        assert!(
            exports
                .iter()
                .any(|e| e.to_string().contains(id.as_str()) && e.to_string().contains("\"ok\"")),
            "no export of {id} in {exports:?}"
        );
    }
    assert!(
        exports
            .iter()
            .any(|e| e.to_string().contains("fleet operator")),
        "the exporter is not named: {exports:?}"
    );

    // in the OpenAPI document
    let doc = http(&s.url, "GET", "/openapi.json", None, b"").text();
    assert!(
        doc.contains("/api/v1/fleet/devices/{id}/bundle-metadata"),
        "bundle-metadata missing from /openapi.json"
    );
}
