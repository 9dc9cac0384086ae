//! The device record and its status rules.
//!
//! Status is consulted by every verification function ([`DeviceRecord::check_usable`]),
//! so suspend and decommission take effect on the next request, with no
//! cache to expire.
//!
//! Re-attestation: an `Active` device whose `last_attestation` is older than
//! [`ReattestationPolicy::period`] is *effectively* suspended
//! ([`EffectiveStatus::Overdue`]) until it proves possession of its key
//! again ([`DeviceRecord::reattested`], after a verified signed request to
//! the attestation route; for factory devices the server may also demand
//! the certificate chain again). The stored status is not rewritten for
//! this: the rule is a pure function of the record and the time, so every
//! replica agrees without a sweeper job.

use chrono::{DateTime, Duration, Utc};
use custody_tuf::Key;
use serde::{Deserialize, Serialize};

use crate::wire::DeviceAttributes;

/// Administrative status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceStatus {
    /// may check in
    Active,
    /// refused until resumed by an administrator
    Suspended {
        /// why (operator text)
        reason: String,
        /// since when
        since: DateTime<Utc>,
    },
    /// refused forever; the id is never reused (it is the key's id)
    Decommissioned {
        /// since when
        since: DateTime<Utc>,
    },
}

/// How the device enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnrolledWith {
    /// a one-time token (its hash's first 16 hex digits, for audit)
    Token {
        /// token hash prefix
        token_hash_prefix: String,
    },
    /// a factory certificate (issuer and serial of the leaf)
    Factory {
        /// leaf issuer (RFC 4514)
        issuer: String,
        /// leaf serial (hex)
        serial: String,
    },
}

/// One enrolled device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// key id of `key` (see [`crate::keys`])
    pub id: String,
    /// the device's custody key
    pub key: Key,
    /// hardware id
    pub hardware_id: String,
    /// fleet group (from the token for token enrolment)
    pub group: String,
    /// fleet attributes
    pub attributes: DeviceAttributes,
    /// enrolled at
    pub enrolled_at: DateTime<Utc>,
    /// how
    pub enrolled_with: EnrolledWith,
    /// administrative status
    pub status: DeviceStatus,
    /// last time the device proved possession of its key (enrolment or
    /// re-attestation)
    pub last_attestation: DateTime<Utc>,
}

/// Re-attestation period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReattestationPolicy {
    /// a device must re-prove possession at least this often
    pub period: Duration,
}

impl Default for ReattestationPolicy {
    /// 30 days.
    fn default() -> Self {
        ReattestationPolicy {
            period: Duration::days(30),
        }
    }
}

/// The status in force at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectiveStatus {
    /// usable
    Active,
    /// active, but re-attestation is overdue: only the attestation route
    Overdue {
        /// last attestation
        last: DateTime<Utc>,
        /// when it became due
        due: DateTime<Utc>,
    },
    /// administratively suspended
    Suspended {
        /// why
        reason: String,
    },
    /// decommissioned
    Decommissioned,
}

/// The device may not do this now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// decommissioned
    #[error("device {device}: decommissioned since {since}; it is refused for good")]
    Decommissioned {
        /// device id
        device: String,
        /// since
        since: DateTime<Utc>,
    },
    /// suspended by an administrator
    #[error("device {device}: suspended since {since}: {reason}")]
    Suspended {
        /// device id
        device: String,
        /// since
        since: DateTime<Utc>,
        /// operator's reason
        reason: String,
    },
    /// re-attestation overdue
    #[error("device {device}: re-attestation overdue: last proof of key possession at {last}, due by {due}, now {now}; only re-attestation is accepted")]
    ReattestationOverdue {
        /// device id
        device: String,
        /// last attestation
        last: DateTime<Utc>,
        /// due time
        due: DateTime<Utc>,
        /// reference time
        now: DateTime<Utc>,
    },
}

/// What a request is for, as far as status rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// normal traffic: check-in, manifests, downloads
    Normal,
    /// re-attestation: allowed while overdue (not while suspended)
    Reattest,
}

impl DeviceRecord {
    /// The status in force at `now`.
    pub fn effective_status(&self, now: DateTime<Utc>, p: &ReattestationPolicy) -> EffectiveStatus {
        match &self.status {
            DeviceStatus::Decommissioned { .. } => EffectiveStatus::Decommissioned,
            DeviceStatus::Suspended { reason, .. } => EffectiveStatus::Suspended {
                reason: reason.clone(),
            },
            DeviceStatus::Active => {
                let due = self
                    .last_attestation
                    .checked_add_signed(p.period)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if now >= due {
                    EffectiveStatus::Overdue {
                        last: self.last_attestation,
                        due,
                    }
                } else {
                    EffectiveStatus::Active
                }
            }
        }
    }

    /// Refuse unless the device may act for `purpose` at `now`.
    pub fn check_usable(
        &self,
        now: DateTime<Utc>,
        p: &ReattestationPolicy,
        purpose: Purpose,
    ) -> Result<(), StatusError> {
        match &self.status {
            DeviceStatus::Decommissioned { since } => Err(StatusError::Decommissioned {
                device: self.id.clone(),
                since: *since,
            }),
            DeviceStatus::Suspended { reason, since } => Err(StatusError::Suspended {
                device: self.id.clone(),
                since: *since,
                reason: reason.clone(),
            }),
            DeviceStatus::Active => match self.effective_status(now, p) {
                EffectiveStatus::Overdue { last, due } if purpose == Purpose::Normal => {
                    Err(StatusError::ReattestationOverdue {
                        device: self.id.clone(),
                        last,
                        due,
                        now,
                    })
                }
                _ => Ok(()),
            },
        }
    }

    /// Record a successful re-attestation at `now` (call after
    /// [`crate::request::verify_device_request`] with [`Purpose::Reattest`]).
    pub fn reattested(&mut self, now: DateTime<Utc>) {
        if now > self.last_attestation {
            self.last_attestation = now;
        }
    }

    /// Suspend at once.
    pub fn suspend(&mut self, reason: &str, now: DateTime<Utc>) {
        if !matches!(self.status, DeviceStatus::Decommissioned { .. }) {
            self.status = DeviceStatus::Suspended {
                reason: reason.to_owned(),
                since: now,
            };
        }
    }

    /// Resume a suspended device (not a decommissioned one). Returns false
    /// if the device is decommissioned.
    pub fn resume(&mut self) -> bool {
        match self.status {
            DeviceStatus::Decommissioned { .. } => false,
            _ => {
                self.status = DeviceStatus::Active;
                true
            }
        }
    }

    /// Decommission at once, for good.
    pub fn decommission(&mut self, now: DateTime<Utc>) {
        if !matches!(self.status, DeviceStatus::Decommissioned { .. }) {
            self.status = DeviceStatus::Decommissioned { since: now };
        }
    }
}
