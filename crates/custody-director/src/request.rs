//! Signed device requests.
//!
//! # Why signed requests and not mutual TLS
//! - **Untrusted transport end to end.** custody's rule is that TLS is
//!   hygiene, not authenticity. TLS is routinely terminated at load
//!   balancers, CDNs, ingress proxies and site gateways; with mTLS the
//!   device's identity would reach the director as a header that the proxy
//!   asserts. A signature over the request reaches the director intact
//!   through any number of hops, and also through store-and-forward relays
//!   (USB bundle, offline gateway) where there is no TLS session at all.
//! - **One key, one algorithm set.** The device signs requests with the same
//!   custody key (TUF key form, Ed25519 / ECDSA P-256) that signs its
//!   manifests and whose key id is its device id. No client-certificate PKI,
//!   no issuance, renewal or CRLs for the fleet; suspend/decommission is a
//!   status flag read on every request.
//! - **Replay protection is explicit and testable** (timestamp window +
//!   nonce cache), instead of relying on a TLS session we may not own.
//!
//! # The signed message
//! ```text
//! custody-request-v1\n
//! {METHOD}\n{path}\n{device_id}\n{timestamp}\n{nonce}\n{hex sha256(body)}
//! ```
//! Every field is validated not to contain a newline, so the message is
//! unambiguous. Binding method and path stops a signature for one call being
//! used for another; the body hash binds the payload; the device id binds
//! the key lookup; timestamp + nonce stop replays.
//!
//! # Verification order ([`verify_device_request`])
//! 1. status of the record (decommissioned / suspended / overdue) — at once;
//! 2. the envelope's device id, method and path equal the record's id and
//!    the route that was called;
//! 3. timestamp within `now ± window` (default 5 minutes);
//! 4. signature by the record's key (custody-tuf's [`custody_tuf::PublicKey::verify`]);
//! 5. nonce never seen for this device within the window ([`NonceCache`]) —
//!    last, so forged requests cannot fill the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use custody_keys::Signer;
use ring::digest;

use crate::keys::device_public_key;
use crate::registry::{DeviceRecord, Purpose, ReattestationPolicy, StatusError};
use crate::wire::{SignedRequest, WIRE_VERSION};

/// Domain separation prefix of the request message.
pub const REQUEST_CONTEXT: &str = "custody-request-v1";

/// Default clock skew window: ±5 minutes.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// Request verification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPolicy {
    /// accepted |device timestamp − now|
    pub window: Duration,
    /// re-attestation rule consulted through the record's status
    pub reattestation: ReattestationPolicy,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        RequestPolicy {
            window: Duration::seconds(DEFAULT_WINDOW_SECS),
            reattestation: ReattestationPolicy::default(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// the device may not act now
    #[error(transparent)]
    Status(#[from] StatusError),
    /// the envelope names another device than the record looked up
    #[error("request: device id {found} does not match the registered device {expected}")]
    WrongDevice {
        /// record's id
        expected: String,
        /// envelope's id
        found: String,
    },
    /// signed for another method or path than the one called
    #[error("request: signed for {signed_method} {signed_path} but called as {method} {path} (a signature binds one route)")]
    WrongRoute {
        /// signed method
        signed_method: String,
        /// signed path
        signed_path: String,
        /// method called
        method: String,
        /// path called
        path: String,
    },
    /// timestamp outside the window
    #[error("request: timestamp {timestamp} is {skew_secs} s from server time {now} (window ±{window_secs} s): {which}")]
    Stale {
        /// device timestamp
        timestamp: i64,
        /// server time (seconds)
        now: i64,
        /// timestamp - now
        skew_secs: i64,
        /// window
        window_secs: i64,
        /// "too old (replay or slow clock)" / "in the future (fast clock)"
        which: &'static str,
    },
    /// signature does not verify with the registered key
    #[error("request: signature does not verify with device {device}'s registered key (forged, tampered, or signed by another key)")]
    BadSignature {
        /// device id
        device: String,
    },
    /// nonce already used
    #[error("request: nonce {nonce} of device {device} was already used (replayed request)")]
    ReplayedNonce {
        /// device id
        device: String,
        /// nonce
        nonce: String,
    },
    /// the registered key cannot verify (should not happen: checked at enrolment)
    #[error("request: device {device}'s registered key is unusable: {reason}")]
    Key {
        /// device id
        device: String,
        /// reason
        reason: String,
    },
    /// the nonce cache refused (full of live entries): fail closed
    #[error("request: nonce cache: {0}")]
    NonceCache(String),
}

/// The message a device signs for a request.
pub fn request_message(
    method: &str,
    path: &str,
    device_id: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = hex::encode(digest::digest(&digest::SHA256, body));
    format!("{REQUEST_CONTEXT}\n{method}\n{path}\n{device_id}\n{timestamp}\n{nonce}\n{body_hash}")
        .into_bytes()
}

/// A fresh random nonce (32 hex digits = 128 bits).
pub fn fresh_nonce() -> Result<String, RequestError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| RequestError::NonceCache("system RNG failed".into()))?;
    Ok(hex::encode(b))
}

