use std::collections::BTreeMap;

use chrono::{Duration, TimeZone};

use super::*;

/// A monitor fed entries in order.
struct Feed {
    m: Monitor,
    index: u64,
}

impl Feed {
    fn new(config: Config) -> Feed {
        Feed {
            m: Monitor::new(config, State::default()),
            index: 0,
        }
    }

    fn push(&mut self, time: DateTime<Utc>, body: EntryBody) -> Vec<Alert> {
        let e = LogEntry::new(time.timestamp(), body);
        let out = self.m.observe(self.index, &e);
        self.index += 1;
        out
    }

    fn publish(&mut self, time: DateTime<Utc>, who: &str, repo: &str) -> Vec<Alert> {
        self.push(time, admin(who, "repo.publish", Some(repo), ""))
    }
}

fn admin(who: &str, action: &str, repo: Option<&str>, detail: &str) -> EntryBody {
    EntryBody::AdminAction {
        identity: who.into(),
        action: action.into(),
        repo: repo.map(str::to_owned),
        target: None,
        outcome: "ok".into(),
        detail: detail.into(),
    }
}

fn target(repo: &str, name: &str, sha: &str) -> EntryBody {
    EntryBody::TargetPublish {
        repo: repo.into(),
        name: name.into(),
        hashes: BTreeMap::from([("sha256".to_owned(), sha.to_owned())]),
        length: 1,
        release_counter: None,
        signing_keyids: vec![],
        provenance_sha256: None,
        targets_version: None,
    }
}

fn report(device: &str, target: &str) -> EntryBody {
    EntryBody::InstallReport {
        device_id: device.into(),
        target: target.into(),
        outcome: "installed".into(),
        manifest_sha256: "00".repeat(32),
        manifest: None,
        device_key: None,
    }
}

fn rules(alerts: &[Alert]) -> Vec<Rule> {
    alerts.iter().map(|a| a.rule).collect()
}

/// Tuesday 2027-01-05 14:00 UTC.
fn tuesday_2pm() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 5, 14, 0, 0).single().unwrap()
}

#[test]
fn a_quiet_history_raises_nothing_and_a_sunday_3am_release_by_a_newcomer_raises_exactly_two() {
    let mut f = Feed::new(Config::default());
    let mut alerts = Vec::new();
    // 90 days of weekly releases, Tuesdays around 14:00, by the CI identity.
    for week in 0..13 {
        let t = tuesday_2pm() + Duration::weeks(week) + Duration::minutes(week * 7 % 50);
        alerts.extend(f.publish(t, "ci:github/acme/fw", "fw"));
        alerts.extend(f.push(t, target("fw", &format!("fw-{week}.bin"), &"ab".repeat(32))));
    }
    assert_eq!(alerts, vec![], "quiet history");
    // Sunday 03:00 by an OIDC subject that never published.
    let sunday = Utc.with_ymd_and_hms(2027, 4, 11, 3, 0, 0).single().unwrap();
    let a = f.publish(sunday, "oidc:evil@example.com", "fw");
    assert_eq!(
        rules(&a),
        vec![Rule::ReleaseUnusualTime, Rule::NewPublisher],
        "{a:#?}"
    );
    assert!(a[0].message.contains("Sun 03:00"), "{}", a[0].message);
    assert_eq!(a[1].subject, "oidc:evil@example.com");
}

#[test]
fn configured_windows_and_bursts() {
    let mut c = Config::default();
    c.windows.insert(
        "fw".into(),
        vec![Window {
            weekdays: [1].into(),
            hours: (9..18).collect(),
        }],
    );
    let mut f = Feed::new(c);
    assert_eq!(f.publish(tuesday_2pm(), "ci", "fw"), vec![]);
    let a = f.publish(tuesday_2pm() + Duration::hours(6), "ci", "fw");
    assert_eq!(rules(&a), vec![Rule::ReleaseOutsideWindow]);
    // Six publishes within an hour: the sixth is a burst, reported once.
    let mut f = Feed::new(Config::default());
    let mut all = Vec::new();
    for i in 0..8 {
        all.extend(f.publish(tuesday_2pm() + Duration::minutes(i * 5), "ci", "app"));
    }
    assert_eq!(rules(&all), vec![Rule::PublishBurst], "{all:#?}");
}

