//! The provenance gate: the stored policy, checking envelopes of added
//! targets, and recording the accepted digest in `custom`.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::RepoError;

use super::codec::read_bounded;
use super::Repository;

/// The repository's stored provenance policy (JSON form of
/// `custody_provenance::PolicySpec`).
pub const PROVENANCE_POLICY_FILE: &str = "provenance-policy.json";

/// Accepted provenance envelopes, `provenance/<sha256>.dsse.json`.
pub const PROVENANCE_DIR: &str = "provenance";

/// Provenance given with targets being added.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceInput {
    /// DSSE envelope bytes (in-toto Statement v1 with SLSA Provenance v1);
    /// its subjects must include each added file's digest
    pub envelope: Option<Vec<u8>>,
    /// a policy for this command only, checked in addition to the
    /// repository's stored policy (it can add rules, never waive the
    /// stored ones)
    pub policy: Option<custody_provenance::Policy>,
}

impl ProvenanceInput {
    /// From an envelope file's bytes and a policy file (TOML or JSON by
    /// `file_name`'s extension), both optional.
    pub fn from_files(
        envelope: Option<Vec<u8>>,
        policy: Option<(&str, &[u8])>,
    ) -> Result<ProvenanceInput, RepoError> {
        let policy = policy
            .map(|(name, bytes)| {
                custody_provenance::Policy::from_file_contents(name, bytes)
                    .map_err(|e| RepoError::Invalid(format!("provenance policy {name}: {e}")))
            })
            .transpose()?;
        Ok(ProvenanceInput { envelope, policy })
    }
}

impl Repository {
    /// The provenance policy stored in the repository (or set in this run
    /// and not yet saved), if any.
    pub fn provenance_policy(&self) -> Result<Option<custody_provenance::Policy>, RepoError> {
        let path = self.dir.join(PROVENANCE_POLICY_FILE);
        let bytes = match &self.pending_policy {
            Some(Some(b)) => b.clone(),
            Some(None) => return Ok(None),
            None => match std::fs::metadata(&path) {
                Ok(_) => read_bounded(&path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(RepoError::Io { path, source: e }),
            },
        };
        custody_provenance::Policy::from_json(PROVENANCE_POLICY_FILE, &bytes)
            .map(Some)
            .map_err(|e| RepoError::BadFile {
                path,
                detail: format!("stored provenance policy: {e}"),
            })
    }

    /// Store a provenance policy (TOML or JSON, by `file_name`'s
    /// extension; checked by custody-provenance) in the repository: from
    /// the next add on, every added target must pass it. Written by `save`;
    /// logged with the policy's sha256.
    pub fn set_provenance_policy(
        &mut self,
        file_name: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<custody_provenance::Policy, RepoError> {
        let policy = custody_provenance::Policy::from_file_contents(file_name, bytes)
            .map_err(|e| RepoError::Invalid(format!("provenance policy {file_name}: {e}")))?;
        let json = serde_json::to_vec_pretty(policy.spec())
            .map_err(|e| RepoError::Invalid(format!("serializing provenance policy: {e}")))?;
        self.log_event(
            now,
            "provenance-policy-set",
            serde_json::json!({
                "from": file_name,
                "sha256": custody_tuf::crypto::sha256_hex(&json),
                "rules": policy.spec().rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            }),
        );
        self.pending_policy = Some(Some(json));
        Ok(policy)
    }

    /// Remove the stored provenance policy (logged).
    pub fn clear_provenance_policy(&mut self, now: DateTime<Utc>) {
        self.log_event(now, "provenance-policy-clear", serde_json::json!({}));
        self.pending_policy = Some(None);
    }
}

/// Evaluate one target against the stored policy and the command's policy
/// (each must accept). Returns the accepted envelope's sha256, if any.
pub(super) fn provenance_gate(
    stored: Option<&custody_provenance::Policy>,
    given: Option<&custody_provenance::Policy>,
    target: &str,
    role: &str,
    hashes: &BTreeMap<String, String>,
    envelope: Option<&[u8]>,
) -> Result<Option<String>, RepoError> {
    let policies: Vec<(&str, &custody_provenance::Policy)> = stored
        .map(|p| ("repository's provenance policy", p))
        .into_iter()
        .chain(given.map(|p| ("provenance policy given for this command", p)))
        .collect();
    if policies.is_empty() {
        if envelope.is_some() {
            return Err(RepoError::Provenance {
                target: target.to_owned(),
                policy: "(no policy)".into(),
                detail: "a provenance envelope was given but no provenance policy is set (stored in the repository or given with the command): nothing could check it, and custody does not record provenance unchecked".into(),
            });
        }
        return Ok(None);
    }
    let mut accepted = None;
    for (which, policy) in policies {
        match custody_provenance::evaluate_for_role(policy, target, Some(role), hashes, envelope) {
            Ok(custody_provenance::Decision::Attested(a)) => accepted = Some(a.envelope_sha256),
            Ok(custody_provenance::Decision::Unattested { .. }) => {}
            Err(refused) => {
                return Err(RepoError::Provenance {
                    target: target.to_owned(),
                    policy: which.to_owned(),
                    detail: refused.to_string(),
                })
            }
        }
    }
    Ok(accepted)
}

/// `custom` with `custody.provenance.sha256` set, keeping everything else
/// (custody-provenance owns the field).
pub(super) fn with_provenance_digest(
    custom: Option<serde_json::Value>,
    sha256: &str,
) -> Result<serde_json::Value, RepoError> {
    custody_provenance::with_provenance_digest(custom, sha256)
        .map_err(|e| RepoError::Invalid(e.to_string()))
}
