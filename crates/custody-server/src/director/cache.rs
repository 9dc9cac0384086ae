//! Process cache of device rows in front of the embedded SQLite store.
//!
//! Every check-in reads its device (key, status, last counter, director
//! versions) before verifying anything; with SQLite that read is a
//! statement handed to sqlx's worker thread, a measurable share of a
//! check-in's CPU. [`CachedDirectorDb`] keeps the rows it has read and
//! keeps them exact:
//!
//! - every method that changes a device row (enrol, bulk insert, status
//!   change: suspend / resume / decommission, the re-attestation sweep,
//!   assignment, director versions, check-in writes) goes through this
//!   wrapper, which drops or updates the entry **after** the database
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
//! Only for a store that this process alone writes (the embedded SQLite
//! database file). PostgreSQL deployments may run several replicas, each
//! of which would miss the others' status changes, so the PostgreSQL store
//! is used without this cache.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use custody_director::director::DeviceDirectorState;
use custody_director::registry::{DeviceRecord, DeviceStatus};

use super::store::{
    AttackRow, CheckinConnection, CheckinWrite, DeviceFilter, DeviceRow, DirectorDb, InstallRow,
    PinRow, ReportRow, RollbackRow, RolloutRow, TokenRow, WriteOutcome, YankRow,
};
use crate::storage::StorageResult;

/// Most rows kept (a few hundred bytes each); beyond it, reads of
/// uncached devices go to the database.
pub const DEFAULT_CAPACITY: usize = 250_000;

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<String, DeviceRow>,
    /// bumped by every write of a device row
    epoch: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct CachedDirectorDb<D> {
    inner: D,
    cache: Mutex<Inner>,
    capacity: usize,
}

impl<D: DirectorDb> CachedDirectorDb<D> {
    /// Wraps `inner`, which must be the only writer of its database.
    pub fn wrap(inner: D, capacity: usize) -> Self {
        CachedDirectorDb {
            inner,
            cache: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half
        // updated in a way that matters more than a missing entry; but be
        // strict anyway: forget everything.
        self.cache.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            g.rows.clear();
            g.epoch = g.epoch.wrapping_add(1);
            g
        })
    }

    fn forget(&self, id: &str) {
        let mut g = self.lock();
        g.epoch = g.epoch.wrapping_add(1);
        g.rows.remove(id);
    }

    fn forget_all(&self) {
        let mut g = self.lock();
        g.epoch = g.epoch.wrapping_add(1);
        g.rows.clear();
    }

    /// Reads device rows page by page into the cache, up to `capacity`; a
    /// page read while a write happened is not kept (see the module docs).
    pub async fn prime(&self) -> StorageResult<()> {
        let mut after: Option<String> = None;
        loop {
            let epoch = {
                let g = self.lock();
                if g.rows.len() >= self.capacity {
                    return Ok(());
                }
                g.epoch
            };
            let page = self
                .inner
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
            let mut g = self.lock();
            if g.epoch != epoch {
                continue;
            }
            for row in page {
                if g.rows.len() >= self.capacity {
                    break;
                }
                g.rows.entry(row.record.id.clone()).or_insert(row);
            }
        }
    }

    /// Number of cached rows (tests, metrics).
    pub fn cached(&self) -> usize {
        self.lock().rows.len()
    }
}

/// What a committed check-in wrote (mirror of the UPDATE in
/// `apply_checkins`).
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

#[async_trait]
impl<D: DirectorDb> DirectorDb for CachedDirectorDb<D> {
    /// Migrates, then primes the cache with up to `capacity` device rows
    /// (at server start: the first check-in of every device then needs no
    /// read either).
    async fn migrate(&self) -> StorageResult<()> {
        let r = self.inner.migrate().await;
        self.forget_all();
        r?;
        self.prime().await
    }

    async fn insert_device(&self, rec: &DeviceRecord) -> StorageResult<()> {
        let r = self.inner.insert_device(rec).await;
        self.forget(&rec.id);
        r
    }

