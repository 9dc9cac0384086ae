//! The sans-IO refresh driver (`Refresh`): its request pattern (python-tuf
//! ngclient's), the writes it asks for, and the attacks it stops, each fed
//! through the driver as a caller would.

mod common;

use std::collections::BTreeMap;

use common::*;
use custody_tuf::{Error, ErrorKind, Limits, Refresh, Source, Step, StoreWrite, TargetsCheck};
use serde_json::json;

/// A repository (remote files by name) and a client store (role → bytes).
#[derive(Default)]
struct World {
    remote: BTreeMap<String, Vec<u8>>,
    local: BTreeMap<String, Vec<u8>>,
    /// "L role" / "R file max_bytes", in order
    requests: Vec<String>,
}

impl World {
    fn new(repo: &Repo) -> Self {
        let mut w = World::default();
        w.local.insert("root".into(), repo.root.clone());
        w.serve(repo);
        w
    }

    fn serve(&mut self, repo: &Repo) {
        self.remote
            .insert("timestamp.json".into(), repo.timestamp.clone());
        self.remote
            .insert("1.snapshot.json".into(), repo.snapshot.clone());
        self.remote
            .insert("1.targets.json".into(), repo.targets.clone());
    }

    fn start(&self, limits: Limits) -> Refresh {
        Refresh::new(&self.local["root"], limits, now()).unwrap()
    }

    /// Drive `r` to its next non-fetch step. `persist_each_step`: apply
    /// writes after every step (custody-client); else leave them in `r`.
    fn drive(&mut self, r: &mut Refresh, persist_each_step: bool) -> Result<Step, Error> {
        loop {
            let f = match r.step()? {
                Step::Fetch(f) => f,
                other => return Ok(other),
            };
            let bytes = match f.source {
                Source::Local => {
                    self.requests.push(format!("L {}", f.role));
                    self.local.get(&f.role).cloned()
                }
                Source::Remote => {
                    self.requests
                        .push(format!("R {} {}", f.file_name, f.max_bytes));
                    self.remote.get(&f.file_name).cloned()
                }
            };
            r.provide(bytes.as_deref())?;
            if persist_each_step {
                self.apply(r.take_writes());
            }
        }
    }

    fn apply(&mut self, writes: Vec<StoreWrite>) {
        for w in writes {
            match w {
                StoreWrite::Persist { role, bytes } => {
                    self.local.insert(role, bytes);
                }
                StoreWrite::Remove { role } => {
                    self.local.remove(&role);
                }
            }
        }
    }

    fn refresh(&mut self) -> Result<Refresh, Error> {
        let mut r = self.start(Limits::default());
        assert_eq!(self.drive(&mut r, true)?, Step::Refreshed);
        Ok(r)
    }

    fn take_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.requests)
    }
}

fn max_root() -> u64 {
    Limits::default().max_root_bytes
}

#[test]
fn first_refresh_asks_in_python_tuf_order_and_persists_what_it_verified() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let r = w.refresh().unwrap();
    let l = Limits::default();
    assert_eq!(
        w.take_requests(),
        [
            format!("R 2.root.json {}", max_root()),
            "L timestamp".into(),
            format!("R timestamp.json {}", l.max_timestamp_bytes),
            "L snapshot".into(),
            // the timestamp signed the snapshot's length: that is the bound
            format!("R 1.snapshot.json {}", repo.snapshot.len()),
            "L targets".into(),
            format!("R 1.targets.json {}", l.max_targets_bytes),
        ]
    );
    assert_eq!(w.local["timestamp"], repo.timestamp);
    assert_eq!(w.local["snapshot"], repo.snapshot);
    assert_eq!(w.local["targets"], repo.targets);
    assert!(r.is_refreshed());
    assert_eq!(r.trusted().targets().unwrap().targets.len(), 1);
}

#[test]
fn still_final_local_snapshot_and_targets_are_not_fetched_again() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    w.refresh().unwrap();
    w.take_requests();
    let mut r = w.start(Limits::default());
    assert_eq!(w.drive(&mut r, false).unwrap(), Step::Refreshed);
    assert_eq!(
        w.take_requests(),
        [
            format!("R 2.root.json {}", max_root()),
            "L timestamp".into(),
            format!("R timestamp.json {}", Limits::default().max_timestamp_bytes),
            "L snapshot".into(),
            "L targets".into(),
        ]
    );
    // same timestamp version: nothing to persist
    assert!(r.take_writes().is_empty());
}

