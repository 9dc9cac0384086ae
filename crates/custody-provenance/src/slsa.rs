//! SLSA Provenance v1 predicate (`https://slsa.dev/provenance/v1`) and
//! where custody finds the source repository and ref in it.
//!
//! Required (refused when missing or of the wrong type):
//! `buildDefinition.buildType` (non-empty string),
//! `buildDefinition.externalParameters` (object),
//! `runDetails.builder.id` (non-empty string). Everything else is optional;
//! unknown fields are kept in `unknown` maps.
//!
//! # Source (repository + ref)
//! [`Provenance::source`] looks in exactly one place, in this order:
//! 1. `buildDefinition.externalParameters.workflow.{repository, ref}`, the
//!    GitHub Actions build type
//!    (`https://actions.github.io/buildtypes/workflow/v1`), e.g.
//!    `{"repository": "https://github.com/org/repo", "ref": "refs/heads/main",
//!    "path": ".github/workflows/release.yml"}`. If `workflow` is present it
//!    is authoritative: a malformed one gives no source (and the policy
//!    refuses), it never falls through to the dependencies.
//! 2. otherwise the *first* `resolvedDependencies` entry whose `uri` starts
//!    with `git+`, e.g. `git+https://github.com/org/repo@refs/heads/main`
//!    (SLSA's convention: the source is listed first). The ref is what
//!    follows the last `@` in the URI's path (an `@` in the authority, as
//!    in `git+ssh://git@github.com/org/repo`, is not a ref separator); the
//!    repository is the rest without the `git+` prefix.
//!
//! Later dependencies are never taken as the source: a build of repo B that
//! pulls in repo A lists A too, and must not pass a rule written for A.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ParseError;
use crate::statement::{DigestSet, Unknown};

/// predicateType of SLSA Provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// An in-toto ResourceDescriptor (used for dependencies and byproducts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// `uri`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `digest`
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: DigestSet,
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// unknown fields (downloadLocation, mediaType, annotations, …)
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `buildDefinition`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDefinition {
    /// `buildType`
    #[serde(rename = "buildType")]
    pub build_type: String,
    /// `externalParameters` (an object)
    #[serde(rename = "externalParameters")]
    pub external_parameters: Map<String, Value>,
    /// `internalParameters`
    #[serde(
        rename = "internalParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_parameters: Option<Value>,
    /// `resolvedDependencies`
    #[serde(
        rename = "resolvedDependencies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `runDetails.builder`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    /// `id`
    pub id: String,
    /// `version`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// `builderDependencies`
    #[serde(
        rename = "builderDependencies",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub builder_dependencies: Vec<ResourceDescriptor>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `runDetails`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    /// `builder`
    pub builder: Builder,
    /// `metadata` (invocationId, startedOn, finishedOn, …), untyped
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// `byproducts`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A SLSA Provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `buildDefinition`
    #[serde(rename = "buildDefinition")]
    pub build_definition: BuildDefinition,
    /// `runDetails`
    #[serde(rename = "runDetails")]
    pub run_details: RunDetails,
    /// unknown fields
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Where a [`Source`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SourceOrigin {
    /// `externalParameters.workflow`
    WorkflowParameters,
    /// the first `git+` entry of `resolvedDependencies`
    ResolvedDependency,
}

/// The source repository and ref a build claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// repository URI, e.g. `https://github.com/org/repo`
    pub repository: String,
    /// git ref, e.g. `refs/heads/main`, if the provenance names one
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// where it was found
    pub origin: SourceOrigin,
}

fn err(field: &str, reason: impl Into<String>) -> ParseError {
    ParseError::Provenance {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Split `git+<repo>@<ref>` (see module docs); `None` if not `git+`.
pub fn parse_git_uri(uri: &str) -> Option<(String, Option<String>)> {
    let rest = uri.strip_prefix("git+")?;
    // The ref separator is searched only in the path, after the authority.
    let path_start = match rest.find("://") {
        Some(i) => {
            let after = i + 3;
            rest.get(after..)
                .and_then(|s| s.find('/'))
                .map_or(rest.len(), |j| after + j)
        }
        None => 0,
    };
    let (head, path) = rest.split_at(path_start);
    match path.rsplit_once('@') {
        Some((p, r)) if !r.is_empty() => Some((format!("{head}{p}"), Some(r.to_owned()))),
        _ => Some((rest.to_owned(), None)),
    }
}

impl Provenance {
    /// Parse the predicate value of a statement.
    pub fn from_value(predicate: &Value) -> Result<Self, ParseError> {
        let p: Provenance =
            Provenance::deserialize(predicate).map_err(|e| err("(predicate)", e.to_string()))?;
        if p.build_definition.build_type.is_empty() {
            return Err(err("buildDefinition.buildType", "must not be empty"));
        }
        if p.run_details.builder.id.is_empty() {
            return Err(err("runDetails.builder.id", "must not be empty"));
        }
        Ok(p)
    }

    /// The source the build claims (rules: module docs).
    pub fn source(&self) -> Option<Source> {
        if let Some(w) = self.build_definition.external_parameters.get("workflow") {
            let repository = w.get("repository")?.as_str()?.to_owned();
            let git_ref = match w.get("ref") {
                None => None,
                Some(r) => Some(r.as_str()?.to_owned()),
            };
            return Some(Source {
                repository,
                git_ref,
                origin: SourceOrigin::WorkflowParameters,
            });
        }
        self.build_definition
            .resolved_dependencies
            .iter()
            .find_map(|d| d.uri.as_deref().and_then(parse_git_uri))
            .map(|(repository, git_ref)| Source {
                repository,
                git_ref,
                origin: SourceOrigin::ResolvedDependency,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_uris() {
        assert_eq!(
            parse_git_uri("git+https://github.com/org/repo@refs/heads/main"),
            Some((
                "https://github.com/org/repo".into(),
                Some("refs/heads/main".into())
            ))
        );
        assert_eq!(
            parse_git_uri("git+ssh://git@github.com/org/repo"),
            Some(("ssh://git@github.com/org/repo".into(), None))
        );
        assert_eq!(
            parse_git_uri("git+ssh://git@github.com/org/repo@refs/tags/v1"),
            Some((
                "ssh://git@github.com/org/repo".into(),
                Some("refs/tags/v1".into())
            ))
        );
        assert_eq!(
            parse_git_uri("git+https://github.com"),
            Some(("https://github.com".into(), None))
        );
        assert_eq!(parse_git_uri("https://github.com/org/repo"), None);
    }
}
