//! `client::check_logged_entry`: each attack a device must refuse.

use custody_log::client::{check_logged_entry, LogAttack, LogEvidence, LogTrust};
use custody_log::{
    consistency_proof, inclusion_proof, Appender, Checkpoint, Cosigner, Hash, MemoryStore,
    NoteSigner, Update,
};

const ORIGIN: &str = "log.example/custody";

struct Fixture {
    log_key: NoteSigner,
    w: Vec<Cosigner>,
    log: Appender<MemoryStore>,
}

impl Fixture {
    fn new(entries: usize) -> Self {
        let mut log = Appender::open(MemoryStore::new()).unwrap();
        let e: Vec<Vec<u8>> = (0..entries).map(entry).collect();
        log.append_entries(&e).unwrap();
        Fixture {
            log_key: NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap(),
            w: (0..3)
                .map(|i| Cosigner::from_seed(&format!("w{i}.example"), [10 + i as u8; 32]).unwrap())
                .collect(),
            log,
        }
    }
    fn trust(&self, k: usize) -> LogTrust {
        LogTrust::new(
            ORIGIN,
            self.log_key.verifier_key(),
            self.w.iter().map(Cosigner::verifier_key).collect(),
            k,
        )
        .unwrap()
    }
    /// Signed checkpoint of the current tree, cosigned by `cosigners`.
    fn checkpoint(&self, cosigners: &[usize]) -> Vec<u8> {
        let mut note = self
            .log
            .checkpoint(ORIGIN)
            .unwrap()
            .sign(&self.log_key)
            .unwrap();
        for &i in cosigners {
            let s = self.w[i].cosign(note.text(), 1_700_000_000).unwrap();
            note.add_signature(s);
        }
        note.to_bytes()
    }
    fn body(&self) -> Checkpoint {
        self.log.checkpoint(ORIGIN).unwrap()
    }
    fn proof(&self, index: u64) -> Vec<Hash> {
        inclusion_proof(self.log.store(), index, self.log.size()).unwrap()
    }
}

fn entry(i: usize) -> Vec<u8> {
    format!("{{\"v\":1,\"type\":\"target_publish\",\"name\":\"fw-{i}\"}}").into_bytes()
}

fn ev<'a>(
    e: &'a [u8],
    index: u64,
    proof: &'a [Hash],
    cp: &'a [u8],
    cons: &'a [Hash],
) -> LogEvidence<'a> {
    LogEvidence {
        entry: e,
        index,
        inclusion_proof: proof,
        checkpoint: cp,
        consistency_proof: cons,
    }
}

#[test]
fn honest_log_first_then_advanced() {
    let mut f = Fixture::new(10);
    let trust = f.trust(2);
    let (e, p, cp) = (entry(3), f.proof(3), f.checkpoint(&[0, 2]));
    let a = check_logged_entry(&trust, None, &ev(&e, 3, &p, &cp, &[])).unwrap();
    assert_eq!(a.update, Update::First);
    assert_eq!(a.checkpoint.cosignatures.len(), 2);
    let stored = a.checkpoint.checkpoint;
    f.log.append_entries(&[entry(10), entry(11)]).unwrap();
    let (e, p, cp) = (entry(11), f.proof(11), f.checkpoint(&[1, 2]));
    let cons = consistency_proof(f.log.store(), 10, 12).unwrap();
    let a = check_logged_entry(&trust, Some(&stored), &ev(&e, 11, &p, &cp, &cons)).unwrap();
    assert_eq!(a.update, Update::Advanced { from: 10, to: 12 });
}

#[test]
fn target_published_outside_the_log_is_not_included() {
    let f = Fixture::new(10);
    let (p, cp) = (f.proof(3), f.checkpoint(&[0, 1]));
    let outside = entry(99);
    let err = check_logged_entry(&f.trust(2), None, &ev(&outside, 3, &p, &cp, &[])).unwrap_err();
    assert!(
        matches!(
            err,
            LogAttack::NotIncluded {
                index: 3,
                size: 10,
                ..
            }
        ),
        "{err}"
    );
    // Right entry, wrong index.
    let e = entry(3);
    let err = check_logged_entry(&f.trust(2), None, &ev(&e, 4, &p, &cp, &[])).unwrap_err();
    assert!(matches!(err, LogAttack::NotIncluded { .. }), "{err}");
}

