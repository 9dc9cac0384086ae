//! Size and count limits (python-tuf ngclient defaults).

/// Default cap on root rotations per refresh.
pub const MAX_ROOT_ROTATIONS: u32 = 256;
/// Default cap on roles visited in one target lookup.
pub const MAX_DELEGATIONS: usize = 32;
/// Default maximum root.json size.
pub const MAX_ROOT_BYTES: u64 = 512_000;
/// Default maximum timestamp.json size.
pub const MAX_TIMESTAMP_BYTES: u64 = 16_384;
/// Default maximum snapshot.json size (when timestamp does not give a length).
pub const MAX_SNAPSHOT_BYTES: u64 = 2_000_000;
/// Default maximum targets (and delegated targets) size (when snapshot does not give a length).
pub const MAX_TARGETS_BYTES: u64 = 5_000_000;

/// Limits for one refresh. The client uses them to bound downloads; the
/// state machine also refuses metadata larger than them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// maximum root versions fetched in one refresh
    pub max_root_rotations: u32,
    /// maximum roles visited in one target lookup
    pub max_delegations: usize,
    /// maximum root metadata size in bytes
    pub max_root_bytes: u64,
    /// maximum timestamp metadata size in bytes
    pub max_timestamp_bytes: u64,
    /// maximum snapshot metadata size in bytes (if timestamp meta has no length)
    pub max_snapshot_bytes: u64,
    /// maximum targets metadata size in bytes (if snapshot meta has no length)
    pub max_targets_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_root_rotations: MAX_ROOT_ROTATIONS,
            max_delegations: MAX_DELEGATIONS,
            max_root_bytes: MAX_ROOT_BYTES,
            max_timestamp_bytes: MAX_TIMESTAMP_BYTES,
            max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
            max_targets_bytes: MAX_TARGETS_BYTES,
        }
    }
}
