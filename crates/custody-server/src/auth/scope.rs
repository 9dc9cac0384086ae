//! Authorisation scopes and the separation-of-duties rule.
//!
//! A scope is `KIND` or `KIND@REPO`: `target:upload`, `target:stage`,
//! `repo:publish`, `role:sign:<role>`, `target:revoke`, `audit:read`,
//! `fleet:admin`, `provenance:admin`, `inventory:read`. Without `@REPO` the
//! scope covers every repository.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a scope allows, without the repository binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    TargetUpload,
    TargetStage,
    RepoPublish,
    RoleSign(String),
    TargetRevoke,
    AuditRead,
    FleetAdmin,
    /// Set or clear a repository's provenance policy (what builds its
    /// uploads must come from). Separate from upload and stage: whoever can
    /// relax the policy must not be the one it constrains.
    ProvenanceAdmin,
    /// Read the trust-stack inventory (`GET /api/v1/inventory`): expiries,
    /// key ids and ages, credential names and ages; no secrets.
    InventoryRead,
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeKind::TargetUpload => f.write_str("target:upload"),
            ScopeKind::TargetStage => f.write_str("target:stage"),
            ScopeKind::RepoPublish => f.write_str("repo:publish"),
            ScopeKind::RoleSign(role) => write!(f, "role:sign:{role}"),
            ScopeKind::TargetRevoke => f.write_str("target:revoke"),
            ScopeKind::AuditRead => f.write_str("audit:read"),
            ScopeKind::FleetAdmin => f.write_str("fleet:admin"),
            ScopeKind::ProvenanceAdmin => f.write_str("provenance:admin"),
            ScopeKind::InventoryRead => f.write_str("inventory:read"),
        }
    }
}

/// One granted scope: a kind, optionally bound to one repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub kind: ScopeKind,
    /// `None` = every repository.
    pub repo: Option<String>,
}

/// A scope string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("scope {scope:?} is invalid: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: String,
}

fn scope_err(scope: &str, reason: impl Into<String>) -> ScopeError {
    ScopeError {
        scope: scope.to_string(),
        reason: reason.into(),
    }
}

/// Repository names: 1..=63 chars of `[a-z0-9._-]`, starting with `[a-z0-9]`.
/// They become directory names, so the rule is strict on purpose.
pub fn validate_repo_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("repository name is empty".into());
    };
    if bytes.len() > 63 {
        return Err(format!(
            "repository name is {} bytes long, the limit is 63",
            bytes.len()
        ));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!(
            "repository name {name:?} must start with a lowercase letter or digit"
        ));
    }
    if let Some(bad) = bytes.iter().find(|b| {
        !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    }) {
        return Err(format!(
            "repository name {name:?} contains {:?}; allowed are a-z 0-9 . _ -",
            char::from(*bad)
        ));
    }
    if name.contains("..") {
        return Err(format!("repository name {name:?} contains \"..\""));
    }
    Ok(())
}

/// Role names in `role:sign:<role>`: 1..=64 chars of `[A-Za-z0-9._-]`.
pub fn validate_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "role name must be 1..=64 bytes, got {} bytes",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "role name {name:?} may only contain A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// `fleet:admin` over every repository: credentials, repositories, fleet.
pub(crate) fn fleet_admin() -> Scope {
    Scope::new(ScopeKind::FleetAdmin, None)
}

impl Scope {
    pub fn new(kind: ScopeKind, repo: Option<&str>) -> Self {
        Scope {
            kind,
            repo: repo.map(str::to_string),
        }
    }

