use super::*;
use chrono::TimeZone;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, day, 12, 0, 0)
        .single()
        .unwrap()
}

fn key(id: &str) -> KeyRef {
    KeyRef {
        id: id.into(),
        key_type: "ed25519".into(),
        backend: Backend::Offline,
        first_seen: None,
    }
}

fn role(name: &str, kind: Kind, expires_day: u32, present: u64, bin: bool) -> RoleFacts {
    RoleFacts {
        name: name.into(),
        kind,
        version: 3,
        expires: at(expires_day),
        signatures: Signatures { present, needed: 1 },
        keys: vec![key(if bin { "bins" } else { name })],
        bin,
    }
}

#[test]
fn status_at_three_reference_times() {
    let items = repository_items("app", &[role("targets", Kind::Targets, 20, 1, false)]);
    let w = Windows::default();
    let status = |day| assess(&items, &w, at(day))[0].status;
    // targets: 30-day window before Jan 20
    assert_eq!(status(20), Status::Expired);
    assert_eq!(status(25), Status::Expired);
    assert_eq!(status(1), Status::Renew);
    let mut w = Windows::default();
    w.apply("targets=5d").unwrap();
    assert_eq!(assess(&items, &w, at(1))[0].status, Status::Ok);
    assert_eq!(assess(&items, &w, at(16))[0].status, Status::Renew);
    assert_eq!(assess(&items, &w, at(21))[0].status, Status::Expired);
}

#[test]
fn a_role_under_its_threshold_is_drift_and_fails_every_gate() {
    let items = repository_items("app", &[role("targets", Kind::Targets, 28, 0, false)]);
    let mut w = Windows::default();
    w.apply("targets=1d").unwrap();
    let a = assess(&items, &w, at(1));
    assert_eq!(a[0].status, Status::Drift);
    assert_eq!(a[0].why, "0 of 1 signatures");
    assert_eq!(gate(&a, FailOn::Expired).len(), 1);
}

#[test]
fn hash_bins_are_one_item_with_the_earliest_expiry_and_keys_are_listed_once() {
    let mut roles = vec![role("root", Kind::Root, 30, 1, false)];
    for (i, day) in [25, 9, 17].into_iter().enumerate() {
        roles.push(RoleFacts {
            name: format!("bin-{i}"),
            ..role("", Kind::Delegation, day, 1, true)
        });
    }
    let items = repository_items("pypi", &roles);
    let bins: Vec<_> = items.iter().filter(|i| i.kind == Kind::HashBins).collect();
    assert_eq!(bins.len(), 1);
    assert_eq!(bins[0].members, Some(3));
    assert_eq!(bins[0].expires, Some(at(9)));
    assert!(bins[0].detail.contains("bin-1"), "{}", bins[0].detail);
    let keys: Vec<_> = items.iter().filter(|i| i.kind == Kind::Key).collect();
    assert_eq!(keys.len(), 2, "root's key and the bins' key, once each");
    assert!(keys.iter().any(|k| k.detail.ends_with("signs hash bins")));
}

#[test]
fn most_urgent_first_and_the_gate_fails_exactly_when_it_should() {
    let items = repository_items(
        "app",
        &[
            role("root", Kind::Root, 28, 1, false),
            role("timestamp", Kind::Timestamp, 5, 1, false),
            role("snapshot", Kind::Snapshot, 4, 1, false),
        ],
    );
    let w = Windows::default();
    // Jan 1: root renews (60-day window), the others are fine.
    let a = assess(&items, &w, at(1));
    let order: Vec<_> = a.iter().map(|x| (x.status, x.item.name.as_str())).collect();
    assert_eq!(order[0], (Status::Renew, "root"));
    assert_eq!(gate(&a, FailOn::Renew).len(), 1);
    assert!(gate(&a, FailOn::Expired).is_empty());
    // Jan 4, noon: snapshot has expired, timestamp is not yet in its window.
    let a = assess(&items, &w, at(4));
    assert_eq!(a[0].item.name, "snapshot");
    assert_eq!(a[0].status, Status::Expired);
    assert_eq!(gate(&a, FailOn::Expired).len(), 1);
    assert_eq!(counts(&a).get(&Status::Expired), Some(&1));
}

#[test]
fn old_keys_renew_and_scoped_windows_override_the_default() {
    let mut k = Item::new(Kind::Key, "app", "k1");
    k.first_seen = Some(at(1) - Duration::days(400));
    let w = Windows::default();
    let a = assess_one(&k, &w, at(1));
    assert_eq!(a.status, Status::Renew);
    assert!(a.why.contains("400 days old"), "{}", a.why);
    let t = repository_items("app", &[role("timestamp", Kind::Timestamp, 2, 1, false)]);
    let mut w = Windows::default();
    w.apply("app:timestamp=2d").unwrap();
    assert_eq!(assess(&t, &w, at(1))[0].status, Status::Renew);
    w.apply("other:timestamp=9d").unwrap();
    assert_eq!(w.renew("app", Kind::Timestamp), Duration::days(2));
    assert_eq!(w.renew("x", Kind::Timestamp), Duration::hours(12));
}

#[test]
fn bad_window_specs_and_gates_are_refused_naming_the_rule() {
    let mut w = Windows::default();
    for (spec, want) in [
        ("root", "no '='"),
        ("nope=3d", "unknown kind"),
        ("root=3w", "unit"),
        ("root=d", "whole number"),
        (":root=3d", "empty scope"),
        ("root=99999999d", "0..=36500"),
    ] {
        let e = w.apply(spec).unwrap_err().to_string();
        assert!(e.contains(want), "{spec}: {e}");
    }
    assert!("later".parse::<FailOn>().is_err());
    assert_eq!("expired".parse::<FailOn>(), Ok(FailOn::Expired));
}

#[test]
fn json_names_the_status_and_kind_in_snake_case() {
    let items = repository_items("app", &[role("targets", Kind::Targets, 20, 1, false)]);
    let a = assess(&items, &Windows::default(), at(25));
    let v = serde_json::to_value(&a[0]).unwrap();
    assert_eq!(v["status"], "expired");
    assert_eq!(v["kind"], "targets");
    assert_eq!(v["scope"], "app");
    assert!(v["expires_in_seconds"].as_i64().unwrap() < 0);
}
