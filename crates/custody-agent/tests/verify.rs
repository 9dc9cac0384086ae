//! The verification pipeline (`verify::verify_update`) against director and
//! image metadata signed here with custody-director's builders: one test per
//! attack it must stop, plus the happy path and state across runs.

mod agent_support;

use std::path::Path;

use agent_support::{image_file_map, target, Repo, HW};
use chrono::{DateTime, Duration, Utc};
use custody_agent::verify::{verify_update, BundleImageMetadata, DeviceTrust, VerifyError};
use custody_agent::TargetMeta;
use custody_director::director::{build_director_root, DirectorRootKeys};
use custody_director::rollback::{RollbackAuthorization, RollbackBody, RollbackKeys};
use custody_director::wire::DirectorMetadataSet;
use custody_keys::MemorySigner;
use custody_keys::Signer;

fn image_files(set: &DirectorMetadataSet) -> BundleImageMetadata {
    BundleImageMetadata {
        files: image_file_map(set),
    }
}

struct World {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    director: Repo,
    image: Repo,
    device: MemorySigner,
    now: DateTime<Utc>,
}

impl World {
    fn new() -> Self {
        let now = Utc::now();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let director = Repo::new(now);
        let image = Repo::new(now);
        for (d, r) in [("director", &director), ("image", &image)] {
            let store = custody_client::MetadataStore::create(dir.join(d)).unwrap();
            store.persist("root", &r.root_bytes).unwrap();
        }
        World {
            _tmp: tmp,
            dir,
            director,
            image,
            device: MemorySigner::generate_ed25519().unwrap(),
            now,
        }
    }

    fn id(&self) -> String {
        self.device.keyid().to_owned()
    }

    /// Verify, and persist the verified metadata when accepted (as the
    /// device does once it accepts an update).
    fn verify(
        &self,
        set: &DirectorMetadataSet,
        image: BundleImageMetadata,
        installed: Option<&TargetMeta>,
        keys: Option<&RollbackKeys>,
        now: DateTime<Utc>,
    ) -> Result<custody_agent::verify::VerifiedUpdate, VerifyError> {
        let (d, i) = (self.dir.join("director"), self.dir.join("image"));
        let id = self.id();
        let trust = DeviceTrust {
            director_dir: &d,
            image_dir: &i,
            device_id: &id,
            hardware_id: HW,
            rollback_keys: keys,
        };
        let v = verify_update(&trust, set, &image, installed, now)?;
        v.trusted_writes.persist(&trust).unwrap();
        Ok(v)
    }
}

fn installed(name: &str, data: &[u8], counter: u64) -> TargetMeta {
    let t = target(name, data, counter);
    TargetMeta {
        name: t.name,
        length: t.length,
        hashes: t.hashes.into_iter().collect(),
        release_counter: counter,
        custom: None,
    }
}

fn assert_attack(r: Result<custody_agent::verify::VerifiedUpdate, VerifyError>, needle: &str) {
    let e = r.expect_err("must be refused");
    assert!(e.is_attack(), "{e}");
    assert!(
        e.to_string().contains(needle),
        "expected {needle:?} in: {e}"
    );
}

#[test]
fn agreeing_repositories_yield_the_target_to_install() {
    let mut w = World::new();
    let id = w.id();
    let t = target("fw/app-2.img", b"two", 2);
    let set = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    let v = w
        .verify(&set, image_files(&img), None, None, w.now)
        .unwrap();
    let got = v.install.unwrap();
    assert_eq!(got.meta.name, "fw/app-2.img");
    assert_eq!(got.meta.release_counter, 2);
    assert_eq!(got.remote_path, "fw/app-2.img");
    assert!(!got.rollback_authorized);
    // the same target installed: nothing to do
    let set = w
        .director
        .sign(&id, HW, &[target("fw/app-2.img", b"two", 2)], w.now);
    let v = w
        .verify(
            &set,
            image_files(&img),
            Some(&installed("fw/app-2.img", b"two", 2)),
            None,
            w.now,
        )
        .unwrap();
    assert!(v.install.is_none());
}

#[test]
fn empty_assignment_needs_no_image_repository() {
    let mut w = World::new();
    let id = w.id();
    let set = w.director.sign(&id, HW, &[], w.now);
    // image transport serves nothing: must not be consulted
    let v = w
        .verify(&set, BundleImageMetadata::default(), None, None, w.now)
        .unwrap();
    assert!(v.install.is_none() && v.targets.is_empty());
}

#[test]
fn director_metadata_for_another_device_is_refused() {
    let mut w = World::new();
    let other = MemorySigner::generate_ed25519().unwrap();
    let t = target("fw/app-2.img", b"two", 2);
    let set = w
        .director
        .sign(other.keyid(), HW, std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "metadata is for device",
    );
}

#[test]
fn director_target_for_another_hardware_id_is_refused() {
    let mut w = World::new();
    let id = w.id();
    let t = target("fw/app-2.img", b"two", 2);
    let set = w
        .director
        .sign(&id, "board-b", std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "board-b",
    );
}

#[test]
fn image_target_built_for_another_hardware_id_is_refused() {
    let mut w = World::new();
    let id = w.id();
    let t = target("fw/app-2.img", b"two", 2);
    let set = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    // image repository signs it with custom.hardware_id = board-b
    let img = w.image.sign("image-repo", "board-b", &[t], w.now);
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "custom.hardware_id",
    );
}

