//! A repository's items: one per role, the hash bins as one group (the
//! earliest expiry, the fewest signatures), and one per key with the roles
//! it signs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{Item, KeyRef, Kind, Signatures};

/// What a reader knows of one role of a repository (from its metadata and
/// the signature check of whoever read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    /// `Root`, `Targets`, `Delegation`, `Snapshot` or `Timestamp`
    pub kind: Kind,
    pub version: u64,
    pub expires: DateTime<Utc>,
    pub signatures: Signatures,
    pub keys: Vec<KeyRef>,
    /// one of the repository's hash bins (grouped into one item)
    pub bin: bool,
}

/// The items of repository `scope`: each role that is not a hash bin, the
/// bins as one [`Kind::HashBins`] item, and each key once.
pub fn repository_items(scope: &str, roles: &[RoleFacts]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut bins: Option<Item> = None;
    let mut earliest_bin = String::new();
    let mut keys: BTreeMap<String, (KeyRef, Vec<String>)> = BTreeMap::new();
    for r in roles {
        for k in &r.keys {
            let entry = keys
                .entry(k.id.clone())
                .or_insert_with(|| (k.clone(), Vec::new()));
            if entry.0.first_seen.is_none() {
                entry.0.first_seen = k.first_seen;
            }
            let role = if r.bin { "hash bins" } else { r.name.as_str() };
            if !entry.1.iter().any(|x| x == role) {
                entry.1.push(role.to_owned());
            }
        }
        if !r.bin {
            out.push(Item {
                version: Some(r.version),
                expires: Some(r.expires),
                signatures: Some(r.signatures),
                keys: r.keys.clone(),
                ..Item::new(r.kind, scope, &r.name)
            });
            continue;
        }
        let group = bins.get_or_insert_with(|| Item {
            members: Some(0),
            ..Item::new(Kind::HashBins, scope, "hash bins")
        });
        group.members = Some(group.members.unwrap_or(0) + 1);
        if group.expires.is_none_or(|e| r.expires < e) {
            group.expires = Some(r.expires);
            group.version = Some(r.version);
            earliest_bin.clone_from(&r.name);
        }
        let worse = |s: &Signatures| s.present.saturating_sub(s.needed);
        if group.signatures.is_none_or(|g| {
            worse(&r.signatures) < worse(&g) || r.signatures.present < r.signatures.needed
        }) {
            group.signatures = Some(r.signatures);
        }
        for k in &r.keys {
            if !group.keys.iter().any(|x| x.id == k.id) {
                group.keys.push(k.clone());
            }
        }
    }
    if let Some(mut g) = bins {
        g.detail = format!(
            "{} bins; the first to expire is {earliest_bin} (v{})",
            g.members.unwrap_or(0),
            g.version.unwrap_or(0)
        );
        out.push(g);
    }
    for (id, (k, roles)) in keys {
        out.push(Item {
            first_seen: k.first_seen,
            detail: format!(
                "{} key ({:?}); signs {}",
                k.key_type,
                k.backend,
                roles.join(", ")
            ),
            keys: vec![k],
            ..Item::new(Kind::Key, scope, &id)
        });
    }
    out
}
