//! Process cache of device rows in front of the embedded SQLite store.
//!
//! Every check-in reads its device (key, status, last counter, director
//! versions) before verifying anything; with SQLite that read is a
//! statement handed to sqlx's worker thread, a measurable share of a
//! check-in's CPU. [`CachedDirectorDb`] (the embedded store with its
//! [`RowCache`] on) keeps the rows it has read and keeps them exact:
//!
//! - every method of the store that changes a device row (enrol, bulk
//!   insert, status change: suspend / resume / decommission, the
//!   re-attestation sweep, assignment, director versions, check-in writes,
//!   delivery marks) drops or updates the entry **after** the database
//!   write returns, in the same call, so a decommissioned device is refused
//!   on its very next request;
//! - a read that missed only fills the cache if no write happened while it
//!   was reading (an epoch counter bumped by every write), so a slow read
//!   can never put back a row older than a write it raced with;
//! - an accepted check-in updates the cached row with exactly what the
//!   check-in transaction wrote; a check-in that lost its compare-and-set
//!   drops the row (the next read goes to the database).
//!
//! The database stays the authority: the check-in write is still a
//! compare-and-set on the counter and on `status = 'active'`, so even a
//! stale row could not get a check-in committed.
//!
//! The store consults the cache inside its own methods (store/sql.rs);
//! the methods that do not touch device rows never see it. Only for a
//! store that this process alone writes (the embedded SQLite database
//! file). PostgreSQL deployments may run several replicas, each
//! of which would miss the others' status changes, so the PostgreSQL store
//! is used without this cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::store::{
    CheckinWrite, DeviceFilter, DeviceRow, DirectorDb, SqliteDirectorDb, WriteOutcome,
};
use crate::storage::StorageResult;

/// Most rows kept (a few hundred bytes each); beyond it, reads of
/// uncached devices go to the database.
pub const DEFAULT_CAPACITY: usize = 250_000;

/// The embedded store with its device-row cache on (see the module docs):
/// made by [`SqliteDirectorDb::wrap`].
pub type CachedDirectorDb = SqliteDirectorDb;

impl SqliteDirectorDb {
    /// Turns the device-row cache on for `inner`, which must be the only
    /// writer of its database.
    pub fn wrap(inner: SqliteDirectorDb, capacity: usize) -> Self {
        let mut db = inner;
        db.cache = RowCache::new(capacity);
        db
    }

    /// Number of cached rows (tests, metrics).
    pub fn cached(&self) -> usize {
        self.cache.0.as_ref().map_or(0, |s| s.lock().rows.len())
    }
}

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<String, DeviceRow>,
    /// bumped by every write of a device row
    epoch: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half
        // updated in a way that matters more than a missing entry; but be
        // strict anyway: forget everything.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            g.rows.clear();
            g.epoch = g.epoch.wrapping_add(1);
            g
        })
    }
}

/// The device-row cache a store carries: off (the default: every call is
/// a no-op and every read misses) or on, shared by the store's clones.
#[derive(Clone, Default)]
pub struct RowCache(Option<Arc<Shared>>);

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache")
            .field("capacity", &self.0.as_ref().map(|s| s.capacity))
            .finish()
    }
}

impl RowCache {
    fn new(capacity: usize) -> Self {
        RowCache(Some(Arc::new(Shared {
            inner: Mutex::default(),
            capacity,
        })))
    }

    /// A write of device rows happened: bump the epoch, then `f`.
    fn write(&self, f: impl FnOnce(&mut HashMap<String, DeviceRow>)) {
        if let Some(s) = &self.0 {
            let mut g = s.lock();
            g.epoch = g.epoch.wrapping_add(1);
            f(&mut g.rows);
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        self.write(|rows| {
            rows.remove(id);
        });
    }

    pub(crate) fn forget_all(&self) {
        self.write(HashMap::clear);
    }

    /// After the re-attestation sweep: its ids, or everything if it failed.
    pub(crate) fn forget_swept(&self, r: &StorageResult<Vec<String>>) {
        self.write(|rows| match r {
            Ok(ids) => {
                for id in ids {
                    rows.remove(id);
                }
            }
            Err(_) => rows.clear(),
        });
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.lock().rows.contains_key(id))
    }