/// targets delegates `team/d` (d/*), which lists `d/x.bin`; the role's
/// bytes are returned beside the repository.
fn team_repo() -> (Repo, Vec<u8>) {
    let keys = Keys::generate();
    let dkey = TestKey::generate();
    let role = envelope(
        &targets_signed(1, FAR, &[("d/x.bin", b"x")], None),
        &[&dkey],
    );
    let targets = envelope(
        &targets_signed(
            1,
            FAR,
            &[],
            Some(delegations(
                &[&dkey],
                vec![role_entry("team/d", &dkey, &["d/*"], false)],
            )),
        ),
        &[&keys.targets],
    );
    let snapshot = envelope(
        &snapshot_signed(
            1,
            FAR,
            &[("targets", 1, None), ("team/d", 1, Some(role.as_slice()))],
        ),
        &[&keys.snapshot],
    );
    let timestamp = envelope(
        &timestamp_signed(1, FAR, 1, Some(&snapshot)),
        &[&keys.timestamp],
    );
    let repo = Repo {
        root: envelope(&root_signed(1, FAR, &keys), &[&keys.root]),
        keys,
        timestamp,
        snapshot,
        targets,
    };
    (repo, role)
}

/// A client refreshed against [`team_repo`] (which serves `team/d`), no
/// delegated role loaded yet, its requests so far forgotten.
fn refreshed_team() -> (World, Refresh, Vec<u8>) {
    let (repo, role) = team_repo();
    let mut w = World::new(&repo);
    w.remote.insert("1.team%2Fd.json".into(), role.clone());
    let r = w.refresh().unwrap();
    w.take_requests();
    (w, r, role)
}

/// The requests that load `team/d` (`role`'s bytes) for the first time.
fn team_requests(role: &[u8]) -> [String; 2] {
    [
        "L team/d".to_owned(),
        format!("R 1.team%2Fd.json {}", role.len()),
    ]
}

#[test]
fn lookup_loads_delegated_roles_on_demand() {
    let (mut w, mut r, role) = refreshed_team();
    r.lookup("d/x.bin");
    match w.drive(&mut r, true).unwrap() {
        Step::Found { role, target } => {
            assert_eq!(role, "team/d");
            assert_eq!(target.length, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.take_requests(), team_requests(&role));
    assert_eq!(w.local["team/d"], role);
    assert_eq!(r.delegated_roles(), ["team/d"]);
    // a second lookup: already verified through this delegator, no request
    r.lookup("d/y.bin");
    assert_eq!(
        w.drive(&mut r, true).unwrap(),
        Step::NotFound {
            limit_reached: false
        }
    );
    assert!(w.take_requests().is_empty());
}

#[test]
fn load_delegated_verifies_a_named_role_on_an_independent_clone() {
    let (mut w, mut r, role) = refreshed_team();
    let mut copy = r.clone();
    copy.load_delegated("team/d", "targets").unwrap();
    assert_eq!(w.drive(&mut copy, false).unwrap(), Step::Refreshed);
    assert_eq!(w.take_requests(), team_requests(&role));
    assert_eq!(copy.delegated_roles(), ["team/d"]);
    assert!(r.delegated_roles().is_empty(), "the original is untouched");
    // a role the snapshot does not list: refused before any remote request
    r.load_delegated("team/e", "targets").unwrap();
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(matches!(e, Error::MissingMeta { .. }), "{e}");
    assert_eq!(w.take_requests(), ["L team/e"]);
    // after a failure, or during a lookup, nothing more is loaded
    let e = r.load_delegated("team/d", "targets").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Order, "{e}");
    copy.lookup("d/x.bin");
    let e = copy.load_delegated("team/d", "targets").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Order, "{e}");
}

// ---- attacks ---------------------------------------------------------------

#[test]
fn rollback_against_the_stored_timestamp_is_refused_and_nothing_is_written() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let ts5 = envelope(
        &timestamp_signed(5, FAR, 1, Some(&repo.snapshot)),
        &[&repo.keys.timestamp],
    );
    w.local.insert("timestamp".into(), ts5.clone());
    // the repository (or a man in the middle) serves version 1
    let mut r = w.start(Limits::default());
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(e.is_rollback(), "{e}");
    assert!(r.take_writes().is_empty());
    assert_eq!(w.local["timestamp"], ts5);
    // the refresh is over
    assert_eq!(r.step().unwrap_err().kind(), ErrorKind::Order);
}

