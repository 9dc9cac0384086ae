//! Server-side TUF repository authoring: one `custody-repo` repository per
//! hosted repository under `<data-dir>/authoring/<repo>/`, online snapshot
//! and timestamp keys under `<data-dir>/keys/<repo>/` (encrypted PKCS#8, the
//! passphrase from `CUSTODY_KEY_PASSPHRASE`), publishing into [`Hosting`].
//!
//! The server never holds root or targets keys: those roles are drafted
//! here and signed offline, the signatures arriving through the sign
//! endpoint ([`merge_signatures`]), where custody-tuf checks each one. A
//! publish whose targets role is under threshold is kept as a draft and goes
//! live when the last missing signature is merged.
//!
//! Every function here is blocking (file system, signing): callers run
//! them on the blocking pool while holding [`Authoring::lock`], and
//! `Repository::open` takes the repository's file lock (another process or
//! replica working on it gives [`AuthoringError::Busy`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use custody_keys::passphrase::SecretSource;
use custody_keys::{KeyType, TufPublicKey};
use custody_repo::custody_provenance::{self, Policy};
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{
    InitOptions, ProvenanceInput, PublishFile, RoleInit, PROVENANCE_POLICY_FILE,
};
use custody_repo::{RepoError, Repository};
use serde::Serialize;
use utoipa::ToSchema;

use super::hosting::{HostError, Hosting};

/// Environment variable holding the passphrase of the online key files.
pub const KEY_PASSPHRASE_ENV: &str = "CUSTODY_KEY_PASSPHRASE";

/// Committed hosting generations kept per repository (the newest ones).
const KEEP_GENERATIONS: usize = 4;

/// Largest provenance envelope the server stores (real SLSA envelopes are
/// a few KiB; custody-provenance's default parse bound is the same).
pub const MAX_ENVELOPE_BYTES: u64 = custody_provenance::MAX_ENVELOPE_BYTES as u64;

/// Largest provenance policy accepted (a policy is a few KiB; keys and
/// rules for many teams stay far below this).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    #[error(
        "repository {0:?} does not exist on this server; create it first (POST /api/v1/repos/{0})"
    )]
    NoRepo(String),
    #[error("repository {0:?} already exists")]
    Exists(String),
    #[error("repository {repo:?} is busy: {detail}")]
    Busy { repo: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "role {role} of repository {repo:?} is under threshold ({have} of {threshold} valid signatures); missing signatures by key ids {missing:?}; the draft is kept: sign it through POST /api/v1/repos/{repo}/roles/{role}/signatures"
    )]
    Unsigned {
        repo: String,
        role: String,
        threshold: u64,
        have: usize,
        missing: Vec<String>,
    },
    #[error("repository {repo:?}: {source}")]
    Repo {
        repo: String,
        #[source]
        source: RepoError,
    },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

fn repo_err(repo: &str) -> impl FnOnce(RepoError) -> AuthoringError + '_ {
    move |source| {
        let text = source.to_string();
        if text.contains("lock") && text.contains("is held") {
            AuthoringError::Busy {
                repo: repo.to_owned(),
                detail: text,
            }
        } else {
            AuthoringError::Repo {
                repo: repo.to_owned(),
                source,
            }
        }
    }
}

/// One target a publish should list.
#[derive(Debug, Clone)]
pub struct WantedTarget {
    pub name: String,
    pub blob: PathBuf,
    pub sha256: String,
    pub length: u64,
    pub custom: Option<serde_json::Value>,
    /// A local file holding the DSSE provenance envelope whose sha256 the
    /// stage handler put in `custom.custody.provenance.sha256` (checked
    /// there against the repository's policy; custody-repo checks it again
    /// when it adds the target).
    pub provenance: Option<PathBuf>,
}

/// What a publish or a signature merge changed and whether it went live.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishOutcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    /// hosting generation id, when the repository went live
    pub generation: Option<String>,
}

/// Signature state of a role after a merge.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleSigState {
    pub role: String,
    pub version: u64,
    pub threshold: u64,
    pub signed_by: Vec<String>,
    pub missing: Vec<String>,
    pub threshold_met: bool,
}

pub struct Authoring {
    dir: PathBuf,
    keys_dir: PathBuf,
    tmp_dir: PathBuf,
    passphrase: SecretSource,
    /// `pkcs11:` URI template (`{repo}`, `{role}`) of online keys kept on a
    /// token; `None`: encrypted key files under `keys/<repo>/`.
    pkcs11_online_keys: Option<String>,
    /// Serialises authoring within this process (the file lock inside
    /// `Repository::open` serialises across processes).
    pub lock: tokio::sync::Mutex<()>,
}

