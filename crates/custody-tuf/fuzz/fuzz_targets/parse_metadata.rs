//! Untrusted metadata bytes into every typed parser.
#![no_main]
use custody_tuf::{Metadata, Root, Snapshot, Targets, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Metadata::<Root>::from_bytes("root", data);
    let _ = Metadata::<Timestamp>::from_bytes("timestamp", data);
    let _ = Metadata::<Snapshot>::from_bytes("snapshot", data);
    if let Ok(t) = Metadata::<Targets>::from_bytes("targets", data) {
        // exercise delegation resolution on whatever parsed
        if let Some(d) = &t.signed.delegations {
            let _ = custody_tuf::roles_for_target(d, "a/b.txt");
        }
    }
});
