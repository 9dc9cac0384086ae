//! custody-provenance: may this target be published, given its build
//! provenance and the repository's policy? Sans-IO: bytes in, a decision
//! out.
//!
//! ```text
//! let policy = Policy::from_file_contents("provenance.toml", &bytes)?;
//! match evaluate(&policy, "firmware/app.bin", &target_hashes, Some(&envelope_bytes)) {
//!     Ok(Decision::Attested(a)) => {
//!         // record a.envelope_sha256 in the target's custom metadata:
//!         //   custom.custody.provenance.sha256  (see Accepted::custom_metadata)
//!         // and in the custody log
//!     }
//!     Ok(Decision::Unattested { pattern }) => { /* allowed without provenance */ }
//!     Err(refused) => bail!("{refused}"),
//! }
//! ```
//!
//! # Evaluation order (each step refuses with the rule name and the values)
//! 1. The FIRST policy rule whose `paths` match the target path (or whose
//!    `roles` match the delegated role, [`evaluate_for_role`]) applies.
//!    No rule: allowed without provenance only if the path matches
//!    `allow_unattested` *and* no envelope was given (an envelope nobody
//!    can check is refused rather than silently recorded); else refused.
//! 2. A rule applies but no envelope was given: refused.
//! 3. Envelope parsed within bounds ([`dsse`]); `payloadType` must be
//!    `application/vnd.in-toto+json`.
//! 4. Signatures, before the payload is parsed: the pre-authentication
//!    encoding ([`dsse::pae`]) must be signed by `threshold` distinct keys
//!    of the rule's `signers`. A DSSE `keyid` is only a hint and is ignored:
//!    every signature is tried against every rule key (bounded by
//!    [`Limits::max_signatures`] × keys), so a wrong or missing keyid
//!    neither helps nor hurts. A key that signed twice, or is listed twice
//!    in the policy, counts once. Verification is custody-tuf's
//!    [`custody_tuf::PublicKey::verify`].
//! 5. Statement v1 ([`statement`]), `predicateType` must be SLSA
//!    Provenance v1, predicate parsed ([`slsa`]).
//! 6. Subject: some subject's digests must equal the target's for every
//!    algorithm both name among sha256/sha384/sha512 (at least one in
//!    common; weak or unknown algorithms are ignored so a sha1 collision
//!    cannot bind another file). Subject names are not compared: names are
//!    the builder's, the digest is the binding.
//! 7. `runDetails.builder.id` ∈ `builders`; `buildType` ∈ `build_types`.
//! 8. Source ([`slsa::Provenance::source`]): repository equal to a
//!    `sources[].repository` and ref matching one of its `refs` patterns.
//!
//! # What to record
//! [`Accepted::envelope_sha256`] is the hex sha256 of the envelope bytes
//! exactly as evaluated. The publisher stores it in the target's TUF
//! `custom` object at `custody.provenance.sha256`
//! ([`PROVENANCE_CUSTOM_FIELD`], [`Accepted::custom_metadata`]) and in the
//! custody log; the envelope file itself is kept next to the target so
//! anyone can re-run [`evaluate`] and compare digests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod custom;
pub mod dsse;
pub mod error;
pub mod policy;
pub mod slsa;
pub mod statement;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

pub use custom::{
    check_can_carry_digest, names_provenance, provenance_custom, provenance_digest,
    with_provenance_digest, CustomFieldError, PROVENANCE_CUSTOM_FIELD, PROVENANCE_CUSTOM_POINTER,
};
pub use dsse::{pae, DsseSignature, Envelope, IN_TOTO_PAYLOAD_TYPE};
pub use error::{ParseError, PolicyError};
pub use policy::{Policy, PolicySpec, Rule, Signers, SourceRule};
pub use slsa::{Provenance, Source, SourceOrigin, SLSA_PROVENANCE_V1};
pub use statement::{DigestSet, Statement, Subject, STATEMENT_TYPE_V1};

/// Default maximum envelope size (1 MiB; real SLSA envelopes are a few KiB).
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;
/// Default maximum DSSE signatures per envelope.
pub const MAX_SIGNATURES: usize = 16;
/// Default maximum statement subjects.
pub const MAX_SUBJECTS: usize = 4096;

