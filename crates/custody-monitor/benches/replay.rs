//! Replay throughput of the monitor's CPU side on a 1,000,000-entry log:
//! parse each entry, append it to the Frontier, run the rules (goal:
//! ≥ 20,000 entries/s on 2 cores). Fetching bundles is not included.

use std::collections::BTreeMap;
use std::time::Instant;

use custody_log::entry::{EntryBody, LogEntry};
use custody_log::frontier::Frontier;
use custody_monitor::{Config, Monitor, State};

fn entries(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let t = 1_800_000_000 + i as i64 * 60;
            let body = match i % 4 {
                0 => EntryBody::AdminAction {
                    identity: "ci".into(),
                    action: "repo.publish".into(),
                    repo: Some(format!("repo-{}", i % 50)),
                    target: None,
                    outcome: "ok".into(),
                    detail: String::new(),
                },
                1 => EntryBody::TargetPublish {
                    repo: format!("repo-{}", i % 50),
                    name: format!("fw/{i}.bin"),
                    hashes: BTreeMap::from([("sha256".to_owned(), format!("{i:064x}"))]),
                    length: 1,
                    release_counter: Some(i),
                    signing_keyids: vec!["k".repeat(64)],
                    provenance_sha256: None,
                    targets_version: Some(i),
                },
                2 => EntryBody::AssignmentDelivered {
                    device_id: format!("{:064x}", i % 100_000),
                    target: format!("fw/{}.bin", i - 1),
                    hashes: BTreeMap::new(),
                    release_counter: Some(i),
                    delivered_at: t,
                },
                _ => EntryBody::InstallReport {
                    device_id: format!("{:064x}", i % 100_000),
                    target: format!("fw/{}.bin", i - 2),
                    outcome: "installed".into(),
                    manifest_sha256: "00".repeat(32),
                    manifest: None,
                    device_key: None,
                },
            };
            LogEntry::new(t, body).to_bytes().unwrap_or_default()
        })
        .collect()
}

fn main() {
    let n = std::env::var("CUSTODY_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64);
    let log = entries(n);
    let bytes: usize = log.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut frontier = Frontier::new();
    let mut m = Monitor::new(Config::default(), State::default());
    let mut alerts = 0usize;
    for (i, e) in log.iter().enumerate() {
        frontier.push_entry(e);
        if let Ok(entry) = LogEntry::from_bytes(e) {
            alerts += m.observe(i as u64, &entry).len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let state = serde_json::to_vec(&m.state).map(|v| v.len()).unwrap_or(0);
    println!(
        "monitor replay: {n} entries ({:.1} MB) in {secs:.2} s = {:.0} entries/s on one thread; {alerts} alerts; root {}; saved state {:.1} MB",
        bytes as f64 / 1e6,
        n as f64 / secs,
        hex_prefix(&frontier.root()),
        state as f64 / 1e6
    );
}

fn hex_prefix(h: &[u8; 32]) -> String {
    h.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
