//! Given-up targets: a target whose install attempt rolled back or failed
//! (inside an install, or finished by crash recovery) is not retried by a
//! poll until the director assigns something else. The mark is written
//! before the install step and removed only after a commit, so no crash can
//! let the next poll install it again.

use super::*;

impl Device {
    /// What recovery finished counts exactly like the same outcome inside
    /// [`install_target`](Self::install_target): an attempt that reached
    /// the install step (payload downloaded and verified) and did not
    /// commit, or that was refused as a downgrade, gives its target up;
    /// one killed while downloading ended `Failed` like any interrupted
    /// download and is retried. The report of the attempt was queued once
    /// by the agent (idempotent on the attempt's report id). Also drops the
    /// mark of the committed target, which a crash between a commit and
    /// [`forget_given_up`](Self::forget_given_up) may have left behind.
    pub(super) fn settle_recovery(
        &self,
        interrupted: Option<&crate::state::Attempt>,
        recovered: Option<&Outcome>,
    ) -> Result<(), DeviceError> {
        if let (Some(a), Some(outcome)) = (interrupted, recovered) {
            if recovered_gives_up(a, outcome) {
                tracing::warn!(
                    target = %a.target.name,
                    outcome = outcome.kind(),
                    attempt = a.id,
                    "the attempt a restart interrupted ended without commit; target given up until the director assigns something else"
                );
                self.give_up(given_up_key(&a.target))?;
            }
        }
        if let Some(c) = &self.agent.state().committed {
            self.forget_given_up(&given_up_key(&c.target))?;
        }
        Ok(())
    }

    /// Drop the given-up mark of `key` (written only if it was there).
    pub(super) fn forget_given_up(&self, key: &(String, String)) -> Result<(), DeviceError> {
        let mut n = self.net()?;
        if !n.given_up.contains(key) {
            return Ok(());
        }
        n.given_up.retain(|k| k != key);
        self.save_net(&n)
    }

    /// The director's verified assignment is `assigned` (`None`: nothing
    /// to install, or what is installed): every given-up mark for another
    /// target goes. A target is given up "until the director assigns
    /// something else"; once it has, assigning the target again re-offers
    /// it (README: "Re-offering a given-up target").
    pub(super) fn assignment_seen(
        &self,
        assigned: Option<&VerifiedTarget>,
    ) -> Result<(), DeviceError> {
        let keep = assigned.map(|t| given_up_key(&t.meta));
        let mut n = self.net()?;
        let before = n.given_up.len();
        n.given_up.retain(|k| Some(k) == keep.as_ref());
        if n.given_up.len() == before {
            return Ok(());
        }
        tracing::info!(
            cleared = before - n.given_up.len(),
            "the director assigns something else: given-up targets may be offered again"
        );
        self.save_net(&n)
    }

    pub(super) fn give_up(&self, key: (String, String)) -> Result<(), DeviceError> {
        let mut n = self.net()?;
        if !n.given_up.contains(&key) {
            if n.given_up.len() >= 64 {
                n.given_up.remove(0);
            }
            n.given_up.push(key);
        }
        self.save_net(&n)
    }
}

/// Whether `outcome`, reached by recovery for the interrupted attempt `a`,
/// gives the target up (the rule of [`Device::install_target`]): not a
/// commit, and the attempt reached the install step (it has a plan or its
/// payload was downloaded and verified) or was refused (`AttackDetected`:
/// a downgrade or an attack found while downloading). A `Failed` attempt
/// with neither was an interrupted or failed download: retried.
pub(super) fn recovered_gives_up(a: &crate::state::Attempt, outcome: &Outcome) -> bool {
    let reached_install =
        a.plan.is_some() || matches!(a.phase, crate::state::Phase::Downloaded { .. });
    match outcome {
        Outcome::Installed => false,
        Outcome::AttackDetected { .. } | Outcome::RolledBack { .. } => true,
        Outcome::Failed { .. } => reached_install,
    }
}

/// The given-up mark of a target: (name, sha256).
pub(super) fn given_up_key(t: &crate::TargetMeta) -> (String, String) {
    (t.name.clone(), t.sha256().unwrap_or_default().to_owned())
}
