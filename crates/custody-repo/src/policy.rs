//! Expiry policy per role.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RepoError;

/// Parse a duration like `365d`, `1y`, `3mo`, `1w`, `1d`, `12h`, `30m`, `90s`.
/// `y` is 365 days and `mo` 30 days (expiry needs no calendar arithmetic).
pub fn parse_duration(s: &str) -> Result<chrono::Duration, RepoError> {
    let bad = |why: &str| {
        RepoError::Invalid(format!(
            "expiry {s:?}: {why} (examples: 365d, 1y, 3mo, 1w, 1d, 12h)"
        ))
    };
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit"))?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad("not a number"))?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mo" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad("unknown unit")),
    };
    if n <= 0 {
        return Err(bad("must be positive"));
    }
    // 100 years is far beyond any sane expiry and keeps chrono in range.
    let secs = n
        .checked_mul(secs_per)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| bad("longer than 100 years"))?;
    Ok(chrono::Duration::seconds(secs))
}

/// How long each role's metadata is valid after it is (re-)signed, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryPolicy {
    /// role name → seconds; `targets` also applies to delegated roles
    /// without an entry of their own.
    pub seconds: BTreeMap<String, i64>,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        let d = 86_400;
        ExpiryPolicy {
            seconds: [
                ("root", 365 * d),
                ("targets", 90 * d),
                ("snapshot", 7 * d),
                ("timestamp", d),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }
    }
}

impl ExpiryPolicy {
    /// Validity period of `role`.
    pub fn for_role(&self, role: &str) -> chrono::Duration {
        let secs = self
            .seconds
            .get(role)
            .or_else(|| self.seconds.get("targets"))
            .copied()
            .unwrap_or(90 * 86_400);
        chrono::Duration::seconds(secs)
    }

    /// Validity period of succinct hash bin `bin` delegated with name prefix
    /// `prefix`: the bin's own setting, else the prefix's (what `hash_bins`
    /// used when it created the bins), else the `targets` default.
    pub fn for_bin(&self, bin: &str, prefix: &str) -> chrono::Duration {
        match self.seconds.get(bin) {
            Some(_) => self.for_role(bin),
            None => self.for_role(prefix),
        }
    }

    /// Set the validity period of `role`.
    pub fn set(&mut self, role: &str, d: chrono::Duration) {
        self.seconds.insert(role.to_owned(), d.num_seconds());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d").unwrap().num_seconds(), 86_400);
        assert_eq!(parse_duration("3mo").unwrap().num_days(), 90);
        assert_eq!(parse_duration("1y").unwrap().num_days(), 365);
        for bad in ["", "d", "1", "0d", "-1d", "1x", "99999999999999y", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    proptest::proptest! {
        #[test]
        fn parse_duration_never_panics_and_is_positive(s in "\\PC{0,12}") {
            if let Ok(d) = parse_duration(&s) {
                proptest::prop_assert!(d.num_seconds() > 0);
            }
        }
    }
}
