//! Untrusted bundle bytes (a USB stick): parse the preamble and header,
//! decode the image metadata.
#![no_main]
use custody_agent::bundle::Bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, start)) = Bundle::parse_bytes(data) {
        assert!(start <= data.len() as u64);
        for p in &h.payloads {
            assert!(start + p.offset + p.length <= data.len() as u64);
        }
    }
});
