//! The repository's roles as inventory facts (custody-inventory decides
//! their status): version, expiry, signatures against threshold, keys, and
//! whether a role is one of the hash bins.

use chrono::{DateTime, Utc};
use custody_inventory::{Backend, KeyRef, Kind, RoleFacts, Signatures};

use super::bulk::par_map;
use super::Repository;
use crate::error::RepoError;

impl Repository {
    /// Every role's facts at `now` (signatures as custody-tuf counts them).
    /// Keys are `Backend::Unknown`: the repository does not know where a
    /// private key lives; callers that do (the server) say so.
    pub fn inventory_facts(&self, now: DateTime<Utc>) -> Result<Vec<RoleFacts>, RepoError> {
        let mut names: Vec<&str> = vec!["root", "targets", "snapshot", "timestamp"];
        names.extend(
            self.targets
                .keys()
                .map(String::as_str)
                .filter(|r| *r != "targets"),
        );
        // One signature check per role (16,384 for a PEP 458 repository):
        // on every core. No publish check: the inventory reports what is
        // there, whether or not it is publishable.
        par_map(&names, |role| self.role_facts(role, now))
            .into_iter()
            .collect()
    }

    fn role_facts(&self, role: &str, now: DateTime<Utc>) -> Result<RoleFacts, RepoError> {
        let r = self.role_status(role, now)?;
        let info = self.role_keys(role)?;
        let bin = (self.targets_role(&info.delegator))
            .and_then(|t| t.signed.delegations.as_ref())
            .and_then(|d| d.succinct_roles.as_ref())
            .is_some_and(|s| s.is_bin(role));
        let kind = match role {
            "root" => Kind::Root,
            "targets" => Kind::Targets,
            "snapshot" => Kind::Snapshot,
            "timestamp" => Kind::Timestamp,
            _ => Kind::Delegation,
        };
        let keys = (info.keyids.iter())
            .map(|id| KeyRef {
                id: id.clone(),
                key_type: info.keys.get(id).map_or("?", |k| &k.keytype).to_owned(),
                backend: Backend::Unknown,
                first_seen: None,
            })
            .collect();
        Ok(RoleFacts {
            name: r.role,
            kind,
            version: r.version,
            expires: r.expires,
            signatures: Signatures {
                present: r.signed_by.len() as u64,
                needed: r.threshold,
            },
            keys,
            bin,
        })
    }
}
