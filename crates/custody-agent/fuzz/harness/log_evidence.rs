//! Untrusted transparency-log evidence (from the network or a bundle):
//! parse it and run the client check, online and offline, against a fixed
//! pinned key and stored checkpoint; the same bytes as an entry evidence
//! (`GET /log/v1/entry`, what `custody fleet device` checks). Nothing may panic; nothing forged may
//! pass (the fuzzer cannot sign with the pinned key).
//!
//! Shared by the cargo-fuzz target `fuzz_targets/log_evidence.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_client::log::{
    check_entry_evidence, check_offline_target, check_target, trust_from_keys, Evidence,
    ExpectedPublish,
};
use custody_log::wire::EntryEvidence;
use custody_log::{Checkpoint, NoteSigner};

pub fn run(data: &[u8]) {
    let Ok(key) = NoteSigner::from_seed("fuzz.test/log", [7; 32]) else {
        return;
    };
    let Ok(trust) = trust_from_keys(None, &key.verifier_key().to_vkey(), &[], 0) else {
        return;
    };
    let stored = Checkpoint::new("fuzz.test/log", 3, [1; 32]).ok();
    for index in [0, 1, 5] {
        if let Ok(ev) = EntryEvidence::parse_for(data, index) {
            assert!(check_entry_evidence(&trust, None, &ev).is_err());
            assert!(check_entry_evidence(&trust, stored.as_ref(), &ev).is_err());
        }
    }
    let Ok(ev) = serde_json::from_slice::<Evidence>(data) else {
        return;
    };
    let expect = ExpectedPublish {
        repo: "main".into(),
        name: "fw.img".into(),
        length: 10,
        hashes: [("sha256".to_owned(), "aa".repeat(32))].into(),
    };
    assert!(check_target(&trust, None, &ev, &expect).is_err());
    assert!(check_target(&trust, stored.as_ref(), &ev, &expect).is_err());
    assert!(check_offline_target(&trust, stored.as_ref(), &ev, &expect).is_err());
}
