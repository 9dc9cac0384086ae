//! The publish policy: which provenance a target path needs.
//!
//! TOML (JSON with the same structure is accepted too; `rules` is an alias
//! of `rule`). Unknown fields are refused, so a typo such as `builder =`
//! for `builders =` is an error instead of a silently open rule.
//!
//! ```toml
//! # Paths that may be published WITHOUT provenance when no rule matches
//! # (TUF delegation path patterns). Default: none, i.e. refuse.
//! allow_unattested = ["docs/*"]
//!
//! # Optional bound on envelope size in bytes (default 1 MiB).
//! # max_envelope_bytes = 1048576
//!
//! [[rule]]
//! name = "firmware"
//! # A rule applies to a target when one of its `paths` matches the target
//! # path (TUF delegation pattern semantics: custody-tuf's
//! # `path_matches_pattern`, `*` does not cross `/`) or one of its `roles`
//! # matches the delegated role that signs the target (shell pattern on the
//! # role name, custody-tuf's `fnmatch`). The FIRST matching rule applies.
//! paths = ["firmware/*", "firmware/*/*"]
//! roles = ["firmware-team"]
//! # runDetails.builder.id, exact
//! builders = ["https://github.com/actions/runner/github-hosted"]
//! # buildDefinition.buildType, exact
//! build_types = ["https://actions.github.io/buildtypes/workflow/v1"]
//!
//! # accepted sources (see custody_provenance::slsa for where they are read)
//! [[rule.sources]]
//! repository = "https://github.com/org/firmware"   # exact
//! refs = ["refs/heads/main", "refs/tags/v*"]       # path patterns, `/`-segmented
//!
//! [rule.signers]
//! threshold = 1        # k distinct keys of `keys` must have signed the envelope
//! [rule.signers.keys.ci-key-2026]   # key ids are policy-local labels
//! keytype = "ed25519"
//! scheme = "ed25519"
//! keyval = { public = "64 hex chars" }
//! ```
//!
//! Keys use the TUF key format and every key type custody-tuf verifies
//! (ed25519, ecdsa P-256/P-384, rsassa-pss-sha256). Policy load checks:
//! rule names non-empty and unique; each rule has `paths` or `roles`,
//! non-empty `builders`, `build_types`, `sources`, every source non-empty
//! `refs`; every key is usable; `1 <= threshold <= distinct keys` (the same
//! key listed twice counts once).

use std::collections::{BTreeMap, BTreeSet};

use custody_tuf::{Key, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::Limits;

/// An accepted source repository and its accepted refs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRule {
    /// repository URI, compared exactly (e.g. `https://github.com/org/repo`)
    pub repository: String,
    /// accepted refs, TUF path patterns (`refs/heads/main`, `refs/tags/v*`)
    pub refs: Vec<String>,
}

/// Required signers of the DSSE envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signers {
    /// how many distinct keys must have signed
    pub threshold: u64,
    /// policy-local key id → TUF key
    pub keys: BTreeMap<String, Key>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// name, used in every refusal message
    pub name: String,
    /// target path patterns
    #[serde(default)]
    pub paths: Vec<String>,
    /// delegated role name patterns
    #[serde(default)]
    pub roles: Vec<String>,
    /// accepted `runDetails.builder.id`s
    pub builders: Vec<String>,
    /// accepted `buildDefinition.buildType`s
    pub build_types: Vec<String>,
    /// accepted sources
    pub sources: Vec<SourceRule>,
    /// required signers
    pub signers: Signers,
}

/// The policy as written (see module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// path patterns that may be published without provenance when no rule
    /// matches them
    #[serde(default)]
    pub allow_unattested: Vec<String>,
    /// maximum envelope size in bytes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_envelope_bytes: Option<usize>,
    /// the rules, first match applies
    #[serde(default, rename = "rule", alias = "rules")]
    pub rules: Vec<Rule>,
}

/// A usable signer key of a rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleKey {
    pub(crate) keyid: String,
    pub(crate) key: PublicKey,
}

/// A checked policy, ready for [`crate::evaluate`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) spec: PolicySpec,
    /// per rule: distinct keys (first key id listed wins the label)
    pub(crate) keys: Vec<Vec<RuleKey>>,
    pub(crate) limits: Limits,
}