#[test]
fn checkpoint_not_signed_by_the_pinned_key_is_a_bad_signature() {
    let mut f = Fixture::new(10);
    let trust = f.trust(1);
    f.log_key = NoteSigner::from_seed(ORIGIN, [2; 32]).unwrap(); // attacker's key
    let (e, p, cp) = (entry(3), f.proof(3), f.checkpoint(&[0]));
    let err = check_logged_entry(&trust, None, &ev(&e, 3, &p, &cp, &[])).unwrap_err();
    assert!(matches!(err, LogAttack::BadSignature(_)), "{err}");
    // Tampered body under a genuine signature.
    let f = Fixture::new(10);
    let mut cp = f.checkpoint(&[0]);
    let pos = cp.iter().position(|b| *b == b'\n').unwrap() + 1;
    cp[pos] = b'9';
    let err = check_logged_entry(&f.trust(1), None, &ev(&e, 3, &p, &cp, &[])).unwrap_err();
    assert!(matches!(err, LogAttack::BadSignature(_)), "{err}");
}

#[test]
fn too_few_cosignatures_counting_distinct_trusted_witnesses() {
    let f = Fixture::new(10);
    let (e, p) = (entry(3), f.proof(3));
    let cp = f.checkpoint(&[1]);
    let err = check_logged_entry(&f.trust(2), None, &ev(&e, 3, &p, &cp, &[])).unwrap_err();
    assert!(
        matches!(
            err,
            LogAttack::TooFewCosignatures {
                got: 1,
                need: 2,
                ..
            }
        ),
        "{err}"
    );
    // An untrusted witness does not count.
    let mut note = f.log.checkpoint(ORIGIN).unwrap().sign(&f.log_key).unwrap();
    let stranger = Cosigner::from_seed("w9.example", [99; 32]).unwrap();
    note.add_signature(f.w[0].cosign(note.text(), 1).unwrap());
    note.add_signature(stranger.cosign(note.text(), 1).unwrap());
    let cp = note.to_bytes();
    let err = check_logged_entry(&f.trust(2), None, &ev(&e, 3, &p, &cp, &[])).unwrap_err();
    assert!(
        matches!(err, LogAttack::TooFewCosignatures { got: 1, .. }),
        "{err}"
    );
}

#[test]
fn fork_same_size_different_root() {
    let f = Fixture::new(10);
    let stored = f.body();
    // The log shows this device another tree of the same size.
    let mut g = Fixture::new(9);
    g.log.append_entries(&[b"malicious".as_slice()]).unwrap();
    let (e, p, cp) = (entry(3), g.proof(3), g.checkpoint(&[0, 1]));
    let err = check_logged_entry(&g.trust(2), Some(&stored), &ev(&e, 3, &p, &cp, &[])).unwrap_err();
    assert!(matches!(err, LogAttack::Fork { size: 10, .. }), "{err}");
}

#[test]
fn fork_at_a_larger_size_is_inconsistent() {
    let f = Fixture::new(10);
    let stored = f.body();
    let mut g = Fixture::new(9);
    g.log
        .append_entries(&[b"malicious".as_slice(), b"more"])
        .unwrap();
    let (e, p, cp) = (entry(3), g.proof(3), g.checkpoint(&[0, 1]));
    let cons = consistency_proof(g.log.store(), 10, 11).unwrap();
    let err =
        check_logged_entry(&g.trust(2), Some(&stored), &ev(&e, 3, &p, &cp, &cons)).unwrap_err();
    assert!(
        matches!(
            err,
            LogAttack::Inconsistent {
                stored_size: 10,
                new_size: 11,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rolled_back_checkpoint_is_refused() {
    let mut f = Fixture::new(10);
    let (e, p, old_cp) = (entry(3), f.proof(3), f.checkpoint(&[0, 1]));
    f.log.append_entries(&[entry(10)]).unwrap();
    let stored = f.body();
    let err =
        check_logged_entry(&f.trust(2), Some(&stored), &ev(&e, 3, &p, &old_cp, &[])).unwrap_err();
    assert!(
        matches!(
            err,
            LogAttack::Rollback {
                stored_size: 11,
                new_size: 10
            }
        ),
        "{err}"
    );
}