#[test]
fn director_and_image_disagreeing_on_hashes_or_length_are_refused() {
    let mut w = World::new();
    let id = w.id();
    let set = w
        .director
        .sign(&id, HW, &[target("fw/app-2.img", b"two", 2)], w.now);
    let img = w.image.sign(
        "image-repo",
        HW,
        &[target("fw/app-2.img", b"TWO", 2)],
        w.now,
    );
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "disagree on hashes",
    );
    let mut w = World::new();
    let id = w.id();
    let set = w
        .director
        .sign(&id, HW, &[target("fw/app-2.img", b"two", 2)], w.now);
    let img = w.image.sign(
        "image-repo",
        HW,
        &[target("fw/app-2.img", b"two!", 2)],
        w.now,
    );
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "disagree on length",
    );
}

#[test]
fn image_release_counter_must_match_the_directors() {
    let mut w = World::new();
    let id = w.id();
    let set = w
        .director
        .sign(&id, HW, &[target("fw/app-2.img", b"two", 3)], w.now);
    let img = w.image.sign(
        "image-repo",
        HW,
        &[target("fw/app-2.img", b"two", 2)],
        w.now,
    );
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "custom.release_counter",
    );
}

#[test]
fn target_missing_from_the_image_repository_is_refused() {
    let mut w = World::new();
    let id = w.id();
    let set = w
        .director
        .sign(&id, HW, &[target("fw/evil.img", b"evil", 2)], w.now);
    let img = w.image.sign(
        "image-repo",
        HW,
        &[target("fw/app-2.img", b"two", 2)],
        w.now,
    );
    assert_attack(
        w.verify(&set, image_files(&img), None, None, w.now),
        "not signed by the image repository",
    );
}

#[test]
fn expired_director_timestamp_is_refused() {
    let mut w = World::new();
    let id = w.id();
    let t = target("fw/app-2.img", b"two", 2);
    let set = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    let later = w.now + Duration::days(2);
    let e = w
        .verify(&set, image_files(&img), None, None, later)
        .unwrap_err();
    assert!(matches!(e, VerifyError::Director(_)), "{e}");
    assert!(e.is_attack());
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn director_metadata_rollback_across_runs_is_refused() {
    let mut w = World::new();
    let id = w.id();
    let t = target("fw/app-2.img", b"two", 2);
    let old = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    let new = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    w.verify(&new, image_files(&img), None, None, w.now)
        .unwrap();
    // persisted: a replay of the older (validly signed) set is a rollback
    assert_attack(
        w.verify(&old, image_files(&img), None, None, w.now),
        "version",
    );
}

#[test]
fn downgrade_needs_a_valid_rollback_authorisation() {
    let mut w = World::new();
    let id = w.id();
    let inst = installed("fw/app-5.img", b"five", 5);
    let old = target("fw/app-3.img", b"three", 3);
    let img = w
        .image
        .sign("image-repo", HW, std::slice::from_ref(&old), w.now);

    let set = w.director.sign(&id, HW, std::slice::from_ref(&old), w.now);
    assert_attack(
        w.verify(&set, image_files(&img), Some(&inst), None, w.now),
        "below the installed 5",
    );

    let rb_key = MemorySigner::generate_ed25519().unwrap();
    let keys = RollbackKeys {
        keys: [(rb_key.keyid().to_owned(), rb_key.key().clone())].into(),
        threshold: 1,
    };
    let body = RollbackBody {
        type_: custody_director::rollback::TYPE_ROLLBACK.into(),
        wire_version: 1,
        device_ids: [id.clone()].into(),
        target: "fw/app-3.img".into(),
        release_counter: 3,
        expires: (w.now + Duration::hours(1)).timestamp(),
        reason: "bad 5".into(),
    };
    let mut authorised = old.clone();
    authorised.rollback_authorization = Some(
        RollbackAuthorization::sign(body.clone(), &[&rb_key])
            .unwrap()
            .to_value(),
    );
    let set = w
        .director
        .sign(&id, HW, std::slice::from_ref(&authorised), w.now);
    let v = w
        .verify(&set, image_files(&img), Some(&inst), Some(&keys), w.now)
        .unwrap();
    assert!(v.install.unwrap().rollback_authorized);

    // signed by a key the device does not trust (a compromised director)
    let rogue = MemorySigner::generate_ed25519().unwrap();
    let mut forged = old;
    forged.rollback_authorization = Some(
        RollbackAuthorization::sign(body, &[&rogue])
            .unwrap()
            .to_value(),
    );
    let set = w.director.sign(&id, HW, &[forged], w.now);
    assert_attack(
        w.verify(&set, image_files(&img), Some(&inst), Some(&keys), w.now),
        "rollback authorisation",
    );
}

#[test]
fn director_root_rotation_is_followed() {
    let mut w = World::new();
    let id = w.id();
    // rotate the director root to v2 with a new timestamp key
    let new_ts = MemorySigner::generate_ed25519().unwrap();
    let keys = DirectorRootKeys {
        root: &[&w.director.root],
        root_threshold: 1,
        targets: w.director.targets.key(),
        snapshot: w.director.snapshot.key(),
        timestamp: new_ts.key(),
    };
    let v2 = build_director_root(keys, 2, w.now + Duration::days(365)).unwrap();
    w.director.timestamp = new_ts;
    let t = target("fw/app-2.img", b"two", 2);
    let mut set = w.director.sign(&id, HW, std::slice::from_ref(&t), w.now);
    let img = w.image.sign("image-repo", HW, &[t], w.now);
    // without the new root the new timestamp key is not trusted
    assert!(w
        .verify(&set, image_files(&img), None, None, w.now)
        .is_err());
    set.roots = vec![v2];
    w.verify(&set, image_files(&img), None, None, w.now)
        .unwrap();
    let root = std::fs::read(w.dir.join("director/root.json")).unwrap();
    assert!(String::from_utf8_lossy(&root).contains("\"version\":2"));
    let _ = Path::new("");
}
