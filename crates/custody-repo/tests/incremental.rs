//! Scale behaviour of a hash-binned repository, through the library API:
//! adding one target changes (and publishes) only that target's bin, the
//! snapshot and the timestamp; everything else is reused from the previous
//! published generation. Also: merged signatures never repeat a key id.
use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use custody_keys::passphrase::SecretSource;
use custody_keys::MemorySigner;
use custody_keys::Signer;
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{InitOptions, RoleInit, TargetEntry};
use custody_repo::Repository;

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Keys {
    ring: KeyRing,
    roles: BTreeMap<String, RoleInit>,
    bins: Vec<(custody_tuf::Key, String, KeyLocation)>,
}

fn keys(targets_keys: usize) -> Keys {
    let mut ring = KeyRing::new(SecretSource::Env("UNUSED_PASSPHRASE".into()));
    let mut roles = BTreeMap::new();
    let entry = |ring: &mut KeyRing| {
        let s = MemorySigner::generate_ed25519().unwrap();
        let e = (s.key().clone(), s.keyid().to_owned(), KeyLocation::Offline);
        ring.add(Box::new(s));
        e
    };
    for role in ["root", "snapshot", "timestamp"] {
        let k = entry(&mut ring);
        roles.insert(
            role.to_owned(),
            RoleInit {
                keys: vec![k],
                threshold: 1,
            },
        );
    }
    let tk: Vec<_> = (0..targets_keys).map(|_| entry(&mut ring)).collect();
    roles.insert(
        "targets".to_owned(),
        RoleInit {
            keys: tk,
            threshold: 1,
        },
    );
    let bins = vec![entry(&mut ring)];
    Keys { ring, roles, bins }
}

