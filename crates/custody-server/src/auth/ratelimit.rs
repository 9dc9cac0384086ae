//! Per-client rate limits for endpoints that guess at secrets.
//!
//! `POST /api/v1/token` trades a bootstrap credential or an OIDC token for
//! an admin token; without a limit a client could try credential secrets
//! (or replay stolen ID tokens against many audiences) as fast as the
//! server answers. The limit is a GCRA bucket per client IP address
//! (`governor`), so one misbehaving host cannot lock out the others.
//!
//! The peer address comes from the accept loop (see
//! `crate::server`), not from `X-Forwarded-For`: a header is the
//! client's word. Behind a proxy every request shares the proxy's address,
//! so operators there raise the limit or rate-limit at the proxy.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// The TCP peer of the connection a request arrived on, inserted by the
/// accept loop into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// A keyed (per IP) rate limiter.
pub(crate) struct RateLimiter {
    inner: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    per_minute: u32,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl RateLimiter {
    /// `per_minute` sustained requests per client address with bursts of
    /// `burst`; zero values are raised to one (a limit of zero would be a
    /// denial of service the operator did not mean).
    pub(crate) fn new(per_minute: u32, burst: u32) -> RateLimiter {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateLimiter {
            inner: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            per_minute: per_minute.get(),
        }
    }

    /// `Ok` if `ip` may make one more request now, else how long until it
    /// may. Requests without a known peer share one bucket (fail closed).
    pub(crate) fn check(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        let key = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.inner
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drop the state of clients that are back to a full bucket (called by
    /// housekeeping so the map does not grow with every address ever seen).
    pub(crate) fn prune(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// The sustained rate, for messages.
    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_address() {
        let rl = RateLimiter::new(60, 3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(rl.check(a).is_ok());
        }
        let wait = rl.check(a).expect_err("fourth request in the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // another client is not affected
        assert!(rl.check(b).is_ok());
    }

    #[test]
    fn zero_config_values_still_allow_one() {
        let rl = RateLimiter::new(0, 0);
        assert!(rl.check(None).is_ok());
        assert!(rl.check(None).is_err());
    }
}
