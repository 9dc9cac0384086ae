//! Untrusted metadata bytes into every typed parser.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/parse_metadata.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_tuf::{Metadata, Root, Snapshot, Targets, Timestamp};

pub fn run(data: &[u8]) {
    let _ = Metadata::<Root>::from_bytes("root", data);
    let _ = Metadata::<Timestamp>::from_bytes("timestamp", data);
    let _ = Metadata::<Snapshot>::from_bytes("snapshot", data);
    if let Ok(t) = Metadata::<Targets>::from_bytes("targets", data) {
        // exercise delegation resolution on whatever parsed
        if let Some(d) = &t.signed.delegations {
            let _ = custody_tuf::roles_for_target(d, "a/b.txt");
        }
    }
}
