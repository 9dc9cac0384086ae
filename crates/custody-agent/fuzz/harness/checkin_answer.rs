//! The check-in answer as the agent reads it: untrusted bytes from the
//! server (or anything on the path to it) through
//! `CheckinResponse::from_bytes`, the parse `Device::check_once` does, then
//! every piece of director metadata it carries through the custody-tuf
//! parsers and the device-binding check the agent's verification runs.
//! Nothing may panic; a parsed answer serialises and parses back to itself.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/checkin_answer.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_director::director::verify_director_targets_for_device;
use custody_director::wire::CheckinResponse;
use custody_tuf::{Metadata, Root, Snapshot, Targets, Timestamp};

pub fn run(data: &[u8]) {
    let Ok(answer) = CheckinResponse::from_bytes(data) else {
        return;
    };
    let again = serde_json::to_vec(&answer).expect("a parsed answer serialises");
    assert_eq!(
        CheckinResponse::from_bytes(&again).expect("a serialised answer parses"),
        answer
    );
    let set = &answer.director;
    for root in &set.roots {
        let _ = Metadata::<Root>::from_bytes("root", root);
    }
    let _ = Metadata::<Timestamp>::from_bytes("timestamp", &set.timestamp);
    let _ = Metadata::<Snapshot>::from_bytes("snapshot", &set.snapshot);
    if let Ok(t) = Metadata::<Targets>::from_bytes("targets", &set.targets) {
        let _ = verify_director_targets_for_device(&t.signed, "device-a", "board-a");
    }
}