/// Device side: sign a request.
pub fn sign_request(
    key: &dyn Signer,
    method: &str,
    path: &str,
    body: Vec<u8>,
    now: DateTime<Utc>,
    nonce: String,
) -> Result<SignedRequest, custody_keys::SignerError> {
    let device_id = key.keyid().to_owned();
    let timestamp = now.timestamp();
    let msg = request_message(method, path, &device_id, timestamp, &nonce, &body);
    let sig = key.sign(&msg)?;
    Ok(SignedRequest {
        wire_version: WIRE_VERSION,
        device_id,
        method: method.to_owned(),
        path: path.to_owned(),
        timestamp,
        nonce,
        body,
        signature: hex::encode(sig),
    })
}

/// Remembers nonces until their request could no longer pass the time
/// window. Implementations must make `check_and_insert` atomic (a SQL
/// `INSERT … ON CONFLICT DO NOTHING` and a row count, a Redis `SET NX EX`).
pub trait NonceCache: Send + Sync {
    /// Record `(device, nonce)` until `expires_at` (unix seconds). `Ok(true)`
    /// if it was new, `Ok(false)` if it was already there (replay), `Err`
    /// if the cache cannot decide (the request is then refused).
    fn check_and_insert(
        &self,
        device: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, String>;
}

/// In-memory bounded nonce cache. When full it first drops expired entries;
/// if every entry is still live it refuses new ones (fail closed: evicting a
/// live nonce would reopen a replay). Size it for peak requests/s × 2 × window.
#[derive(Debug)]
pub struct MemoryNonceCache {
    inner: Mutex<NonceInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct NonceInner {
    map: HashMap<(String, String), i64>,
    /// insertion order with expiry; expiries are not sorted (clock skew), so
    /// eviction scans from the front and skips live entries
    order: VecDeque<((String, String), i64)>,
}

impl MemoryNonceCache {
    /// A cache for at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        MemoryNonceCache {
            inner: Mutex::new(NonceInner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Number of remembered nonces.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.map.len()).unwrap_or(0)
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NonceInner {
    fn purge(&mut self, now: i64) {
        let mut keep = VecDeque::with_capacity(self.order.len());
        while let Some((k, exp)) = self.order.pop_front() {
            if exp <= now {
                if self.map.get(&k) == Some(&exp) {
                    self.map.remove(&k);
                }
            } else {
                keep.push_back((k, exp));
            }
        }
        self.order = keep;
    }
}

impl NonceCache for MemoryNonceCache {
    fn check_and_insert(
        &self,
        device: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, String> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| "nonce cache lock poisoned".to_owned())?;
        let key = (device.to_owned(), nonce.to_owned());
        if let Some(&exp) = g.map.get(&key) {
            if exp > now {
                return Ok(false);
            }
        }
        // Cheap path: drop expired entries at the front.
        while let Some((_, exp)) = g.order.front() {
            if *exp > now {
                break;
            }
            if let Some((k, exp)) = g.order.pop_front() {
                if g.map.get(&k) == Some(&exp) {
                    g.map.remove(&k);
                }
            }
        }
        if g.map.len() >= self.capacity {
            g.purge(now);
            if g.map.len() >= self.capacity {
                return Err(format!(
                    "full: {} live nonces (capacity {}); refusing rather than forgetting a live nonce",
                    g.map.len(),
                    self.capacity
                ));
            }
        }
        g.map.insert(key.clone(), expires_at);
        g.order.push_back((key, expires_at));
        Ok(true)
    }
}

/// The route the server actually dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// HTTP method
    pub method: &'a str,
    /// path (with query) as received
    pub path: &'a str,
    /// status rule: re-attestation may proceed while overdue
    pub purpose: Purpose,
}

/// Verify a signed request against the registered device record (the
/// registry key is `device.key`); see the module docs for the order.
pub fn verify_device_request(
    device: &DeviceRecord,
    req: &SignedRequest,
    route: Route<'_>,
    now: DateTime<Utc>,
    policy: &RequestPolicy,
    nonces: &dyn NonceCache,
) -> Result<(), RequestError> {
    let Route {
        method,
        path,
        purpose,
    } = route;
    device.check_usable(now, &policy.reattestation, purpose)?;
    if req.device_id != device.id {
        return Err(RequestError::WrongDevice {
            expected: device.id.clone(),
            found: req.device_id.clone(),
        });
    }
    if req.method != method || req.path != path {
        return Err(RequestError::WrongRoute {
            signed_method: req.method.clone(),
            signed_path: req.path.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
        });
    }
    let now_s = now.timestamp();
    let window = policy.window.num_seconds();
    let skew = req.timestamp.saturating_sub(now_s);
    if skew.saturating_abs() > window {
        return Err(RequestError::Stale {
            timestamp: req.timestamp,
            now: now_s,
            skew_secs: skew,
            window_secs: window,
            which: if skew < 0 {
                "too old (replay or slow clock)"
            } else {
                "in the future (fast clock)"
            },
        });
    }
    let pk = device_public_key(&device.key).map_err(|e| RequestError::Key {
        device: device.id.clone(),
        reason: e.to_string(),
    })?;
    let msg = request_message(
        &req.method,
        &req.path,
        &req.device_id,
        req.timestamp,
        &req.nonce,
        &req.body,
    );
    let sig = hex::decode(&req.signature).unwrap_or_default();
    if !pk.verify(&msg, &sig) {
        return Err(RequestError::BadSignature {
            device: device.id.clone(),
        });
    }
    // The nonce must be remembered until the timestamp leaves the window.
    let expires_at = req.timestamp.saturating_add(window).saturating_add(1);
    match nonces.check_and_insert(&req.device_id, &req.nonce, expires_at, now_s) {
        Ok(true) => Ok(()),
        Ok(false) => Err(RequestError::ReplayedNonce {
            device: device.id.clone(),
            nonce: req.nonce.clone(),
        }),
        Err(e) => Err(RequestError::NonceCache(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_cache_expires_and_bounds() {
        let c = MemoryNonceCache::new(2);
        assert_eq!(c.check_and_insert("d", "a", 10, 0), Ok(true));
        assert_eq!(c.check_and_insert("d", "a", 10, 5), Ok(false));
        assert_eq!(c.check_and_insert("e", "a", 10, 5), Ok(true));
        // full of live entries: fail closed
        assert!(c.check_and_insert("d", "b", 10, 5).is_err());
        // after expiry, room again and the old nonce is forgotten
        assert_eq!(c.check_and_insert("d", "b", 30, 11), Ok(true));
        assert_eq!(c.check_and_insert("d", "a", 30, 11), Ok(true));
        assert_eq!(c.len(), 2);
    }
}
