//! custody-monitor: the release monitor's rules, as pure functions over
//! the transparency log's entries and a small state, with no IO.
//!
//! A signed malicious update can look normal to every verifier; what gives
//! it away is its shape. [`Monitor::observe`] takes each log entry exactly
//! once, in index order, and returns the alerts it raises. Each alert
//! names its rule, the entries that triggered it and a stable id (the same
//! entries always give the same id, so a receiver can de-duplicate after a
//! crash and a replay). The state is serialisable: the process that
//! follows the log (custody-client's `monitor`) saves it with the index it
//! reached.
//!
//! Rules ([`Rule`]):
//! - **release timing**: a publish outside the repository's configured
//!   windows, or (learned) at a weekday and hour this repository never
//!   published at, once it has enough history; a burst of publishes; a
//!   first publish by an identity that never published that repository;
//! - **privilege growth**: a signing key added without one removed; a
//!   credential created with a publish, signing or admin scope; the
//!   provenance policy removed;
//! - **drift**: a target name published again with other bytes; a device
//!   reporting a target no one published;
//! - **recovery**: a device installing a yanked target after the grace
//!   period.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Datelike, Timelike, Utc};
use custody_log::entry::{EntryBody, LogEntry};
use serde::{Deserialize, Serialize};

/// What a rule watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ReleaseOutsideWindow,
    ReleaseUnusualTime,
    PublishBurst,
    NewPublisher,
    KeyAdded,
    PrivilegedCredential,
    ProvenanceRelaxed,
    RepublishedWithOtherBytes,
    UnpublishedInstalled,
    YankedStillInstalled,
    /// the log served a tree that does not extend the one seen before
    LogFork,
    /// the log served a smaller tree than the one seen before
    LogRollback,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::ReleaseOutsideWindow => "release_outside_window",
            Rule::ReleaseUnusualTime => "release_unusual_time",
            Rule::PublishBurst => "publish_burst",
            Rule::NewPublisher => "new_publisher",
            Rule::KeyAdded => "key_added",
            Rule::PrivilegedCredential => "privileged_credential",
            Rule::ProvenanceRelaxed => "provenance_relaxed",
            Rule::RepublishedWithOtherBytes => "republished_with_other_bytes",
            Rule::UnpublishedInstalled => "unpublished_installed",
            Rule::YankedStillInstalled => "yanked_still_installed",
            Rule::LogFork => "log_fork",
            Rule::LogRollback => "log_rollback",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// stable: the rule and the entries that raised it, hashed
    pub id: String,
    pub rule: Rule,
    /// the log indices of the entries that raised it
    pub entries: Vec<u64>,
    /// the time of the entry that raised it (server time, unix seconds)
    pub time: i64,
    /// the repository, device or identity it is about
    pub subject: String,
    pub message: String,
}

impl Alert {
    /// A log-health alert (fork, rollback) about the checkpoint of `size`
    /// that the follower refused at `time`.
    pub fn log_health(rule: Rule, size: u64, time: i64, log: &str, message: String) -> Alert {
        Alert::new(rule, vec![size], time, log, message)
    }

    fn new(rule: Rule, entries: Vec<u64>, time: i64, subject: &str, message: String) -> Alert {
        let key = format!(
            "{}:{}",
            rule.name(),
            entries
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        Alert {
            id: hex::encode(digest.as_ref().get(..16).unwrap_or_default()),
            rule,
            entries,
            time,
            subject: subject.to_owned(),
            message,
        }
    }
}

/// A release window: the weekdays (0 = Monday) and hours (UTC) a
/// repository publishes in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub weekdays: BTreeSet<u32>,
    /// hours of the day, 0..=23
    pub hours: BTreeSet<u32>,
}

/// What the rules need to be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// configured release windows by repository (a repository without one
    /// is learned)
    pub windows: BTreeMap<String, Vec<Window>>,
    /// publishes a repository needs before its usual times are trusted
    pub min_history: u32,
    /// more than `burst_count` publishes of one repository within
    /// `burst_seconds` is a burst
    pub burst_count: usize,
    pub burst_seconds: i64,
    /// how long devices may still install a yanked target after the yank
    pub yank_grace_seconds: i64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            windows: BTreeMap::new(),
            min_history: 8,
            burst_count: 5,
            burst_seconds: 3600,
            yank_grace_seconds: 24 * 3600,
        }
    }
}

