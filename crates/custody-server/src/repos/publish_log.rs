//! What a publish writes to the transparency log: a `target_publish` entry
//! per target it made live, and a `key_change` entry per top-level role
//! whose keys a newly live root version changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::try_join_all;
use serde_json::Value;

use super::authoring::PublishOutcome;
use super::Repos;
use crate::error::ApiError;
use crate::tlog::EntryBody;

/// Log every target a publish made live (a publish, or the signature that
/// completed a draft). Reads the role that lists each target as published
/// (the top-level targets role or the delegated role, e.g. a hash bin):
/// hashes, length, custom (`release_counter`, `custody.provenance.sha256`)
/// and the key ids of that role's signatures.
pub async fn record_publish(
    st: &Arc<Repos>,
    repo: &str,
    outcome: &PublishOutcome,
) -> Result<(), ApiError> {
    if outcome.generation.is_none() || outcome.added.is_empty() {
        return Ok(());
    }
    // Each target is listed by the role the delegations give it (the
    // top-level targets role, or a delegated role such as a hash bin):
    // read each such role once.
    let (st2, r, names) = (st.clone(), repo.to_owned(), outcome.added.clone());
    let roles: Vec<(Vec<String>, serde_json::Value)> = tokio::task::spawn_blocking(move || {
        let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in names {
            let role = st2
                .authoring
                .role_for_path(&r, &n)
                .unwrap_or_else(|_| "targets".to_owned());
            by_role.entry(role).or_default().push(n);
        }
        by_role
            .into_iter()
            .map(|(role, names)| {
                let bytes = st2.authoring.export_role(&r, &role).map_err(|e| {
                    ApiError::internal(format!("log: reading published role {role}: {e}"))
                })?;
                let v = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::internal(format!("log: role {role}: {e}")))?;
                Ok((names, v))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    for (names, role) in &roles {
        crate::tlog::log_targets(&st.log, repo, role, names, Some(outcome.targets_version)).await?;
    }
    Ok(())
}

/// One role's key change between two root versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleKeyChange {
    pub role: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

fn role_keyids(root: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    if let Some(roles) = root
        .get("signed")
        .and_then(|s| s.get("roles"))
        .and_then(Value::as_object)
    {
        for (role, r) in roles {
            let ids = r
                .get("keyids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            out.insert(role.clone(), ids);
        }
    }
    out
}

/// Roles whose key ids differ between root `old` and root `new` (signed
/// TUF root envelopes), with the ids added and removed.
pub fn root_key_changes(old: &Value, new: &Value) -> Vec<RoleKeyChange> {
    let (o, n) = (role_keyids(old), role_keyids(new));
    let empty = BTreeSet::new();
    let roles: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    roles
        .into_iter()
        .filter_map(|role| {
            let (a, b) = (o.get(role).unwrap_or(&empty), n.get(role).unwrap_or(&empty));
            let added: Vec<String> = b.difference(a).cloned().collect();
            let removed: Vec<String> = a.difference(b).cloned().collect();
            (!added.is_empty() || !removed.is_empty()).then(|| RoleKeyChange {
                role: role.clone(),
                added,
                removed,
            })
        })
        .collect()
}

/// `<data-dir>/log-marks/root-<sha256(repo)>`: the newest root version of
/// `repo` whose key changes are in the log.
fn root_mark_path(data_dir: &Path, repo: &str) -> PathBuf {
    data_dir.join("log-marks").join(format!(
        "root-{}",
        custody_tuf::crypto::sha256_hex(repo.as_bytes())
    ))
}

fn newest_root_version(metadata: &Path) -> std::io::Result<u64> {
    let mut best = 0;
    for e in std::fs::read_dir(metadata)? {
        let e = e?;
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".root.json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            best = best.max(n);
        }
    }
    Ok(best)
}

/// What a live publish of `repo` changed in its root keys: the changes of
/// every root version after `marked` up to the newest live one. Blocking
/// file IO.
fn pending_root_changes(
    data_dir: &Path,
    metadata: &Path,
    repo: &str,
) -> Result<(u64, Vec<(u64, RoleKeyChange)>), String> {
    let mark = root_mark_path(data_dir, repo);
    let marked = match std::fs::read_to_string(&mark) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            format!(
                "{}: root version mark {:?} is not a number: {e}",
                mark.display(),
                s.trim()
            )
        })?,
        // Version 1 is the initial key set, not a rotation.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(format!("{}: {e}", mark.display())),
    };
    let newest = newest_root_version(metadata)
        .map_err(|e| format!("{}: listing root versions: {e}", metadata.display()))?;
    let read = |v: u64| -> Result<Value, String> {
        let p = metadata.join(format!("{v}.root.json"));
        let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut changes = Vec::new();
    let mut v = marked.max(1);
    while v < newest {
        let (old, new) = (read(v)?, read(v + 1)?);
        changes.extend(root_key_changes(&old, &new).into_iter().map(|c| (v + 1, c)));
        v += 1;
    }
    Ok((newest.max(marked), changes))
}

/// After a publish of `repo` went live: a `key_change` entry per
/// top-level role whose keys a newly live root version changed (`rotate`,
/// or `revoke` when keys only left), by `by`. Durable before it returns;
/// then the repository's root mark moves on.
pub async fn record_root_rotation(st: &Repos, repo: &str, by: &str) -> Result<(), ApiError> {
    let Some(gen) = st.hosting.current_generation_dir(repo) else {
        return Ok(());
    };
    let data_dir = st.data_dir.clone();
    let r = repo.to_owned();
    let metadata = gen.join("metadata");
    let (newest, changes) = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || pending_root_changes(&data_dir, &metadata, &r)
    })
    .await
    .map_err(|e| ApiError::internal(format!("log: root key changes task: {e}")))?
    .map_err(|e| ApiError::internal(format!("log: root key changes of {repo:?}: {e}")))?;
    let entries = changes.into_iter().map(|(_, c)| EntryBody::KeyChange {
        repo: Some(repo.to_owned()),
        role: c.role,
        action: if c.added.is_empty() {
            "revoke"
        } else {
            "rotate"
        }
        .into(),
        added_keyids: c.added,
        removed_keyids: c.removed,
        by: by.to_owned(),
    });
    try_join_all(entries.map(|e| st.log.append(e))).await?;
    let mark = root_mark_path(&data_dir, repo);
    let current = std::fs::read_to_string(&mark).ok();
    if current.as_deref().map(str::trim) != Some(newest.to_string().as_str()) {
        tokio::task::spawn_blocking(move || write_mark(&mark, newest))
            .await
            .map_err(|e| ApiError::internal(format!("log: root mark task: {e}")))?
            .map_err(|e| ApiError::internal(format!("log: root mark: {e}")))?;
    }
    Ok(())
}