#[test]
fn privilege_growth_fires_on_its_change_and_not_on_a_rotation() {
    let mut f = Feed::new(Config::default());
    let t = tuesday_2pm();
    let key_change = |added: &[&str], removed: &[&str]| EntryBody::KeyChange {
        repo: Some("fw".into()),
        role: "targets".into(),
        action: "rotate".into(),
        added_keyids: added.iter().map(|s| s.to_string()).collect(),
        removed_keyids: removed.iter().map(|s| s.to_string()).collect(),
        by: "ops".into(),
    };
    assert_eq!(f.push(t, key_change(&["k2"], &["k1"])), vec![], "rotation");
    assert_eq!(
        rules(&f.push(t, key_change(&["k3", "k4"], &["k2"]))),
        vec![Rule::KeyAdded]
    );
    let cred = |scopes: &str| {
        admin(
            "root",
            "credential.create",
            None,
            &format!("name \"x\", scopes {scopes}"),
        )
    };
    assert_eq!(f.push(t, cred("audit:read inventory:read")), vec![]);
    assert_eq!(
        rules(&f.push(t, cred("repo:publish@fw"))),
        vec![Rule::PrivilegedCredential]
    );
    assert_eq!(
        rules(&f.push(t, admin("ops", "provenance.policy.clear", Some("fw"), ""))),
        vec![Rule::ProvenanceRelaxed]
    );
    // A refused action raises nothing.
    let mut denied = admin("x", "credential.create", None, "scopes fleet:admin");
    if let EntryBody::AdminAction { outcome, .. } = &mut denied {
        *outcome = "denied".into();
    }
    assert_eq!(f.push(t, denied), vec![]);
}

#[test]
fn drift_and_recovery() {
    let mut f = Feed::new(Config::default());
    let t = tuesday_2pm();
    assert_eq!(f.push(t, target("fw", "a.bin", &"aa".repeat(32))), vec![]);
    // the same bytes again: nothing; other bytes: the two entries named
    assert_eq!(f.push(t, target("fw", "a.bin", &"aa".repeat(32))), vec![]);
    let a = f.push(t, target("fw", "a.bin", &"bb".repeat(32)));
    assert_eq!(rules(&a), vec![Rule::RepublishedWithOtherBytes]);
    assert_eq!(a[0].entries, vec![1, 2]);
    // a device installed something no one published
    assert_eq!(
        rules(&f.push(t, report("dev1", "evil.bin"))),
        vec![Rule::UnpublishedInstalled]
    );
    // yanked: within the grace period nothing, after it an alert
    f.push(
        t,
        EntryBody::Yank {
            repo: "fw".into(),
            target: "a.bin".into(),
            reason: "boot loop".into(),
            by: "ops".into(),
            replacement: None,
        },
    );
    assert_eq!(
        f.push(t + Duration::hours(2), report("dev2", "a.bin")),
        vec![]
    );
    let a = f.push(t + Duration::hours(30), report("dev3", "a.bin"));
    assert_eq!(rules(&a), vec![Rule::YankedStillInstalled]);
    assert_eq!(a[0].subject, "dev3");
}

#[test]
fn each_entry_counts_once_and_alert_ids_are_stable() {
    let mut f = Feed::new(Config::default());
    let t = tuesday_2pm();
    f.push(t, target("fw", "a.bin", &"aa".repeat(32)));
    let a = f.push(t, target("fw", "a.bin", &"bb".repeat(32)));
    // Replaying an entry already seen (a crash between alerting and saving
    // the state, then a resume from an older index) raises nothing new.
    let again = f.m.observe(
        1,
        &LogEntry::new(t.timestamp(), target("fw", "a.bin", &"bb".repeat(32))),
    );
    assert_eq!(again, vec![]);
    // The same entries give the same id in a fresh monitor.
    let mut g = Feed::new(Config::default());
    g.push(t, target("fw", "a.bin", &"aa".repeat(32)));
    let b = g.push(t, target("fw", "a.bin", &"bb".repeat(32)));
    assert_eq!(a[0].id, b[0].id);
    assert_eq!(a[0].id.len(), 32);
    // The state survives a JSON round trip and carries on.
    let saved = serde_json::to_string(&f.m.state).unwrap();
    let state: State = serde_json::from_str(&saved).unwrap();
    assert_eq!(state, f.m.state);
    assert_eq!(state.next_index, 2);
}
