//! "May this device install this release": the device's install decision,
//! sans-IO, in ONE function, [`decide`].
//!
//! Input: the director's targets for this device, already verified (TUF
//! workflow, device binding, agreement with the image repository), what
//! the device has committed, its provisioned rollback keys and the time.
//! Rules:
//!
//! 1. **Anti-rollback.** A target whose release counter is below the
//!    installed one is refused unless the director passed, in its
//!    `custom.rollback_authorization`, a rollback authorisation that
//!    verifies with the device's rollback keys for this device, this target
//!    and this counter, and has not expired ([`RollbackAuthorization::verify`]).
//!    No keys provisioned: never a downgrade.
//! 2. **At most one new target.** A target equal to the installed one
//!    (name, counter, length, every hash both name) is not new; the agent
//!    manages one image, so two or more new targets are refused.
//!
//! The director makes the matching choice on its side (`policy::assign`);
//! this is the device's own check, which does not trust the director.

use chrono::{DateTime, Utc};
use custody_tuf::Hashes;

use crate::director::BoundTarget;
use crate::rollback::{RollbackAuthorization, RollbackKeys};

/// A target as the install decision identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetId<'a> {
    /// target path
    pub name: &'a str,
    /// release counter
    pub release_counter: u64,
    /// signed length
    pub length: u64,
    /// signed hashes
    pub hashes: &'a Hashes,
}

impl TargetId<'_> {
    /// Whether `offered` is this (installed) target: same name, counter and
    /// length, and equal on every hash algorithm both name.
    pub fn is_same(&self, offered: &TargetId<'_>) -> bool {
        self.name == offered.name
            && self.release_counter == offered.release_counter
            && self.length == offered.length
            && offered.hashes.iter().all(|(alg, h)| {
                self.hashes
                    .get(alg)
                    .is_none_or(|i| i.eq_ignore_ascii_case(h))
            })
    }
}

impl BoundTarget {
    /// This target's identity for [`decide`].
    pub fn id(&self) -> TargetId<'_> {
        TargetId {
            name: &self.name,
            release_counter: self.release_counter,
            length: self.length,
            hashes: &self.hashes,
        }
    }
}

/// What the device does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// nothing new: the assignment is what is installed, or nothing is
    /// assigned
    Keep,
    /// install `targets[index]`
    Install {
        /// index into the targets given to [`decide`]
        index: usize,
        /// its counter is below the installed one and a verified rollback
        /// authorisation covers it
        rollback_authorized: bool,
    },
}

/// Why no rollback authorisation covers a downgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DowngradeRefusal {
    /// the director sent none
    #[error("no rollback authorisation accompanies it")]
    NoAuthorization,
    /// the device was provisioned without rollback keys
    #[error(
        "a rollback authorisation came with it, but this device has no rollback keys provisioned"
    )]
    NoRollbackKeys,
    /// it does not parse
    #[error("{0}")]
    Malformed(String),
    /// it does not verify (signatures, device, target, counter, expiry)
    #[error("{0}")]
    Refused(String),
}

/// The install decision refused the director's targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// a lower release counter than the installed one, not covered by a
    /// valid rollback authorisation
    #[error(
        "target {target:?}: release counter {offered} is below the installed {installed}: {why}"
    )]
    Downgrade {
        /// target path
        target: String,
        /// offered counter
        offered: u64,
        /// installed counter
        installed: u64,
        /// why no authorisation covers it
        why: DowngradeRefusal,
    },
    /// more than one new target
    #[error("director assigned {} targets to install ({}); this agent installs one image per device", .names.len(), .names.join(", "))]
    TooManyTargets {
        /// their names
        names: Vec<String>,
    },
}

fn authorized(
    device_id: &str,
    t: &BoundTarget,
    installed: u64,
    rollback_keys: Option<&RollbackKeys>,
    now: DateTime<Utc>,
) -> Result<bool, InstallError> {
    if t.release_counter >= installed {
        return Ok(false);
    }
    let downgrade = |why| InstallError::Downgrade {
        target: t.name.clone(),
        offered: t.release_counter,
        installed,
        why,
    };
    let Some(auth) = &t.rollback_authorization else {
        return Err(downgrade(DowngradeRefusal::NoAuthorization));
    };
    let Some(keys) = rollback_keys else {
        return Err(downgrade(DowngradeRefusal::NoRollbackKeys));
    };
    // through the strict bounded parser, as any untrusted authorisation
    let bytes = serde_json::to_vec(auth)
        .map_err(|e| downgrade(DowngradeRefusal::Malformed(e.to_string())))?;
    let auth = RollbackAuthorization::from_bytes(&bytes)
        .map_err(|e| downgrade(DowngradeRefusal::Malformed(e.to_string())))?;
    auth.verify(keys, device_id, &t.name, t.release_counter, now)
        .map_err(|e| downgrade(DowngradeRefusal::Refused(e.to_string())))?;
    Ok(true)
}

