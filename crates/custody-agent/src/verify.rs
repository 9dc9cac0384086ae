//! The device's verification pipeline: ONE function, [`verify_update`],
//! used for online check-ins and for offline bundles alike.
//!
//! It makes no trust decision of its own that custody-tuf or
//! custody-director already makes; it wires them together:
//!
//! 1. **Director repository**: the [`DirectorMetadataSet`] (roots, timestamp,
//!    snapshot, targets) is served from memory ([`MemoryTransport`]) to
//!    custody-client's [`Updater`] over the device's persisted director
//!    metadata directory, so custody-tuf's `TrustedMetadata` applies the
//!    whole TUF workflow: root chain, signatures, thresholds, rollback of
//!    every role against what this device trusted on its previous run,
//!    freeze (expiry), snapshot/targets consistency.
//! 2. **Device binding**: custody-director's
//!    [`verify_director_targets_for_device`] (device id and hardware id, in
//!    the signed binding field and in every target).
//! 3. **Image repository**: custody-client's [`Updater`] again (HTTP online,
//!    [`MemoryTransport`] from bundle bytes offline), over the device's
//!    persisted image metadata; each director target is looked up through
//!    the delegation graph.
//! 4. **Agreement**: [`BoundTarget::agrees_with_image`](custody_director::director::BoundTarget::agrees_with_image) (length, hashes),
//!    plus, when the image target's signed `custom` names them, the
//!    hardware id and the release counter ([`BoundTarget::agrees_with_image_for`](custody_director::director::BoundTarget::agrees_with_image_for)).
//! 5. **Install decision**: custody-director's [`install::decide`]:
//!    anti-rollback (a release counter below the installed one is refused
//!    unless the director passed a rollback authorisation that verifies with
//!    this device's provisioned rollback keys) and at most one new target.
//!
//! The payload's bytes are verified later, while streaming, by custody-tuf's
//! `TargetVerifier` against the image repository's entry (which step 4
//! showed equal to the director's).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use custody_client::{ClientError, FetchError, Fetched, Transport, Updater, UpdaterConfig};
use custody_director::install::{self, Decision, InstallError, TargetId};
use custody_director::rollback::RollbackKeys;
use custody_director::wire::DirectorMetadataSet;
use custody_director::{verify_director_targets_for_device, DirectorError};
use custody_tuf::TargetFile;
use serde_json::Value;
use url::Url;

use crate::target::TargetMeta;

/// Base URL under which director metadata is served from memory.
pub const DIRECTOR_MEM_URL: &str = "custody-mem://director/";
/// Base URL under which bundled image metadata is served from memory.
pub const IMAGE_MEM_URL: &str = "custody-mem://image/";

/// Why an update was refused. [`VerifyError::is_attack`] tells a broken
/// trust rule (reported as an attack) from a transient failure (retried).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// custody-tuf refused the director metadata (signature, version
    /// rollback, expiry, ...), or it could not be read.
    #[error("director repository: {0}")]
    Director(Box<ClientError>),
    /// The director metadata is not bound to this device.
    #[error("{0}")]
    Binding(Box<DirectorError>),
    /// custody-tuf refused the image repository metadata, or it could not
    /// be fetched.
    #[error("image repository: {0}")]
    Image(Box<ClientError>),
    /// The director assigned a target the image repository does not sign.
    #[error("target {target:?}: assigned by the director but not signed by the image repository: {detail}")]
    NotInImage {
        /// target path
        target: String,
        /// the lookup's answer
        detail: String,
    },
    /// Director and image repository disagree (length, hashes, hardware
    /// id, release counter).
    #[error("{0}")]
    Disagree(Box<DirectorError>),
    /// A lower release counter than the installed one, not covered by a
    /// valid rollback authorisation.
    #[error(
        "target {target:?}: release counter {offered} is below the installed {installed}: {why}"
    )]
    Downgrade {
        /// target path
        target: String,
        /// offered counter
        offered: u64,
        /// installed counter
        installed: u64,
        /// why no authorisation covers it
        why: String,
    },
    /// The director assigned more than one new target; this agent manages
    /// one image.
    #[error("director assigned {count} targets to install ({names}); this agent installs one image per device")]
    TooManyTargets {
        /// how many
        count: usize,
        /// their names
        names: String,
    },
}

fn client_error_is_attack(e: &ClientError) -> bool {
    match e {
        ClientError::Rejected { .. } => true,
        ClientError::Fetch(FetchError::EndlessData { .. }) => true,
        ClientError::Fetch(_) | ClientError::Store(_) => false,
        _ => true,
    }
}

impl VerifyError {
    /// True if a trust rule was broken (report as an attack); false for a
    /// transient failure (network, local IO) that a later check retries.
    pub fn is_attack(&self) -> bool {
        match self {
            VerifyError::Director(e) | VerifyError::Image(e) => client_error_is_attack(e),
            _ => true,
        }
    }

