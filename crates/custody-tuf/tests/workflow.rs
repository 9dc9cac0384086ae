//! One test per rejecting rule of the top-level workflow, each feeding the
//! attack the rule stops.

mod common;

use common::*;
use custody_tuf::{Error, ErrorKind, Limits, TargetVerifier, TimestampUpdate, TrustedMetadata};
use serde_json::json;

fn loaded(repo: &Repo) -> TrustedMetadata {
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    t.update_snapshot(&repo.snapshot, now(), false).unwrap();
    t.update_targets(&repo.targets, now()).unwrap();
    t
}

#[test]
fn happy_path() {
    let repo = simple_repo();
    let t = loaded(&repo);
    assert_eq!(t.targets().unwrap().targets.len(), 1);
    assert_eq!(t.remote_filename("snapshot").unwrap(), "1.snapshot.json");
}

// ---- signatures ----------------------------------------------------------

#[test]
fn bad_signature_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    // timestamp signed by the snapshot key (not a timestamp key)
    let ts = envelope(&timestamp_signed(1, FAR, 1, None), &[&repo.keys.snapshot]);
    let e = t.update_timestamp(&ts, now()).unwrap_err();
    assert!(e.is_signature(), "{e}");
    // timestamp with a corrupted signature by the right key id
    let signed = timestamp_signed(1, FAR, 1, None);
    let mut sig = repo.keys.timestamp.sign(&canon(&signed));
    let s = sig["sig"].as_str().unwrap().to_owned();
    sig["sig"] = json!(format!(
        "{}{}",
        if s.starts_with('0') { "1" } else { "0" },
        &s[1..]
    ));
    let e = t
        .update_timestamp(&envelope_with(&signed, vec![sig]), now())
        .unwrap_err();
    assert!(
        matches!(e, Error::ThresholdNotMet { ref role, threshold: 1, valid: 0, .. } if role == "timestamp"),
        "{e}"
    );
    assert!(e.to_string().contains("invalid signatures"), "{e}");
    // signature valid over *different* signed content (tampered field)
    let mut tampered = signed.clone();
    tampered["version"] = json!(2);
    let e = t
        .update_timestamp(
            &envelope_with(&tampered, vec![repo.keys.timestamp.sign(&canon(&signed))]),
            now(),
        )
        .unwrap_err();
    assert!(e.is_signature(), "{e}");
}

#[test]
fn unknown_field_is_signed_over() {
    // Unknown fields are part of the signed bytes: adding one after signing breaks the signature,
    // keeping one that was signed verifies.
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let mut signed = timestamp_signed(1, FAR, 1, None);
    signed["x-custom"] = json!({"nested": ["a", 1]});
    let ok = envelope(&signed, &[&repo.keys.timestamp]);
    t.update_timestamp(&ok, now()).unwrap();
    assert_eq!(
        t.timestamp().unwrap().unknown["x-custom"],
        json!({"nested": ["a", 1]})
    );
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let sig = repo
        .keys
        .timestamp
        .sign(&canon(&timestamp_signed(1, FAR, 1, None)));
    let e = t
        .update_timestamp(&envelope_with(&signed, vec![sig]), now())
        .unwrap_err();
    assert!(e.is_signature(), "{e}");
}

fn root_with_threshold(k: &Keys, extra: &TestKey, threshold: u64) -> serde_json::Value {
    let mut r = root_signed(1, FAR, k);
    r["keys"][extra.id.clone()] = extra.json();
    r["roles"]["root"] = json!({"keyids": [k.root.id, extra.id], "threshold": threshold});
    r
}

#[test]
fn threshold_not_met() {
    let k = Keys::generate();
    let second = TestKey::generate();
    let signed = root_with_threshold(&k, &second, 2);
    let e = TrustedMetadata::new(&envelope(&signed, &[&k.root])).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ThresholdNotMet {
                threshold: 2,
                valid: 1,
                ..
            }
        ),
        "{e}"
    );
    TrustedMetadata::new(&envelope(&signed, &[&k.root, &second])).unwrap();
}

#[test]
fn duplicate_signatures_by_one_key_are_rejected() {
    // Threshold inflation: one key signing twice must not reach 2.
    let k = Keys::generate();
    let second = TestKey::generate();
    let signed = root_with_threshold(&k, &second, 2);
    let msg = canon(&signed);
    let bytes = envelope_with(&signed, vec![k.root.sign(&msg), k.root.sign(&msg)]);
    let e = TrustedMetadata::new(&bytes).unwrap_err();
    assert!(
        matches!(e, Error::DuplicateSignatureKeyId { count: 2, .. }),
        "{e}"
    );
    assert!(e.is_signature(), "{e}");
}

