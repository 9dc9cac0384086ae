//! Range headers: a satisfiable answer always lies inside the file.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/range_header.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_server::fuzzing::{parse_range, RangeSpec};

pub fn run(data: &[u8]) {
    // 8 bytes little-endian file length, then the header (UTF-8)
    let (len, header) = data.split_at(data.len().min(8));
    let mut b = [0u8; 8];
    b[..len.len()].copy_from_slice(len);
    let len = u64::from_le_bytes(b);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let RangeSpec::Partial(a, b) = parse_range(header, len) {
        assert!(a <= b && b < len, "{header:?} len {len}: {a}-{b}");
    }
}
