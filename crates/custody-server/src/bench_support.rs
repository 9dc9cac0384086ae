//! For benchmarks (doc-hidden, not a stable API): seed a data directory's
//! director tables directly, where going through the device API would
//! measure enrolment instead of what the benchmark is about.

use std::path::Path;

use custody_director::policy::RolloutState;
use custody_director::registry::DeviceRecord;

use crate::director::store::{DirectorDb, RolloutRow, SqliteDirectorDb};
pub use crate::director::RolloutSpec;
use crate::storage::{SqliteStorage, Storage, StorageError};

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("rollout {id}: cannot encode its spec or state: {source}")]
    Encode {
        id: String,
        source: serde_json::Error,
    },
}

/// Writes `devices` (enrolled, in batches of 5,000) and one active
/// rollout `rollout_id` of `spec`, created by `by` at `now` (Unix
/// seconds), into the embedded SQLite database of `data_dir`, before a
/// server is started on it. The rows are exactly what enrolment and
/// `POST /api/v1/fleet/rollouts` would store; 100,000 devices take seconds
/// this way and minutes over HTTP (each enrolment is a signed request
/// verified and committed on its own).
pub async fn seed_director(
    data_dir: &Path,
    devices: impl IntoIterator<Item = DeviceRecord>,
    rollout_id: &str,
    spec: &RolloutSpec,
    by: &str,
    now: i64,
) -> Result<(), SeedError> {
    let storage = SqliteStorage::open(&data_dir.join("custody.db")).await?;
    storage.migrate().await?;
    let db = SqliteDirectorDb::new(storage.pool().clone());
    db.migrate().await?;
    let mut batch = Vec::with_capacity(5000);
    for d in devices {
        batch.push(d);
        if batch.len() == 5000 {
            db.insert_devices(&batch).await?;
            batch.clear();
        }
    }
    db.insert_devices(&batch).await?;
    let encode = |source| SeedError::Encode {
        id: rollout_id.to_owned(),
        source,
    };
    db.insert_rollout(&RolloutRow {
        id: rollout_id.to_owned(),
        spec: serde_json::to_string(spec).map_err(encode)?,
        stage: 0,
        state: serde_json::to_string(&RolloutState::Active).map_err(encode)?,
        created_at: now,
        created_by: by.to_owned(),
        updated_at: now,
    })
    .await?;
    storage.pool().close().await;
    Ok(())
}
