//! Delegation and target-search rules, each fed the attack or the shape it handles.

mod common;

use std::collections::BTreeMap;

use common::*;
use custody_tuf::{Error, ErrorKind, SearchStep, TargetFile, TargetSearch, TrustedMetadata};
use serde_json::{json, Value};

/// A repository whose top-level targets has `top_delegations`, plus
/// delegated roles given as (name, signed, signers).
struct DRepo {
    trusted: TrustedMetadata,
    files: BTreeMap<String, Vec<u8>>,
}

fn drepo(top_delegations: Value, roles: Vec<(&str, Value, Vec<&TestKey>)>) -> DRepo {
    let keys = Keys::generate();
    let root = envelope(&root_signed(1, FAR, &keys), &[&keys.root]);
    let targets = envelope(
        &targets_signed(1, FAR, &[], Some(top_delegations)),
        &[&keys.targets],
    );
    let mut files = BTreeMap::new();
    let mut meta: Vec<(String, u64)> = vec![("targets".into(), 1)];
    for (name, signed, signers) in roles {
        files.insert(name.to_owned(), envelope(&signed, &signers));
        meta.push((name.to_owned(), signed["version"].as_u64().unwrap()));
    }
    let meta_ref: Vec<(&str, u64, Option<&[u8]>)> =
        meta.iter().map(|(n, v)| (n.as_str(), *v, None)).collect();
    let snapshot = envelope(&snapshot_signed(1, FAR, &meta_ref), &[&keys.snapshot]);
    let timestamp = envelope(&timestamp_signed(1, FAR, 1, None), &[&keys.timestamp]);
    let mut trusted = TrustedMetadata::new(&root).unwrap();
    trusted.update_timestamp(&timestamp, now()).unwrap();
    trusted.update_snapshot(&snapshot, now(), false).unwrap();
    trusted.update_targets(&targets, now()).unwrap();
    DRepo { trusted, files }
}

/// Drive a lookup like the client does. Returns the result and the loads made.
type Lookup = (
    Result<Option<(String, TargetFile)>, Error>,
    Vec<(String, String)>,
    bool,
);

fn lookup(r: &mut DRepo, path: &str, max: usize) -> Lookup {
    let mut s = TargetSearch::new(path, max);
    let mut loads = Vec::new();
    for _ in 0..1000 {
        match s.next(&r.trusted) {
            Err(e) => return (Err(e), loads, s.limit_reached()),
            Ok(SearchStep::Found { role, target }) => {
                return (Ok(Some((role, target))), loads, s.limit_reached())
            }
            Ok(SearchStep::NotFound) => return (Ok(None), loads, s.limit_reached()),
            Ok(SearchStep::Load { role, delegator }) => {
                loads.push((role.clone(), delegator.clone()));
                let Some(bytes) = r.files.get(&role) else {
                    panic!("test repo has no file for {role}")
                };
                if let Err(e) = r
                    .trusted
                    .update_delegated_targets(bytes, &role, &delegator, now())
                {
                    return (Err(e), loads, s.limit_reached());
                }
            }
        }
    }
    panic!("search did not terminate");
}

fn found_in(r: &mut DRepo, path: &str) -> Option<String> {
    lookup(r, path, 32).0.unwrap().map(|(role, _)| role)
}

#[test]
fn delegated_target_found() {
    let ka = TestKey::generate();
    let mut r = drepo(
        delegations(&[&ka], vec![role_entry("A", &ka, &["a/*"], false)]),
        vec![(
            "A",
            targets_signed(1, FAR, &[("a/x.txt", b"x")], None),
            vec![&ka],
        )],
    );
    assert_eq!(found_in(&mut r, "a/x.txt").as_deref(), Some("A"));
    assert_eq!(found_in(&mut r, "a/missing"), None);
    // pattern does not match: A is never loaded for b/
    let (res, loads, _) = lookup(&mut r, "b/x.txt", 32);
    assert!(res.unwrap().is_none());
    assert!(loads.is_empty());
}

