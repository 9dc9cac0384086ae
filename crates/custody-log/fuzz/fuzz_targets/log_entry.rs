//! Log entries (untrusted bytes from bundles, read by auditors and agents):
//! no panic; an accepted entry re-encodes to an entry that parses to the
//! same value.
#![no_main]

use custody_log::entry::LogEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = LogEntry::from_bytes(data) {
        let again = e.to_bytes().unwrap();
        assert_eq!(LogEntry::from_bytes(&again).unwrap(), e);
        let _ = (e.device_id(), e.target(), e.type_name());
    }
});