#[test]
fn freeze_expired_timestamp_is_refused() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let stale = envelope(
        &timestamp_signed(1, PAST, 1, Some(&repo.snapshot)),
        &[&repo.keys.timestamp],
    );
    w.remote.insert("timestamp.json".into(), stale);
    let mut r = w.start(Limits::default());
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(e.is_expired(), "{e}");
    assert!(r.take_writes().is_empty());
}

#[test]
fn mix_and_match_snapshot_is_refused() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    // a validly signed snapshot of the same version and length that is
    // not the one the timestamp names (its hashes differ)
    let other = envelope(
        &snapshot_signed(1, "2031-01-01T00:00:00Z", &[("targets", 1, None)]),
        &[&repo.keys.snapshot],
    );
    assert_eq!(other.len(), repo.snapshot.len());
    w.remote.insert("1.snapshot.json".into(), other);
    let mut r = w.start(Limits::default());
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(e.is_mix_and_match(), "{e}");
    // only the timestamp was verified
    let writes = r.take_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].role(), "timestamp");
}

#[test]
fn endless_data_beyond_the_bound_of_the_step_is_refused() {
    let repo = simple_repo();
    let w = World::new(&repo);
    let mut r = w.start(Limits::default());
    // go to the snapshot request, then answer with one byte too many
    loop {
        match r.step().unwrap() {
            Step::Fetch(f) if f.role == "snapshot" && f.source == Source::Remote => {
                assert_eq!(f.max_bytes, repo.snapshot.len() as u64);
                assert_eq!(f.version, Some(1));
                let mut long = repo.snapshot.clone();
                long.push(b' ');
                let e = r.provide(Some(&long)).unwrap_err();
                assert!(
                    matches!(e, Error::TooLarge { ref role, limit } if role == "snapshot" && limit == repo.snapshot.len() as u64),
                    "{e}"
                );
                return;
            }
            Step::Fetch(f) => {
                let b = match f.source {
                    Source::Local => w.local.get(&f.role).cloned(),
                    Source::Remote => w.remote.get(&f.file_name).cloned(),
                };
                r.provide(b.as_deref()).unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn oversized_local_file_is_ignored_not_fatal() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let limits = Limits {
        max_timestamp_bytes: repo.timestamp.len() as u64,
        ..Limits::default()
    };
    w.local.insert("timestamp".into(), vec![b' '; 10_000]);
    let mut r = w.start(limits);
    assert_eq!(w.drive(&mut r, true).unwrap(), Step::Refreshed);
}

#[test]
fn fast_forward_recovery_discards_local_timestamp_and_snapshot() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    // the device trusts timestamp/snapshot v9 signed with a key that leaked
    let snap9 = envelope(
        &snapshot_signed(9, FAR, &[("targets", 1, None)]),
        &[&repo.keys.snapshot],
    );
    let ts9 = envelope(
        &timestamp_signed(9, FAR, 9, Some(&snap9)),
        &[&repo.keys.timestamp],
    );
    w.local.insert("timestamp".into(), ts9);
    w.local.insert("snapshot".into(), snap9);
    // root v2 rotates the timestamp and snapshot keys; the repository
    // starts again at version 1
    let keys2 = Keys {
        root: TestKey::generate(),
        timestamp: TestKey::generate(),
        snapshot: TestKey::generate(),
        targets: TestKey::generate(),
    };
    let mut k2 = root_signed(2, FAR, &keys2);
    // keep the old targets key so the old targets stay valid
    k2["keys"][repo.keys.targets.id.clone()] = repo.keys.targets.json();
    k2["roles"]["targets"] = json!({"keyids": [repo.keys.targets.id], "threshold": 1});
    let root2 = envelope(&k2, &[&repo.keys.root, &keys2.root]);
    let snap1 = envelope(
        &snapshot_signed(1, FAR, &[("targets", 1, None)]),
        &[&keys2.snapshot],
    );
    let ts1 = envelope(
        &timestamp_signed(1, FAR, 1, Some(&snap1)),
        &[&keys2.timestamp],
    );
    w.remote.insert("2.root.json".into(), root2.clone());
    w.remote.insert("timestamp.json".into(), ts1.clone());
    w.remote.insert("1.snapshot.json".into(), snap1.clone());
    let mut r = w.start(Limits::default());
    assert_eq!(w.drive(&mut r, false).unwrap(), Step::Refreshed);
    let req = w.take_requests();
    assert!(!req.contains(&"L timestamp".to_owned()), "{req:?}");
    assert!(!req.contains(&"L snapshot".to_owned()), "{req:?}");
    let writes = r.take_writes();
    let roles: Vec<String> = writes
        .iter()
        .map(|w| match w {
            StoreWrite::Persist { role, .. } => format!("persist {role}"),
            StoreWrite::Remove { role } => format!("remove {role}"),
        })
        .collect();
    assert_eq!(
        roles,
        [
            "persist root",
            "remove timestamp",
            "remove snapshot",
            "persist timestamp",
            "persist snapshot",
            "persist targets"
        ]
    );
    w.apply(writes);
    assert_eq!(w.local["root"], root2);
    assert_eq!(w.local["timestamp"], ts1);
}

#[test]
fn root_walk_stops_at_max_root_rotations() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    for v in 2..=10 {
        w.remote.insert(
            format!("{v}.root.json"),
            envelope(&root_signed(v, FAR, &repo.keys), &[&repo.keys.root]),
        );
    }
    let limits = Limits {
        max_root_rotations: 3,
        ..Limits::default()
    };
    let mut r = w.start(limits);
    assert_eq!(w.drive(&mut r, true).unwrap(), Step::Refreshed);
    let roots = w
        .take_requests()
        .into_iter()
        .filter(|r| r.contains("root.json"))
        .count();
    assert_eq!(roots, 3);
    assert_eq!(r.trusted().root().version, 4);
}

#[test]
fn root_signed_by_an_attacker_is_refused_and_not_persisted() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let evil = Keys::generate();
    w.remote.insert(
        "2.root.json".into(),
        envelope(&root_signed(2, FAR, &evil), &[&evil.root]),
    );
    let mut r = w.start(Limits::default());
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(e.is_signature(), "{e}");
    assert!(r.take_writes().is_empty());
}