    /// What the refusal is about (an attack report's `subject`).
    pub fn subject(&self) -> String {
        match self {
            VerifyError::Director(_) | VerifyError::Binding(_) => "director".to_owned(),
            VerifyError::Image(_) => "image repository".to_owned(),
            VerifyError::TooManyTargets { .. } => "director".to_owned(),
            VerifyError::NotInImage { target, .. } | VerifyError::Downgrade { target, .. } => {
                target.clone()
            }
            VerifyError::Disagree(d) => match d.as_ref() {
                DirectorError::ImageMismatch { target, .. }
                | DirectorError::ImageCustom { target, .. } => target.clone(),
                _ => "director".to_owned(),
            },
        }
    }
}

/// Serves files from memory by their last path segment: director metadata
/// from a check-in response or a bundle, and bundled image metadata. Every
/// fetch is still bounded by custody-client's [`Fetched`]; a missing name
/// is "not found" (which ends the root walk, spec 5.3.3).
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    files: BTreeMap<String, Vec<u8>>,
    /// `V.snapshot.json` → `snapshot.json` (director sets carry unversioned
    /// role files; roots always carry their version)
    unversioned_fallback: bool,
}

impl MemoryTransport {
    /// Serve exactly these files (name → bytes).
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> Self {
        MemoryTransport {
            files,
            unversioned_fallback: false,
        }
    }

    /// Serve a director metadata set: each root under `V.root.json` (its
    /// signed version, read without trusting it: custody-tuf verifies),
    /// the other roles under their plain and consistent-snapshot names.
    pub fn director(set: &DirectorMetadataSet) -> Self {
        let mut files = BTreeMap::new();
        for r in &set.roots {
            let version = serde_json::from_slice::<Value>(r)
                .ok()
                .and_then(|v| v.get("signed")?.get("version")?.as_u64());
            if let Some(v) = version {
                files.insert(format!("{v}.root.json"), r.clone());
            }
        }
        files.insert("timestamp.json".to_owned(), set.timestamp.clone());
        files.insert("snapshot.json".to_owned(), set.snapshot.clone());
        files.insert("targets.json".to_owned(), set.targets.clone());
        MemoryTransport {
            files,
            unversioned_fallback: true,
        }
    }

    /// The files served.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }
}

impl Transport for MemoryTransport {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default();
        let mut found = self.files.get(name);
        if found.is_none() && self.unversioned_fallback {
            if let Some((v, rest)) = name.split_once('.') {
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && rest != "root.json" {
                    found = self.files.get(rest);
                }
            }
        }
        let Some(bytes) = found else {
            return Err(FetchError::NotFound {
                url: url.as_str().to_owned(),
                status: 404,
            });
        };
        Fetched::new(
            url.as_str(),
            max_len,
            Some(bytes.len() as u64),
            Box::new(std::io::Cursor::new(bytes.clone())),
        )
    }
}

/// What this device trusts and is.
#[derive(Debug, Clone, Copy)]
pub struct DeviceTrust<'a> {
    /// persisted director metadata (`root.json` pinned at enrolment, then
    /// the last verified timestamp / snapshot / targets)
    pub director_dir: &'a Path,
    /// persisted image repository metadata
    pub image_dir: &'a Path,
    /// this device's id (key id of its key)
    pub device_id: &'a str,
    /// this device's hardware id
    pub hardware_id: &'a str,
    /// keys trusted to authorise rollbacks; `None`: no downgrade ever
    pub rollback_keys: Option<&'a RollbackKeys>,
}

/// A director target that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedTarget {
    /// what the installer gets (director's name, length, hashes, counter;
    /// the image repository's custom metadata)
    pub meta: TargetMeta,
    /// the image repository's signed entry (payload bytes are verified
    /// against it while streaming)
    pub image: TargetFile,
    /// the path to request under the image repository's targets URL
    /// (consistent-snapshot prefix applied)
    pub remote_path: String,
    /// a lower counter than installed, covered by a verified rollback
    /// authorisation
    pub rollback_authorized: bool,
}

/// The result of [`verify_update`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedUpdate {
    /// version of the director targets metadata now trusted
    pub director_targets_version: u64,
    /// the director's targets for this device, all verified
    pub targets: Vec<VerifiedTarget>,
    /// the one to install now (`None`: the director's assignment is what
    /// is installed, or nothing is assigned)
    pub install: Option<VerifiedTarget>,
}

impl From<InstallError> for VerifyError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Downgrade {
                target,
                offered,
                installed,
                why,
            } => VerifyError::Downgrade {
                target,
                offered,
                installed,
                why: why.to_string(),
            },
            InstallError::TooManyTargets { names } => VerifyError::TooManyTargets {
                count: names.len(),
                names: names.join(", "),
            },
        }
    }
}

