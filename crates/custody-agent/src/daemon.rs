//! `custody agent run`: check in forever, with a jittered poll interval,
//! exponential back-off on errors, and a clean stop on SIGTERM/SIGINT.
//!
//! Signals without unsafe code: [`Stop::on_signals`] blocks SIGTERM and
//! SIGINT in the calling thread (threads spawned later inherit the mask)
//! and waits for them with `sigwait` in a helper thread, which sets the
//! stop flag. A stop never interrupts a check-in half way: the loop only
//! looks at the flag between check-ins and while sleeping (and a crash in
//! the middle would be recovered by the state machine anyway).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::device::{CheckReport, Device, DeviceError};

/// A stop flag that wakes sleepers.
#[derive(Debug, Default, Clone)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    /// A flag that is not set.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Set the flag and wake sleepers.
    pub fn stop(&self) {
        let (m, c) = &*self.0;
        if let Ok(mut g) = m.lock() {
            *g = true;
        }
        c.notify_all();
    }

    /// Is it set?
    pub fn is_stopped(&self) -> bool {
        self.0 .0.lock().map(|g| *g).unwrap_or(true)
    }

    /// Sleep up to `d`; returns true if stopped meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let (m, c) = &*self.0;
        let Ok(g) = m.lock() else { return true };
        match c.wait_timeout_while(g, d, |stopped| !*stopped) {
            Ok((g, _)) => *g,
            Err(_) => true,
        }
    }

    /// Stop on SIGTERM or SIGINT. Call before spawning other threads.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().map_err(std::io::Error::from)?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("custody-signals".into())
            .spawn(move || {
                if let Ok(sig) = set.wait() {
                    tracing::info!(signal = %sig, "stopping after the current step");
                }
                me.stop();
            })?;
        Ok(())
    }
}

/// A uniformly random fraction in [0, 1) from the system RNG (jitter).
fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// The delay before the next check-in: `base` ± 20 % jitter after a
/// success; after `failures` consecutive errors, `base`·2^failures capped at
/// `max_backoff`, with full jitter in its upper half.
pub fn next_delay(base: Duration, failures: u32, max_backoff: Duration) -> Duration {
    let r = random_fraction();
    if failures == 0 {
        return base.mul_f64(0.8 + 0.4 * r);
    }
    let exp = base
        .checked_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(max_backoff)
        .min(max_backoff);
    exp.mul_f64(0.5 + 0.5 * r)
}

/// Run check-ins until `stop`. `on_report` sees every outcome.
pub fn run(
    device: &mut Device,
    stop: &Stop,
    mut on_report: impl FnMut(&Result<CheckReport, DeviceError>),
) {
    let base = device.poll_interval();
    let max_backoff = Duration::from_secs(3600).max(base);
    let mut failures = 0u32;
    while !stop.is_stopped() {
        let r = device.check_once();
        on_report(&r);
        let suggested = match &r {
            Ok(rep) => {
                failures = 0;
                rep.next_checkin_secs.map(Duration::from_secs)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "check-in failed; backing off");
                None
            }
        };
        let delay = next_delay(suggested.unwrap_or(base), failures, max_backoff);
        if stop.sleep(delay) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_and_backoff_bounds() {
        let base = Duration::from_secs(100);
        let max = Duration::from_secs(1000);
        for _ in 0..200 {
            let d = next_delay(base, 0, max);
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120));
            let d = next_delay(base, 1, max);
            assert!(d >= Duration::from_secs(100) && d <= Duration::from_secs(200));
            let d = next_delay(base, 30, max);
            assert!(d >= Duration::from_secs(500) && d <= max);
        }
    }

    #[test]
    fn stop_wakes_sleeper() {
        let s = Stop::new();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(50));
        s.stop();
        assert!(t.join().unwrap());
    }
}
