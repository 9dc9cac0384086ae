//! The README's first command must work: `custody demo` runs the whole flow
//! and exits 0 only if every expected outcome happened.
mod common;

use common::cli::command;

#[test]
fn demo_runs_the_whole_chain_and_refuses_the_tampered_payload() {
    let keep = tempfile::tempdir().expect("temp dir");
    let dir = keep.path().join("demo");
    let out = command()
        .args(["demo", "--payload-mib", "1", "--keep"])
        .arg(&dir)
        .output()
        .expect("run custody demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for line in [
        "device-a (sensor-hub-v2) committed sensor-hub/firmware-2.4.0.img",
        "device-b (gateway-x86) committed gateway/firmware-7.1.0.img",
        "device-a refused it",
        "differs from the signed hash",
        "device-a still runs sensor-hub/firmware-2.4.0.img",
        "attack_detected sensor-hub/firmware-2.5.0.img",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The device's active slot holds exactly the signed 2.4.0 payload.
    let payload = std::fs::read(dir.join("devices/device-a/current/payload")).expect("payload");
    let built = std::fs::read(dir.join("build/sensor-hub_firmware-2.4.0.img")).expect("build");
    assert_eq!(
        payload, built,
        "active slot does not hold the verified release"
    );
}