/// `t` is listed by the role it belongs to with its length, sha256 and custom.
fn listed_as(r: &Repository, t: &WantedTarget) -> bool {
    let role = r.role_for_path(&t.name);
    r.targets_role(&role)
        .and_then(|env| env.signed.targets.get(&t.name))
        .is_some_and(|tf| {
            tf.length == t.length
                && tf.hashes.get("sha256") == Some(&t.sha256)
                && tf.custom == t.custom
        })
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> AuthoringError + 'a {
    move |source| AuthoringError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// The envelope of a publish group (its targets share one `custom`, so one
/// provenance digest): read bounded, and its bytes must still hash to the
/// digest checked at staging.
fn group_envelope(group: &[&WantedTarget]) -> Result<ProvenanceInput, AuthoringError> {
    let Some(t) = group.first() else {
        return Ok(ProvenanceInput::default());
    };
    let Some(want) = custody_provenance::provenance_digest(t.custom.as_ref()) else {
        return Ok(ProvenanceInput::default());
    };
    let Some(path) = &t.provenance else {
        return Err(AuthoringError::Corrupt(format!(
            "target {:?}: custom.custody.provenance.sha256 is {want} but the server holds no such envelope; stage the target again with its provenance",
            t.name
        )));
    };
    let bytes = read_bounded(path, MAX_ENVELOPE_BYTES)?;
    let got = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    if got != want {
        return Err(AuthoringError::Corrupt(format!(
            "target {:?}: the provenance envelope file {} hashes to {got}, not to the staged custom.custody.provenance.sha256 {want}; refusing to publish it",
            t.name,
            path.display()
        )));
    }
    Ok(ProvenanceInput {
        envelope: Some(bytes),
        policy: None,
    })
}

/// Targets of the top-level targets role that are new or changed (length,
/// sha256 or custom) compared with the served generation, and those no
/// longer listed. With nothing served yet, every target is new. A served
/// targets file that cannot be read counts as empty (the log then records
/// the targets again rather than missing one).
fn hosted_difference(r: &Repository, repo: &str, hosting: &Hosting) -> (Vec<String>, Vec<String>) {
    let Some(new) = r.targets_role("targets").map(|e| &e.signed.targets) else {
        return (vec![], vec![]);
    };
    let old: serde_json::Map<String, serde_json::Value> = hosting
        .current_generation_dir(repo)
        .and_then(|dir| served_targets(&dir.join("metadata")))
        .unwrap_or_default();
    let added = new
        .iter()
        .filter(|(name, tf)| {
            old.get(name.as_str()).is_none_or(|o| {
                o.get("length").and_then(serde_json::Value::as_u64) != Some(tf.length)
                    || o.pointer("/hashes/sha256")
                        .and_then(serde_json::Value::as_str)
                        != tf.hashes.get("sha256").map(String::as_str)
                    || o.get("custom") != tf.custom.as_ref()
            })
        })
        .map(|(name, _)| name.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|name| !new.contains_key(name.as_str()))
        .cloned()
        .collect();
    (added, removed)
}

/// `signed.targets` of the newest `<version>.targets.json` in a served
/// metadata directory (generations keep every version; versions only grow).
fn served_targets(meta: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let newest = std::fs::read_dir(meta)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let v: u64 = name.strip_suffix(".targets.json")?.parse().ok()?;
            Some((v, e.path()))
        })
        .max_by_key(|(v, _)| *v)?;
    let bytes = read_bounded(&newest.1, 64 << 20).ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match doc.pointer("/signed/targets")? {
        serde_json::Value::Object(m) => Some(m.clone()),
        _ => None,
    }
}

/// A whole file of at most `limit` bytes ([`custody_fs::read_to_end_bounded`]).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, AuthoringError> {
    let f = std::fs::File::open(path).map_err(io(path, "open"))?;
    custody_fs::read_to_end_bounded(f, limit, path).map_err(|e| match e {
        custody_fs::FsError::Io { path, error, .. } => AuthoringError::Io {
            path,
            op: "read",
            source: error,
        },
        // Same text as before custody-fs.
        _ => AuthoringError::Invalid(format!(
            "{}: larger than the limit of {limit} bytes",
            path.display()
        )),
    })
}