fn rule_err(rule: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Rule {
        rule: rule.to_owned(),
        reason: reason.into(),
    }
}

impl Policy {
    /// Parse a TOML policy; `source_name` (a file name) appears in errors.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, PolicyError> {
        let spec: PolicySpec = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_spec(spec)
    }

    /// Parse a JSON policy; `source_name` (a file name) appears in errors.
    pub fn from_json(source_name: &str, bytes: &[u8]) -> Result<Self, PolicyError> {
        let spec: PolicySpec = serde_json::from_slice(bytes).map_err(|e| PolicyError::Syntax {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_spec(spec)
    }

    /// Parse by file name: `.json` is JSON, anything else TOML.
    pub fn from_file_contents(file_name: &str, bytes: &[u8]) -> Result<Self, PolicyError> {
        if file_name.ends_with(".json") {
            Self::from_json(file_name, bytes)
        } else {
            let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Syntax {
                source_name: file_name.to_owned(),
                reason: format!("not UTF-8: {e}"),
            })?;
            Self::from_toml(file_name, text)
        }
    }

    /// Check a spec (rules: module docs).
    pub fn from_spec(spec: PolicySpec) -> Result<Self, PolicyError> {
        let mut names = BTreeSet::new();
        let mut keys = Vec::with_capacity(spec.rules.len());
        for r in &spec.rules {
            let n = r.name.as_str();
            if n.is_empty() {
                return Err(rule_err("", "name must not be empty"));
            }
            if !names.insert(n) {
                return Err(rule_err(n, "rule name is used twice"));
            }
            if r.paths.is_empty() && r.roles.is_empty() {
                return Err(rule_err(
                    n,
                    "needs `paths` or `roles`, else it never applies",
                ));
            }
            for (field, list) in [("builders", &r.builders), ("build_types", &r.build_types)] {
                if list.is_empty() {
                    return Err(rule_err(n, format!("`{field}` must not be empty")));
                }
            }
            if r.sources.is_empty() {
                return Err(rule_err(n, "`sources` must not be empty"));
            }
            for s in &r.sources {
                if s.refs.is_empty() {
                    return Err(rule_err(
                        n,
                        format!(
                            "source {:?}: `refs` must not be empty (list the accepted refs, e.g. \"refs/heads/main\")",
                            s.repository
                        ),
                    ));
                }
            }
            let mut distinct: Vec<RuleKey> = Vec::new();
            for (keyid, key) in &r.signers.keys {
                let pk = PublicKey::from_key(key).map_err(|why| {
                    rule_err(n, format!("signers.keys.{keyid} is unusable: {why}"))
                })?;
                if !distinct.iter().any(|k| k.key == pk) {
                    distinct.push(RuleKey {
                        keyid: keyid.clone(),
                        key: pk,
                    });
                }
            }
            let t = r.signers.threshold;
            if t == 0 || t > distinct.len() as u64 {
                return Err(rule_err(
                    n,
                    format!(
                        "signers.threshold {t} must be between 1 and the number of distinct keys ({})",
                        distinct.len()
                    ),
                ));
            }
            keys.push(distinct);
        }
        let mut limits = Limits::default();
        if let Some(m) = spec.max_envelope_bytes {
            limits.max_envelope_bytes = m;
        }
        Ok(Policy { spec, keys, limits })
    }

    /// The policy as written.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The parsing limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The index of the first rule that applies to `target_path` (signed
    /// by delegated role `role`, if known).
    pub fn rule_for(&self, target_path: &str, role: Option<&str>) -> Option<usize> {
        self.spec.rules.iter().position(|r| {
            r.paths
                .iter()
                .any(|p| custody_tuf::path_matches_pattern(target_path, p))
                || role.is_some_and(|role| r.roles.iter().any(|p| custody_tuf::fnmatch(role, p)))
        })
    }

    /// The `allow_unattested` pattern matching `target_path`, if any.
    pub fn unattested_pattern(&self, target_path: &str) -> Option<&str> {
        self.spec
            .allow_unattested
            .iter()
            .find(|p| custody_tuf::path_matches_pattern(target_path, p))
            .map(String::as_str)
    }
}
