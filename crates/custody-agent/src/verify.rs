//! The device's verification pipeline: ONE function, [`verify_update`],
//! used for online check-ins and for offline bundles alike.
//!
//! It makes no trust decision of its own that custody-tuf or
//! custody-director already makes; it wires them together:
//!
//! 1. **Director repository**: the [`DirectorMetadataSet`]'s bytes (roots,
//!    timestamp, snapshot, targets) are fed to custody-tuf's [`Refresh`]
//!    over the device's persisted director metadata, so custody-tuf applies
//!    the whole TUF workflow: root chain, signatures, thresholds, rollback
//!    of every role against what this device trusted on its previous run,
//!    freeze (expiry), snapshot/targets consistency.
//! 2. **Device binding**: custody-director's
//!    [`verify_director_targets_for_device`] (device id and hardware id, in
//!    the signed binding field and in every target) runs inside that
//!    refresh, as its targets check: director targets bound to another
//!    device are never accepted, not even for this run.
//! 3. **Image repository**: [`Refresh`] again (HTTP online, the bundle's
//!    files offline), over the device's persisted image metadata; each
//!    director target is looked up through the delegation graph.
//! 4. **Agreement**: [`BoundTarget::agrees_with_image`](custody_director::director::BoundTarget::agrees_with_image) (length, hashes),
//!    plus, when the image target's signed `custom` names them, the
//!    hardware id and the release counter ([`BoundTarget::agrees_with_image_for`](custody_director::director::BoundTarget::agrees_with_image_for)).
//! 5. **Install decision**: custody-director's [`install::decide`]:
//!    anti-rollback (a release counter below the installed one is refused
//!    unless the director passed a rollback authorisation that verifies with
//!    this device's provisioned rollback keys) and at most one new target.
//!
//! **Verify fully, then persist.** Nothing is written while verifying: the
//! verified metadata the stores must keep comes back as
//! [`VerifiedUpdate::trusted_writes`], and the caller applies it
//! ([`TrustedWrites::persist`]) only once it accepts the whole update (for
//! a target to install: after the transparency-log check too). A refusal
//! for any reason leaves the trusted director and image stores
//! byte-identical, so a forged answer cannot move this device's rollback
//! references.
//!
//! The payload's bytes are verified later, while streaming, by custody-tuf's
//! `TargetVerifier` against the image repository's entry (which step 4
//! showed equal to the director's).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use custody_client::encoding::join_url;
use custody_client::{ClientError, FetchError, MetadataStore, StoreError, Transport};
use custody_director::install::{self, Decision, InstallError, TargetId};
use custody_director::rollback::RollbackKeys;
use custody_director::wire::DirectorMetadataSet;
use custody_director::{verify_director_targets_for_device, DirectorError};
use custody_tuf::{CheckError, Fetch, Limits, Refresh, Source, Step, StoreWrite, TargetFile};
use serde_json::Value;
use url::Url;

use crate::target::TargetMeta;

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
    /// custody-director's install decision refused the assignment: a
    /// downgrade no rollback authorisation covers, or more than one new
    /// target.
    #[error(transparent)]
    Install(#[from] InstallError),
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
            VerifyError::Install(InstallError::TooManyTargets { .. }) => "director".to_owned(),
            VerifyError::NotInImage { target, .. }
            | VerifyError::Install(InstallError::Downgrade { target, .. }) => target.clone(),
            VerifyError::Disagree(d) => match d.as_ref() {
                DirectorError::ImageMismatch { target, .. }
                | DirectorError::ImageCustom { target, .. } => target.clone(),
                _ => "director".to_owned(),
            },
        }
    }
}

/// Where the image repository's metadata comes from.
pub trait ImageMetadata {
    /// The remote file `fetch.file_name`, at most `fetch.max_bytes` bytes;
    /// `Ok(None)` only when it is a root that does not exist (the end of
    /// the root walk).
    fn fetch(&self, fetch: &Fetch) -> Result<Option<Vec<u8>>, ClientError>;
    /// Where `file_name` comes from, for messages.
    fn describe(&self, file_name: &str) -> String;
}

/// Online: the image repository's metadata URL, over a transport.
#[derive(Debug, Clone)]
pub struct HttpImageMetadata<T: Transport> {
    /// metadata base URL (ends with `/`)
    pub url: Url,
    /// the transport
    pub transport: T,
}