#[test]
fn repeated_keyid_rejected_even_when_threshold_is_met() {
    // Spec: key ids MUST be unique in the signatures array. A valid
    // signature listed twice with threshold 1 is still malformed metadata.
    let k = Keys::generate();
    let signed = root_signed(1, FAR, &k);
    let msg = canon(&signed);
    let sig = k.root.sign(&msg);
    let bytes = envelope_with(&signed, vec![sig.clone(), sig]);
    let e = TrustedMetadata::new(&bytes).unwrap_err();
    assert!(
        matches!(e, Error::DuplicateSignatureKeyId { ref keyid, .. } if *keyid == k.root.id),
        "{e}"
    );
    assert!(e.to_string().contains("unique"), "{e}");
}

#[test]
fn same_key_under_two_keyids_counts_once() {
    let k = Keys::generate();
    let alias = "ab".repeat(32);
    let mut signed = root_signed(1, FAR, &k);
    signed["keys"][alias.clone()] = k.root.json();
    signed["roles"]["root"] = json!({"keyids": [k.root.id, alias], "threshold": 2});
    let msg = canon(&signed);
    let bytes = envelope_with(
        &signed,
        vec![k.root.sign(&msg), k.root.sign_as(&alias, &msg)],
    );
    let e = TrustedMetadata::new(&bytes).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ThresholdNotMet {
                threshold: 2,
                valid: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("repeat an already counted public key"),
        "{e}"
    );
}

#[test]
fn unknown_key_types_are_skipped_not_fatal() {
    let k = Keys::generate();
    let mut signed = root_signed(1, FAR, &k);
    signed["keys"]["ff".repeat(32)] =
        json!({"keytype": "sphincs", "scheme": "sphincs-shake", "keyval": {"pk": "00"}});
    signed["keys"]["ee".repeat(32)] =
        json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "zz"}});
    signed["roles"]["root"] =
        json!({"keyids": [k.root.id, "ff".repeat(32), "ee".repeat(32)], "threshold": 1});
    let msg = canon(&signed);
    let bytes = envelope_with(
        &signed,
        vec![
            k.root.sign(&msg),
            json!({"keyid": "ff".repeat(32), "sig": "00"}),
            json!({"keyid": "ee".repeat(32), "sig": "00"}),
        ],
    );
    TrustedMetadata::new(&bytes).unwrap();
}

// ---- root rotation -------------------------------------------------------

#[test]
fn root_version_skip_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let r3 = envelope(&root_signed(3, FAR, &repo.keys), &[&repo.keys.root]);
    let e = t.update_root(&r3).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RootVersionSkip {
                trusted: 1,
                expected: 2,
                found: 3
            }
        ),
        "{e}"
    );
    let r1 = envelope(&root_signed(1, FAR, &repo.keys), &[&repo.keys.root]);
    assert_eq!(
        t.update_root(&r1).unwrap_err().kind(),
        ErrorKind::RootVersionSkip
    );
}

#[test]
fn root_signed_only_by_new_keys_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let new_keys = Keys::generate();
    let r2 = envelope(&root_signed(2, FAR, &new_keys), &[&new_keys.root]);
    let e = t.update_root(&r2).unwrap_err();
    assert!(e.is_signature(), "{e}");
    // with both signatures it is accepted, and key changes are reported
    let r2 = envelope(
        &root_signed(2, FAR, &new_keys),
        &[&new_keys.root, &repo.keys.root],
    );
    let u = t.update_root(&r2).unwrap();
    assert!(u.discard_timestamp_and_snapshot);
}

#[test]
fn root_signed_only_by_old_keys_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let new_keys = Keys::generate();
    let r2 = envelope(&root_signed(2, FAR, &new_keys), &[&repo.keys.root]);
    let e = t.update_root(&r2).unwrap_err();
    assert!(e.is_signature(), "{e}");
}