/// What the monitor remembers between entries (serialisable with the
/// index it reached).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// the next entry index to observe
    pub next_index: u64,
    /// repository → "weekday:hour" → publishes
    slots: BTreeMap<String, BTreeMap<String, u32>>,
    /// repository → publishes seen
    publishes: BTreeMap<String, u32>,
    /// repository → times of recent publishes
    recent: BTreeMap<String, VecDeque<i64>>,
    /// repository → identities that published it
    publishers: BTreeMap<String, BTreeSet<String>>,
    /// "repo\ttarget" → (sha256, index of the publish entry)
    published: BTreeMap<String, (String, u64)>,
    /// target names ever published (any repository)
    names: BTreeSet<String>,
    /// target → (yank time, index of the yank entry)
    yanked: BTreeMap<String, (i64, u64)>,
}

/// The monitor: configuration and state.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub config: Config,
    pub state: State,
}

fn slot(t: DateTime<Utc>) -> (u32, u32) {
    (t.weekday().num_days_from_monday(), t.hour())
}

fn slot_key((d, h): (u32, u32)) -> String {
    format!("{d}:{h}")
}

impl Monitor {
    pub fn new(config: Config, state: State) -> Monitor {
        Monitor { config, state }
    }

    /// Observe entry `index` (the next one: entries are taken exactly once,
    /// in order; an index other than `state.next_index` is ignored and
    /// raises nothing, so a replay after a crash cannot double an alert).
    pub fn observe(&mut self, index: u64, entry: &LogEntry) -> Vec<Alert> {
        if index != self.state.next_index {
            return Vec::new();
        }
        self.state.next_index += 1;
        let time = entry.time;
        match &entry.body {
            EntryBody::AdminAction {
                identity,
                action,
                repo,
                outcome,
                detail,
                ..
            } if outcome == "ok" => self.admin_action(index, time, identity, action, repo, detail),
            EntryBody::TargetPublish {
                repo, name, hashes, ..
            } => self.target_publish(index, time, repo, name, hashes.get("sha256")),
            EntryBody::KeyChange {
                repo,
                role,
                added_keyids,
                removed_keyids,
                by,
                ..
            } if added_keyids.len() > removed_keyids.len() => vec![Alert::new(
                Rule::KeyAdded,
                vec![index],
                time,
                repo.as_deref().unwrap_or("server"),
                format!(
                    "{} key(s) added to {role} and {} removed, by {by}: the role can now be signed by more keys",
                    added_keyids.len(),
                    removed_keyids.len()
                ),
            )],
            EntryBody::Yank { target, .. } => {
                self.state.yanked.insert(target.clone(), (time, index));
                Vec::new()
            }
            EntryBody::InstallReport {
                device_id,
                target,
                outcome,
                ..
            } if outcome == "installed" => self.installed(index, time, device_id, target),
            _ => Vec::new(),
        }
    }

    fn admin_action(
        &mut self,
        index: u64,
        time: i64,
        identity: &str,
        action: &str,
        repo: &Option<String>,
        detail: &str,
    ) -> Vec<Alert> {
        match (action, repo) {
            ("repo.publish", Some(repo)) => self.publish(index, time, identity, repo),
            ("credential.create", _) => {
                let privileged = ["fleet:admin", "repo:publish", "role:sign:", "provenance:admin"];
                match privileged.iter().find(|p| detail.contains(*p)) {
                    Some(p) => vec![Alert::new(
                        Rule::PrivilegedCredential,
                        vec![index],
                        time,
                        identity,
                        format!("{identity} created a credential with {p}… ({detail})"),
                    )],
                    None => Vec::new(),
                }
            }
            ("provenance.policy.clear", Some(repo)) => vec![Alert::new(
                Rule::ProvenanceRelaxed,
                vec![index],
                time,
                repo,
                format!("{identity} removed the provenance policy of {repo}: uploads are no longer checked against it"),
            )],
            _ => Vec::new(),
        }
    }

