//! Each test feeds one attack to the rule that stops it.

use custody_log::checkpoint::CheckpointError;
use custody_log::witness::WitnessError;
use custody_log::{
    check_update, consistency_proof, Appender, Checkpoint, Cosigner, Hash, LogVerifier,
    MemoryStore, Note, NoteError, NoteSigner, Update, VerifierKey, Witness, WitnessPolicy,
};

const ORIGIN: &str = "log.custody.example/updates";

fn log_key() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, [1u8; 32]).unwrap()
}

fn witness(i: u8) -> Cosigner {
    Cosigner::from_seed(&format!("witness{i}.example"), [100 + i; 32]).unwrap()
}

/// A log with `n` entries, entry `i` = "entry-i" unless `fork_at` changes one.
fn log(n: u64, fork_at: Option<u64>) -> Appender<MemoryStore> {
    let mut app = Appender::open(MemoryStore::new()).unwrap();
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if Some(i) == fork_at {
                format!("evil-{i}").into_bytes()
            } else {
                format!("entry-{i}").into_bytes()
            }
        })
        .collect();
    app.append_entries(&entries).unwrap();
    app
}

fn checkpoint(app: &Appender<MemoryStore>) -> Checkpoint {
    app.checkpoint(ORIGIN).unwrap()
}

fn signed(cp: &Checkpoint) -> Note {
    cp.sign(&log_key()).unwrap()
}

fn verifier() -> LogVerifier {
    LogVerifier::new(ORIGIN, log_key().verifier_key()).unwrap()
}

fn proof(app: &Appender<MemoryStore>, old: u64, new: u64) -> Vec<Hash> {
    consistency_proof(app.store(), old, new).unwrap()
}

#[test]
fn honest_growth_is_accepted() {
    let app = log(100, None);
    let old = Checkpoint::new(ORIGIN, 60, custody_log::root_at(app.store(), 60).unwrap()).unwrap();
    let new = checkpoint(&app);
    assert_eq!(
        check_update(Some(&old), &new, &proof(&app, 60, 100)).unwrap(),
        Update::Advanced { from: 60, to: 100 }
    );
    assert_eq!(check_update(None, &new, &[]).unwrap(), Update::First);
    assert_eq!(
        check_update(Some(&new), &new, &[]).unwrap(),
        Update::Unchanged
    );
}

#[test]
fn entry_inclusion_against_a_verified_checkpoint() {
    let app = log(33, None);
    let cp = verifier()
        .verify(&signed(&checkpoint(&app)).to_bytes())
        .unwrap()
        .checkpoint;
    let p = custody_log::inclusion_proof(app.store(), 7, 33).unwrap();
    cp.verify_entry_inclusion(b"entry-7", 7, &p).unwrap();
    // Entry substituted by a forked log: refused.
    assert!(cp.verify_entry_inclusion(b"evil-7", 7, &p).is_err());
    // Proof from a forked log for its own entry: refused against the honest checkpoint.
    let forked = log(33, Some(7));
    let fp = custody_log::inclusion_proof(forked.store(), 7, 33).unwrap();
    assert!(cp.verify_entry_inclusion(b"evil-7", 7, &fp).is_err());
}

#[test]
fn forked_log_same_size_different_root_is_detected() {
    let honest = checkpoint(&log(50, None));
    let forked = checkpoint(&log(50, Some(7)));
    // Both are validly signed by the log: only the comparison catches it.
    verifier().verify(&signed(&honest).to_bytes()).unwrap();
    verifier().verify(&signed(&forked).to_bytes()).unwrap();
    let err = check_update(Some(&honest), &forked, &[]).unwrap_err();
    assert!(matches!(err, WitnessError::Fork { size: 50, .. }), "{err}");
    assert!(err.to_string().contains("fork"));
}

