//! A refused update leaves no trace (issue 13): for every kind of refusal
//! the agent makes (director binding, hardware id, freeze, rollback of
//! director metadata, tampered image metadata, a target the repositories
//! disagree on, a downgrade without authorisation, missing log evidence, a
//! bundle for another device), the device's state directory is hashed
//! before and after: nothing it trusts or will act on changes.
//!
//! The only file a refusal may change is `net.json`, whose job is to queue
//! the attack report of that very refusal (checked to have grown by one).
//!
//! Property-style: every kind, on a fresh device and on one that already
//! accepted an honest update (so trusted versions and an installed target
//! exist), in an order proptest chooses.

mod agent_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_support::{image_file_map, target, Repo, HW};
use chrono::{DateTime, Duration, Utc};
use custody_agent::bundle::{encode_files, write_bundle, BundleHeader};
use custody_agent::device::{
    device_json, Action, Device, DeviceConfig, LocalConfig, DEVICE_FORMAT,
};
use custody_agent::keystore::{DeviceKeyType, FileKeyBackend, KeyBackend};
use custody_director::wire::{DirectorMetadataSet, LogPin};
use custody_keys::MemorySigner;
use custody_keys::Signer;
use proptest::prelude::*;

struct World {
    tmp: tempfile::TempDir,
    state: PathBuf,
    id: String,
    director: Repo,
    image: Repo,
    now: DateTime<Utc>,
    bundles: usize,
    /// a director set signed before the one the device trusts
    old: Option<DirectorMetadataSet>,
}

impl World {
    fn new(log: Option<LogPin>) -> Self {
        let now = Utc::now();
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let (director, image) = (Repo::new(now), Repo::new(now));
        for (d, r) in [("director", &director), ("image", &image)] {
            let store = custody_client::MetadataStore::create(state.join(d)).unwrap();
            store.persist("root", &r.root_bytes).unwrap();
        }
        let key = FileKeyBackend::new(state.join("device-key.json"))
            .generate(DeviceKeyType::Ed25519)
            .unwrap();
        let id = key.keyid().to_owned();
        let config = DeviceConfig {
            format: DEVICE_FORMAT,
            server: "http://127.0.0.1:9".into(),
            device_id: id.clone(),
            hardware_id: HW.into(),
            key_type: DeviceKeyType::Ed25519,
            image_repository: "main".into(),
            image_metadata_path: "/repos/main/metadata/".into(),
            image_targets_path: "/repos/main/targets/".into(),
            rollback_keys: None,
            log,
        };
        std::fs::write(
            device_json(&state),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        World {
            tmp,
            state,
            id,
            director,
            image,
            now,
            bundles: 0,
            old: None,
        }
    }

    fn device(&self) -> Device {
        Device::open(&self.state, Some(LocalConfig::default())).unwrap()
    }

    /// A bundle carrying `director` under this device's id (or `for_id`),
    /// `image` metadata files and `payloads`.
    fn bundle(
        &mut self,
        for_id: Option<&str>,
        director: DirectorMetadataSet,
        image: BTreeMap<String, Vec<u8>>,
        payloads: &[(&str, &[u8])],
    ) -> PathBuf {
        self.bundles += 1;
        let dir = self.tmp.path().join(format!("b{}", self.bundles));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (i, (name, data)) in payloads.iter().enumerate() {
            let p = dir.join(format!("p{i}"));
            std::fs::write(&p, data).unwrap();
            files.push(((*name).to_owned(), p));
        }
        let header = BundleHeader {
            format: 1,
            created: self.now.timestamp(),
            hardware_id: Some(HW.into()),
            director: [(for_id.unwrap_or(&self.id).to_owned(), director)].into(),
            image_repository: "main".into(),
            image_metadata: encode_files(&image),
            payloads: vec![],
            log: BTreeMap::new(),
        };
        let out = dir.join("bundle");
        write_bundle(&out, header, &files).unwrap();
        out
    }

    /// Install release 2 honestly from a bundle.
    fn accept_honest_update(&mut self) {
        let (id, now) = (self.id.clone(), self.now);
        let t = target("fw/app-2.img", b"two", 2);
        let set = self.director.sign(&id, HW, std::slice::from_ref(&t), now);
        let img = self.image.sign("image-repo", HW, &[t], now);
        let b = self.bundle(None, set, image_file_map(&img), &[("fw/app-2.img", b"two")]);
        let r = self.device().install_bundle(&b).unwrap();
        assert!(matches!(r.action, Action::Installed { .. }), "{r:?}");
    }
}

/// Every file under `dir` (relative path → bytes), except `net.json`.
fn state_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if rel != "net.json" {
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    out
}

fn digest(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, v) in files {
        ctx.update(k.as_bytes());
        ctx.update(&(v.len() as u64).to_le_bytes());
        ctx.update(v);
    }
    hex::encode(ctx.finish())
}