#[test]
fn missing_timestamp_is_an_error_not_the_end_of_the_walk() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    w.remote.remove("timestamp.json");
    let mut r = w.start(Limits::default());
    let e = w.drive(&mut r, false).unwrap_err();
    assert!(
        matches!(e, Error::Missing { ref role, ref file } if role == "timestamp" && file == "timestamp.json"),
        "{e}"
    );
}

#[test]
fn provide_without_a_request_is_an_order_error() {
    let repo = simple_repo();
    let w = World::new(&repo);
    let mut r = w.start(Limits::default());
    assert_eq!(r.provide(Some(b"{}")).unwrap_err().kind(), ErrorKind::Order);
}

// ---- the targets hook --------------------------------------------------------

/// The caller's own error type.
#[derive(Debug)]
struct NotMine;

impl std::fmt::Display for NotMine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bound to another device")
    }
}
impl std::error::Error for NotMine {}

fn refuse_version(v: u64) -> TargetsCheck {
    Box::new(move |t| {
        if t.version == v {
            Err(Box::new(NotMine))
        } else {
            Ok(())
        }
    })
}

#[test]
fn targets_hook_refuses_before_the_role_is_accepted_or_persisted() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    let mut r = w
        .start(Limits::default())
        .with_targets_check(refuse_version(1));
    let e = w.drive(&mut r, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    let Error::Refused { role, source } = e else {
        panic!()
    };
    assert_eq!(role, "targets");
    assert!(source.downcast::<NotMine>().is_ok());
    assert!(r.trusted().targets().is_none());
    let writes = r.take_writes();
    assert!(writes.iter().all(|w| w.role() != "targets"), "{writes:?}");
}

#[test]
fn local_targets_refused_by_the_hook_are_replaced_from_the_repository() {
    let repo = simple_repo();
    let mut w = World::new(&repo);
    w.refresh().unwrap();
    // the stored targets v1 no longer pass the caller's check: the local
    // copy is not used, the repository's is asked for (and refused too)
    w.take_requests();
    let mut r = w
        .start(Limits::default())
        .with_targets_check(refuse_version(1));
    let e = w.drive(&mut r, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    let req = w.take_requests();
    assert_eq!(
        &req[req.len() - 2..],
        [
            "L targets".to_owned(),
            format!("R 1.targets.json {}", Limits::default().max_targets_bytes)
        ]
    );
}