#[test]
fn wrong_delegation_key_rejected() {
    let ka = TestKey::generate();
    let attacker = TestKey::generate();
    let mut r = drepo(
        delegations(&[&ka], vec![role_entry("A", &ka, &["*"], false)]),
        vec![(
            "A",
            targets_signed(1, FAR, &[("x", b"x")], None),
            vec![&attacker],
        )],
    );
    let (res, _, _) = lookup(&mut r, "x", 32);
    let e = res.unwrap_err();
    assert!(
        matches!(e, Error::ThresholdNotMet { ref role, ref delegator, .. } if role == "A" && delegator == "targets"),
        "{e}"
    );
}

#[test]
fn terminating_delegation_stops_backtracking() {
    let ka = TestKey::generate();
    let kb = TestKey::generate();
    let mk = |term: bool| {
        drepo(
            delegations(
                &[&ka, &kb],
                vec![
                    role_entry("A", &ka, &["*"], term),
                    role_entry("B", &kb, &["*"], false),
                ],
            ),
            vec![
                ("A", targets_signed(1, FAR, &[], None), vec![&ka]),
                ("B", targets_signed(1, FAR, &[("f", b"f")], None), vec![&kb]),
            ],
        )
    };
    let mut r = mk(true);
    let (res, loads, _) = lookup(&mut r, "f", 32);
    assert!(res.unwrap().is_none(), "terminating A must hide B");
    assert_eq!(loads, vec![("A".to_owned(), "targets".to_owned())]);
    let mut r = mk(false);
    assert_eq!(found_in(&mut r, "f").as_deref(), Some("B"));
}

#[test]
fn preorder_depth_first_priority() {
    // targets -> A -> A1 (has f=v1), targets -> B (has f=v2): A1 wins.
    let k = TestKey::generate();
    let mut r = drepo(
        delegations(
            &[&k],
            vec![
                role_entry("A", &k, &["*"], false),
                role_entry("B", &k, &["*"], false),
            ],
        ),
        vec![
            (
                "A",
                targets_signed(
                    1,
                    FAR,
                    &[],
                    Some(delegations(
                        &[&k],
                        vec![role_entry("A1", &k, &["*"], false)],
                    )),
                ),
                vec![&k],
            ),
            (
                "A1",
                targets_signed(1, FAR, &[("f", b"v1")], None),
                vec![&k],
            ),
            ("B", targets_signed(1, FAR, &[("f", b"v2")], None), vec![&k]),
        ],
    );
    assert_eq!(found_in(&mut r, "f").as_deref(), Some("A1"));
}

#[test]
fn max_delegations_cap() {
    // chain r0 -> r1 -> ... -> r39, target only in r39
    let k = TestKey::generate();
    let n = 40;
    let mut roles = Vec::new();
    for i in 0..n {
        let d = (i + 1 < n).then(|| {
            delegations(
                &[&k],
                vec![role_entry(&format!("r{}", i + 1), &k, &["*"], false)],
            )
        });
        let t: &[(&str, &[u8])] = if i == n - 1 { &[("f", b"f")] } else { &[] };
        roles.push((format!("r{i}"), targets_signed(1, FAR, t, d)));
    }
    let roles_ref: Vec<(&str, Value, Vec<&TestKey>)> = roles
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone(), vec![&k]))
        .collect();
    let mut r = drepo(
        delegations(&[&k], vec![role_entry("r0", &k, &["*"], false)]),
        roles_ref,
    );
    let (res, loads, limit) = lookup(&mut r, "f", 32);
    assert!(res.unwrap().is_none());
    assert!(limit, "limit must be reported");
    assert_eq!(
        loads.len(),
        32,
        "top-level targets + 32 delegated roles visited, no more"
    );
    let (res, _, limit) = lookup(&mut r, "f", 64);
    assert_eq!(res.unwrap().unwrap().0, "r39");
    assert!(!limit);
}

