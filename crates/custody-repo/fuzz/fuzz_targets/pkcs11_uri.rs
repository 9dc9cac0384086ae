//! PKCS#11 URIs (from config files and the command line) must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<custody_repo::pkcs11::Pkcs11Uri>();
    }
});