#[test]
fn forked_log_at_larger_size_fails_consistency() {
    let honest = checkpoint(&log(40, None));
    let forked_app = log(90, Some(3));
    let forked = checkpoint(&forked_app);
    // The forked log's own consistency proof cannot link to the honest root.
    let err = check_update(Some(&honest), &forked, &proof(&forked_app, 40, 90)).unwrap_err();
    assert!(matches!(err, WitnessError::Inconsistent { .. }), "{err}");
    // Neither can an honest proof replayed for the forked root.
    let honest_app = log(90, None);
    let err = check_update(Some(&honest), &forked, &proof(&honest_app, 40, 90)).unwrap_err();
    assert!(matches!(err, WitnessError::Inconsistent { .. }), "{err}");
    // Nor an empty proof.
    assert!(check_update(Some(&honest), &forked, &[]).is_err());
}

/// A log (or a tampered state file) presenting a "size 0" checkpoint with a
/// root other than the empty-tree root, then growing from it: there is no
/// such tree, so no growth from it is consistent (issue #13).
#[test]
fn empty_checkpoint_with_a_non_empty_root_is_no_base_for_growth() {
    let app = log(10, None);
    let new = checkpoint(&app);
    let honest_empty = Checkpoint::new(ORIGIN, 0, custody_log::EMPTY_ROOT).unwrap();
    assert_eq!(
        check_update(Some(&honest_empty), &new, &[]).unwrap(),
        Update::Advanced { from: 0, to: 10 }
    );
    let bogus = Checkpoint::new(ORIGIN, 0, [7u8; 32]).unwrap();
    let err = check_update(Some(&bogus), &new, &[]).unwrap_err();
    assert!(
        matches!(
            &err,
            WitnessError::Inconsistent {
                last_size: 0,
                new_size: 10,
                source: custody_log::ProofError::EmptyTreeRoot { which: "old", .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rolled_back_checkpoint_is_refused() {
    let app = log(80, None);
    let latest = checkpoint(&app);
    let older =
        Checkpoint::new(ORIGIN, 30, custody_log::root_at(app.store(), 30).unwrap()).unwrap();
    let err = check_update(Some(&latest), &older, &proof(&app, 30, 80)).unwrap_err();
    assert_eq!(
        err,
        WitnessError::Rollback {
            last_size: 80,
            new_size: 30
        }
    );
}

#[test]
fn checkpoint_for_another_log_is_refused() {
    let app = log(10, None);
    let a = checkpoint(&app);
    let mut b = a.clone();
    b.origin = "other.example/log".into();
    assert!(matches!(
        check_update(Some(&a), &b, &[]),
        Err(WitnessError::OriginMismatch { .. })
    ));
    // The verifier also refuses a correctly signed checkpoint with another origin.
    let err = verifier()
        .verify(&b.sign(&log_key()).unwrap().to_bytes())
        .unwrap_err();
    assert!(matches!(err, CheckpointError::WrongOrigin { .. }), "{err}");
}

#[test]
fn wrong_log_key_is_refused() {
    let cp = checkpoint(&log(10, None));
    // Same name, different key: a different key ID, so no known signature.
    let impostor = NoteSigner::from_seed(ORIGIN, [2u8; 32]).unwrap();
    let err = verifier()
        .verify(&cp.sign(&impostor).unwrap().to_bytes())
        .unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Note(NoteError::NoKnownSignature { .. })
        ),
        "{err}"
    );
    // Forged signature under the real name and key ID: known key fails to verify.
    let mut note = Note::new(cp.to_text()).unwrap();
    let mut sig = impostor.sign(&cp.to_text()).unwrap();
    sig.key_id = log_key().verifier_key().key_id();
    note.add_signature(sig);
    let err = verifier().verify(&note.to_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Note(NoteError::InvalidSignature { .. })
        ),
        "{err}"
    );
    // Witness cosignatures alone do not replace the log signature.
    let w = witness(1);
    let policy = WitnessPolicy::new(vec![w.verifier_key()], 1).unwrap();
    let mut note = Note::new(cp.to_text()).unwrap();
    note.add_signature(w.cosign(&cp.to_text(), 1_700_000_000).unwrap());
    let err = verifier()
        .with_witness_policy(policy)
        .verify(&note.to_bytes())
        .unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingLogSignature { .. }),
        "{err}"
    );
    // A cosignature key cannot be configured as the log key.
    assert!(matches!(
        LogVerifier::new(ORIGIN, w.verifier_key()),
        Err(CheckpointError::WrongLogKeyType { .. })
    ));
}