    /// The cached row, or (a miss) the epoch to hand to [`Self::fill`]
    /// with what the read found.
    pub(crate) fn get(&self, id: &str) -> Result<DeviceRow, u64> {
        let Some(s) = &self.0 else { return Err(0) };
        let g = s.lock();
        g.rows.get(id).cloned().ok_or(g.epoch)
    }

    /// Keeps rows read since `epoch`, unless a write happened meanwhile,
    /// up to the capacity.
    pub(crate) fn fill(&self, epoch: u64, rows: impl IntoIterator<Item = DeviceRow>) {
        let Some(s) = &self.0 else { return };
        let mut g = s.lock();
        if g.epoch != epoch {
            return;
        }
        for row in rows {
            if g.rows.len() >= s.capacity {
                break;
            }
            g.rows.entry(row.record.id.clone()).or_insert(row);
        }
    }

    /// A committed check-in updates its cached row with what it wrote; a
    /// lost compare-and-set or a failed batch drops the rows.
    pub(crate) fn checkins_written(
        &self,
        jobs: &[CheckinWrite],
        r: &StorageResult<Vec<WriteOutcome>>,
    ) {
        self.write(|rows| match r {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                for (j, o) in jobs.iter().zip(outcomes) {
                    match o {
                        WriteOutcome::Committed { .. } => {
                            let keep = match rows.get_mut(&j.device_id) {
                                Some(row) => apply_write(row, j),
                                None => true,
                            };
                            if !keep {
                                rows.remove(&j.device_id);
                            }
                        }
                        WriteOutcome::Conflict => {
                            rows.remove(&j.device_id);
                        }
                        WriteOutcome::ReplayedNonce => {}
                    }
                }
            }
            _ => {
                for j in jobs {
                    rows.remove(&j.device_id);
                }
            }
        });
    }

    /// The delivery `marker` of device `id` was written (or taken by the
    /// check-in writer for its next batch) if `written`; else the write
    /// failed and the row is dropped.
    pub(crate) fn delivery_logged(&self, id: &str, marker: &str, written: bool) {
        self.write(|rows| {
            if !written {
                rows.remove(id);
            } else if let Some(row) = rows.get_mut(id) {
                row.log_delivery = Some(marker.to_owned());
            }
        });
    }
}

/// Reads device rows page by page into `cache` (if it is on), up to its
/// capacity; a page read while a write happened is not kept (see the
/// module docs).
pub(crate) async fn prime(db: &dyn DirectorDb, cache: &RowCache) -> StorageResult<()> {
    let Some(s) = &cache.0 else { return Ok(()) };
    let mut after: Option<String> = None;
    loop {
        let epoch = {
            let g = s.lock();
            if g.rows.len() >= s.capacity {
                return Ok(());
            }
            g.epoch
        };
        let page = db
            .list_devices(&DeviceFilter {
                after: after.clone(),
                limit: 5000,
                ..DeviceFilter::default()
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.record.id.clone());
        cache.fill(epoch, page);
    }
}

/// What a committed check-in wrote (mirror of the manifest UPDATE in
/// store/writes.rs).
fn apply_write(row: &mut DeviceRow, j: &CheckinWrite) -> bool {
    let Ok(installed) = serde_json::from_str(&j.installed_json) else {
        return false;
    };
    row.last_counter = Some(j.new_counter);
    row.last_checkin = Some(j.at);
    row.record.last_attestation = chrono::DateTime::from_timestamp(j.at, 0).unwrap_or_default();
    row.installed = Some(installed);
    row.running = j.running.clone();
    row.assigned = j.assigned.clone();
    row.assignment_note = Some(j.assignment_note.clone());
    row.director = j.director;
    true
}