#[test]
fn intermediate_root_may_be_expired_final_may_not() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_root(&envelope(
        &root_signed(2, PAST, &repo.keys),
        &[&repo.keys.root],
    ))
    .unwrap();
    let u = t
        .update_root(&envelope(
            &root_signed(3, FAR, &repo.keys),
            &[&repo.keys.root],
        ))
        .unwrap();
    assert!(!u.discard_timestamp_and_snapshot);
    t.update_timestamp(&repo.timestamp, now()).unwrap();

    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_root(&envelope(
        &root_signed(2, PAST, &repo.keys),
        &[&repo.keys.root],
    ))
    .unwrap();
    let e = t.update_timestamp(&repo.timestamp, now()).unwrap_err();
    assert!(e.is_expired() && e.role() == "root", "{e}");
}

#[test]
fn root_after_timestamp_is_an_order_error() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    let e = t
        .update_root(&envelope(
            &root_signed(2, FAR, &repo.keys),
            &[&repo.keys.root],
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Order);
}

#[test]
fn fast_forward_recovery_refuses_local_snapshot() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let mut k2 = Keys::generate();
    std::mem::swap(&mut k2.root, &mut Keys::generate().root);
    let new_ts = TestKey::generate();
    let keys2 = Keys {
        root: TestKey::generate(),
        timestamp: new_ts,
        snapshot: TestKey::generate(),
        targets: TestKey::generate(),
    };
    let r2 = envelope(
        &root_signed(2, FAR, &keys2),
        &[&repo.keys.root, &keys2.root],
    );
    assert!(t.update_root(&r2).unwrap().discard_timestamp_and_snapshot);
    assert!(t.must_discard_timestamp_and_snapshot());
    let snap = envelope(
        &snapshot_signed(1, FAR, &[("targets", 1, None)]),
        &[&keys2.snapshot],
    );
    let ts = envelope(
        &timestamp_signed(1, FAR, 1, Some(&snap)),
        &[&keys2.timestamp],
    );
    t.update_timestamp(&ts, now()).unwrap();
    assert_eq!(
        t.update_snapshot(&snap, now(), true).unwrap_err().kind(),
        ErrorKind::Order
    );
    t.update_snapshot(&snap, now(), false).unwrap();
}

// ---- rollback ------------------------------------------------------------

#[test]
fn timestamp_rollback_rejected_and_equal_is_unchanged() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let ts5 = envelope(&timestamp_signed(5, FAR, 5, None), &[&repo.keys.timestamp]);
    let ts3 = envelope(&timestamp_signed(3, FAR, 5, None), &[&repo.keys.timestamp]);
    assert_eq!(
        t.update_timestamp(&ts5, now()).unwrap(),
        TimestampUpdate::Updated
    );
    let e = t.update_timestamp(&ts3, now()).unwrap_err();
    assert!(e.is_rollback(), "{e}");
    assert_eq!(
        e.to_string(),
        "timestamp: version 3 is lower than the trusted version 5 (rollback attack)"
    );
    assert_eq!(
        t.update_timestamp(&ts5, now()).unwrap(),
        TimestampUpdate::Unchanged
    );
    assert_eq!(t.timestamp().unwrap().version, 5);
}

#[test]
fn timestamp_snapshot_meta_rollback_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(5, FAR, 5, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let e = t
        .update_timestamp(
            &envelope(&timestamp_signed(6, FAR, 4, None), &[&repo.keys.timestamp]),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::MetaRollback { new: 4, trusted: 5, ref file, .. } if file == "snapshot.json"),
        "{e}"
    );
}

#[test]
fn expired_local_timestamp_still_guards_rollback() {
    // python-tuf semantics: an expired local timestamp is kept as the rollback reference.
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let old = envelope(&timestamp_signed(5, PAST, 5, None), &[&repo.keys.timestamp]);
    assert!(t.update_timestamp(&old, now()).unwrap_err().is_expired());
    let remote = envelope(&timestamp_signed(4, FAR, 5, None), &[&repo.keys.timestamp]);
    assert!(t
        .update_timestamp(&remote, now())
        .unwrap_err()
        .is_rollback());
    // snapshot cannot proceed on the expired timestamp
    assert!(t
        .update_snapshot(&repo.snapshot, now(), false)
        .unwrap_err()
        .is_expired());
    let remote = envelope(&timestamp_signed(6, FAR, 5, None), &[&repo.keys.timestamp]);
    t.update_timestamp(&remote, now()).unwrap();
}

