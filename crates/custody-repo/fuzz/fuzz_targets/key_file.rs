//! Key-file bytes (PEM, PKCS#8 PBES2, the decrypted PKCS#8) must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custody_repo::keyfile::load_pem(std::path::Path::new("fuzz.pem"), s, b"pw");
    }
});