/// Parsing bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// maximum envelope size in bytes
    pub max_envelope_bytes: usize,
    /// maximum DSSE signatures
    pub max_signatures: usize,
    /// maximum statement subjects
    pub max_subjects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: MAX_ENVELOPE_BYTES,
            max_signatures: MAX_SIGNATURES,
            max_subjects: MAX_SUBJECTS,
        }
    }
}

/// A target whose provenance satisfied a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// the rule that applied
    pub rule: String,
    /// hex sha256 of the envelope bytes (goes to `custom` and the log)
    pub envelope_sha256: String,
    /// `runDetails.builder.id`
    pub builder: String,
    /// `buildDefinition.buildType`
    pub build_type: String,
    /// the source repository and ref
    pub source: Source,
    /// policy key ids of the distinct keys whose signatures counted
    pub signers: Vec<String>,
    /// name of the subject that matched the target, if it had one
    pub subject_name: Option<String>,
}

impl Accepted {
    /// `{"custody": {"provenance": {"sha256": "<hex>"}}}`, to merge into the
    /// target's `custom` object.
    pub fn custom_metadata(&self) -> Value {
        provenance_custom(&self.envelope_sha256)
    }
}

/// The outcome of an evaluation that did not refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// provenance checked and accepted
    Attested(Accepted),
    /// no rule applies and the path is in `allow_unattested`
    Unattested {
        /// the `allow_unattested` pattern that matched
        pattern: String,
    },
}

/// Why publication is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// no rule applies and the path is not in `allow_unattested`
    #[error("no provenance rule applies to target {path:?}{} and it is not listed in allow_unattested", role.as_ref().map(|r| format!(" (role {r:?})")).unwrap_or_default())]
    NoRule {
        /// target path
        path: String,
        /// delegated role, if given
        role: Option<String>,
    },
    /// an envelope was given for a path no rule covers
    #[error("no provenance rule applies to target {path:?}, so its provenance cannot be checked; it matches allow_unattested {pattern:?}: publish it without provenance, or add a rule")]
    UncheckableProvenance {
        /// target path
        path: String,
        /// the allow_unattested pattern
        pattern: String,
    },
    /// the rule needs provenance and none was given
    #[error("target {path:?} needs a provenance envelope")]
    MissingProvenance {
        /// target path
        path: String,
    },
    /// the envelope or statement is malformed
    #[error("{0}")]
    Malformed(#[from] ParseError),
    /// DSSE payloadType is not in-toto
    #[error("DSSE payloadType is {found:?}, must be {IN_TOTO_PAYLOAD_TYPE:?}")]
    PayloadType {
        /// what the envelope says
        found: String,
    },
    /// not enough distinct rule keys signed
    #[error("signatures: {valid} of the required {threshold} distinct signer keys signed (counted: {counted:?}; envelope has {signatures} signature(s); rule keys: {keys:?})")]
    Threshold {
        /// required
        threshold: u64,
        /// distinct keys that verified
        valid: u64,
        /// their policy key ids
        counted: Vec<String>,
        /// signatures in the envelope
        signatures: usize,
        /// the rule's key ids
        keys: Vec<String>,
    },
    /// predicateType is not SLSA Provenance v1
    #[error("statement predicateType is {found:?}, must be {SLSA_PROVENANCE_V1:?}")]
    PredicateType {
        /// what the statement says
        found: String,
    },
    /// the statement has no predicate
    #[error("statement has no predicate")]
    MissingPredicate,
    /// the target has no digest custody compares
    #[error("target {path:?} has no sha256/sha384/sha512 digest to compare with the subjects (has {algorithms:?})")]
    NoComparableDigest {
        /// target path
        path: String,
        /// algorithms it has
        algorithms: Vec<String>,
    },
    /// no subject has the target's digest
    #[error("no statement subject has the digest of target {path:?} (target {target:?}; subjects {subjects})")]
    SubjectMismatch {
        /// target path
        path: String,
        /// target digests
        target: BTreeMap<String, String>,
        /// the subjects (up to 8) as text
        subjects: String,
    },
    /// builder id not accepted
    #[error("builder id {found:?} is not accepted (accepted: {accepted:?})")]
    Builder {
        /// what the provenance says
        found: String,
        /// the rule's builders
        accepted: Vec<String>,
    },
    /// build type not accepted
    #[error("buildType {found:?} is not accepted (accepted: {accepted:?})")]
    BuildType {
        /// what the provenance says
        found: String,
        /// the rule's build types
        accepted: Vec<String>,
    },
    /// the provenance names no source
    #[error("provenance names no source repository (looked in externalParameters.workflow.repository/ref and the first git+ uri of resolvedDependencies)")]
    NoSource,
    /// source repository not accepted
    #[error(
        "source repository {found:?} (from {origin:?}) is not accepted (accepted: {accepted:?})"
    )]
    SourceRepository {
        /// what the provenance says
        found: String,
        /// where it was read
        origin: SourceOrigin,
        /// the rule's repositories
        accepted: Vec<String>,
    },
    /// ref not accepted for that repository
    #[error("source ref {found:?} of repository {repository:?} (from {origin:?}) is not accepted (accepted refs: {accepted:?})")]
    SourceRef {
        /// repository
        repository: String,
        /// the ref, `None` if the provenance names none
        found: Option<String>,
        /// where it was read
        origin: SourceOrigin,
        /// the accepted ref patterns of that repository
        accepted: Vec<String>,
    },
}