#[test]
fn snapshot_rollback_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let local = envelope(
        &snapshot_signed(5, FAR, &[("targets", 3, None)]),
        &[&repo.keys.snapshot],
    );
    let ts = envelope(&timestamp_signed(1, FAR, 4, None), &[&repo.keys.timestamp]);
    t.update_timestamp(&ts, now()).unwrap();
    // local snapshot v5 doesn't match timestamp's v4: kept as reference, error reported
    let e = t.update_snapshot(&local, now(), true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MixAndMatch, "{e}");
    let remote = envelope(
        &snapshot_signed(4, FAR, &[("targets", 3, None)]),
        &[&repo.keys.snapshot],
    );
    let e = t.update_snapshot(&remote, now(), false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionRollback {
                new: 4,
                trusted: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn snapshot_meta_rollback_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(1, FAR, 2, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let local = envelope(
        &snapshot_signed(1, FAR, &[("targets", 3, None)]),
        &[&repo.keys.snapshot],
    );
    assert!(t.update_snapshot(&local, now(), true).is_err()); // version 1 != 2, kept as reference
    let remote = envelope(
        &snapshot_signed(2, FAR, &[("targets", 2, None)]),
        &[&repo.keys.snapshot],
    );
    let e = t.update_snapshot(&remote, now(), false).unwrap_err();
    assert!(
        matches!(e, Error::MetaRollback { new: 2, trusted: 3, ref file, .. } if file == "targets.json"),
        "{e}"
    );
}

#[test]
fn role_removed_from_snapshot_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(1, FAR, 2, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let local = envelope(
        &snapshot_signed(1, FAR, &[("targets", 1, None), ("role1", 1, None)]),
        &[&repo.keys.snapshot],
    );
    assert!(t.update_snapshot(&local, now(), true).is_err());
    let remote = envelope(
        &snapshot_signed(2, FAR, &[("targets", 1, None)]),
        &[&repo.keys.snapshot],
    );
    let e = t.update_snapshot(&remote, now(), false).unwrap_err();
    assert!(
        matches!(e, Error::MetaRemoved { ref file, .. } if file == "role1.json"),
        "{e}"
    );
    assert!(e.is_rollback());
}

// ---- freeze --------------------------------------------------------------

#[test]
fn expired_metadata_rejected() {
    let repo = simple_repo();
    // timestamp
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let e = t
        .update_timestamp(
            &envelope(&timestamp_signed(1, PAST, 1, None), &[&repo.keys.timestamp]),
            now(),
        )
        .unwrap_err();
    assert!(e.is_expired() && e.role() == "timestamp", "{e}");
    // snapshot
    let snap = envelope(
        &snapshot_signed(1, PAST, &[("targets", 1, None)]),
        &[&repo.keys.snapshot],
    );
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(1, FAR, 1, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let e = t.update_snapshot(&snap, now(), false).unwrap_err();
    assert!(e.is_expired() && e.role() == "snapshot", "{e}");
    // targets
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    t.update_snapshot(&repo.snapshot, now(), false).unwrap();
    let targets = envelope(&targets_signed(1, PAST, &[], None), &[&repo.keys.targets]);
    let e = t.update_targets(&targets, now()).unwrap_err();
    assert!(e.is_expired() && e.role() == "targets", "{e}");
    assert!(
        t.targets().is_none(),
        "expired targets must not become trusted"
    );
    // expiry is `now >= expires`
    let at: chrono::DateTime<chrono::Utc> = FAR.parse().unwrap();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    assert!(t
        .update_timestamp(&repo.timestamp, at)
        .unwrap_err()
        .is_expired());
}

// ---- mix and match ---------------------------------------------------------

#[test]
fn snapshot_hash_length_version_mismatch_rejected() {
    let repo = simple_repo();
    let other = envelope(
        &snapshot_signed(1, FAR, &[("targets", 2, None)]),
        &[&repo.keys.snapshot],
    );
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    let e = t.update_snapshot(&other, now(), false).unwrap_err();
    assert!(e.is_mix_and_match(), "{e}");
    // same length, different bytes -> hash mismatch
    let mut same_len = repo.snapshot.clone();
    let pos = same_len.iter().position(|&b| b == b'{').unwrap();
    same_len.insert(pos + 1, b' ');
    same_len.pop();
    let e = t.update_snapshot(&same_len, now(), false).unwrap_err();
    assert!(
        matches!(e, Error::HashMismatch { .. } | Error::Json { .. }),
        "{e}"
    );
    // length mismatch
    let mut longer = repo.snapshot.clone();
    longer.push(b' ');
    let e = t.update_snapshot(&longer, now(), false).unwrap_err();
    assert!(
        matches!(e, Error::LengthMismatch { .. } | Error::TooLarge { .. }),
        "{e}"
    );
    // version mismatch (timestamp without hashes)
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(1, FAR, 2, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let e = t.update_snapshot(&repo.snapshot, now(), false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionMismatch {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn local_snapshot_skips_hash_check() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    let mut reformatted = repo.snapshot.clone();
    reformatted.push(b'\n');
    assert!(t
        .clone()
        .update_snapshot(&reformatted, now(), false)
        .is_err());
    t.update_snapshot(&reformatted, now(), true).unwrap();
}

#[test]
fn targets_hash_length_version_mismatch_rejected() {
    let repo = simple_repo();
    let targets2 = envelope(&targets_signed(2, FAR, &[], None), &[&repo.keys.targets]);
    let snap = envelope(
        &snapshot_signed(1, FAR, &[("targets", 1, Some(&repo.targets))]),
        &[&repo.keys.snapshot],
    );
    let ts = envelope(&timestamp_signed(1, FAR, 1, None), &[&repo.keys.timestamp]);
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&ts, now()).unwrap();
    t.update_snapshot(&snap, now(), false).unwrap();
    let e = t.update_targets(&targets2, now()).unwrap_err();
    assert!(e.is_mix_and_match(), "{e}");
    let mut padded = repo.targets.clone();
    padded.push(b' ');
    assert!(
        t.update_targets(&padded, now())
            .unwrap_err()
            .is_mix_and_match()
            || t.targets().is_none()
    );
    // without hashes in snapshot: version must match
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&repo.timestamp, now()).unwrap();
    t.update_snapshot(&repo.snapshot, now(), false).unwrap();
    let e = t.update_targets(&targets2, now()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
    t.update_targets(&repo.targets, now()).unwrap();
}

#[test]
fn targets_missing_from_snapshot_rejected() {
    let repo = simple_repo();
    let snap = envelope(&snapshot_signed(1, FAR, &[]), &[&repo.keys.snapshot]);
    let ts = envelope(&timestamp_signed(1, FAR, 1, None), &[&repo.keys.timestamp]);
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(&ts, now()).unwrap();
    t.update_snapshot(&snap, now(), false).unwrap();
    assert!(matches!(
        t.update_targets(&repo.targets, now()).unwrap_err(),
        Error::MissingMeta { .. }
    ));
}

// ---- parsing rules ---------------------------------------------------------

#[test]
fn wrong_type_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let e = t.update_root(&repo.timestamp).unwrap_err();
    assert!(
        matches!(e, Error::WrongType { ref expected, ref found, .. } if expected == "root" && found == "timestamp"),
        "{e}"
    );
    // A snapshot signed by the timestamp key and fed as timestamp.
    let snap_as_ts = envelope(&snapshot_signed(1, FAR, &[]), &[&repo.keys.timestamp]);
    assert_eq!(
        t.update_timestamp(&snap_as_ts, now()).unwrap_err().kind(),
        ErrorKind::WrongType
    );
}

#[test]
fn unsupported_spec_version_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    for bad in ["2.0", "0.9", "1", "1.0.0.0", "one.0", "", "1.x"] {
        let mut s = timestamp_signed(1, FAR, 1, None);
        s["spec_version"] = json!(bad);
        let e = t
            .update_timestamp(&envelope(&s, &[&repo.keys.timestamp]), now())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedSpecVersion, "{bad}: {e}");
    }
    for good in ["1.0", "1.0.31", "1.99.0"] {
        let mut s = timestamp_signed(1, FAR, 1, None);
        s["spec_version"] = json!(good);
        let mut t = TrustedMetadata::new(&repo.root).unwrap();
        t.update_timestamp(&envelope(&s, &[&repo.keys.timestamp]), now())
            .unwrap();
    }
}

#[test]
fn float_and_duplicate_keys_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let s = String::from_utf8(envelope(
        &timestamp_signed(1, FAR, 1, None),
        &[&repo.keys.timestamp],
    ))
    .unwrap();
    let dup = s.replacen("\"version\":1", "\"version\":1,\"version\":1", 1);
    assert!(matches!(
        t.update_timestamp(dup.as_bytes(), now()).unwrap_err(),
        Error::Json { .. }
    ));
    let float = s.replacen("\"version\":1", "\"version\":1.0", 1);
    assert!(matches!(
        t.update_timestamp(float.as_bytes(), now()).unwrap_err(),
        Error::Json { .. }
    ));
}

#[test]
fn expires_with_offset_and_fraction() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let s = timestamp_signed(1, "2029-12-31T18:00:00.5-06:00", 1, None);
    t.update_timestamp(&envelope(&s, &[&repo.keys.timestamp]), now())
        .unwrap();
    assert_eq!(
        t.timestamp().unwrap().expires,
        "2030-01-01T00:00:00.5Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );
    let s = timestamp_signed(2, "2030-01-01", 1, None);
    assert_eq!(
        t.update_timestamp(&envelope(&s, &[&repo.keys.timestamp]), now())
            .unwrap_err()
            .kind(),
        ErrorKind::Malformed
    );
}

#[test]
fn oversized_metadata_rejected() {
    let repo = simple_repo();
    let limits = Limits {
        max_timestamp_bytes: 100,
        ..Limits::default()
    };
    let mut t = TrustedMetadata::with_limits(&repo.root, limits).unwrap();
    let e = t.update_timestamp(&repo.timestamp, now()).unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 100, .. }), "{e}");
    let limits = Limits {
        max_root_bytes: 10,
        ..Limits::default()
    };
    assert!(TrustedMetadata::with_limits(&repo.root, limits).is_err());
}