    fn publish(&mut self, index: u64, time: i64, identity: &str, repo: &str) -> Vec<Alert> {
        let mut out = Vec::new();
        let at = DateTime::<Utc>::from_timestamp(time, 0).unwrap_or_default();
        let (day, hour) = slot(at);
        let when = at.format("%a %H:%M UTC");
        let seen = self.state.publishes.get(repo).copied().unwrap_or(0);
        let hist = self.state.slots.entry(repo.to_owned()).or_default();
        match self.config.windows.get(repo) {
            Some(ws)
                if !ws
                    .iter()
                    .any(|w| w.weekdays.contains(&day) && w.hours.contains(&hour)) =>
            {
                out.push(Alert::new(
                    Rule::ReleaseOutsideWindow,
                    vec![index],
                    time,
                    repo,
                    format!(
                        "{repo} was published {when}, outside its release windows, by {identity}"
                    ),
                ));
            }
            Some(_) => {}
            None if seen >= self.config.min_history => {
                let near = [(hour + 23) % 24, hour, (hour + 1) % 24];
                let usual = near
                    .iter()
                    .any(|h| hist.get(&slot_key((day, *h))).is_some_and(|n| *n > 0));
                if !usual {
                    out.push(Alert::new(
                        Rule::ReleaseUnusualTime,
                        vec![index],
                        time,
                        repo,
                        format!(
                            "{repo} was published {when} by {identity}; none of its {seen} earlier publishes was within an hour of that weekday and time"
                        ),
                    ));
                }
            }
            None => {}
        }
        *hist.entry(slot_key((day, hour))).or_insert(0) += 1;
        self.state.publishes.insert(repo.to_owned(), seen + 1);

        let recent = self.state.recent.entry(repo.to_owned()).or_default();
        recent.push_back(time);
        while recent
            .front()
            .is_some_and(|t| *t < time - self.config.burst_seconds)
        {
            recent.pop_front();
        }
        if recent.len() == self.config.burst_count + 1 {
            out.push(Alert::new(
                Rule::PublishBurst,
                vec![index],
                time,
                repo,
                format!(
                    "{} publishes of {repo} within {} s (more than {})",
                    recent.len(),
                    self.config.burst_seconds,
                    self.config.burst_count
                ),
            ));
        }

        let publishers = self.state.publishers.entry(repo.to_owned()).or_default();
        if !publishers.is_empty() && !publishers.contains(identity) {
            out.push(Alert::new(
                Rule::NewPublisher,
                vec![index],
                time,
                identity,
                format!(
                    "{identity} published {repo} for the first time (earlier publishers: {})",
                    publishers.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        publishers.insert(identity.to_owned());
        out
    }

    fn target_publish(
        &mut self,
        index: u64,
        time: i64,
        repo: &str,
        name: &str,
        sha256: Option<&String>,
    ) -> Vec<Alert> {
        self.state.names.insert(name.to_owned());
        self.state.yanked.remove(name);
        let Some(sha) = sha256 else {
            return Vec::new();
        };
        let key = format!("{repo}\t{name}");
        let previous = self.state.published.insert(key, (sha.clone(), index));
        match previous {
            Some((old, old_index)) if old != *sha => vec![Alert::new(
                Rule::RepublishedWithOtherBytes,
                vec![old_index, index],
                time,
                repo,
                format!("{repo}: {name} was published again with other bytes (sha256 {old} at entry {old_index}, now {sha})"),
            )],
            _ => Vec::new(),
        }
    }

    fn installed(&mut self, index: u64, time: i64, device: &str, target: &str) -> Vec<Alert> {
        let mut out = Vec::new();
        if !self.state.names.contains(target) {
            out.push(Alert::new(
                Rule::UnpublishedInstalled,
                vec![index],
                time,
                device,
                format!("device {device} reports it installed {target}, which no publish in this log names"),
            ));
        }
        if let Some((yanked_at, yank_index)) = self.state.yanked.get(target) {
            if time > yanked_at + self.config.yank_grace_seconds {
                out.push(Alert::new(
                    Rule::YankedStillInstalled,
                    vec![*yank_index, index],
                    time,
                    device,
                    format!(
                        "device {device} installed {target} {} h after it was yanked (grace {} h)",
                        (time - yanked_at) / 3600,
                        self.config.yank_grace_seconds / 3600
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
