//! Fixtures shared by the agent's verification tests (`verify.rs`,
//! `refusals.rs`): a repository signed here with custody-director's
//! builders (used for both the director and the image repository), and
//! targets described by their bytes.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use custody_director::director::{
    build_director_metadata, build_director_root, DeviceDirectorState, DirectorConfig,
    DirectorRootKeys, DirectorSigners, DirectorTarget,
};
use custody_director::wire::DirectorMetadataSet;
use custody_keys::MemorySigner;
use custody_keys::Signer;

/// The hardware id of the device under test.
pub const HW: &str = "board-a";

/// One repository's keys (a root valid for a year from `now`) and the
/// director state its next signing continues from.
pub struct Repo {
    pub root: MemorySigner,
    pub targets: MemorySigner,
    pub snapshot: MemorySigner,
    pub timestamp: MemorySigner,
    pub root_bytes: Vec<u8>,
    pub state: DeviceDirectorState,
}

impl Repo {
    pub fn new(now: DateTime<Utc>) -> Self {
        let g = || MemorySigner::generate_ed25519().unwrap();
        let (root, targets, snapshot, timestamp) = (g(), g(), g(), g());
        let root_bytes = build_director_root(
            DirectorRootKeys {
                root: &[&root],
                root_threshold: 1,
                targets: targets.key(),
                snapshot: snapshot.key(),
                timestamp: timestamp.key(),
            },
            1,
            now + Duration::days(365),
        )
        .unwrap();
        Repo {
            root,
            targets,
            snapshot,
            timestamp,
            root_bytes,
            state: DeviceDirectorState::default(),
        }
    }

    /// Sign targets/snapshot/timestamp; `device`/`hw` go into the binding
    /// (for the image repository they only end up in custom).
    pub fn sign(
        &mut self,
        device: &str,
        hw: &str,
        targets: &[DirectorTarget],
        now: DateTime<Utc>,
    ) -> DirectorMetadataSet {
        let m = build_director_metadata(
            DirectorSigners {
                targets: &self.targets,
                snapshot: &self.snapshot,
                timestamp: &self.timestamp,
            },
            device,
            hw,
            targets,
            &self.state,
            now,
            &DirectorConfig::default(),
        )
        .unwrap();
        self.state = m.state;
        DirectorMetadataSet {
            roots: vec![],
            timestamp: m.timestamp,
            snapshot: m.snapshot,
            targets: m.targets,
        }
    }
}

/// A target of these bytes (length and sha256) at `release_counter`.
pub fn target(name: &str, data: &[u8], counter: u64) -> DirectorTarget {
    DirectorTarget {
        name: name.into(),
        length: data.len() as u64,
        hashes: [(
            "sha256".to_owned(),
            hex::encode(ring::digest::digest(&ring::digest::SHA256, data)),
        )]
        .into(),
        release_counter: counter,
        rollback_authorization: None,
    }
}

/// A signed set laid out as image repository metadata files.
pub fn image_file_map(set: &DirectorMetadataSet) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("timestamp.json".to_owned(), set.timestamp.clone()),
        ("snapshot.json".to_owned(), set.snapshot.clone()),
        ("targets.json".to_owned(), set.targets.clone()),
    ])
}