#[test]
fn out_of_order_calls_rejected() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    assert_eq!(
        t.update_snapshot(&repo.snapshot, now(), false)
            .unwrap_err()
            .kind(),
        ErrorKind::Order
    );
    assert_eq!(
        t.update_targets(&repo.targets, now()).unwrap_err().kind(),
        ErrorKind::Order
    );
    let mut t = loaded(&repo);
    assert_eq!(
        t.update_timestamp(&repo.timestamp, now())
            .unwrap_err()
            .kind(),
        ErrorKind::Order
    );
    assert_eq!(
        t.update_snapshot(&repo.snapshot, now(), false)
            .unwrap_err()
            .kind(),
        ErrorKind::Order
    );
}

// ---- target files ----------------------------------------------------------

#[test]
fn endless_data_rejected_while_streaming() {
    let repo = simple_repo();
    let t = loaded(&repo);
    let target = t.targets().unwrap().targets["a.txt"].clone();
    let mut v = TargetVerifier::new("a.txt", &target).unwrap();
    v.update(b"hel").unwrap();
    let e = v.update(b"lo!").unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 5, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    // short data
    let mut v = TargetVerifier::new("a.txt", &target).unwrap();
    v.update(b"hell").unwrap();
    assert!(matches!(
        v.finish().unwrap_err(),
        Error::LengthMismatch {
            expected: 5,
            found: 4,
            ..
        }
    ));
    // wrong content, right length
    let e = TargetVerifier::verify_all("a.txt", &target, b"jello").unwrap_err();
    assert!(matches!(e, Error::HashMismatch { .. }), "{e}");
    TargetVerifier::verify_all("a.txt", &target, b"hello").unwrap();
}

