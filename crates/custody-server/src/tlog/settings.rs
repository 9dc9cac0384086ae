//! `[log]` server settings.

use custody_log::{KeyType, VerifierKey};
use serde::Deserialize;

/// `[log]` server settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Witness verifier keys (cosignature/v1, `name+hash+base64`) that
    /// devices enrolled here pin (`EnrolResponse.log.witnesses`).
    pub device_witnesses: Vec<String>,
    /// How many of them must cosign a checkpoint before a device installs
    /// a target it proves (0: the log signature alone).
    pub device_witness_threshold: usize,
}

impl LogSettings {
    /// Every key parses as a cosignature/v1 key, `threshold ≤ keys`.
    pub fn validate(&self) -> Result<(), String> {
        for (i, k) in self.device_witnesses.iter().enumerate() {
            let key =
                VerifierKey::parse(k.trim()).map_err(|e| format!("device_witnesses[{i}]: {e}"))?;
            if key.key_type() != KeyType::CosignatureV1 {
                return Err(format!(
                    "device_witnesses[{i}] ({}): must be a cosignature/v1 witness key",
                    key.name()
                ));
            }
        }
        if self.device_witness_threshold > self.device_witnesses.len() {
            return Err(format!(
                "device_witness_threshold {} is more than the {} device_witnesses",
                self.device_witness_threshold,
                self.device_witnesses.len()
            ));
        }
        if self.device_witnesses.len() > custody_director::wire::MAX_LOG_WITNESSES {
            return Err(format!(
                "at most {} device_witnesses, got {}",
                custody_director::wire::MAX_LOG_WITNESSES,
                self.device_witnesses.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_witness_settings_are_checked() {
        let w = custody_log::Cosigner::from_seed("w.test/1", [1; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let log_key = custody_log::NoteSigner::from_seed("log.test/log", [2; 32])
            .unwrap()
            .verifier_key()
            .to_vkey();
        let ok = LogSettings {
            device_witnesses: vec![w.clone()],
            device_witness_threshold: 1,
        };
        ok.validate().unwrap();
        LogSettings::default().validate().unwrap();
        for (bad, rule) in [
            (
                LogSettings {
                    device_witnesses: vec![w.clone()],
                    device_witness_threshold: 2,
                },
                "more than the 1",
            ),
            (
                LogSettings {
                    device_witnesses: vec![log_key],
                    device_witness_threshold: 1,
                },
                "cosignature/v1",
            ),
            (
                LogSettings {
                    device_witnesses: vec!["garbage".into()],
                    device_witness_threshold: 0,
                },
                "device_witnesses[0]",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(rule), "{rule}: {e}");
        }
    }
}
