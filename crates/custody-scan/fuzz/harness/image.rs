//! Any bytes as an image (tar, gzip, zstd, OCI layout tar): the scan ends
//! in an inventory or a typed error, never a panic; memory stays bounded
//! by small limits; the policy evaluates whatever was found.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/image.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_scan::{evaluate, scan_reader, Limits, Policy};

pub fn run(data: &[u8]) {
    let limits = Limits {
        max_entries: 1000,
        max_total_bytes: 8 << 20,
        max_entry_size: 4 << 20,
        max_header_bytes: 64 << 10,
        max_ca_file: 1 << 20,
        max_package_db: 1 << 20,
        max_json: 64 << 10,
        max_json_total: 1 << 20,
        max_layers: 8,
        zstd_window_log_max: 20,
        ..Limits::default()
    };
    let Ok(scan) = scan_reader(&mut &data[..], &limits) else {
        return;
    };
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let findings = evaluate(&scan.inventory, &Policy::default(), at);
    // every finding names a file of the image
    for f in &findings {
        assert!(!f.path.is_empty() && !f.path.starts_with('/') && !f.path.contains(".."));
    }
}