/// A refusal: the rule that applied (if any) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refused {
    /// name of the rule that applied, `None` if none did
    pub rule: Option<String>,
    /// why
    pub reason: Reason,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "provenance refused by rule '{r}': {}", self.reason),
            None => write!(f, "provenance refused: {}", self.reason),
        }
    }
}

/// Evaluate the provenance of `target_path` with digests `target_digests`
/// (TUF hashes: algorithm → hex). `envelope` is the DSSE envelope bytes,
/// `None` when the target comes without provenance. Rules: crate docs.
pub fn evaluate(
    policy: &Policy,
    target_path: &str,
    target_digests: &BTreeMap<String, String>,
    envelope: Option<&[u8]>,
) -> Result<Decision, Refused> {
    evaluate_for_role(policy, target_path, None, target_digests, envelope)
}

/// [`evaluate`], also matching rules by the delegated role that will sign
/// the target (`roles` in the policy).
pub fn evaluate_for_role(
    policy: &Policy,
    target_path: &str,
    role: Option<&str>,
    target_digests: &BTreeMap<String, String>,
    envelope: Option<&[u8]>,
) -> Result<Decision, Refused> {
    let Some(idx) = policy.rule_for(target_path, role) else {
        let refuse = |reason| Refused { rule: None, reason };
        return match (policy.unattested_pattern(target_path), envelope) {
            (Some(p), None) => Ok(Decision::Unattested {
                pattern: p.to_owned(),
            }),
            (Some(p), Some(_)) => Err(refuse(Reason::UncheckableProvenance {
                path: target_path.to_owned(),
                pattern: p.to_owned(),
            })),
            (None, _) => Err(refuse(Reason::NoRule {
                path: target_path.to_owned(),
                role: role.map(str::to_owned),
            })),
        };
    };
    let (Some(rule), Some(keys)) = (policy.spec.rules.get(idx), policy.keys.get(idx)) else {
        // rule_for returns an index of spec.rules; keys is built per rule.
        return Err(Refused {
            rule: None,
            reason: Reason::NoRule {
                path: target_path.to_owned(),
                role: role.map(str::to_owned),
            },
        });
    };
    check_rule(policy, rule, keys, target_path, target_digests, envelope)
        .map(Decision::Attested)
        .map_err(|reason| Refused {
            rule: Some(rule.name.clone()),
            reason,
        })
}

