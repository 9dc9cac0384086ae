//! Real-world fixture: Sigstore's root-signing repository (ECDSA P-256 keys
//! in hex and PEM, keytypes `ecdsa-sha2-nistp256` and `ecdsa`, `-06:00`
//! offsets, fractional seconds, `x-tuf-on-ci-*` unknown fields, a delegated
//! role).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use custody_tuf::{SearchStep, TargetSearch, TargetVerifier, TimestampUpdate, TrustedMetadata};

/// The fixture: `$CUSTODY_SIGSTORE_FIXTURE`, else `shared/` beside the
/// workspace (how CI lays out a clone), else /work/shared.
fn fixture() -> PathBuf {
    let rel = "fixtures/sigstore-root-signing";
    let candidates: Vec<PathBuf> = std::env::var_os("CUSTODY_SIGSTORE_FIXTURE")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared")
                .join(rel),
        ))
        .chain(std::iter::once(PathBuf::from("/work/shared").join(rel)))
        .collect();
    candidates
        .iter()
        .find(|p| p.join("metadata/root_history/1.root.json").exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!("sigstore fixture not found in {candidates:?} (set CUSTODY_SIGSTORE_FIXTURE)")
        })
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixture().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read fixture {}: {e}", p.display()))
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn walk_roots() -> TrustedMetadata {
    let mut t = TrustedMetadata::new(&read("metadata/root_history/1.root.json")).unwrap();
    assert_eq!(t.root().version, 1);
    for v in 2..=15 {
        assert_eq!(t.next_root_filename(), format!("{v}.root.json"));
        let u = t
            .update_root(&read(&format!("metadata/root_history/{v}.root.json")))
            .unwrap_or_else(|e| panic!("root {v}: {e}"));
        assert_eq!(u.version, v);
    }
    // 1 -> 2 moves timestamp/snapshot from offline 3-of-5 to online keys.
    assert!(t.must_discard_timestamp_and_snapshot());
    t
}

#[test]
fn sigstore_full_refresh_and_target() {
    let now = at("2026-08-22T00:00:00Z");
    let mut t = walk_roots();
    assert!(t.consistent_snapshot());
    // root 1's expiry with an offset parsed correctly
    let r1 = TrustedMetadata::new(&read("metadata/root_history/1.root.json")).unwrap();
    assert_eq!(r1.root().expires, at("2021-12-18T19:28:12.990080Z"));

    assert_eq!(
        t.update_timestamp(&read("metadata/timestamp.json"), now)
            .unwrap(),
        TimestampUpdate::Updated
    );
    assert_eq!(
        t.update_timestamp(&read("metadata/timestamp.json"), now)
            .unwrap(),
        TimestampUpdate::Unchanged
    );
    assert_eq!(t.remote_filename("snapshot").unwrap(), "165.snapshot.json");
    t.update_snapshot(&read("metadata/snapshot.json"), now, false)
        .unwrap();
    assert_eq!(t.remote_filename("targets").unwrap(), "14.targets.json");
    t.update_targets(&read("metadata/targets.json"), now)
        .unwrap();

    // A top-level target.
    let mut s = TargetSearch::new("trusted_root.json", 32);
    let SearchStep::Found { role, target } = s.next(&t).unwrap() else {
        panic!("trusted_root.json not found")
    };
    assert_eq!(role, "targets");
    let bytes = read("targets/trusted_root.json");
    let mut v = TargetVerifier::new("trusted_root.json", &target).unwrap();
    for chunk in bytes.chunks(1000) {
        v.update(chunk).unwrap();
    }
    v.finish().unwrap();
    let remote = t.target_remote_path("trusted_root.json", &target);
    assert!(
        remote.ends_with(".trusted_root.json")
            && remote.len() == 64 + 1 + "trusted_root.json".len(),
        "{remote}"
    );

    // A delegated target: registry.npmjs.org/keys.json.
    let mut s = TargetSearch::new("registry.npmjs.org/keys.json", 32);
    let step = s.next(&t).unwrap();
    assert_eq!(
        step,
        SearchStep::Load {
            role: "registry.npmjs.org".into(),
            delegator: "targets".into()
        }
    );
    assert_eq!(
        t.remote_filename("registry.npmjs.org").unwrap(),
        "8.registry.npmjs.org.json"
    );
    t.update_delegated_targets(
        &read("metadata/registry.npmjs.org.json"),
        "registry.npmjs.org",
        "targets",
        now,
    )
    .unwrap();
    let SearchStep::Found { role, target } = s.next(&t).unwrap() else {
        panic!("keys.json not found")
    };
    assert_eq!(role, "registry.npmjs.org");
    TargetVerifier::verify_all(
        "registry.npmjs.org/keys.json",
        &target,
        &read("targets/registry.npmjs.org/keys.json"),
    )
    .unwrap();

    // Terminating delegation: other paths under registry.npmjs.org/ are not found elsewhere.
    let mut s = TargetSearch::new("registry.npmjs.org/other", 32);
    assert_eq!(s.next(&t).unwrap(), SearchStep::NotFound);

    // Unknown fields survived into the typed view.
    assert!(t
        .root()
        .keys
        .values()
        .any(|k| k.unknown.keys().any(|f| f.starts_with("x-tuf-on-ci-"))));

    // Tampered target bytes are rejected.
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    let e = TargetVerifier::verify_all(
        "trusted_root.json",
        &{
            let SearchStep::Found { target, .. } =
                TargetSearch::new("trusted_root.json", 32).next(&t).unwrap()
            else {
                panic!()
            };
            target
        },
        &bad,
    )
    .unwrap_err();
    assert!(e.is_mix_and_match(), "{e}");
}

