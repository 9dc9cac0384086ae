//! The append path contract that durable stores rely on.

use std::cell::Cell;

use custody_log::{
    leaf_hash, root_from_leaf_hashes, Appender, Hash, HashReader, HashStore, MemoryStore, NodeId,
    StoreError, TreeError,
};

/// Counts nodes per append and can be told to fail the next append.
#[derive(Default)]
struct Probe {
    inner: MemoryStore,
    appends: Vec<usize>,
    fail_next: Cell<bool>,
}

impl HashReader for Probe {
    fn node(&self, id: NodeId) -> Result<Hash, StoreError> {
        self.inner.node(id)
    }
}

impl HashStore for Probe {
    fn size(&self) -> Result<u64, StoreError> {
        self.inner.size()
    }
    fn append(&mut self, old: u64, new: u64, nodes: &[(NodeId, Hash)]) -> Result<(), StoreError> {
        if self.fail_next.replace(false) {
            return Err(StoreError::Backend("disk full".into()));
        }
        self.appends.push(nodes.len());
        self.inner.append(old, new, nodes)
    }
}

#[test]
fn batch_append_writes_o_batch_plus_log_n_nodes_in_one_call() {
    let mut app = Appender::open(Probe::default()).unwrap();
    let leaves: Vec<Hash> = (0u32..5000).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut at = 0;
    for b in [1usize, 7, 256, 1000, 3, 1, 2048] {
        app.append_leaf_hashes(&leaves[at..at + b]).unwrap();
        at += b;
    }
    let store = app.into_store();
    assert_eq!(store.appends.len(), 7, "one store call per batch");
    for (n, b) in store.appends.iter().zip([1usize, 7, 256, 1000, 3, 1, 2048]) {
        // b leaves + fewer than b + 64 interior nodes.
        assert!(*n < 2 * b + 64, "{n} nodes for a batch of {b}");
    }
    // Total interior nodes = size - popcount(size).
    let total: usize = store.appends.iter().sum();
    assert_eq!(total, 2 * at - (at as u64).count_ones() as usize);
}

#[test]
fn failed_store_append_leaves_appender_unchanged() {
    let mut app = Appender::open(Probe::default()).unwrap();
    let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    app.append_leaf_hashes(&leaves[..10]).unwrap();
    let (size, root) = (app.size(), app.root());
    app.store().fail_next.set(true);
    let err = app.append_leaf_hashes(&leaves[10..20]).unwrap_err();
    assert!(
        matches!(err, TreeError::Store(StoreError::Backend(_))),
        "{err}"
    );
    assert!(err.to_string().contains("disk full"));
    assert_eq!((app.size(), app.root()), (size, root));
    // Retrying the same batch works and gives the right tree.
    let r = app.append_leaf_hashes(&leaves[10..40]).unwrap();
    assert_eq!(r.first_index, 10);
    assert_eq!(r.root, root_from_leaf_hashes(&leaves));
}

#[test]
fn memory_store_refuses_out_of_order_and_stale_appends() {
    let mut s = MemoryStore::new();
    let h = [1u8; 32];
    assert!(matches!(
        s.append(0, 1, &[(NodeId::new(0, 1), h)]),
        Err(StoreError::OutOfOrder { expected: 0, .. })
    ));
    assert!(matches!(
        s.append(5, 6, &[(NodeId::new(0, 0), h)]),
        Err(StoreError::SizeMismatch {
            expected: 5,
            actual: 0
        })
    ));
    // A rejected batch leaves nothing behind.
    assert!(s
        .append(0, 2, &[(NodeId::new(0, 0), h), (NodeId::new(0, 5), h)])
        .is_err());
    assert_eq!(s.size().unwrap(), 0);
    assert!(matches!(
        s.node(NodeId::new(0, 0)),
        Err(StoreError::Missing { .. })
    ));
    // Proofs beyond the stored size are typed errors.
    assert!(matches!(
        custody_log::inclusion_proof(&s, 3, 10),
        Err(TreeError::Store(StoreError::Missing { .. }))
    ));
    assert!(matches!(
        custody_log::inclusion_proof(&s, 10, 10),
        Err(TreeError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        custody_log::consistency_proof(&s, 11, 10),
        Err(TreeError::SizesReversed { .. })
    ));
}