fn write_mark(path: &Path, v: u64) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    custody_repo::fsutil::write_replace(path, format!("{v}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(roles: &[(&str, &[&str])]) -> Value {
        let mut r = serde_json::Map::new();
        for (name, ids) in roles {
            r.insert((*name).into(), json!({"keyids": ids, "threshold": 1}));
        }
        json!({"signed": {"_type": "root", "roles": r}, "signatures": []})
    }

    #[test]
    fn root_key_changes_name_added_and_removed_ids_per_role() {
        let old = root(&[
            ("root", &["a"]),
            ("targets", &["t1", "t2"]),
            ("timestamp", &["s"]),
        ]);
        let new = root(&[
            ("root", &["a", "b"]),
            ("targets", &["t1"]),
            ("timestamp", &["s"]),
        ]);
        let c = root_key_changes(&old, &new);
        assert_eq!(
            c,
            vec![
                RoleKeyChange {
                    role: "root".into(),
                    added: vec!["b".into()],
                    removed: vec![]
                },
                RoleKeyChange {
                    role: "targets".into(),
                    added: vec![],
                    removed: vec!["t2".into()]
                },
            ]
        );
        assert!(root_key_changes(&old, &old).is_empty());
        // Garbage has no roles: nothing to report, no panic.
        assert!(root_key_changes(&json!(1), &json!("x")).is_empty());
    }
}