impl TargetMeta {
    /// This target's identity for custody-director's install decision.
    fn id(&self) -> TargetId<'_> {
        TargetId {
            name: &self.name,
            release_counter: self.release_counter,
            length: self.length,
            hashes: &self.hashes,
        }
    }
}

/// Whether `installed` is this exact target (name, counter, length and
/// every shared hash; custody-director's [`TargetId::is_same`]).
pub fn is_same_target(installed: &TargetMeta, t: &TargetMeta) -> bool {
    installed.id().is_same(&t.id())
}

/// Verify director metadata and the image repository for this device and
/// decide what to install. `installed` is the committed target (the
/// anti-rollback floor). Used online (`image_transport` = HTTP) and for
/// bundles (`image_transport` = [`MemoryTransport`]), nothing else differs.
pub fn verify_update<I: Transport>(
    trust: &DeviceTrust<'_>,
    director: &DirectorMetadataSet,
    image_metadata_url: Url,
    image_transport: I,
    installed: Option<&TargetMeta>,
    now: DateTime<Utc>,
) -> Result<VerifiedUpdate, VerifyError> {
    // 1. director repository, through the TUF workflow
    let url = Url::parse(DIRECTOR_MEM_URL)
        .map_err(|e| VerifyError::Director(Box::new(ClientError::Usage(e.to_string()))))?;
    let mut dir_updater = Updater::new(
        trust.director_dir,
        url,
        MemoryTransport::director(director),
        UpdaterConfig::default(),
        now,
    )
    .map_err(|e| VerifyError::Director(Box::new(e)))?;
    dir_updater
        .refresh()
        .map_err(|e| VerifyError::Director(Box::new(e)))?;
    let Some(dtargets) = dir_updater.trusted().targets() else {
        return Err(VerifyError::Director(Box::new(ClientError::Usage(
            "refresh ended without trusted targets".into(),
        ))));
    };
    let director_targets_version = dtargets.version;
    // 2. bound to this device
    let bound = verify_director_targets_for_device(dtargets, trust.device_id, trust.hardware_id)
        .map_err(|e| VerifyError::Binding(Box::new(e)))?;
    if bound.is_empty() {
        return Ok(VerifiedUpdate {
            director_targets_version,
            targets: Vec::new(),
            install: None,
        });
    }
    // 3. image repository
    let mut img = Updater::new(
        trust.image_dir,
        image_metadata_url,
        image_transport,
        UpdaterConfig::default(),
        now,
    )
    .map_err(|e| VerifyError::Image(Box::new(e)))?;
    img.refresh().map_err(|e| VerifyError::Image(Box::new(e)))?;
    let mut targets = Vec::with_capacity(bound.len());
    for b in &bound {
        let Some((_role, info)) = img
            .get_target_info(&b.name)
            .map_err(|e| VerifyError::Image(Box::new(e)))?
        else {
            return Err(VerifyError::NotInImage {
                target: b.name.clone(),
                detail: "no trusted targets role lists it".into(),
            });
        };
        // 4. both repositories agree
        b.agrees_with_image_for(&info, trust.hardware_id)
            .map_err(|e| VerifyError::Disagree(Box::new(e)))?;
        let meta = TargetMeta {
            name: b.name.clone(),
            length: b.length,
            hashes: b.hashes.clone().into_iter().collect(),
            release_counter: b.release_counter,
            custom: info.custom.clone(),
        };
        targets.push(VerifiedTarget {
            remote_path: img.trusted().target_remote_path(&b.name, &info),
            meta,
            image: info,
            // set by the install decision below
            rollback_authorized: false,
        });
    }
    // 5. the install decision (anti-rollback, at most one new target);
    // `targets[i]` is `bound[i]`, verified
    let install = match install::decide(
        trust.device_id,
        &bound,
        installed.map(TargetMeta::id),
        trust.rollback_keys,
        now,
    )? {
        Decision::Keep => None,
        Decision::Install {
            index,
            rollback_authorized,
        } => targets.get_mut(index).map(|t| {
            t.rollback_authorized = rollback_authorized;
            t.clone()
        }),
    };
    Ok(VerifiedUpdate {
        director_targets_version,
        targets,
        install,
    })
}

/// The version of the director root this device trusts (the `root=N` of a
/// check-in).
pub fn trusted_root_version(metadata_dir: &Path) -> Result<u64, ClientError> {
    let store = custody_client::MetadataStore::new(metadata_dir);
    let limits = custody_tuf::Limits::default();
    let path = store.path("root");
    let bytes = store
        .load("root", limits.max_root_bytes)?
        .ok_or(ClientError::NoTrustedRoot { path: path.clone() })?;
    let t = custody_tuf::TrustedMetadata::with_limits(&bytes, limits).map_err(|error| {
        ClientError::Rejected {
            source_name: path.display().to_string(),
            error,
        }
    })?;
    Ok(t.root().version)
}