fn binned_repo(dir: &Path, src: &Path, n: usize, k: &mut Keys) -> Repository {
    let opts = InitOptions {
        roles: k.roles.clone(),
        expiry: ExpiryPolicy::default(),
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut repo = Repository::init(dir, opts, &mut k.ring, now()).unwrap();
    repo.save().unwrap();
    repo.hash_bins("targets", "bin", 8, &k.bins, 1, &mut k.ring, now())
        .unwrap();
    std::fs::create_dir_all(src).unwrap();
    for i in 0..n {
        std::fs::write(src.join(format!("t{i:05}.bin")), format!("content {i}")).unwrap();
    }
    repo.add_targets(src, Some("files"), None, &mut k.ring, now())
        .unwrap();
    repo.save().unwrap();
    repo
}

fn versions(repo: &Repository) -> BTreeMap<String, u64> {
    let mut v: BTreeMap<String, u64> = repo
        .targets_roles()
        .into_iter()
        .map(|r| {
            let ver = repo.targets_role(&r).unwrap().signed.version;
            (r, ver)
        })
        .collect();
    v.insert("root".into(), repo.root().signed.version);
    v.insert("snapshot".into(), repo.snapshot().signed.version);
    v.insert("timestamp".into(), repo.timestamp().signed.version);
    v
}

/// Modification times of every file in the staged metadata directory.
fn staged_mtimes(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(dir.join("metadata"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect()
}

#[test]
fn adding_one_target_rewrites_only_its_bin_snapshot_and_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let out = tmp.path().join("out");
    let mut k = keys(1);
    let mut repo = binned_repo(&dir, &tmp.path().join("src"), 1000, &mut k);
    let first = repo.publish_with_stats(&out, now()).unwrap();
    // first publish: everything is new (1000 targets hard-linked from staging)
    // (metadata `save` staged is linked from the staging area, not
    // written a second time)
    assert!(
        first.files_written.len() + first.linked_from_staging.len() >= 256 + 4,
        "{first:?}"
    );
    let before = versions(&repo);
    let mtimes = staged_mtimes(&dir);
    // file system timestamps can be coarse: make a rewrite observable
    std::thread::sleep(std::time::Duration::from_millis(20));

    let new = tmp.path().join("new.bin");
    std::fs::write(&new, b"one more").unwrap();
    let added = repo
        .add_targets(&new, Some("files/new.bin"), None, &mut k.ring, now())
        .unwrap();
    let bin = added[0].1.clone();
    assert!(bin.starts_with("bin-"), "{added:?}");
    repo.save().unwrap();
    let after = versions(&repo);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(r, v)| before.get(*r) != Some(v))
        .map(|(r, _)| r)
        .collect();
    let mut want = [bin.clone(), "snapshot".into(), "timestamp".into()];
    want.sort();
    assert_eq!(changed, want.iter().collect::<Vec<_>>());
    for (r, v) in &after {
        if want.contains(r) {
            assert_eq!(*v, before[r] + 1, "{r} bumped once");
        }
    }
    // staging: only the three role files were rewritten
    let rewritten: Vec<String> = staged_mtimes(&dir)
        .into_iter()
        .filter(|(name, t)| mtimes.get(name) != Some(t))
        .map(|(name, _)| name)
        .collect();
    let mut want_files: Vec<String> = want.iter().map(|r| format!("{r}.json")).collect();
    want_files.sort();
    assert_eq!(rewritten, want_files);

    // publish: the new bin version, the new snapshot version and the
    // timestamp are new (linked from the staged files save wrote, or
    // written); every other file is linked from the previous generation;
    // the new target's content is linked from staging.
    let second = repo.publish_with_stats(&out, now()).unwrap();
    let mut written = second.files_written.clone();
    written.extend(second.linked_from_staging.iter().cloned());
    written.sort();
    let mut expect = vec![
        format!("{}.{bin}.json", after[&bin]),
        format!("{}.snapshot.json", after["snapshot"]),
        "timestamp.json".to_owned(),
    ];
    expect.sort();
    assert_eq!(written, expect, "{second:?}");
    let bin_len = std::fs::metadata(out.join(&expect[0])).unwrap().len();
    let new_bytes = second.bytes_written + second.bytes_linked_from_staging;
    assert!(
        new_bytes < bin_len + 64 * 1024,
        "bytes of new files {new_bytes} is not O(one bin) (bin {bin_len} bytes)"
    );
    assert!(second.files_linked >= 256 + 1000, "{second:?}");
    // the 255 untouched bins were carried over byte-identical from the
    // generation verified before; the changed bin was verified again
    assert_eq!(second.roles_carried_over, 255, "{second:?}");
    // the published tree is complete and verifies (publish replays the
    // client over it; check the new target is where a client looks)
    assert!(out.join("targets/files").is_dir());
    let st = repo.status(now()).unwrap();
    assert!(st.publish_blocker.is_none(), "{:?}", st.publish_blocker);
}

#[test]
fn merging_the_same_signatures_twice_never_repeats_a_key_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    // targets: threshold 1 of 2 keys; the second one is offline (only
    // in `offline_ring`, not in the ring the repository signs with)
    let mut k = keys(1);
    let offline = MemorySigner::generate_ed25519().unwrap();
    let offline_id = offline.keyid().to_owned();
    k.roles.get_mut("targets").unwrap().keys.push((
        offline.key().clone(),
        offline_id.clone(),
        KeyLocation::Offline,
    ));
    let mut offline_ring = KeyRing::new(SecretSource::Env("UNUSED".into()));
    offline_ring.add(Box::new(offline));
    let opts = InitOptions {
        roles: k.roles.clone(),
        expiry: ExpiryPolicy::default(),
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut repo = Repository::init(&dir, opts, &mut k.ring, now()).unwrap();
    repo.save().unwrap();
    let staged = repo.export_role("targets").unwrap();
    let from = Path::new("targets.json");
    // signed with the offline key (the online one already signed at init)
    let (_, signed) = custody_repo::repository::sign_metadata_bytes(
        &staged,
        from,
        std::slice::from_ref(&offline_id),
        &offline_ring,
    )
    .unwrap();
    // merge: the file also carries the online key's signature, already
    // staged; only the offline key's is new
    let merged = repo
        .merge_signatures("targets", &signed, from, &mut k.ring, now())
        .unwrap();
    assert_eq!(merged, vec![offline_id.clone()]);
    let count = |repo: &Repository| {
        let env = repo.targets_role("targets").unwrap();
        let mut ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "repeated key id in {:?}", env.signatures);
        n
    };
    assert_eq!(count(&repo), 2);
    // the same file again: nothing new, refused, still no repeat
    let err = repo
        .merge_signatures("targets", &signed, from, &mut k.ring, now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no new signature"), "{err}");
    assert_eq!(count(&repo), 2);
    // a file whose signatures array repeats a key id is malformed: refused
    let mut v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    let sigs = v["signatures"].as_array().unwrap().clone();
    let mut doubled = sigs.clone();
    doubled.extend(sigs);
    v["signatures"] = serde_json::Value::Array(doubled);
    let bytes = serde_json::to_vec(&v).unwrap();
    let err = repo
        .merge_signatures("targets", &bytes, from, &mut k.ring, now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("key id") || err.contains("keyid"), "{err}");
    assert_eq!(count(&repo), 2);
    repo.save().unwrap();
    // and what is on disk parses (custody-tuf refuses repeated key ids)
    let reopened = {
        drop(repo);
        Repository::open(&dir).unwrap()
    };
    assert_eq!(count(&reopened), 2);
}

fn entry(name: &str) -> TargetEntry {
    TargetEntry {
        name: name.into(),
        length: 10,
        hashes: [(
            "sha256".to_owned(),
            custody_tuf::crypto::sha256_hex(name.as_bytes()),
        )]
        .into(),
        custom: None,
        provenance: None,
    }
}

/// Carry-over never publishes what a client would reject: a bin that
/// expired since the last publish is verified again (and refused), even
/// though its bytes did not change.
#[test]
fn an_unchanged_bin_that_expired_since_the_last_publish_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let out = tmp.path().join("out");
    let mut k = keys(1);
    let mut expiry = ExpiryPolicy::default();
    expiry.set("targets", chrono::Duration::days(365));
    // Set for the bin prefix only: a bump renews a bin's expiry with its
    // prefix's policy (it used to fall back to `targets`, 365 days here).
    expiry.set("bin", chrono::Duration::days(30));
    let opts = InitOptions {
        roles: k.roles.clone(),
        expiry,
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut repo = Repository::init(&dir, opts, &mut k.ring, now()).unwrap();
    repo.hash_bins("targets", "bin", 4, &k.bins, 1, &mut k.ring, now())
        .unwrap();
    let entries = (0..200).map(|i| entry(&format!("pkg/{i}.tgz"))).collect();
    repo.add_target_entries(entries, &mut k.ring, now())
        .unwrap();
    repo.save().unwrap();
    let first = repo.publish_with_stats(&out, now()).unwrap();
    assert_eq!(first.roles_carried_over, 0);
    // metadata-only targets: no target file is published
    assert!(!out.join("targets").exists());
    // 40 days later: fresh snapshot and timestamp, the bins are 10 days past
    // their expiry and byte-identical to the published ones
    let later = now() + chrono::Duration::days(40);
    repo.refresh(&mut k.ring, later).unwrap();
    repo.save().unwrap();
    let err = repo
        .publish_with_stats(&out, later)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired") && err.contains("bin-"), "{err}");
    // nothing was switched: `out` still serves the first generation
    assert_eq!(
        std::fs::read_link(&out).unwrap().file_name(),
        first.generation.file_name()
    );
}

/// A bulk add of entries and a stateless add-one: only the changed bin is
/// verified again, and what `open` read without the strict check is checked
/// before the bin is re-signed.
#[test]
fn bulk_entries_then_stateless_add_one_carries_the_other_bins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let out = tmp.path().join("out");
    let mut k = keys(1);
    let opts = InitOptions {
        roles: k.roles.clone(),
        expiry: ExpiryPolicy::default(),
        consistent_snapshot: true,
        allow_shared_keys: false,
    };
    let mut repo = Repository::init(&dir, opts, &mut k.ring, now()).unwrap();
    repo.hash_bins("targets", "bin", 4, &k.bins, 1, &mut k.ring, now())
        .unwrap();
    let entries = (0..500).map(|i| entry(&format!("pkg/{i}.tgz"))).collect();
    repo.add_target_entries(entries, &mut k.ring, now())
        .unwrap();
    repo.save().unwrap();
    repo.publish_with_stats(&out, now()).unwrap();
    drop(repo);
    let mut repo = Repository::open(&dir).unwrap();
    let added = repo
        .add_target_entries(vec![entry("pkg/new.tgz")], &mut k.ring, now())
        .unwrap();
    repo.save().unwrap();
    let st = repo.publish_with_stats(&out, now()).unwrap();
    assert_eq!(st.roles_carried_over, 15, "{st:?}");
    let bin = &added[0].1;
    let v = repo.targets_role(bin).unwrap().signed.version;
    assert!(out.join(format!("{v}.{bin}.json")).is_file());
    // a bad entry is refused before anything changes
    let mut bad = entry("pkg/bad.tgz");
    bad.hashes.insert("sha256".into(), "ABC".into());
    let err = repo
        .add_target_entries(vec![bad], &mut k.ring, now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lowercase hex"), "{err}");
    let mut escape = entry("../etc/passwd");
    escape.name = "../etc/passwd".into();
    assert!(repo
        .add_target_entries(vec![escape], &mut k.ring, now())
        .is_err());
}