    /// Parses `KIND` or `KIND@REPO`.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > 200 {
            return Err(scope_err(s, "longer than 200 bytes"));
        }
        let (kind_str, repo) = match s.split_once('@') {
            Some((k, r)) => {
                validate_repo_name(r).map_err(|e| scope_err(s, e))?;
                (k, Some(r.to_string()))
            }
            None => (s, None),
        };
        let kind =
            match kind_str {
                "target:upload" => ScopeKind::TargetUpload,
                "target:stage" => ScopeKind::TargetStage,
                "repo:publish" => ScopeKind::RepoPublish,
                "target:revoke" => ScopeKind::TargetRevoke,
                "audit:read" => ScopeKind::AuditRead,
                "fleet:admin" => ScopeKind::FleetAdmin,
                "provenance:admin" => ScopeKind::ProvenanceAdmin,
                "inventory:read" => ScopeKind::InventoryRead,
                other => match other.strip_prefix("role:sign:") {
                    Some(role) => {
                        validate_role_name(role).map_err(|e| scope_err(s, e))?;
                        ScopeKind::RoleSign(role.to_string())
                    }
                    None => return Err(scope_err(
                        s,
                        "unknown scope kind; known: target:upload, target:stage, repo:publish, \
                         role:sign:<role>, target:revoke, audit:read, fleet:admin, \
                         provenance:admin, inventory:read (optionally @repo)",
                    )),
                },
            };
        Ok(Scope { kind, repo })
    }

    /// Whether this granted scope covers `required` (same kind; an unbound
    /// grant covers every repository, a bound one only its own).
    pub fn covers(&self, required: &Scope) -> bool {
        if self.kind != required.kind {
            return false;
        }
        match (&self.repo, &required.repo) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(repo) => write!(f, "{}@{repo}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A set of granted scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(pub Vec<Scope>);

impl ScopeSet {
    pub fn parse_all<I, S>(items: I) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut scopes = Vec::new();
        for item in items {
            let scope = Scope::parse(item.as_ref())?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        // Alphabetical, so tokens, audit records and messages list scopes
        // in a predictable order.
        scopes.sort_by_cached_key(ToString::to_string);
        Ok(ScopeSet(scopes))
    }

    pub fn allows(&self, required: &Scope) -> bool {
        self.0.iter().any(|g| g.covers(required))
    }

    /// Whether any grant of this kind exists for `repo` (or unbound).
    pub fn any_for_repo(&self, repo: &str) -> bool {
        self.0
            .iter()
            .any(|g| g.repo.as_deref().is_none_or(|r| r == repo))
    }

    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requested scopes must each be covered by this set; returns the
    /// first one that is not.
    pub fn first_not_covered<'a>(&self, requested: &'a ScopeSet) -> Option<&'a Scope> {
        requested.0.iter().find(|r| !self.allows(r))
    }

    /// Separation of duties: one credential must never be able to both
    /// upload targets and publish the same repository. Returns an
    /// explanation of the first conflict.
    pub fn separation_of_duties_conflict(&self) -> Option<String> {
        let uploads = self.0.iter().filter(|s| s.kind == ScopeKind::TargetUpload);
        for up in uploads {
            for publish in self.0.iter().filter(|s| s.kind == ScopeKind::RepoPublish) {
                if let Some(where_) = overlap(&up.repo, &publish.repo) {
                    return Some(format!(
                        "separation of duties: scopes {up} and {publish} would let one credential \
                         both upload targets to and publish {where_}; grant them to two different \
                         credentials, or set `allow_upload_and_publish = true` in the server \
                         config to override"
                    ));
                }
            }
        }
        // The provenance gate: a credential that can change a repository's
        // provenance policy must not also upload or stage into it, or it
        // could relax the policy for its own uploads.
        for admin in self
            .0
            .iter()
            .filter(|s| s.kind == ScopeKind::ProvenanceAdmin)
        {
            for up in self
                .0
                .iter()
                .filter(|s| matches!(s.kind, ScopeKind::TargetUpload | ScopeKind::TargetStage))
            {
                if let Some(where_) = overlap(&admin.repo, &up.repo) {
                    return Some(format!(
                        "separation of duties: scopes {admin} and {up} would let one credential \
                         both set the provenance policy of and upload or stage targets into \
                         {where_}; grant them to two different credentials, or set \
                         `allow_upload_and_publish = true` in the server config to override"
                    ));
                }
            }
        }
        None
    }
}

/// Where two scope bindings overlap, in words; `None` if they do not.
fn overlap(a: &Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (None, None) => Some("every repository".to_string()),
        (None, Some(r)) | (Some(r), None) => Some(format!("repository {r:?}")),
        (Some(x), Some(y)) if x == y => Some(format!("repository {x:?}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "target:upload",
            "target:upload@app",
            "role:sign:targets@app",
            "role:sign:snapshot",
            "fleet:admin",
            "audit:read@a.b-c_d",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_scopes() {
        for s in [
            "",
            "target:download",
            "target:upload@",
            "target:upload@../x",
            "target:upload@A",
            "role:sign:",
            "role:sign:a/b",
            "target:upload@a@b",
        ] {
            assert!(Scope::parse(s).is_err(), "{s:?} must be rejected");
        }
    }

    #[test]
    fn bound_grant_covers_only_its_repo() {
        let set = ScopeSet::parse_all(["target:upload@app"]).unwrap();
        assert!(set.allows(&Scope::parse("target:upload@app").unwrap()));
        assert!(!set.allows(&Scope::parse("target:upload@other").unwrap()));
        assert!(!set.allows(&Scope::parse("target:upload").unwrap()));
        assert!(!set.allows(&Scope::parse("target:stage@app").unwrap()));
        let all = ScopeSet::parse_all(["target:upload"]).unwrap();
        assert!(all.allows(&Scope::parse("target:upload@other").unwrap()));
    }

    #[test]
    fn separation_of_duties() {
        let ok = ScopeSet::parse_all(["target:upload@a", "repo:publish@b"]).unwrap();
        assert!(ok.separation_of_duties_conflict().is_none());
        for bad in [
            vec!["target:upload@a", "repo:publish@a"],
            vec!["target:upload", "repo:publish@a"],
            vec!["target:upload@a", "repo:publish"],
            vec!["target:upload", "repo:publish"],
        ] {
            let set = ScopeSet::parse_all(bad.clone()).unwrap();
            let msg = set.separation_of_duties_conflict().expect("conflict");
            assert!(msg.contains("separation of duties"), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn provenance_admin_is_separate_from_upload_and_stage() {
        let s = Scope::parse("provenance:admin@app").unwrap();
        assert_eq!(s.to_string(), "provenance:admin@app");
        let ok = ScopeSet::parse_all([
            "provenance:admin@a",
            "target:upload@b",
            "target:stage@b",
            "repo:publish@a",
        ])
        .unwrap();
        assert!(ok.separation_of_duties_conflict().is_none());
        for bad in [
            vec!["provenance:admin@a", "target:upload@a"],
            vec!["provenance:admin@a", "target:stage@a"],
            vec!["provenance:admin", "target:stage@a"],
            vec!["provenance:admin@a", "target:upload"],
        ] {
            let set = ScopeSet::parse_all(bad.clone()).unwrap();
            let msg = set.separation_of_duties_conflict().expect("conflict");
            assert!(msg.contains("provenance policy"), "{bad:?}: {msg}");
        }
    }
}