    async fn insert_devices(&self, recs: &[DeviceRecord]) -> StorageResult<()> {
        let r = self.inner.insert_devices(recs).await;
        self.forget_all();
        r
    }

    async fn device_exists(&self, id: &str) -> StorageResult<bool> {
        if self.lock().rows.contains_key(id) {
            return Ok(true);
        }
        self.inner.device_exists(id).await
    }

    async fn get_device(&self, id: &str) -> StorageResult<Option<DeviceRow>> {
        let epoch = {
            let g = self.lock();
            if let Some(row) = g.rows.get(id) {
                return Ok(Some(row.clone()));
            }
            g.epoch
        };
        let row = self.inner.get_device(id).await?;
        if let Some(r) = &row {
            let mut g = self.lock();
            if g.epoch == epoch && g.rows.len() < self.capacity {
                g.rows.insert(id.to_owned(), r.clone());
            }
        }
        Ok(row)
    }

    async fn list_devices(&self, f: &DeviceFilter) -> StorageResult<Vec<DeviceRow>> {
        self.inner.list_devices(f).await
    }

    async fn count_devices(&self) -> StorageResult<i64> {
        self.inner.count_devices().await
    }

    async fn set_device_status(
        &self,
        id: &str,
        status: &DeviceStatus,
        attested_at: Option<i64>,
    ) -> StorageResult<bool> {
        let r = self.inner.set_device_status(id, status, attested_at).await;
        self.forget(id);
        r
    }

    async fn suspend_overdue(&self, cutoff: i64, now: i64) -> StorageResult<Vec<String>> {
        let r = self.inner.suspend_overdue(cutoff, now).await;
        match &r {
            Ok(ids) => {
                let mut g = self.lock();
                g.epoch = g.epoch.wrapping_add(1);
                for id in ids {
                    g.rows.remove(id);
                }
            }
            Err(_) => self.forget_all(),
        }
        r
    }

    async fn set_assignment(
        &self,
        id: &str,
        assigned: Option<(String, u64)>,
        note: &str,
    ) -> StorageResult<()> {
        let r = self.inner.set_assignment(id, assigned, note).await;
        self.forget(id);
        r
    }

    async fn set_director_state(
        &self,
        id: &str,
        old: &DeviceDirectorState,
        new: &DeviceDirectorState,
    ) -> StorageResult<bool> {
        let r = self.inner.set_director_state(id, old, new).await;
        self.forget(id);
        r
    }

    async fn insert_token(&self, t: &TokenRow) -> StorageResult<()> {
        self.inner.insert_token(t).await
    }

    async fn consume_token(
        &self,
        hash: &str,
        now: i64,
    ) -> StorageResult<
        Result<custody_director::enrol::TokenRecord, custody_director::enrol::TokenRefusal>,
    > {
        self.inner.consume_token(hash, now).await
    }

    async fn insert_nonce(
        &self,
        device: &str,
        nonce: &str,
        expires_at: i64,
    ) -> StorageResult<bool> {
        self.inner.insert_nonce(device, nonce, expires_at).await
    }

    async fn purge_nonces(&self, now: i64) -> StorageResult<u64> {
        self.inner.purge_nonces(now).await
    }

    async fn apply_checkins(&self, jobs: &[CheckinWrite]) -> StorageResult<Vec<WriteOutcome>> {
        let r = self.inner.apply_checkins(jobs).await;
        self.checkins_written(jobs, &r);
        r
    }

    fn checkin_connection(&self) -> StorageResult<Option<Box<dyn CheckinConnection>>> {
        self.inner.checkin_connection()
    }