impl<T: Transport> ImageMetadata for HttpImageMetadata<T> {
    fn fetch(&self, fetch: &Fetch) -> Result<Option<Vec<u8>>, ClientError> {
        let url = join_url(&self.url, &fetch.file_name).map_err(|e| ClientError::Url {
            base: self.url.to_string(),
            relative: fetch.file_name.clone(),
            reason: e.to_string(),
        })?;
        match self.transport.fetch(&url, fetch.max_bytes) {
            Ok(body) => Ok(Some(body.read_all()?)),
            // 404/403 for the next root: the trusted root is the newest.
            Err(e) if e.is_not_found() && fetch.role == "root" => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn describe(&self, file_name: &str) -> String {
        join_url(&self.url, file_name)
            .map(String::from)
            .unwrap_or_else(|_| format!("{}{file_name}", self.url))
    }
}

/// Offline: a bundle's image metadata files, by file name
/// (`N.root.json`, `timestamp.json`, `[V.]snapshot.json`, …).
#[derive(Debug, Clone, Default)]
pub struct BundleImageMetadata {
    /// file name → bytes
    pub files: BTreeMap<String, Vec<u8>>,
}

impl ImageMetadata for BundleImageMetadata {
    fn fetch(&self, fetch: &Fetch) -> Result<Option<Vec<u8>>, ClientError> {
        match self.files.get(&fetch.file_name) {
            Some(b) => Ok(Some(b.clone())),
            None if fetch.role == "root" => Ok(None),
            None => Err(FetchError::NotFound {
                url: self.describe(&fetch.file_name),
                status: 404,
            }
            .into()),
        }
    }

    fn describe(&self, file_name: &str) -> String {
        format!("bundle image metadata {file_name}")
    }
}

/// The changes verification decided for the device's trusted metadata
/// stores, not yet applied (see the module docs: verify fully, then
/// persist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedWrites {
    /// for the director store
    pub director: Vec<StoreWrite>,
    /// for the image repository store
    pub image: Vec<StoreWrite>,
}

impl TrustedWrites {
    /// Apply them, each file crash-safely (temp file, fsync, rename), in
    /// the order the refresh decided.
    pub fn persist(&self, trust: &DeviceTrust<'_>) -> Result<(), StoreError> {
        for (dir, writes) in [
            (trust.director_dir, &self.director),
            (trust.image_dir, &self.image),
        ] {
            let store = MetadataStore::new(dir);
            for w in writes {
                match w {
                    StoreWrite::Persist { role, bytes } => store.persist(role, bytes)?,
                    StoreWrite::Remove { role } => store.remove(role)?,
                }
            }
        }
        Ok(())
    }
}

/// Start a refresh from the root in `dir`.
fn start_refresh(dir: &Path, now: DateTime<Utc>) -> Result<Refresh, ClientError> {
    let limits = Limits::default();
    let store = MetadataStore::new(dir);
    let path = store.path("root");
    let bytes = store
        .load("root", limits.max_root_bytes)?
        .ok_or(ClientError::NoTrustedRoot { path: path.clone() })?;
    Refresh::new(&bytes, limits, now).map_err(|error| ClientError::Rejected {
        source_name: path.display().to_string(),
        error,
    })
}

/// Drive `r` until it stops asking for files: local files from `dir`
/// (a missing or unreadable one is simply not used), remote ones from
/// `remote`. Nothing is written.
fn drive(
    r: &mut Refresh,
    dir: &Path,
    mut remote: impl FnMut(&Fetch) -> Result<Option<Vec<u8>>, ClientError>,
    describe: impl Fn(&str) -> String,
) -> Result<Step, ClientError> {
    let store = MetadataStore::new(dir);
    loop {
        let step = r.step().map_err(|error| ClientError::Rejected {
            source_name: dir.display().to_string(),
            error,
        })?;
        let Step::Fetch(f) = step else {
            return Ok(step);
        };
        let (bytes, from) = match f.source {
            Source::Local => (
                store.load(&f.role, f.max_bytes).ok().flatten(),
                store.path(&f.role).display().to_string(),
            ),
            Source::Remote => (remote(&f)?, describe(&f.file_name)),
        };
        r.provide(bytes.as_deref())
            .map_err(|error| ClientError::Rejected {
                source_name: from,
                error,
            })?;
    }
}

/// The director set's file for a request: roots by their signed version
/// (read without trusting it: custody-tuf verifies), the other roles by
/// role, whatever the consistent-snapshot file name.
fn director_file(set: &DirectorMetadataSet, f: &Fetch) -> Option<Vec<u8>> {
    match f.role.as_str() {
        "root" => set
            .roots
            .iter()
            .find(|r| {
                serde_json::from_slice::<Value>(r)
                    .ok()
                    .and_then(|v| v.get("signed")?.get("version")?.as_u64())
                    == f.version
            })
            .cloned(),
        "timestamp" => Some(set.timestamp.clone()),
        "snapshot" => Some(set.snapshot.clone()),
        "targets" => Some(set.targets.clone()),
        _ => None,
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
    /// what the trusted stores must keep once the caller accepts the update
    /// (nothing has been written yet)
    pub trusted_writes: TrustedWrites,
    /// version of the director targets metadata now trusted
    pub director_targets_version: u64,
    /// the director's targets for this device, all verified
    pub targets: Vec<VerifiedTarget>,
    /// the one to install now (`None`: the director's assignment is what
    /// is installed, or nothing is assigned)
    pub install: Option<VerifiedTarget>,
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
/// anti-rollback floor). Used online ([`HttpImageMetadata`]) and for
/// bundles ([`BundleImageMetadata`]), nothing else differs. Writes nothing:
/// see [`VerifiedUpdate::trusted_writes`].
pub fn verify_update(
    trust: &DeviceTrust<'_>,
    director: &DirectorMetadataSet,
    image: &dyn ImageMetadata,
    installed: Option<&TargetMeta>,
    now: DateTime<Utc>,
) -> Result<VerifiedUpdate, VerifyError> {
    // 1.+2. director repository, through the TUF workflow, with the device
    // binding checked before its targets role is accepted
    let (device_id, hardware_id) = (trust.device_id.to_owned(), trust.hardware_id.to_owned());
    let mut dir_refresh = start_refresh(trust.director_dir, now)
        .map_err(|e| VerifyError::Director(Box::new(e)))?
        .with_targets_check(Box::new(move |t| {
            verify_director_targets_for_device(t, &device_id, &hardware_id)
                .map(|_| ())
                .map_err(|e| Box::new(e) as CheckError)
        }));
    drive(
        &mut dir_refresh,
        trust.director_dir,
        |f| Ok(director_file(director, f)),
        |name| format!("director metadata {name}"),
    )
    .map_err(director_error)?;
    let Some(dtargets) = dir_refresh.trusted().targets() else {
        return Err(VerifyError::Director(Box::new(ClientError::Usage(
            "refresh ended without trusted targets".into(),
        ))));
    };
    let director_targets_version = dtargets.version;
    let bound = verify_director_targets_for_device(dtargets, trust.device_id, trust.hardware_id)
        .map_err(|e| VerifyError::Binding(Box::new(e)))?;
    let mut trusted_writes = TrustedWrites {
        director: dir_refresh.take_writes(),
        image: Vec::new(),
    };
    if bound.is_empty() {
        return Ok(VerifiedUpdate {
            trusted_writes,
            director_targets_version,
            targets: Vec::new(),
            install: None,
        });
    }
    // 3. image repository
    let img_err = |e| VerifyError::Image(Box::new(e));
    let mut img = start_refresh(trust.image_dir, now).map_err(img_err)?;
    let mut targets = Vec::with_capacity(bound.len());
    for b in &bound {
        img.lookup(&b.name);
        let info = match drive(
            &mut img,
            trust.image_dir,
            |f| image.fetch(f),
            |n| image.describe(n),
        )
        .map_err(img_err)?
        {
            Step::Found { target, .. } => target,
            _ => {
                return Err(VerifyError::NotInImage {
                    target: b.name.clone(),
                    detail: "no trusted targets role lists it".into(),
                })
            }
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
    trusted_writes.image = img.take_writes();
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
        trusted_writes,
        director_targets_version,
        targets,
        install,
    })
}

/// A director refresh error; the binding check's refusal is
/// [`VerifyError::Binding`].
fn director_error(e: ClientError) -> VerifyError {
    match e {
        ClientError::Rejected {
            error: custody_tuf::Error::Refused { source, role },
            source_name,
        } => match source.downcast::<DirectorError>() {
            Ok(d) => VerifyError::Binding(d),
            Err(source) => VerifyError::Director(Box::new(ClientError::Rejected {
                source_name,
                error: custody_tuf::Error::Refused { role, source },
            })),
        },
        e => VerifyError::Director(Box::new(e)),
    }
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