#[test]
fn delegation_cycle_terminates() {
    let k = TestKey::generate();
    let mut r = drepo(
        delegations(&[&k], vec![role_entry("A", &k, &["*"], false)]),
        vec![
            (
                "A",
                targets_signed(
                    1,
                    FAR,
                    &[],
                    Some(delegations(&[&k], vec![role_entry("B", &k, &["*"], false)])),
                ),
                vec![&k],
            ),
            (
                "B",
                targets_signed(
                    1,
                    FAR,
                    &[],
                    Some(delegations(
                        &[&k],
                        vec![
                            role_entry("A", &k, &["*"], false),
                            role_entry("B", &k, &["*"], false),
                        ],
                    )),
                ),
                vec![&k],
            ),
        ],
    );
    let (res, loads, limit) = lookup(&mut r, "f", 32);
    assert!(res.unwrap().is_none());
    assert!(!limit, "the cycle ends by the visited set, not the cap");
    assert!(loads.len() <= 4, "{loads:?}");
}

/// The stricter rule: a cached delegated role is verified against the
/// delegator in the current lookup path, not the one that loaded it first.
#[test]
fn cached_delegated_role_is_reverified_for_current_delegator() {
    let ka = TestKey::generate();
    let kb = TestKey::generate();
    let kc1 = TestKey::generate();
    let kc2 = TestKey::generate();
    let top = delegations(
        &[&ka, &kb],
        vec![
            role_entry("A", &ka, &["a/*"], false),
            role_entry("B", &kb, &["b/*"], false),
        ],
    );
    let a = targets_signed(
        1,
        FAR,
        &[],
        Some(delegations(
            &[&kc1],
            vec![role_entry("C", &kc1, &["*/*"], false)],
        )),
    );
    let b = targets_signed(
        1,
        FAR,
        &[],
        Some(delegations(
            &[&kc2],
            vec![role_entry("C", &kc2, &["*/*"], false)],
        )),
    );
    let c = targets_signed(1, FAR, &[("a/f", b"1"), ("b/f", b"2")], None);

    // C signed only by A's key for it: found via A, rejected via B even though cached.
    let mut r = drepo(
        top.clone(),
        vec![
            ("A", a.clone(), vec![&ka]),
            ("B", b.clone(), vec![&kb]),
            ("C", c.clone(), vec![&kc1]),
        ],
    );
    assert_eq!(found_in(&mut r, "a/f").as_deref(), Some("C"));
    assert!(r.trusted.is_verified_by("C", "A"));
    let (res, loads, _) = lookup(&mut r, "b/f", 32);
    assert!(
        loads.contains(&("C".to_owned(), "B".to_owned())),
        "C must be re-verified for B: {loads:?}"
    );
    let e = res.unwrap_err();
    assert!(
        matches!(e, Error::ThresholdNotMet { ref role, ref delegator, .. } if role == "C" && delegator == "B"),
        "{e}"
    );
    // And the other order.
    let mut r = drepo(
        top.clone(),
        vec![
            ("A", a.clone(), vec![&ka]),
            ("B", b.clone(), vec![&kb]),
            ("C", c.clone(), vec![&kc1]),
        ],
    );
    assert!(lookup(&mut r, "b/f", 32).0.is_err());
    assert_eq!(found_in(&mut r, "a/f").as_deref(), Some("C"));

    // Signed by both delegations' keys: found through both.
    let mut r = drepo(
        top,
        vec![
            ("A", a, vec![&ka]),
            ("B", b, vec![&kb]),
            ("C", c, vec![&kc1, &kc2]),
        ],
    );
    assert_eq!(found_in(&mut r, "a/f").as_deref(), Some("C"));
    assert_eq!(found_in(&mut r, "b/f").as_deref(), Some("C"));
    assert!(r.trusted.is_verified_by("C", "A") && r.trusted.is_verified_by("C", "B"));
}