    /// A committed check-in updates its cached row with what it wrote; a
    /// lost compare-and-set or a failed batch drops the rows.
    fn checkins_written(&self, jobs: &[CheckinWrite], r: &StorageResult<Vec<WriteOutcome>>) {
        let mut g = self.lock();
        g.epoch = g.epoch.wrapping_add(1);
        match r {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                for (j, o) in jobs.iter().zip(outcomes) {
                    match o {
                        WriteOutcome::Committed { .. } => {
                            let keep = match g.rows.get_mut(&j.device_id) {
                                Some(row) => apply_write(row, j),
                                None => true,
                            };
                            if !keep {
                                g.rows.remove(&j.device_id);
                            }
                        }
                        WriteOutcome::Conflict => {
                            g.rows.remove(&j.device_id);
                        }
                        WriteOutcome::ReplayedNonce => {}
                    }
                }
            }
            _ => {
                for j in jobs {
                    g.rows.remove(&j.device_id);
                }
            }
        }
    }

    async fn report_counts(&self, rollout: &str) -> StorageResult<Vec<(Option<u64>, String, i64)>> {
        self.inner.report_counts(rollout).await
    }

    async fn list_reports(&self, device: &str, limit: i64) -> StorageResult<Vec<ReportRow>> {
        self.inner.list_reports(device, limit).await
    }

    async fn who_installed(&self, target: &str) -> StorageResult<Vec<InstallRow>> {
        self.inner.who_installed(target).await
    }

    async fn insert_rollout(&self, r: &RolloutRow) -> StorageResult<()> {
        self.inner.insert_rollout(r).await
    }

    async fn update_rollout(
        &self,
        id: &str,
        old: (u64, &str),
        new: (u64, &str),
        at: i64,
    ) -> StorageResult<bool> {
        self.inner.update_rollout(id, old, new, at).await
    }

    async fn list_rollouts(&self) -> StorageResult<Vec<RolloutRow>> {
        self.inner.list_rollouts().await
    }

    async fn upsert_pin(&self, p: &PinRow) -> StorageResult<()> {
        self.inner.upsert_pin(p).await
    }

    async fn delete_pin(&self, device: &str) -> StorageResult<bool> {
        self.inner.delete_pin(device).await
    }

    async fn list_pins(&self) -> StorageResult<Vec<PinRow>> {
        self.inner.list_pins().await
    }

    async fn insert_yank(&self, y: &YankRow) -> StorageResult<()> {
        self.inner.insert_yank(y).await
    }

    async fn list_yanks(&self) -> StorageResult<Vec<YankRow>> {
        self.inner.list_yanks().await
    }

    async fn insert_rollback(&self, r: &RollbackRow) -> StorageResult<()> {
        self.inner.insert_rollback(r).await
    }

    async fn list_rollbacks(&self) -> StorageResult<Vec<RollbackRow>> {
        self.inner.list_rollbacks().await
    }

    async fn insert_attack(&self, a: &AttackRow) -> StorageResult<()> {
        self.inner.insert_attack(a).await
    }

    async fn list_attacks(
        &self,
        device: Option<&str>,
        limit: i64,
    ) -> StorageResult<Vec<AttackRow>> {
        self.inner.list_attacks(device, limit).await
    }

    // ---- transparency log marks (log_hooks.rs) ----
    fn delivery_marked(&self, id: &str, marker: &str) {
        let mut g = self.lock();
        g.epoch = g.epoch.wrapping_add(1);
        if let Some(row) = g.rows.get_mut(id) {
            row.log_delivery = Some(marker.to_owned());
        }
    }

    async fn mark_delivery_logged(&self, id: &str, marker: &str) -> StorageResult<()> {
        let r = self.inner.mark_delivery_logged(id, marker).await;
        let mut g = self.lock();
        g.epoch = g.epoch.wrapping_add(1);
        match (&r, g.rows.get_mut(id)) {
            (Ok(()), Some(row)) => row.log_delivery = Some(marker.to_owned()),
            (Err(_), Some(_)) => {
                g.rows.remove(id);
            }
            (_, None) => {}
        }
        drop(g);
        r
    }
}