#[test]
fn hash_algorithm_rules() {
    use custody_tuf::TargetFile;
    let mk = |h: serde_json::Value| -> TargetFile {
        serde_json::from_value(json!({"length": 5, "hashes": h})).unwrap()
    };
    let sha256 = custody_tuf::crypto::sha256_hex(b"hello");
    // only unknown algorithms: rejected
    let e = TargetVerifier::new("x", &mk(json!({"md5": "00", "blake3": "00"}))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSupportedHash);
    // known + unknown: known must match, unknown ignored
    TargetVerifier::verify_all(
        "x",
        &mk(json!({"sha256": sha256, "blake3": "00"})),
        b"hello",
    )
    .unwrap();
    // all known must match
    let e = TargetVerifier::verify_all(
        "x",
        &mk(json!({"sha256": sha256, "sha512": "00"})),
        b"hello",
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::HashMismatch { ref algorithm, .. } if algorithm == "sha512"),
        "{e}"
    );
}

#[test]
fn metafile_bytes_check() {
    use custody_tuf::MetaFile;
    let m: MetaFile =
        serde_json::from_value(json!({"version": 1, "length": 3, "hashes": hashes(b"abc")}))
            .unwrap();
    m.verify_bytes("snapshot", b"abc").unwrap();
    assert!(m
        .verify_bytes("snapshot", b"abd")
        .unwrap_err()
        .is_mix_and_match());
    assert!(m
        .verify_bytes("snapshot", b"abcd")
        .unwrap_err()
        .is_mix_and_match());
}

