//! Model-based property test of the report queue: any interleaving of
//! enqueues (including re-enqueues of the same report, as recovery does),
//! acknowledged uploads, refused uploads and reopenings keeps the queue
//! ordered, free of duplicates and with ever-growing sequence numbers.

use custody_agent::report::report_id;
use custody_agent::{MemorySink, Outcome, Report, ReportQueue, TargetMeta};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Enqueue(u64),
    Upload { accept: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6).prop_map(Op::Enqueue),
        2 => (0usize..3).prop_map(|accept| Op::Upload { accept }),
        1 => Just(Op::Reopen),
    ]
}

fn report(n: u64) -> Report {
    Report {
        id: report_id(n),
        attempt: n,
        target: TargetMeta {
            name: format!("t{n}"),
            length: 1,
            hashes: [("sha256".to_owned(), "00".repeat(32))]
                .into_iter()
                .collect(),
            release_counter: n,
            custom: None,
        },
        outcome: Outcome::Installed,
        committed: None,
        decided_at: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(ops in proptest::collection::vec(op(), 1..14)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut q = ReportQueue::open(tmp.path()).unwrap();
        // model: pending (seq, attempt) in order; highest seq ever handed out
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let mut highest = 0u64;
        let mut delivered: Vec<(u64, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Enqueue(n) => {
                    let seq = q.enqueue(&report(n)).unwrap();
                    if let Some((s, _)) = pending.iter().find(|(_, a)| *a == n) {
                        prop_assert_eq!(seq, *s, "re-enqueue must return the queued seq");
                    } else {
                        prop_assert!(seq > highest, "seq {} not above {}", seq, highest);
                        highest = seq;
                        pending.push((seq, n));
                    }
                }
                Op::Upload { accept } => {
                    let mut sink = MemorySink { fail_after: Some(accept), ..MemorySink::default() };
                    let result = q.upload(&mut sink);
                    let n = accept.min(pending.len());
                    prop_assert_eq!(result.is_ok(), accept >= pending.len());
                    let got: Vec<(u64, u64)> =
                        sink.received.iter().map(|(s, r)| (*s, r.attempt)).collect();
                    prop_assert_eq!(&got[..], &pending[..n]);
                    delivered.extend(pending.drain(..n));
                }
                Op::Reopen => q = ReportQueue::open(tmp.path()).unwrap(),
            }
            let on_disk: Vec<(u64, u64)> = q
                .pending()
                .unwrap()
                .into_iter()
                .map(|p| (p.seq, p.report.attempt))
                .collect();
            prop_assert_eq!(&on_disk, &pending);
        }
        // everything ever delivered went out in increasing sequence order
        prop_assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