fn pending_attacks(w: &World) -> usize {
    w.device().status().unwrap().pending_attacks.len()
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// director metadata validly signed, bound to another device
    OtherDevice,
    /// bound to this device id with another hardware id
    OtherHardware,
    /// director metadata expired (freeze)
    Frozen,
    /// an older, validly signed director set replayed
    DirectorRollback,
    /// image repository targets metadata modified after signing
    TamperedImage,
    /// director and image repository disagree on the target's hashes
    Disagree,
    /// a lower release counter without a rollback authorisation
    Downgrade,
    /// the device pins a transparency log; the bundle carries no evidence
    NoLogEvidence,
    /// the bundle carries director metadata for other devices only
    BundleForAnotherDevice,
}

const KINDS: [Kind; 9] = [
    Kind::OtherDevice,
    Kind::OtherHardware,
    Kind::Frozen,
    Kind::DirectorRollback,
    Kind::TamperedImage,
    Kind::Disagree,
    Kind::Downgrade,
    Kind::NoLogEvidence,
    Kind::BundleForAnotherDevice,
];

fn log_pin() -> LogPin {
    let key = custody_log::NoteSigner::from_seed("log.test/log", [7; 32])
        .unwrap()
        .verifier_key()
        .to_vkey();
    LogPin {
        origin: "log.test/log".into(),
        log_key: key,
        witnesses: vec![],
        witness_threshold: 0,
        log_path: "/log/v1/".into(),
    }
}

/// How much a device has accepted before the refusals.
fn prepare(log: Option<LogPin>, level: u8) -> World {
    let mut w = World::new(log);
    // the first open creates the agent's own directories
    drop(w.device());
    let (id, now) = (w.id.clone(), w.now);
    match level {
        0 => {}
        1 => {
            // trusted director versions beyond 1, nothing installed
            let old = w
                .director
                .sign(&id, HW, &[target("fw/app-3.img", b"three", 3)], now);
            w.old = Some(old);
            let newer = w.director.sign(&id, HW, &[], now);
            let b = w.bundle(None, newer, BTreeMap::new(), &[]);
            let r = w.device().install_bundle(&b).unwrap();
            assert!(matches!(r.action, Action::UpToDate { .. }), "{r:?}");
        }
        _ => {
            let old = w
                .director
                .sign(&id, HW, &[target("fw/app-2.img", b"two", 2)], now);
            w.old = Some(old);
            w.accept_honest_update();
        }
    }
    w
}

/// The least preparation `kind` needs.
fn min_level(kind: Kind) -> u8 {
    match kind {
        Kind::Downgrade => 2,
        Kind::DirectorRollback => 1,
        _ => 0,
    }
}

/// A bundle `w`'s device must refuse for `kind`.
fn refusal_bundle(w: &mut World, kind: Kind) -> PathBuf {
    let (id, now) = (w.id.clone(), w.now);
    let t3 = target("fw/app-3.img", b"three", 3);
    let p3: &[(&str, &[u8])] = &[("fw/app-3.img", b"three")];
    let img3 = |w: &mut World| {
        image_file_map(&w.image.sign(
            "image-repo",
            HW,
            &[target("fw/app-3.img", b"three", 3)],
            now,
        ))
    };
    match kind {
        Kind::OtherDevice => {
            let other = MemorySigner::generate_ed25519().unwrap();
            let set = w
                .director
                .sign(other.keyid(), HW, std::slice::from_ref(&t3), now);
            let img = img3(w);
            w.bundle(None, set, img, p3)
        }
        Kind::OtherHardware => {
            let set = w
                .director
                .sign(&id, "board-b", std::slice::from_ref(&t3), now);
            let img = img3(w);
            w.bundle(None, set, img, p3)
        }
        Kind::Frozen => {
            let set = w
                .director
                .sign(&id, HW, std::slice::from_ref(&t3), now - Duration::days(30));
            let img = img3(w);
            w.bundle(None, set, img, p3)
        }
        Kind::DirectorRollback => {
            let set = w.old.clone().expect("prepared at level 1 or more");
            let img = img3(w);
            w.bundle(None, set, img, p3)
        }
        Kind::TamperedImage => {
            let set = w.director.sign(&id, HW, std::slice::from_ref(&t3), now);
            let mut files = img3(w);
            let t = files.get_mut("targets.json").unwrap();
            let s =
                String::from_utf8(t.clone())
                    .unwrap()
                    .replacen("\"length\":5", "\"length\":6", 1);
            assert_ne!(s.as_bytes(), t.as_slice());
            *t = s.into_bytes();
            w.bundle(None, set, files, p3)
        }
        Kind::Disagree => {
            let set = w.director.sign(&id, HW, std::slice::from_ref(&t3), now);
            let img = image_file_map(&w.image.sign(
                "image-repo",
                HW,
                &[target("fw/app-3.img", b"THREE", 3)],
                now,
            ));
            w.bundle(None, set, img, p3)
        }
        Kind::Downgrade => {
            let t1 = target("fw/app-1.img", b"one", 1);
            let set = w.director.sign(&id, HW, std::slice::from_ref(&t1), now);
            let img = image_file_map(&w.image.sign("image-repo", HW, &[t1], now));
            w.bundle(None, set, img, &[("fw/app-1.img", b"one")])
        }
        Kind::NoLogEvidence => {
            let set = w.director.sign(&id, HW, std::slice::from_ref(&t3), now);
            let img = img3(w);
            w.bundle(None, set, img, p3)
        }
        Kind::BundleForAnotherDevice => {
            let set = w.director.sign(&id, HW, std::slice::from_ref(&t3), now);
            let img = img3(w);
            w.bundle(Some("another-device"), set, img, p3)
        }
    }
}