#[test]
fn tampered_checkpoint_body_is_refused() {
    let cp = checkpoint(&log(10, None));
    let bytes = String::from_utf8(signed(&cp).to_bytes()).unwrap();
    let tampered = bytes.replacen("\n10\n", "\n11\n", 1);
    assert!(matches!(
        verifier().verify(tampered.as_bytes()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

fn cosigned(cp: &Checkpoint, witnesses: &[&Cosigner]) -> Note {
    let mut note = signed(cp);
    for w in witnesses {
        note.add_signature(w.cosign(note.text(), 1_700_000_000).unwrap());
    }
    note
}

#[test]
fn cosignature_from_unknown_witness_is_not_counted() {
    let cp = checkpoint(&log(10, None));
    let (w1, stranger) = (witness(1), witness(9));
    let v = verifier().with_witness_policy(WitnessPolicy::new(vec![w1.verifier_key()], 1).unwrap());
    let err = v
        .verify(&cosigned(&cp, &[&stranger]).to_bytes())
        .unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::WitnessQuorum {
                got: 0,
                need: 1,
                ..
            }
        ),
        "{err}"
    );
    // A stranger reusing a trusted witness's name still has another key ID: ignored.
    let namesake = Cosigner::from_seed(w1.name(), [42u8; 32]).unwrap();
    let err = v
        .verify(&cosigned(&cp, &[&namesake]).to_bytes())
        .unwrap_err();
    assert!(
        matches!(err, CheckpointError::WitnessQuorum { got: 0, .. }),
        "{err}"
    );
    // The trusted witness counts.
    let ok = v
        .verify(&cosigned(&cp, &[&stranger, &w1]).to_bytes())
        .unwrap();
    assert_eq!(ok.cosignatures.len(), 1);
    assert_eq!(ok.cosignatures[0].name, w1.name());
    assert_eq!(ok.cosignatures[0].timestamp, Some(1_700_000_000));
}

#[test]
fn k_of_n_witness_policy() {
    let cp = checkpoint(&log(10, None));
    let ws: Vec<Cosigner> = (1..=3).map(witness).collect();
    let policy = WitnessPolicy::new(ws.iter().map(|w| w.verifier_key()).collect(), 2).unwrap();
    let v = verifier().with_witness_policy(policy);
    assert!(matches!(
        v.verify(&signed(&cp).to_bytes()),
        Err(CheckpointError::WitnessQuorum {
            got: 0,
            need: 2,
            ..
        })
    ));
    assert!(matches!(
        v.verify(&cosigned(&cp, &[&ws[0]]).to_bytes()),
        Err(CheckpointError::WitnessQuorum {
            got: 1,
            need: 2,
            ..
        })
    ));
    assert_eq!(
        v.verify(&cosigned(&cp, &[&ws[0], &ws[2]]).to_bytes())
            .unwrap()
            .cosignatures
            .len(),
        2
    );
    assert_eq!(
        v.verify(&cosigned(&cp, &ws.iter().collect::<Vec<_>>()).to_bytes())
            .unwrap()
            .cosignatures
            .len(),
        3
    );
    // One witness signing twice does not make two: the note is rejected.
    assert!(matches!(
        v.verify(&cosigned(&cp, &[&ws[0], &ws[0]]).to_bytes()),
        Err(CheckpointError::Note(NoteError::DuplicateSignature { .. }))
    ));
}

#[test]
fn witness_policy_misconfigurations_are_refused() {
    let w = witness(1);
    // cosignature/v1 does not bind the name: one key under two names would count twice.
    let alias = VerifierKey::new(
        "alias.example",
        custody_log::KeyType::CosignatureV1,
        *w.verifier_key().public_key(),
    )
    .unwrap();
    assert!(matches!(
        WitnessPolicy::new(vec![w.verifier_key(), alias], 2),
        Err(CheckpointError::BadPolicy { .. })
    ));
    assert!(WitnessPolicy::new(vec![w.verifier_key()], 0).is_err());
    assert!(WitnessPolicy::new(vec![w.verifier_key()], 2).is_err());
    assert!(WitnessPolicy::new(vec![log_key().verifier_key()], 1).is_err());
}

#[test]
fn cosignature_replayed_onto_another_checkpoint_fails() {
    let a = checkpoint(&log(10, None));
    let b = checkpoint(&log(11, None));
    let w = witness(1);
    let cosig = w.cosign(&a.to_text(), 1_700_000_000).unwrap();
    let mut note = signed(&b);
    note.add_signature(cosig);
    let v = verifier().with_witness_policy(WitnessPolicy::new(vec![w.verifier_key()], 1).unwrap());
    assert!(matches!(
        v.verify(&note.to_bytes()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
    // Changing the timestamp in the signature breaks it too.
    let mut note = signed(&a);
    let mut c = w.cosign(&a.to_text(), 1_700_000_000).unwrap();
    c.signature[7] ^= 1;
    note.add_signature(c);
    assert!(v.verify(&note.to_bytes()).is_err());
    // Timestamps above 2^63-1 are refused on both sides.
    assert!(w.cosign(&a.to_text(), u64::MAX).is_err());
}

#[test]
fn plain_signature_by_witness_key_is_not_a_cosignature() {
    let cp = checkpoint(&log(10, None));
    // Same seed and name, but type 0x01: different key ID, so it is ignored.
    let w = witness(1);
    let plain = NoteSigner::from_seed(w.name(), [101u8; 32]).unwrap();
    let mut note = signed(&cp);
    note.add_signature(plain.sign(note.text()).unwrap());
    let v = verifier().with_witness_policy(WitnessPolicy::new(vec![w.verifier_key()], 1).unwrap());
    assert!(matches!(
        v.verify(&note.to_bytes()),
        Err(CheckpointError::WitnessQuorum { got: 0, .. })
    ));
}

#[test]
fn witness_state_machine() {
    let w = Witness::new(witness(1));
    let app = log(120, None);
    let v = verifier();
    let root_at = |n| custody_log::root_at(app.store(), n).unwrap();
    let cp = |n| Checkpoint::new(ORIGIN, n, root_at(n)).unwrap();

    let first = w
        .add_checkpoint(&v, None, &signed(&cp(50)).to_bytes(), &[], 1_700_000_000)
        .unwrap();
    assert_eq!(first.update, Update::First);
    let next = w
        .add_checkpoint(
            &v,
            Some(&first.checkpoint),
            &signed(&cp(120)).to_bytes(),
            &proof(&app, 50, 120),
            1_700_000_001,
        )
        .unwrap();
    assert_eq!(next.update, Update::Advanced { from: 50, to: 120 });
    // The cosignature verifies for clients that trust this witness.
    let mut note = signed(&cp(120));
    note.add_signature(next.cosignature.clone());
    let client = verifier()
        .with_witness_policy(WitnessPolicy::new(vec![w.cosigner().verifier_key()], 1).unwrap());
    client.verify(&note.to_bytes()).unwrap();

    // Rollback and fork are refused; nothing is cosigned.
    assert!(matches!(
        w.add_checkpoint(
            &v,
            Some(&next.checkpoint),
            &signed(&cp(50)).to_bytes(),
            &[],
            1
        ),
        Err(WitnessError::Rollback { .. })
    ));
    let forked = checkpoint(&log(120, Some(0)));
    assert!(matches!(
        w.add_checkpoint(
            &v,
            Some(&next.checkpoint),
            &signed(&forked).to_bytes(),
            &[],
            1
        ),
        Err(WitnessError::Fork { .. })
    ));
    // A checkpoint signed by someone else is refused before any state check.
    let impostor = NoteSigner::from_seed(ORIGIN, [3u8; 32]).unwrap();
    assert!(matches!(
        w.add_checkpoint(
            &v,
            None,
            &cp(120).sign(&impostor).unwrap().to_bytes(),
            &[],
            1
        ),
        Err(WitnessError::Checkpoint(_))
    ));
}
