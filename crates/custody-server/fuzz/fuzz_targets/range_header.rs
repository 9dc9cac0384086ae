//! Range headers: a satisfiable answer always lies inside the file.
#![no_main]
use custody_server::hosting::{parse_range, RangeSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (header, len) = input;
    if let RangeSpec::Partial(a, b) = parse_range(header, len) {
        assert!(a <= b && b < len, "{header:?} len {len}: {a}-{b}");
    }
});