fn check_rule(
    policy: &Policy,
    rule: &Rule,
    keys: &[policy::RuleKey],
    target_path: &str,
    target_digests: &BTreeMap<String, String>,
    envelope: Option<&[u8]>,
) -> Result<Accepted, Reason> {
    let bytes = envelope.ok_or_else(|| Reason::MissingProvenance {
        path: target_path.to_owned(),
    })?;
    let env = Envelope::parse(bytes, &policy.limits)?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Reason::PayloadType {
            found: env.payload_type,
        });
    }

    // Signatures first: nothing in the payload is looked at before it is
    // authenticated.
    let msg = env.signed_bytes();
    // A signature that verified under one rule key is not tried again for
    // the others (it cannot make a second key count; this only saves work).
    let mut used = vec![false; env.signatures.len()];
    let mut counted: Vec<String> = Vec::new();
    for k in keys {
        let hit = env
            .signatures
            .iter()
            .zip(used.iter_mut())
            .find(|(s, u)| !**u && k.key.verify(&msg, &s.sig));
        if let Some((_, u)) = hit {
            *u = true;
            counted.push(k.keyid.clone());
        }
    }
    let valid = counted.len() as u64;
    if valid < rule.signers.threshold {
        return Err(Reason::Threshold {
            threshold: rule.signers.threshold,
            valid,
            counted,
            signatures: env.signatures.len(),
            keys: keys.iter().map(|k| k.keyid.clone()).collect(),
        });
    }

    let st = Statement::parse(&env.payload, &policy.limits)?;
    if st.predicate_type != SLSA_PROVENANCE_V1 {
        return Err(Reason::PredicateType {
            found: st.predicate_type,
        });
    }
    let predicate = st.predicate.as_ref().ok_or(Reason::MissingPredicate)?;
    let prov = Provenance::from_value(predicate)?;

    let subject = matching_subject(&st, target_path, target_digests)?;

    let builder = &prov.run_details.builder.id;
    if !rule.builders.iter().any(|b| b == builder) {
        return Err(Reason::Builder {
            found: builder.clone(),
            accepted: rule.builders.clone(),
        });
    }
    let build_type = &prov.build_definition.build_type;
    if !rule.build_types.iter().any(|b| b == build_type) {
        return Err(Reason::BuildType {
            found: build_type.clone(),
            accepted: rule.build_types.clone(),
        });
    }
    let source = prov.source().ok_or(Reason::NoSource)?;
    let Some(src_rule) = rule
        .sources
        .iter()
        .find(|s| s.repository == source.repository)
    else {
        return Err(Reason::SourceRepository {
            found: source.repository,
            origin: source.origin,
            accepted: rule.sources.iter().map(|s| s.repository.clone()).collect(),
        });
    };
    let ref_ok = source.git_ref.as_deref().is_some_and(|r| {
        src_rule
            .refs
            .iter()
            .any(|p| custody_tuf::path_matches_pattern(r, p))
    });
    if !ref_ok {
        return Err(Reason::SourceRef {
            repository: source.repository,
            found: source.git_ref,
            origin: source.origin,
            accepted: src_rule.refs.clone(),
        });
    }

    Ok(Accepted {
        rule: rule.name.clone(),
        envelope_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        builder: builder.clone(),
        build_type: build_type.clone(),
        source,
        signers: counted,
        subject_name: subject.name.clone(),
    })
}

fn matching_subject<'a>(
    st: &'a Statement,
    target_path: &str,
    target: &BTreeMap<String, String>,
) -> Result<&'a Subject, Reason> {
    let strong: BTreeMap<&str, String> = target
        .iter()
        .filter(|(alg, _)| statement::strong_digest_len(alg).is_some())
        .map(|(alg, v)| (alg.as_str(), v.to_ascii_lowercase()))
        .collect();
    if strong.is_empty() {
        return Err(Reason::NoComparableDigest {
            path: target_path.to_owned(),
            algorithms: target.keys().cloned().collect(),
        });
    }
    let found = st.subject.iter().find(|s| {
        let mut common = 0usize;
        let all_equal = strong.iter().all(|(alg, want)| match s.digest.get(*alg) {
            None => true,
            Some(have) => {
                common += 1;
                have == want
            }
        });
        all_equal && common > 0
    });
    found.ok_or_else(|| {
        let algs: BTreeSet<&str> = strong.keys().copied().collect();
        let shown: Vec<String> = st
            .subject
            .iter()
            .take(8)
            .map(|s| {
                let d: BTreeMap<&str, &str> = s
                    .digest
                    .iter()
                    .filter(|(a, _)| algs.contains(a.as_str()))
                    .map(|(a, v)| (a.as_str(), v.as_str()))
                    .collect();
                format!("{:?} {:?}", s.name.as_deref().unwrap_or(""), d)
            })
            .collect();
        let more = st.subject.len().saturating_sub(8);
        Reason::SubjectMismatch {
            path: target_path.to_owned(),
            target: target.clone(),
            subjects: if more > 0 {
                format!("[{}] and {more} more", shown.join(", "))
            } else {
                format!("[{}]", shown.join(", "))
            },
        }
    })
}
