//! Log entries (untrusted bytes from bundles, read by auditors and agents):
//! no panic; an accepted entry re-encodes to an entry that parses to the
//! same value.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/log_entry.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_log::entry::LogEntry;

pub fn run(data: &[u8]) {
    if let Ok(e) = LogEntry::from_bytes(data) {
        let again = e.to_bytes().unwrap();
        assert_eq!(LogEntry::from_bytes(&again).unwrap(), e);
        let _ = (e.device_id(), e.target(), e.type_name());
    }
}
