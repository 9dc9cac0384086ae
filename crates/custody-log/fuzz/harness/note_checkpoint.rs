//! Signed note, checkpoint body, vkey and full checkpoint verification on
//! arbitrary bytes: no panic, and whatever parses re-encodes to the input.
//!
//! Shared by the cargo-fuzz target `fuzz_targets/note_checkpoint.rs` and the corpus
//! replay in `tests/fuzz_corpus.rs` (stable `cargo test`): the same code.

use custody_log::{
    Checkpoint, Cosigner, LogVerifier, Note, NoteSigner, VerifierKey, WitnessPolicy,
};

pub fn run(data: &[u8]) {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(
            note.to_bytes(),
            data,
            "note parse/format is not an identity"
        );
        if let Ok(cp) = Checkpoint::parse_text(note.text()) {
            assert_eq!(
                cp.to_text(),
                note.text(),
                "checkpoint parse/format is not an identity"
            );
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse_text(s);
        if let Ok(k) = VerifierKey::parse(s) {
            assert_eq!(k.to_vkey(), s);
        }
        let _ = NoteSigner::parse_private_key(s);
        let _ = Cosigner::parse_private_key(s);
    }
    let log = NoteSigner::from_seed("example.com/log", [1; 32]).unwrap();
    let w = Cosigner::from_seed("example.com/witness", [2; 32]).unwrap();
    let v = LogVerifier::new("example.com/log", log.verifier_key())
        .unwrap()
        .with_witness_policy(WitnessPolicy::new(vec![w.verifier_key()], 1).unwrap());
    let _ = v.verify(data);
}