impl Authoring {
    /// `passphrase_file`: where the online key passphrase is read from
    /// (default: the `CUSTODY_KEY_PASSPHRASE` environment variable).
    pub fn new(
        data_dir: &Path,
        passphrase_file: Option<&Path>,
    ) -> Result<Authoring, AuthoringError> {
        let dir = data_dir.join("authoring");
        let keys_dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        std::fs::create_dir_all(&keys_dir).map_err(io(&keys_dir, "create directory"))?;
        let passphrase = match passphrase_file {
            Some(p) => SecretSource::File(p.to_owned()),
            None => SecretSource::Env(KEY_PASSPHRASE_ENV.into()),
        };
        Ok(Authoring {
            dir,
            keys_dir,
            tmp_dir: data_dir.join("tmp"),
            passphrase,
            pkcs11_online_keys: None,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Keep the online (snapshot, timestamp) keys of repositories created
    /// from now on a PKCS#11 token: `template` is a `pkcs11:` URI with
    /// `{repo}` and `{role}` placeholders naming keys the operator made on
    /// the token (the private keys never leave it). The module path comes
    /// only from the server configuration, never from an API caller.
    pub fn with_pkcs11_online_keys(mut self, template: Option<String>) -> Authoring {
        self.pkcs11_online_keys = template;
        self
    }

    /// Open the online key of `role` for a new repository: a token object
    /// named by the PKCS#11 template, or a fresh encrypted key file.
    fn new_online_key(
        &self,
        repo: &str,
        role: &str,
        kdir: &Path,
    ) -> Result<(Box<dyn custody_keys::Signer>, KeyLocation), AuthoringError> {
        if let Some(template) = &self.pkcs11_online_keys {
            let uri = template.replace("{repo}", repo).replace("{role}", role);
            let parsed: custody_keys::pkcs11::Pkcs11Uri =
                uri.parse().map_err(|e: custody_keys::SignerError| {
                    AuthoringError::Invalid(format!("pkcs11_online_key_uri for {repo}/{role}: {e}"))
                })?;
            let signer = custody_keys::pkcs11::Pkcs11Signer::open(&parsed).map_err(|e| {
                AuthoringError::Invalid(format!(
                    "the {role} key of {repo:?} must exist on the PKCS#11 token as {uri:?} (make it with pkcs11-tool --keypairgen): {e}"
                ))
            })?;
            return Ok((Box::new(signer), KeyLocation::Pkcs11 { uri }));
        }
        let pass = self
            .passphrase
            .read("passphrase for the server's online keys", false)
            .map_err(|e| {
                AuthoringError::Invalid(format!(
                    "the server has no passphrase for its online keys (set {KEY_PASSPHRASE_ENV} or key_passphrase_file): {e}"
                ))
            })?;
        if pass.is_empty() {
            return Err(AuthoringError::Invalid(format!(
                "{KEY_PASSPHRASE_ENV} is empty; online key files must be encrypted"
            )));
        }
        std::fs::create_dir_all(kdir).map_err(io(kdir, "create directory"))?;
        // A leftover key of an earlier failed creation is replaced: it
        // was never listed in any published root.
        let path = kdir.join(format!("{role}.pem"));
        let _ = std::fs::remove_file(&path);
        let signer = custody_keys::keyfile::generate(&path, KeyType::Ed25519, pass.as_bytes())
            .map_err(|e| repo_err(repo)(RepoError::from(e)))?;
        Ok((Box::new(signer), KeyLocation::File { path }))
    }

    fn keyring(&self) -> KeyRing {
        KeyRing::new(self.passphrase.clone())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.dir.join(repo)
    }

    pub fn exists(&self, repo: &str) -> bool {
        self.repo_dir(repo)
            .join(custody_repo::repository::CONFIG_FILE)
            .is_file()
    }

    fn open(&self, repo: &str) -> Result<Repository, AuthoringError> {
        if !self.exists(repo) {
            return Err(AuthoringError::NoRepo(repo.to_owned()));
        }
        Repository::open(&self.repo_dir(repo)).map_err(repo_err(repo))
    }

    /// Creates the repository: fresh online snapshot and timestamp keys
    /// (key files under `keys/<repo>/`), root and targets keys given as
    /// public keys only (offline). Root and targets version 1 stay unsigned
    /// until their offline keys sign them through the sign endpoint.
    pub fn create(
        &self,
        repo: &str,
        root: (Vec<TufPublicKey>, u64),
        targets: (Vec<TufPublicKey>, u64),
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, AuthoringError> {
        self.create_with_bins(repo, root, targets, None, now)
    }

    /// [`Authoring::create`], and with `hash_bins = Some(n)` the targets
    /// role delegates every path to `n` succinct hash bins (TAP 15; a
    /// power of two, 2..=65536) signed by one more online key, `bins`.
    ///
    /// The trade (PEP 458's): the offline targets key signs the delegation
    /// once, and from then on publishes go live with online signatures
    /// only, each rewriting one bin, snapshot and timestamp. A stolen
    /// server can then sign targets into the bins until the offline holders
    /// revoke the bins key; a repository without bins needs the offline
    /// targets signature on every publish.
    pub fn create_with_bins(
        &self,
        repo: &str,
        root: (Vec<TufPublicKey>, u64),
        targets: (Vec<TufPublicKey>, u64),
        hash_bins: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, AuthoringError> {
        let bit_length = match hash_bins {
            None => None,
            Some(n) if n.is_power_of_two() && (2..=65536).contains(&n) => Some(n.trailing_zeros()),
            Some(n) => {
                return Err(AuthoringError::Invalid(format!(
                    "hash_bins must be a power of two in 2..=65536, got {n}"
                )))
            }
        };
        let dir = self.repo_dir(repo);
        if self.exists(repo) {
            return Err(AuthoringError::Exists(repo.to_owned()));
        }
        let kdir = self.keys_dir.join(repo);
        let mut ring = self.keyring();
        let mut roles = BTreeMap::new();
        let mut online = BTreeMap::new();
        for role in ["snapshot", "timestamp"] {
            let (signer, location) = self.new_online_key(repo, role, &kdir)?;
            let key = signer.key().clone();
            let id = signer.keyid().to_owned();
            online.insert(role.to_owned(), id.clone());
            ring.add(signer);
            roles.insert(
                role.to_owned(),
                RoleInit {
                    keys: vec![(key, id, location)],
                    threshold: 1,
                },
            );
        }
        for (role, (keys, threshold)) in [("root", root), ("targets", targets)] {
            let mut list = Vec::new();
            for k in keys {
                let id = custody_keys::keys::keyid(&k)
                    .map_err(|e| repo_err(repo)(RepoError::from(e)))?;
                list.push((k, id, KeyLocation::Offline));
            }
            roles.insert(
                role.to_owned(),
                RoleInit {
                    keys: list,
                    threshold,
                },
            );
        }
        let opts = InitOptions {
            roles,
            expiry: ExpiryPolicy::default(),
            consistent_snapshot: true,
            allow_shared_keys: false,
        };
        if dir.exists() {
            // A half-created directory from an earlier failed attempt (no
            // config file, so never opened): start over.
            std::fs::remove_dir_all(&dir).map_err(io(&dir, "remove incomplete repository"))?;
        }
        let mut r = Repository::init(&dir, opts, &mut ring, now).map_err(repo_err(repo))?;
        if let Some(bits) = bit_length {
            let (signer, location) = self.new_online_key(repo, "bins", &kdir)?;
            let key = (signer.key().clone(), signer.keyid().to_owned(), location);
            online.insert("bins".to_owned(), key.1.clone());
            ring.add(signer);
            r.hash_bins("targets", "bins", bits, &[key], 1, &mut ring, now)
                .map_err(repo_err(repo))?;
        }
        r.save().map_err(repo_err(repo))?;
        Ok(online)
    }

    /// The staged bytes of `role` (what offline signers sign).
    pub fn export_role(&self, repo: &str, role: &str) -> Result<Vec<u8>, AuthoringError> {
        let r = self.open(repo)?;
        r.export_role(role).map_err(repo_err(repo))
    }

    /// Applies the wanted targets (adding new or changed ones, removing
    /// yanked ones), refreshes snapshot and timestamp with the online keys,
    /// saves, and goes live if every role is at threshold.
    pub fn publish(
        &self,
        repo: &str,
        wanted: &[WantedTarget],
        yanked: &[String],
        hosting: &Hosting,
        now: DateTime<Utc>,
    ) -> Result<PublishOutcome, AuthoringError> {
        let mut r = self.open(repo)?;
        let mut ring = self.keyring();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        // Targets not yet listed with these bytes and this custom, grouped
        // by custom: each group is added by one add_targets call over a
        // tree of hard links (one targets version bump and one snapshot /
        // timestamp re-sign per group instead of per target).
        let mut groups: BTreeMap<String, (Option<serde_json::Value>, Vec<&WantedTarget>)> =
            BTreeMap::new();
        for t in wanted {
            if listed_as(&r, t) {
                continue;
            }
            let key = t.custom.as_ref().map(|c| c.to_string()).unwrap_or_default();
            groups
                .entry(key)
                .or_insert_with(|| (t.custom.clone(), Vec::new()))
                .1
                .push(t);
        }
        // With a policy stored, custody-repo's own gate checks every added
        // target again (the policy may have changed since staging), so it
        // gets the envelope. Without one, the digest staged under the
        // policy then in force stays in `custom` and nothing re-checks it.
        let policy_set = r.provenance_policy().map_err(repo_err(repo))?.is_some();
        for (custom, group) in groups.into_values() {
            let provenance = if policy_set {
                group_envelope(&group)?
            } else {
                ProvenanceInput::default()
            };
            self.add_group(repo, &mut r, &group, custom, &provenance, &mut ring, now)?;
            for t in &group {
                // The staged bytes were hashed again by custody-repo: a blob
                // changed on disk since its verified upload is refused here
                // instead of being signed.
                if !listed_as(&r, t) {
                    return Err(AuthoringError::Corrupt(format!(
                        "target {:?}: the blob file {} no longer has the uploaded length {} and sha256 {}; refusing to publish it",
                        t.name,
                        t.blob.display(),
                        t.length,
                        t.sha256
                    )));
                }
                added.push(t.name.clone());
            }
        }
        for name in yanked {
            let listed = r.targets_roles().iter().any(|role| {
                r.targets_role(role)
                    .is_some_and(|env| env.signed.targets.contains_key(name))
            });
            if listed {
                r.remove_target(name, &mut ring, now)
                    .map_err(repo_err(repo))?;
                removed.push(name.clone());
            }
        }
        // New snapshot and timestamp with the online keys, also when no
        // target changed (a publish then renews their expiry).
        r.refresh(&mut ring, now).map_err(repo_err(repo))?;
        r.save().map_err(repo_err(repo))?;
        self.go_live(repo, &r, added, removed, hosting, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_group(
        &self,
        repo: &str,
        r: &mut Repository,
        group: &[&WantedTarget],
        custom: Option<serde_json::Value>,
        provenance: &ProvenanceInput,
        ring: &mut KeyRing,
        now: DateTime<Utc>,
    ) -> Result<(), AuthoringError> {
        if let [t] = group {
            r.add_targets_with_provenance(&t.blob, Some(&t.name), custom, provenance, ring, now)
                .map_err(repo_err(repo))?;
            return Ok(());
        }
        let tree = self
            .tmp_dir
            .join(format!("publish-{}", crate::ids::random_hex(8)));
        let built = (|| -> std::io::Result<()> {
            for t in group {
                let mut path = tree.clone();
                // Names were validated when staged (relative, no `.`/`..`).
                for seg in t.name.split('/') {
                    path.push(seg);
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::hard_link(&t.blob, &path).is_err() {
                    std::fs::copy(&t.blob, &path)?;
                }
            }
            Ok(())
        })();
        let result = match built {
            Ok(()) => r
                .add_targets_with_provenance(&tree, None, custom, provenance, ring, now)
                .map(|_| ())
                .map_err(repo_err(repo)),
            // e.g. a target that is also a directory prefix of another:
            // fall back to one add per target.
            Err(e) => {
                tracing::debug!(repo, error = %e, "publish tree not buildable; adding targets one by one");
                group.iter().try_for_each(|t| {
                    r.add_targets_with_provenance(
                        &t.blob,
                        Some(&t.name),
                        custom.clone(),
                        provenance,
                        ring,
                        now,
                    )
                    .map(|_| ())
                    .map_err(repo_err(repo))
                })
            }
        };
        let _ = std::fs::remove_dir_all(&tree);
        result
    }

    /// Merges the signatures of `bytes` (a signed copy of the staged
    /// `role`) and goes live when nothing is under threshold any more.
    pub fn merge_signatures(
        &self,
        repo: &str,
        role: &str,
        bytes: &[u8],
        hosting: &Hosting,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, RoleSigState, Option<PublishOutcome>), AuthoringError> {
        let mut r = self.open(repo)?;
        let mut ring = self.keyring();
        let from = PathBuf::from(format!("<request body: signed {role}>"));
        let merged = r
            .merge_signatures(role, bytes, &from, &mut ring, now)
            .map_err(repo_err(repo))?;
        r.save().map_err(repo_err(repo))?;
        let st = r.role_status(role, now).map_err(repo_err(repo))?;
        let state = RoleSigState {
            role: st.role,
            version: st.version,
            threshold: st.threshold,
            signed_by: st.signed_by,
            missing: st.missing,
            threshold_met: st.threshold_met,
        };
        let status = r.status(now).map_err(repo_err(repo))?;
        let live = if status.publish_blocker.is_none() {
            // A draft held for offline signatures goes live now: what it
            // adds and removes is its difference from what is served (the
            // publish that made the draft could not say, it did not go live).
            let (added, removed) = hosted_difference(&r, repo, hosting);
            Some(self.go_live(repo, &r, added, removed, hosting, now)?)
        } else {
            None
        };
        Ok((merged, state, live))
    }

    /// Renews the timestamp (online key) and republishes, if the hosted
    /// timestamp expires within `within`. Returns the new timestamp version.
    pub fn renew_timestamp(
        &self,
        repo: &str,
        within: chrono::Duration,
        hosting: &Hosting,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, AuthoringError> {
        let mut r = self.open(repo)?;
        if r.timestamp().signed.expires > now + within {
            return Ok(None);
        }
        let status = r.status(now).map_err(repo_err(repo))?;
        if status.publish_blocker.is_some() {
            // A draft waits for offline signatures; renewing would publish it.
            return Ok(None);
        }
        let mut ring = self.keyring();
        r.refresh_timestamp(&mut ring, now)
            .map_err(repo_err(repo))?;
        r.save().map_err(repo_err(repo))?;
        let out = self.go_live(repo, &r, vec![], vec![], hosting, now)?;
        Ok(Some(out.timestamp_version))
    }

    /// The repository's stored provenance policy (custody-repo's
    /// `provenance-policy.json`), read without the repository lock: the
    /// file is only ever replaced by rename, so this sees the old or the
    /// new policy. For the stage handler, which must not wait for a publish.
    pub fn provenance_policy(&self, repo: &str) -> Result<Option<Policy>, AuthoringError> {
        if !self.exists(repo) {
            return Err(AuthoringError::NoRepo(repo.to_owned()));
        }
        let path = self.repo_dir(repo).join(PROVENANCE_POLICY_FILE);
        let bytes = match read_bounded(&path, MAX_POLICY_BYTES) {
            Ok(b) => b,
            Err(AuthoringError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Policy::from_json(PROVENANCE_POLICY_FILE, &bytes)
            .map(Some)
            .map_err(|e| {
                AuthoringError::Corrupt(format!(
                    "{}: stored provenance policy: {e}",
                    path.display()
                ))
            })
    }

    /// Store `bytes` (TOML, or JSON when `file_name` ends in `.json`) as the
    /// repository's provenance policy, through custody-repo (which parses
    /// and checks it with custody-provenance and writes its custody log).
    /// Returns the policy as stored.
    pub fn set_provenance_policy(
        &self,
        repo: &str,
        file_name: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Policy, AuthoringError> {
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(AuthoringError::Invalid(format!(
                "provenance policy {file_name} is {} bytes, the limit is {MAX_POLICY_BYTES}",
                bytes.len()
            )));
        }
        let mut r = self.open(repo)?;
        let policy = r
            .set_provenance_policy(file_name, bytes, now)
            .map_err(|e| match e {
                RepoError::Invalid(msg) => AuthoringError::Invalid(msg),
                other => repo_err(repo)(other),
            })?;
        r.save().map_err(repo_err(repo))?;
        Ok(policy)
    }

    /// Remove the repository's provenance policy. Returns whether one was set.
    pub fn clear_provenance_policy(
        &self,
        repo: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, AuthoringError> {
        let mut r = self.open(repo)?;
        let had = r.provenance_policy().map_err(repo_err(repo))?.is_some();
        if had {
            r.clear_provenance_policy(now);
            r.save().map_err(repo_err(repo))?;
        }
        Ok(had)
    }

    /// An envelope custody-repo accepted at a publish
    /// (`provenance/<sha256>.dsse.json` in the repository), if it has it.
    /// The digest is a [`Sha256Hex`](super::blobs::Sha256Hex), so it is
    /// safe as a file name.
    pub fn accepted_envelope(
        &self,
        repo: &str,
        sha256: &super::blobs::Sha256Hex,
    ) -> Result<Option<Vec<u8>>, AuthoringError> {
        let path = self
            .repo_dir(repo)
            .join(custody_repo::repository::PROVENANCE_DIR)
            .join(format!("{}.dsse.json", sha256.as_str()));
        match read_bounded(&path, MAX_ENVELOPE_BYTES) {
            Ok(b) => Ok(Some(b)),
            Err(AuthoringError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The delegated role that will list `path` (for policy rules by role).
    pub fn role_for_path(&self, repo: &str, path: &str) -> Result<String, AuthoringError> {
        Ok(self.open(repo)?.role_for_path(path))
    }

    /// The inventory items of hosted repository `repo` at `now`: its roles
    /// (hash bins as one group) and keys. Root and targets keys are
    /// offline (they never reach the server).
    pub fn inventory_items(
        &self,
        repo: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<custody_inventory::Item>, AuthoringError> {
        use custody_inventory::{Backend, Kind};
        let mut facts = self
            .open(repo)?
            .inventory_facts(now)
            .map_err(repo_err(repo))?;
        for f in &mut facts {
            if matches!(f.kind, Kind::Root | Kind::Targets) {
                for k in &mut f.keys {
                    k.backend = Backend::Offline;
                }
            }
        }
        Ok(custody_inventory::repository_items(repo, &facts))
    }

    /// Repositories with authoring state.
    pub fn repos(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.') && self.exists(n))
            .collect();
        v.sort();
        v
    }

    fn go_live(
        &self,
        repo: &str,
        r: &Repository,
        added: Vec<String>,
        removed: Vec<String>,
        hosting: &Hosting,
        now: DateTime<Utc>,
    ) -> Result<PublishOutcome, AuthoringError> {
        let versions = |r: &Repository| {
            (
                r.targets_role("targets")
                    .map(|e| e.signed.version)
                    .unwrap_or(0),
                r.snapshot().signed.version,
                r.timestamp().signed.version,
            )
        };
        let (tv, sv, tsv) = versions(r);
        // Incremental against what is served now: unchanged hash bins are
        // carried over and published target files are not hashed again
        // (custody-repo's rules); everything new is verified in full, and
        // a role under its threshold fails the verification.
        let built = match hosting.current_generation_dir(repo) {
            Some(prev) => r
                .build_publish_set_against(now, &prev, &prev.join("metadata"))
                .map(|(files, _)| files),
            None => r.build_publish_set(now),
        };
        let files = match built {
            Ok(files) => files,
            Err(e) => {
                // Only now the per-role status (it checks every role's
                // signatures, seconds with hundreds of bins): name the role
                // and the keys still missing when that is the reason.
                let status = r.status(now).map_err(repo_err(repo))?;
                if status.publish_blocker.is_some() {
                    if let Some(role) = status.roles.iter().find(|s| !s.threshold_met) {
                        return Err(AuthoringError::Unsigned {
                            repo: repo.to_owned(),
                            role: role.role.clone(),
                            threshold: role.threshold,
                            have: role.signed_by.len(),
                            missing: role.missing.clone(),
                        });
                    }
                }
                return Err(repo_err(repo)(e));
            }
        };
        let generation = hosting.begin_generation(repo)?;
        generation.inherit_current()?;
        for (name, file) in &files {
            match (name.strip_prefix("targets/"), file) {
                (Some(rel), PublishFile::Copy(src)) => generation.add_target_file(rel, src)?,
                (Some(rel), PublishFile::Bytes(b)) => generation.write_target(rel, b)?,
                (None, PublishFile::Bytes(b)) => generation.write_metadata(name, b)?,
                (None, PublishFile::Copy(src)) => {
                    let b = std::fs::read(src).map_err(io(src, "read metadata"))?;
                    generation.write_metadata(name, &b)?;
                }
            }
        }
        let id = generation.commit(hosting)?;
        if let Err(e) = hosting.prune_generations(repo, KEEP_GENERATIONS) {
            tracing::warn!(repo, error = %e, "pruning old generations failed");
        }
        Ok(PublishOutcome {
            added,
            removed,
            targets_version: tv,
            snapshot_version: sv,
            timestamp_version: tsv,
            generation: Some(id),
        })
    }
}