#[test]
fn same_role_with_different_content_rejected() {
    // A and B both delegate C to the same key; C was verified via A. A
    // different C (same version, validly signed) arriving via B is refused:
    // one role has one content per snapshot.
    let ka = TestKey::generate();
    let kb = TestKey::generate();
    let kc = TestKey::generate();
    let top = delegations(
        &[&ka, &kb],
        vec![
            role_entry("A", &ka, &["*"], false),
            role_entry("B", &kb, &["*"], false),
        ],
    );
    let d = targets_signed(
        1,
        FAR,
        &[],
        Some(delegations(
            &[&kc],
            vec![role_entry("C", &kc, &["*"], false)],
        )),
    );
    let mut r = drepo(
        top,
        vec![
            ("A", d.clone(), vec![&ka]),
            ("B", d, vec![&kb]),
            ("C", targets_signed(1, FAR, &[], None), vec![&kc]),
        ],
    );
    let (a, b, c) = (
        r.files["A"].clone(),
        r.files["B"].clone(),
        r.files["C"].clone(),
    );
    r.trusted
        .update_delegated_targets(&a, "A", "targets", now())
        .unwrap();
    r.trusted
        .update_delegated_targets(&c, "C", "A", now())
        .unwrap();
    r.trusted
        .update_delegated_targets(&b, "B", "targets", now())
        .unwrap();
    let other = envelope(&targets_signed(1, FAR, &[("f", b"evil")], None), &[&kc]);
    let e = r
        .trusted
        .update_delegated_targets(&other, "C", "B", now())
        .unwrap_err();
    assert!(matches!(e, Error::InconsistentRole { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Delegation);
    assert!(!r.trusted.is_verified_by("C", "B"));
    // the same bytes are fine
    r.trusted
        .update_delegated_targets(&c, "C", "B", now())
        .unwrap();
    assert!(r.trusted.is_verified_by("C", "B"));
}

#[test]
fn not_delegated_role_rejected() {
    let ka = TestKey::generate();
    let mut r = drepo(
        delegations(&[&ka], vec![role_entry("A", &ka, &["*"], false)]),
        vec![
            ("A", targets_signed(1, FAR, &[], None), vec![&ka]),
            ("Z", targets_signed(1, FAR, &[], None), vec![&ka]),
        ],
    );
    let e = r
        .trusted
        .update_delegated_targets(&r.files["Z"].clone(), "Z", "targets", now())
        .unwrap_err();
    assert!(matches!(e, Error::NotDelegated { .. }), "{e}");
    // delegator not loaded yet
    let e = r
        .trusted
        .update_delegated_targets(&r.files["Z"].clone(), "Z", "A", now())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Order, "{e}");
    // root delegates only targets
    let e = r
        .trusted
        .update_delegated_targets(&r.files["A"].clone(), "A", "root", now())
        .unwrap_err();
    assert!(matches!(e, Error::NotDelegated { .. }), "{e}");
}

#[test]
fn delegated_role_missing_from_snapshot_rejected() {
    let ka = TestKey::generate();
    let mut r = drepo(
        delegations(&[&ka], vec![role_entry("A", &ka, &["*"], false)]),
        vec![],
    );
    r.files.insert(
        "A".into(),
        envelope(&targets_signed(1, FAR, &[("f", b"f")], None), &[&ka]),
    );
    let e = lookup(&mut r, "f", 32).0.unwrap_err();
    assert!(
        matches!(e, Error::MissingMeta { ref file, .. } if file == "A.json"),
        "{e}"
    );
}

#[test]
fn path_hash_prefix_delegation() {
    let k = TestKey::generate();
    let h = custody_tuf::crypto::sha256_hex(b"some/target");
    let entry = |prefix: &str| json!({"name": "H", "keyids": [k.id], "threshold": 1, "path_hash_prefixes": [prefix]});
    let mut r = drepo(
        delegations(&[&k], vec![entry(&h[..2])]),
        vec![(
            "H",
            targets_signed(1, FAR, &[("some/target", b"t")], None),
            vec![&k],
        )],
    );
    assert_eq!(found_in(&mut r, "some/target").as_deref(), Some("H"));
    let other = if h.starts_with('0') { "1" } else { "0" };
    let mut r = drepo(
        delegations(&[&k], vec![entry(other)]),
        vec![(
            "H",
            targets_signed(1, FAR, &[("some/target", b"t")], None),
            vec![&k],
        )],
    );
    assert_eq!(found_in(&mut r, "some/target"), None);
}

#[test]
fn succinct_hash_bins() {
    let k = TestKey::generate();
    let succinct = json!({"keys": {k.id.clone(): k.json()}, "succinct_roles": {"keyids": [k.id], "threshold": 1, "bit_length": 5, "name_prefix": "bin"}});
    let s: custody_tuf::SuccinctRoles =
        serde_json::from_value(succinct["succinct_roles"].clone()).unwrap();
    let path = "pkg/file-1.tgz";
    let bin = s.role_for_target(path);
    assert_eq!(bin.len(), "bin-".len() + 2);
    let mut r = drepo(
        succinct.clone(),
        vec![(
            bin.as_str(),
            targets_signed(1, FAR, &[(path, b"p")], None),
            vec![&k],
        )],
    );
    assert_eq!(found_in(&mut r, path), Some(bin.clone()));
    // a name outside the bins is not delegated
    for bad in ["bin-20", "bin-1", "bin-0g", "bin-AA", "bins-00"] {
        let e = r
            .trusted
            .update_delegated_targets(b"{}", bad, "targets", now())
            .unwrap_err();
        assert!(matches!(e, Error::NotDelegated { .. }), "{bad}: {e}");
    }
    // wrong key for a bin
    let evil = TestKey::generate();
    let mut r = drepo(
        succinct,
        vec![(
            bin.as_str(),
            targets_signed(1, FAR, &[(path, b"p")], None),
            vec![&evil],
        )],
    );
    assert!(lookup(&mut r, path, 32).0.unwrap_err().is_signature());
}

#[test]
fn invalid_delegations_rejected_at_parse() {
    let k = TestKey::generate();
    let keys = Keys::generate();
    let root = envelope(&root_signed(1, FAR, &keys), &[&keys.root]);
    let bad = [
        json!({"keys": {}, "roles": [{"name": "root", "keyids": [], "threshold": 1, "paths": []}]}),
        json!({"keys": {}, "roles": [role_entry("A", &k, &["*"], false), role_entry("A", &k, &["*"], false)]}),
        json!({"keys": {}, "roles": [{"name": "A", "keyids": [k.id], "threshold": 0, "paths": []}]}),
        json!({"keys": {}, "roles": [{"name": "A", "keyids": [k.id], "threshold": 1, "paths": [], "path_hash_prefixes": []}]}),
        json!({"keys": {}}),
        json!({"keys": {}, "roles": [], "succinct_roles": {"keyids": [], "threshold": 1, "bit_length": 3, "name_prefix": "b"}}),
        json!({"keys": {}, "succinct_roles": {"keyids": [], "threshold": 1, "bit_length": 33, "name_prefix": "b"}}),
    ];
    for d in bad {
        let targets = envelope(
            &targets_signed(1, FAR, &[], Some(d.clone())),
            &[&keys.targets],
        );
        let snapshot = envelope(
            &snapshot_signed(1, FAR, &[("targets", 1, None)]),
            &[&keys.snapshot],
        );
        let mut t = TrustedMetadata::new(&root).unwrap();
        t.update_timestamp(
            &envelope(&timestamp_signed(1, FAR, 1, None), &[&keys.timestamp]),
            now(),
        )
        .unwrap();
        t.update_snapshot(&snapshot, now(), false).unwrap();
        let e = t.update_targets(&targets, now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{d}: {e}");
    }
}

/// The traversal orders tuf-conformance expects (test_graph_traversal),
/// looking up a missing path. `loads` is every Load step; the roles a client
/// must fetch from the network are the first loads of each role (a repeated
/// role is a re-verification against another delegator, served from the
/// client's local copy).
#[test]
fn traversal_orders_match_tuf_conformance() {
    type Edge = (&'static str, &'static str, &'static [&'static str], bool);
    let cases: Vec<(&str, Vec<Edge>, Vec<&str>)> = vec![
        ("basic", vec![("targets", "A", &["*"], false)], vec!["A"]),
        (
            "single-level",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
            ],
            vec!["A", "B"],
        ),
        (
            "two-level",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("B", "C", &["*"], false),
            ],
            vec!["A", "B", "C"],
        ),
        (
            "dfs",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*"], false),
                ("A", "D", &["*"], false),
            ],
            vec!["A", "C", "D", "B"],
        ),
        (
            "dfs3",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*"], false),
                ("C", "D", &["*"], false),
            ],
            vec!["A", "C", "D", "B"],
        ),
        (
            "term2",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*"], true),
                ("A", "D", &["*"], false),
            ],
            vec!["A", "C"],
        ),
        (
            "term3",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*"], true),
                ("C", "D", &["*"], false),
            ],
            vec!["A", "C", "D"],
        ),
        (
            "paths2",
            vec![
                ("targets", "A", &["*.py"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*"], false),
            ],
            vec!["B"],
        ),
        (
            "paths3",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("A", "C", &["*.py"], false),
                ("C", "D", &["*"], false),
            ],
            vec!["A", "B"],
        ),
        (
            "cycle",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("B", "C", &["*"], false),
                ("C", "D", &["*"], false),
                ("D", "B", &["*"], false),
            ],
            vec!["A", "B", "C", "D"],
        ),
        (
            "third",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("B", "C", &["*"], false),
                ("A", "C", &["*"], false),
            ],
            vec!["A", "C", "B"],
        ),
        (
            "third-paths",
            vec![
                ("targets", "A", &["*"], false),
                ("targets", "B", &["*"], false),
                ("B", "C", &["*"], false),
                ("A", "C", &["*.py"], false),
            ],
            vec!["A", "B", "C"],
        ),
    ];
    for (name, edges, expected_fetches) in cases {
        // one key per role, shared by every delegation to it (the role is signed by it)
        let mut names: Vec<&str> = edges
            .iter()
            .flat_map(|e| [e.0, e.1])
            .filter(|n| *n != "targets")
            .collect();
        names.sort();
        names.dedup();
        let keys: BTreeMap<&str, TestKey> =
            names.iter().map(|n| (*n, TestKey::generate())).collect();
        let deleg_of = |delegator: &str| -> Option<Value> {
            let roles: Vec<Value> = edges
                .iter()
                .filter(|e| e.0 == delegator)
                .map(|e| role_entry(e.1, &keys[e.1], e.2, e.3))
                .collect();
            if roles.is_empty() {
                return None;
            }
            let ks: Vec<&TestKey> = edges
                .iter()
                .filter(|e| e.0 == delegator)
                .map(|e| &keys[e.1])
                .collect();
            Some(delegations(&ks, roles))
        };
        let roles: Vec<(&str, Value, Vec<&TestKey>)> = names
            .iter()
            .map(|n| (*n, targets_signed(1, FAR, &[], deleg_of(n)), vec![&keys[n]]))
            .collect();
        let mut r = drepo(deleg_of("targets").unwrap(), roles);
        let (res, loads, limit) = lookup(&mut r, "missingpath", 32);
        assert!(res.unwrap().is_none() && !limit, "{name}");
        let mut fetched: Vec<&str> = Vec::new();
        for (role, _) in &loads {
            if !fetched.contains(&role.as_str()) {
                fetched.push(role);
            }
        }
        assert_eq!(fetched, expected_fetches, "{name}: loads {loads:?}");
    }
}
