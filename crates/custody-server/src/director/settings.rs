//! `[director]` section of the server configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// Director settings. Every field has a default: a server with a key
/// passphrase runs a director out of the box.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorSettings {
    /// Serve the device API (`/device/v1/…`) and the fleet API.
    pub enabled: bool,
    /// Hosted image repository the director assigns releases from.
    pub image_repository: String,
    /// Manufacturer CA certificates (PEM or DER files) trusted for factory
    /// enrolment. Empty: factory enrolment is refused (`unknown_ca`).
    pub factory_ca_files: Vec<PathBuf>,
    /// Group of factory-enrolled devices that name none.
    pub factory_default_group: String,
    /// JSON file `{"threshold": n, "keys": [<TUF key>, …]}`: the separate
    /// rollback key set that signs rollback authorisations. Absent: no
    /// rollback authorisation can verify, so no device is ever downgraded.
    pub rollback_keys_file: Option<PathBuf>,
    /// A device that has not proved possession of its key (a verified
    /// signed request) for this long is suspended.
    pub reattestation_period_seconds: u64,
    /// Expiry of per-device targets, snapshot and timestamp.
    pub metadata_expiry_seconds: u64,
    /// Expiry of a director root version.
    pub root_expiry_days: u64,
    /// Accepted |device clock − server clock| for signed requests.
    pub request_window_seconds: u64,
    /// Suggested seconds between check-ins (sent to devices).
    pub checkin_interval_seconds: u64,
    /// Longest lifetime of an enrolment token.
    pub token_max_ttl_seconds: u64,
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            enabled: true,
            image_repository: "main".into(),
            factory_ca_files: Vec::new(),
            factory_default_group: "default".into(),
            rollback_keys_file: None,
            reattestation_period_seconds: 30 * 24 * 3600,
            metadata_expiry_seconds: 24 * 3600,
            root_expiry_days: 365,
            request_window_seconds: 300,
            checkin_interval_seconds: 300,
            token_max_ttl_seconds: 30 * 24 * 3600,
        }
    }
}

impl DirectorSettings {
    /// Cross-field rules.
    pub fn validate(&self) -> Result<(), String> {
        crate::auth::scope::validate_repo_name(&self.image_repository)
            .map_err(|e| format!("director.image_repository: {e}"))?;
        for (name, v, lo, hi) in [
            (
                "reattestation_period_seconds",
                self.reattestation_period_seconds,
                1,
                10 * 365 * 24 * 3600,
            ),
            (
                "metadata_expiry_seconds",
                self.metadata_expiry_seconds,
                60,
                366 * 24 * 3600,
            ),
            ("root_expiry_days", self.root_expiry_days, 31, 10 * 366),
            (
                "request_window_seconds",
                self.request_window_seconds,
                5,
                3600,
            ),
            (
                "checkin_interval_seconds",
                self.checkin_interval_seconds,
                1,
                7 * 24 * 3600,
            ),
            (
                "token_max_ttl_seconds",
                self.token_max_ttl_seconds,
                60,
                366 * 24 * 3600,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("director.{name}: must be {lo}..={hi}, got {v}"));
            }
        }
        Ok(())
    }
}