#[test]
fn sigstore_final_root_expired() {
    let now = at("2026-11-23T00:00:00Z");
    let mut t = walk_roots();
    let e = t
        .update_timestamp(&read("metadata/timestamp.json"), now)
        .unwrap_err();
    assert!(e.is_expired(), "{e}");
    assert_eq!(e.role(), "root");
    let msg = e.to_string();
    assert!(
        msg.contains("root") && msg.contains("expired") && msg.contains("2026-11-20 13:58:18"),
        "{msg}"
    );
}

#[test]
fn sigstore_root_skip_rejected() {
    let mut t = TrustedMetadata::new(&read("metadata/root_history/1.root.json")).unwrap();
    let e = t
        .update_root(&read("metadata/root_history/3.root.json"))
        .unwrap_err();
    // 3 is not signed by enough of root 1's keys, or it's a version skip: either way rejected
    assert!(
        matches!(
            e.kind(),
            custody_tuf::ErrorKind::RootVersionSkip | custody_tuf::ErrorKind::Signature
        ),
        "{e}"
    );
}

/// Typed views keep unknown fields: serialising the typed `signed` gives back
/// exactly the received object (except `expires` strings that were not in
/// the `...Z` form, which authoring normalises: roots 1-3).
#[test]
fn sigstore_typed_round_trip() {
    use custody_tuf::{Metadata, Root, Snapshot, Targets, Timestamp};
    fn check<T: custody_tuf::Signed>(role: &str, bytes: &[u8]) {
        let md = Metadata::<T>::from_bytes(role, bytes).unwrap();
        let back = serde_json::to_value(&md.signed).unwrap();
        assert_eq!(&back, md.signed_value(), "{role} does not round-trip");
        assert_eq!(
            custody_tuf::cjson::canonical_bytes(role, &back).unwrap(),
            md.canonical_signed()
        );
    }
    for v in 4..=15 {
        check::<Root>(
            "root",
            &read(&format!("metadata/root_history/{v}.root.json")),
        );
    }
    check::<Timestamp>("timestamp", &read("metadata/timestamp.json"));
    check::<Snapshot>("snapshot", &read("metadata/snapshot.json"));
    check::<Targets>("targets", &read("metadata/targets.json"));
    check::<Targets>(
        "registry.npmjs.org",
        &read("metadata/registry.npmjs.org.json"),
    );
}
