//! Policy files (TOML and JSON) and the rule matcher on arbitrary input.
#![no_main]
use custody_provenance::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["p.toml", "p.json"] {
        if let Ok(p) = Policy::from_file_contents(name, data) {
            let _ = p.rule_for("firmware/a.bin", Some("role"));
            let _ = p.unattested_pattern("docs/a");
        }
    }
});