/// Decide what device `device_id` installs from its verified director
/// `targets`, given the `installed` (committed) target, its rollback keys
/// and the time (rules in the module docs). Every target is checked
/// against the anti-rollback floor, in order, before the count of new ones.
pub fn decide(
    device_id: &str,
    targets: &[BoundTarget],
    installed: Option<TargetId<'_>>,
    rollback_keys: Option<&RollbackKeys>,
    now: DateTime<Utc>,
) -> Result<Decision, InstallError> {
    let mut new = Vec::new();
    for (index, t) in targets.iter().enumerate() {
        let rollback_authorized = match &installed {
            Some(i) => authorized(device_id, t, i.release_counter, rollback_keys, now)?,
            None => false,
        };
        if !installed.is_some_and(|i| i.is_same(&t.id())) {
            new.push(Decision::Install {
                index,
                rollback_authorized,
            });
        }
    }
    match new.as_slice() {
        [] => Ok(Decision::Keep),
        [one] => Ok(*one),
        _ => Err(InstallError::TooManyTargets {
            names: new
                .iter()
                .filter_map(|d| match d {
                    Decision::Install { index, .. } => targets.get(*index),
                    Decision::Keep => None,
                })
                .map(|t| t.name.clone())
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;
    use custody_keys::Signer;

    use super::*;
    use crate::rollback::{RollbackBody, TYPE_ROLLBACK};
    use crate::wire::WIRE_VERSION;
    use custody_keys::MemorySigner;

    const DEV: &str = "device-1";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn target(name: &str, counter: u64) -> BoundTarget {
        BoundTarget {
            name: name.into(),
            release_counter: counter,
            length: 3,
            hashes: [("sha256".to_owned(), "ab".repeat(32))].into(),
            rollback_authorization: None,
        }
    }

    fn keys() -> (MemorySigner, RollbackKeys) {
        let s = MemorySigner::generate_ed25519().unwrap();
        let k = RollbackKeys {
            keys: [(s.keyid().to_owned(), s.key().clone())].into(),
            threshold: 1,
        };
        (s, k)
    }

    fn authorisation(
        s: &MemorySigner,
        device: &str,
        name: &str,
        counter: u64,
        expires: i64,
    ) -> serde_json::Value {
        RollbackAuthorization::sign(
            RollbackBody {
                type_: TYPE_ROLLBACK.into(),
                wire_version: WIRE_VERSION,
                device_ids: BTreeSet::from([device.to_owned()]),
                target: name.into(),
                release_counter: counter,
                expires,
                reason: "test".into(),
            },
            &[s],
        )
        .unwrap()
        .to_value()
    }

    fn installed(t: &BoundTarget) -> Option<TargetId<'_>> {
        Some(t.id())
    }

    #[test]
    fn first_install_and_upgrades_are_decided() {
        let v2 = target("app-2", 2);
        assert_eq!(
            decide(DEV, std::slice::from_ref(&v2), None, None, now()).unwrap(),
            Decision::Install {
                index: 0,
                rollback_authorized: false
            }
        );
        let v1 = target("app-1", 1);
        assert_eq!(
            decide(DEV, std::slice::from_ref(&v2), installed(&v1), None, now()).unwrap(),
            Decision::Install {
                index: 0,
                rollback_authorized: false
            }
        );
        // the installed one again: nothing to do; nothing assigned: same
        assert_eq!(
            decide(DEV, std::slice::from_ref(&v2), installed(&v2), None, now()).unwrap(),
            Decision::Keep
        );
        assert_eq!(
            decide(DEV, &[], installed(&v2), None, now()).unwrap(),
            Decision::Keep
        );
    }

    /// A director (or anyone replaying old metadata) offering an older
    /// release without a valid authorisation is refused, and says why.
    #[test]
    fn a_downgrade_needs_a_valid_authorisation() {
        let v5 = target("app-5", 5);
        let (s, k) = keys();
        let exp = now().timestamp() + 3600;
        let mut old = target("app-3", 3);
        let refused = |t: &BoundTarget, keys: Option<&RollbackKeys>| match decide(
            DEV,
            std::slice::from_ref(t),
            installed(&v5),
            keys,
            now(),
        )
        .unwrap_err()
        {
            InstallError::Downgrade {
                why,
                offered: 3,
                installed: 5,
                ..
            } => why,
            other => panic!("{other}"),
        };
        assert_eq!(refused(&old, Some(&k)), DowngradeRefusal::NoAuthorization);
        old.rollback_authorization = Some(authorisation(&s, DEV, "app-3", 3, exp));
        assert_eq!(refused(&old, None), DowngradeRefusal::NoRollbackKeys);
        // signed by a key the device does not trust
        let (other, _) = keys();
        old.rollback_authorization = Some(authorisation(&other, DEV, "app-3", 3, exp));
        assert!(matches!(
            refused(&old, Some(&k)),
            DowngradeRefusal::Refused(_)
        ));
        // for another device, another target, another counter, expired
        for a in [
            authorisation(&s, "device-2", "app-3", 3, exp),
            authorisation(&s, DEV, "app-4", 3, exp),
            authorisation(&s, DEV, "app-3", 4, exp),
            authorisation(&s, DEV, "app-3", 3, now().timestamp()),
        ] {
            old.rollback_authorization = Some(a);
            assert!(matches!(
                refused(&old, Some(&k)),
                DowngradeRefusal::Refused(_)
            ));
        }
        // not an authorisation at all
        old.rollback_authorization = Some(serde_json::json!({"signed": 1}));
        assert!(matches!(
            refused(&old, Some(&k)),
            DowngradeRefusal::Malformed(_)
        ));
        let e = decide(DEV, &[old.clone()], installed(&v5), Some(&k), now()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("target \"app-3\": release counter 3 is below the installed 5: "),
            "{e}"
        );
        // the valid one
        old.rollback_authorization = Some(authorisation(&s, DEV, "app-3", 3, exp));
        assert_eq!(
            decide(DEV, &[old], installed(&v5), Some(&k), now()).unwrap(),
            Decision::Install {
                index: 0,
                rollback_authorized: true
            }
        );
    }

    /// Same name and counter but other bytes is a new target (and so
    /// counts); a renamed copy of the installed one is new as well.
    #[test]
    fn same_target_means_same_name_counter_length_and_hashes() {
        let v2 = target("app-2", 2);
        let mut other_bytes = v2.clone();
        other_bytes.hashes = [("sha256".to_owned(), "cd".repeat(32))].into();
        let mut longer = v2.clone();
        longer.length = 4;
        let renamed = target("app-2b", 2);
        for t in [other_bytes, longer, renamed] {
            assert_eq!(
                decide(DEV, &[t], installed(&v2), None, now()).unwrap(),
                Decision::Install {
                    index: 0,
                    rollback_authorized: false
                }
            );
        }
        // hash names compare case-insensitively; an algorithm only one side names is not compared
        let mut upper = v2.clone();
        upper.hashes = [
            ("sha256".to_owned(), "AB".repeat(32)),
            ("sha512".to_owned(), "ef".repeat(64)),
        ]
        .into();
        assert_eq!(
            decide(DEV, &[upper], installed(&v2), None, now()).unwrap(),
            Decision::Keep
        );
    }

    /// The agent manages one image: two new targets at once are refused,
    /// whatever order; the installed one beside one new one is fine.
    #[test]
    fn at_most_one_new_target() {
        let v1 = target("app-1", 1);
        let (a, b) = (target("app-2", 2), target("extra", 2));
        let e = decide(DEV, &[a.clone(), b.clone()], installed(&v1), None, now()).unwrap_err();
        assert_eq!(
            e,
            InstallError::TooManyTargets {
                names: vec!["app-2".into(), "extra".into()]
            }
        );
        assert_eq!(
            e.to_string(),
            "director assigned 2 targets to install (app-2, extra); this agent installs one image per device"
        );
        assert!(decide(DEV, &[a.clone(), b], None, None, now()).is_err());
        assert_eq!(
            decide(DEV, &[v1.clone(), a], installed(&v1), None, now()).unwrap(),
            Decision::Install {
                index: 1,
                rollback_authorized: false
            }
        );
    }

    /// Every target is held to the floor, not only the one chosen: a
    /// downgrade beside the installed target is still refused.
    #[test]
    fn every_target_is_checked_against_the_floor() {
        let v5 = target("app-5", 5);
        let e = decide(
            DEV,
            &[v5.clone(), target("app-3", 3)],
            installed(&v5),
            None,
            now(),
        )
        .unwrap_err();
        assert!(
            matches!(e, InstallError::Downgrade { offered: 3, .. }),
            "{e}"
        );
    }
}
