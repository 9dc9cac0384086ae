//! The repository's roles as inventory facts (custody-inventory decides
//! their status): version, expiry, signatures against threshold, keys, and
//! whether a role is one of the hash bins.

use chrono::{DateTime, Utc};
use custody_inventory::{Backend, KeyRef, Kind, RoleFacts, Signatures};

use super::Repository;
use crate::error::RepoError;

impl Repository {
    /// Every role's facts at `now` (signatures as custody-tuf counts them).
    /// Keys are `Backend::Unknown`: the repository does not know where a
    /// private key lives; callers that do (the server) say so.
    pub fn inventory_facts(&self, now: DateTime<Utc>) -> Result<Vec<RoleFacts>, RepoError> {
        let status = self.status(now)?;
        let mut roles = Vec::with_capacity(status.roles.len());
        for r in &status.roles {
            let info = self.role_keys(&r.role)?;
            let bin = (self.targets_role(&info.delegator))
                .and_then(|t| t.signed.delegations.as_ref())
                .and_then(|d| d.succinct_roles.as_ref())
                .is_some_and(|s| s.is_bin(&r.role));
            let kind = match r.role.as_str() {
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
            roles.push(RoleFacts {
                name: r.role.clone(),
                kind,
                version: r.version,
                expires: r.expires,
                signatures: Signatures {
                    present: r.signed_by.len() as u64,
                    needed: r.threshold,
                },
                keys,
                bin,
            });
        }
        Ok(roles)
    }
}
