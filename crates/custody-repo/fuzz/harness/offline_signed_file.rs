//! Files coming back from offline signers (merge, sign-file) are untrusted.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/offline_signed_file.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_repo::keyring::KeyRing;
use custody_repo::passphrase::SecretSource;
use custody_repo::repository::{parse_envelope, sign_metadata_bytes, Envelope};
use custody_tuf::{Root, Snapshot, Targets, Timestamp};

pub fn run(data: &[u8]) {
    let p = std::path::Path::new("fuzz.json");
    let _: Result<Envelope<Root>, _> = parse_envelope("root", data, p);
    let _: Result<Envelope<Timestamp>, _> = parse_envelope("timestamp", data, p);
    let _: Result<Envelope<Snapshot>, _> = parse_envelope("snapshot", data, p);
    let _: Result<Envelope<Targets>, _> = parse_envelope("targets", data, p);
    let ring = KeyRing::new(SecretSource::Env("UNSET".into()));
    let _ = sign_metadata_bytes(data, p, &[], &ring);
}
