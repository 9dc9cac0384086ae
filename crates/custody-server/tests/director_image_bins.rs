//! The director assigns targets that live in delegated roles: here TAP 15
//! hash bins of a hosted image repository. The director looks a target up
//! the way a device does (custody-tuf's delegation search, each bin
//! verified against the delegation), so it neither refuses what a device
//! would accept nor assigns what it would refuse.

mod common;
mod director_common;

use director_common::{fleet_binned, verify_director, Device};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_in_a_hash_bin_is_assigned_and_delivered() {
    let f = fleet_binned(16).await;
    f.publish(&[
        ("fw/1.0.bin", b"firmware one".as_slice(), 1),
        ("fw/2.0.bin", b"firmware two".as_slice(), 2),
    ])
    .await;
    // The top-level targets role lists no target: they are in the bins.
    let top = f.s.get("/repos/main/metadata/1.targets.json", &[]).await;
    assert_eq!(top.status, 200, "{}", top.text());
    let top: Value = serde_json::from_slice(&top.body).unwrap();
    assert_eq!(top["signed"]["targets"], json!({}), "{top}");

    let mut dev = Device::new("board-a", "fleet-a");
    let token = f.token("fleet-a").await;
    let r = f.enrol(&mut dev, &token).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let e = custody_director::wire::EnrolResponse::from_bytes(&r.body).unwrap();

    let r = f
        .fleet_api(
            "PUT",
            &format!("/api/v1/fleet/devices/{}/pin", dev.id),
            Some(json!({"target": "fw/2.0.bin", "reason": "canary"})),
        )
        .await;
    assert_eq!(r.status, 200, "pin a binned target: {}", r.text());
    let (r, c) = f.checkin(&mut dev).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bound = verify_director(&e.director_root, &c.unwrap(), &dev).unwrap();
    let t = bound
        .iter()
        .find(|t| t.name == "fw/2.0.bin")
        .expect("fw/2.0.bin delivered");
    assert_eq!(t.length, b"firmware two".len() as u64);
    assert_eq!(t.release_counter, 2);

    // A name no bin lists is refused, naming the target and why.
    let r = f
        .fleet_api(
            "PUT",
            &format!("/api/v1/fleet/devices/{}/pin", dev.id),
            Some(json!({"target": "fw/3.0.bin", "reason": "typo"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("fw/3.0.bin") && r.text().contains("no role on its delegation path"),
        "{}",
        r.text()
    );
}
