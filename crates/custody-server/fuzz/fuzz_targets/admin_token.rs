//! Bearer tokens from the network: verification never panics and never
//! accepts bytes it did not sign.
#![no_main]
use custody_server::auth::token::TokenKeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let keys = TokenKeys::new(&[0x5a; 32]).expect("32-byte key");
    assert!(keys.verify(s).is_err());
});
