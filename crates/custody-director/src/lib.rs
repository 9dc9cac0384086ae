//! custody-director: the Uptane-style director core, sans-IO.
//!
//! An update is assigned to ONE device, not to a device class: the director
//! signs, per device and on demand, targets metadata that names the device
//! id and hardware id, and the device refuses metadata for anyone else.
//!
//! No network, no files, no clock: bytes, records and the reference time
//! come in as arguments; storage is behind small traits ([`enrol::TokenStore`],
//! [`request::NonceCache`]) that the server implements over SQL.
//!
//! | module | holds |
//! | --- | --- |
//! | [`wire`] | versioned wire types and their bounded strict parsers (shared with the agent) |
//! | [`keys`] | device keys, the device-id rule, an in-memory signer |
//! | [`request`] | signed device requests (why not mTLS), nonce cache, [`verify_device_request`] |
//! | [`manifest`] | [`verify_manifest`]: device key, counter replay / reorder; [`check_logged_install_report`]: a logged install report against its device-signed manifest |
//! | [`registry`] | the device record, status, re-attestation |
//! | [`enrol`] | one-time tokens, factory X.509 identity, [`enrol::enrol`] |
//! | [`director`] | per-device director metadata, [`verify_director_targets_for_device`] |
//! | [`image`] | [`image::ImageCustom`]: the release facts an image target's signed `custom` names (director and device read them here) |
//! | [`install`] | [`install::decide`]: the device's install decision (anti-rollback, rollback authorisations, at most one new target) |
//! | [`rollback`] | rollback authorisations (device and director verify them) |
//! | [`policy`] | rollouts, stages ([`policy::Rollout::device_stage`]), buckets, canary gates, windows, pins, anti-rollback, yanks, [`policy::Release::from_image`] |
//!
//! # Features
//! `server` (default) adds [`enrol`] (rustls-webpki, x509-cert) and
//! [`policy`] (croner, chrono-tz). A device agent uses
//! `default-features = false`: wire types, request and manifest signing,
//! the director binding check, the image `custom` reader, the install
//! decision and rollback authorisation verification.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod director;
#[cfg(feature = "server")]
pub mod enrol;
pub mod image;
pub mod install;
pub mod keys;
pub mod manifest;
#[cfg(feature = "server")]
pub mod policy;
pub mod registry;
pub mod request;
pub mod rollback;
pub mod wire;

pub use director::{verify_director_targets_for_device, DirectorError};
pub use manifest::{
    check_logged_install_report, verify_manifest, verify_manifest_signature, LoggedInstallReport,
    LoggedReportCheck, LoggedReportError, ManifestError,
};
pub use request::{verify_device_request, MemoryNonceCache, NonceCache, RequestError};