/// Install `bundle`, expect a refusal, and check the state directory is
/// unchanged but for one queued attack report. Returns the reason.
fn check_refusal(w: &World, bundle: &Path, kind: Kind) -> String {
    let before = state_files(&w.state);
    let attacks = pending_attacks(w);
    let r = w.device().install_bundle(bundle).unwrap();
    let Action::Refused { reason, .. } = &r.action else {
        panic!("{kind:?}: not refused: {r:?}");
    };
    let after = state_files(&w.state);
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(
        digest(&before),
        digest(&after),
        "{kind:?} ({reason}): the refusal changed {changed:?}"
    );
    assert_eq!(
        pending_attacks(w),
        attacks + 1,
        "{kind:?}: one attack report queued"
    );
    reason.clone()
}

#[test]
fn every_refusal_kind_leaves_the_state_directory_byte_identical() {
    let needles = [
        "metadata is for device",
        "board-b",
        "expired",
        "rollback",
        "image repository",
        "disagree on hashes",
        "below the installed 2",
        "log",
        "not for this device",
    ];
    for (kind, needle) in KINDS.iter().zip(needles) {
        // a pinned log would need real evidence for the honest preparation
        let levels: &[u8] = if matches!(kind, Kind::NoLogEvidence) {
            &[0]
        } else {
            &[0, 1, 2]
        };
        for &level in levels.iter().filter(|l| **l >= min_level(*kind)) {
            let log = matches!(kind, Kind::NoLogEvidence).then(log_pin);
            let mut w = prepare(log, level);
            let b = refusal_bundle(&mut w, *kind);
            let reason = check_refusal(&w, &b, *kind);
            assert!(
                reason.contains(needle),
                "{kind:?} (level {level}): expected {needle:?} in {reason}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Refusals in a row on one device, in any order: each changes nothing,
    /// and an honest update is still accepted afterwards (no lock-out).
    #[test]
    fn refusals_in_a_row_change_nothing_and_do_not_lock_the_device_out(
        kinds in proptest::collection::vec(0..KINDS.len() - 2, 1..5),
        level in 0u8..3,
    ) {
        // without a log pin: NoLogEvidence and BundleForAnotherDevice are
        // the last two kinds; the latter is added at the end
        let mut kinds: Vec<Kind> = kinds.into_iter().map(|k| KINDS[k]).collect();
        kinds.push(Kind::BundleForAnotherDevice);
        let level = kinds.iter().map(|k| min_level(*k)).fold(level, u8::max);
        let mut w = prepare(None, level);
        for kind in kinds {
            let b = refusal_bundle(&mut w, kind);
            check_refusal(&w, &b, kind);
        }
        let (id, now) = (w.id.clone(), w.now);
        let t4 = target("fw/app-4.img", b"four", 4);
        let set = w.director.sign(&id, HW, std::slice::from_ref(&t4), now);
        let img = image_file_map(&w.image.sign("image-repo", HW, &[t4], now));
        let b = w.bundle(None, set, img, &[("fw/app-4.img", b"four")]);
        let r = w.device().install_bundle(&b).unwrap();
        prop_assert!(matches!(r.action, Action::Installed { .. }), "{:?}", r);
    }
}