#[test]
fn root_rotation_cap() {
    let repo = simple_repo();
    let limits = Limits {
        max_root_rotations: 2,
        ..Limits::default()
    };
    let mut t = TrustedMetadata::with_limits(&repo.root, limits).unwrap();
    for v in 2..=3 {
        t.update_root(&envelope(
            &root_signed(v, FAR, &repo.keys),
            &[&repo.keys.root],
        ))
        .unwrap();
    }
    let e = t
        .update_root(&envelope(
            &root_signed(4, FAR, &repo.keys),
            &[&repo.keys.root],
        ))
        .unwrap_err();
    assert!(matches!(e, Error::TooManyRootRotations { limit: 2 }), "{e}");
    assert_eq!(custody_tuf::MAX_ROOT_ROTATIONS, 256);
}

#[test]
fn key_reencoding_is_not_a_rotation() {
    // Same timestamp key, re-encoded from hex to PEM SPKI under the same key id
    // (what sigstore did between roots 4 and 5): no discard of local timestamp/snapshot.
    use base64::Engine;
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let mut r2 = root_signed(2, FAR, &repo.keys);
    let raw = hex::decode(
        repo.keys.timestamp.json()["keyval"]["public"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend_from_slice(&raw);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    r2["keys"][repo.keys.timestamp.id.clone()]["keyval"]["public"] = json!(pem);
    let u = t.update_root(&envelope(&r2, &[&repo.keys.root])).unwrap();
    assert!(!u.discard_timestamp_and_snapshot);
    // and the PEM-encoded key verifies the timestamp
    t.update_timestamp(&repo.timestamp, now()).unwrap();
}

#[test]
fn expired_local_snapshot_still_guards_rollback() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    t.update_timestamp(
        &envelope(&timestamp_signed(2, FAR, 2, None), &[&repo.keys.timestamp]),
        now(),
    )
    .unwrap();
    let local = envelope(
        &snapshot_signed(1, PAST, &[("targets", 3, None)]),
        &[&repo.keys.snapshot],
    );
    assert!(t
        .update_snapshot(&local, now(), true)
        .unwrap_err()
        .is_expired());
    let remote = envelope(
        &snapshot_signed(2, FAR, &[("targets", 2, None)]),
        &[&repo.keys.snapshot],
    );
    assert!(t
        .update_snapshot(&remote, now(), false)
        .unwrap_err()
        .is_rollback());
    let remote = envelope(
        &snapshot_signed(2, FAR, &[("targets", 3, None)]),
        &[&repo.keys.snapshot],
    );
    t.update_snapshot(&remote, now(), false).unwrap();
}

#[test]
fn meta_for_lists_what_snapshot_lists() {
    let repo = simple_repo();
    let t = loaded(&repo);
    assert_eq!(t.meta_for("targets").unwrap().version, 1);
    assert_eq!(t.meta_for("snapshot").unwrap().version, 1);
    assert!(matches!(
        t.meta_for("nope").unwrap_err(),
        Error::MissingMeta { .. }
    ));
    assert_eq!(t.max_length("snapshot"), repo.snapshot.len() as u64);
    assert_eq!(t.max_length("targets"), custody_tuf::MAX_TARGETS_BYTES);
}

#[test]
fn root_signature_errors_name_which_root() {
    let repo = simple_repo();
    let mut t = TrustedMetadata::new(&repo.root).unwrap();
    let new_keys = Keys::generate();
    let e = t
        .update_root(&envelope(
            &root_signed(2, FAR, &new_keys),
            &[&new_keys.root],
        ))
        .unwrap_err();
    assert!(e.to_string().contains("of trusted root v1"), "{e}");
    let e = t
        .update_root(&envelope(
            &root_signed(2, FAR, &new_keys),
            &[&repo.keys.root],
        ))
        .unwrap_err();
    assert!(e.to_string().contains("of new root v2 (itself)"), "{e}");
    let e = t
        .update_timestamp(
            &envelope(&timestamp_signed(1, FAR, 1, None), &[&new_keys.timestamp]),
            now(),
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("timestamp: signature threshold not met: 0 valid signature(s) from distinct keys of root v1, threshold is 1"), "{e}");
}
