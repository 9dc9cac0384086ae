//! [`SqliteCheckinConnection`]: the embedded store's check-in group
//! commit through rusqlite, running the statements and the rule of
//! [`super::writes`].

use std::future::Future;
use std::task::{Context, Poll, Waker};

use rusqlite::types::{Null, ToSqlOutput};

use super::writes::{apply_jobs, mark_delivery, Arg, Exec, Stmt};
use super::{CheckinConnection, CheckinWrite, WriteOutcome};
use crate::storage::{StorageError, StorageResult};

fn lite(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
    // StorageError carries sqlx errors; keep rusqlite's as the source.
    move |e| StorageError::Db {
        operation,
        source: sqlx::Error::Io(std::io::Error::other(e)),
    }
}

/// The embedded store's check-in writes through libsqlite3 directly
/// (rusqlite on the same `libsqlite3-sys` that sqlx links, so one SQLite
/// in the process), on a connection of their own with cached prepared
/// statements. The statements and their order are those of
/// [`super::DirectorDb::apply_checkins`] (the same `writes::apply_jobs`);
/// what changes is the cost per statement: sqlx hands every statement to
/// its connection's worker thread and awaits the answer, two thread
/// wake-ups per statement, two statements per check-in.
///
/// Durability is the same: the database file is in WAL mode (set by the
/// pool that created it, checked here), this connection runs with
/// `synchronous = FULL`, and [`CheckinConnection::apply`] returns only
/// after `COMMIT`, i.e. after the WAL fsync.
pub struct SqliteCheckinConnection {
    conn: rusqlite::Connection,
}

impl std::fmt::Debug for SqliteCheckinConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteCheckinConnection")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(Some(v)) => ToSqlOutput::from(*v),
            Arg::Text(Some(v)) => ToSqlOutput::from(v.as_ref()),
            Arg::Int(None) | Arg::Text(None) => ToSqlOutput::from(Null),
        })
    }
}

/// Runs `s` (prepared once per connection): `$n` binds `s.args[n - 1]`,
/// as sqlx's SQLite driver binds it. The number of rows it changed.
fn run(conn: &rusqlite::Connection, s: &Stmt<'_>) -> rusqlite::Result<u64> {
    let mut st = conn.prepare_cached(s.sql)?;
    for i in 1..=st.parameter_count() {
        let arg = st
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .and_then(|n| s.args.get(n.checked_sub(1)?))
            .ok_or_else(|| {
                rusqlite::Error::InvalidParameterName(
                    st.parameter_name(i).unwrap_or("?").to_owned(),
                )
            })?;
        st.raw_bind_parameter(i, arg)?;
    }
    Ok(st.raw_execute()? as u64)
}

impl Exec for rusqlite::Transaction<'_> {
    async fn exec(&mut self, s: Stmt<'_>) -> StorageResult<u64> {
        run(self, &s).map_err(lite(s.op))
    }
}

/// The value of a future that never waits: [`apply_jobs`] over
/// synchronous statements is ready at its first poll.
fn ready<T>(f: impl Future<Output = StorageResult<T>>) -> StorageResult<T> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(StorageError::Db {
            operation: "run check-ins",
            source: sqlx::Error::Protocol("a synchronous statement did not complete".into()),
        }),
    }
}

impl SqliteCheckinConnection {
    /// Opens `path` (which must exist, in WAL mode, with the director
    /// schema migrated).
    pub fn open(path: &std::path::Path) -> StorageResult<Self> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(lite("open the check-in writer connection"))?;
        // The pool's busy timeout: other writers (enrolment, fleet API,
        // audit) share the file.
        conn.busy_timeout(std::time::Duration::from_secs(15))
            .map_err(lite("check-in writer: busy_timeout"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(lite("check-in writer: synchronous = FULL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(lite("check-in writer: foreign_keys"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(lite("check-in writer: journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Corrupt {
                what: "database journal mode",
                reason: format!(
                    "{}: journal_mode is {mode:?}, the check-in writer needs WAL",
                    path.display()
                ),
            });
        }
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(lite("check-in writer: synchronous"))?;
        if sync < 2 {
            return Err(StorageError::Corrupt {
                what: "database synchronous mode",
                reason: format!("synchronous is {sync}, the check-in writer needs FULL (2)"),
            });
        }
        Ok(SqliteCheckinConnection { conn })
    }
}

impl CheckinConnection for SqliteCheckinConnection {
    fn apply(
        &mut self,
        jobs: &[CheckinWrite],
        marks: &[(String, String)],
    ) -> StorageResult<Vec<WriteOutcome>> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(lite("begin check-in transaction"))?;
        let out = ready(apply_jobs(jobs, &mut tx))?;
        for (id, marker) in marks {
            let s = mark_delivery(id, marker);
            run(&tx, &s).map_err(lite("record log delivery mark"))?;
        }
        tx.commit().map_err(lite("commit check-ins"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod checkin_connection_tests {
    //! The synchronous check-in connection keeps `apply_checkins`' rules:
    //! nonce insert-or-conflict first, counter compare-and-set on an
    //! active device, reports idempotent, all committed before it returns.
    use super::*;
    use crate::director::store::{DirectorDb, ReportRow, SqliteDirectorDb};
    use custody_director::director::DeviceDirectorState;
    use custody_director::policy::Installed;
    use custody_director::registry::{DeviceRecord, DeviceStatus, EnrolledWith};
    use custody_director::wire::DeviceAttributes;
    use custody_keys::MemorySigner;
    use custody_keys::Signer;

    fn record() -> DeviceRecord {
        let k = MemorySigner::generate_ed25519().unwrap();
        let now = chrono::Utc::now();
        DeviceRecord {
            id: k.keyid().to_owned(),
            key: k.key().clone(),
            hardware_id: "board-a".into(),
            group: "g".into(),
            attributes: DeviceAttributes {
                environment: "production".into(),
                tags: Default::default(),
                group: Some("g".into()),
            },
            enrolled_at: now,
            enrolled_with: EnrolledWith::Token {
                token_hash_prefix: "x".into(),
            },
            status: DeviceStatus::Active,
            last_attestation: now,
        }
    }

    fn write(id: &str, nonce: &str, old: Option<u64>, new: u64, report: bool) -> CheckinWrite {
        let at = chrono::Utc::now().timestamp();
        CheckinWrite {
            device_id: id.into(),
            nonce: nonce.into(),
            nonce_expires: at + 600,
            old_counter: old,
            new_counter: new,
            at,
            installed_json: "{}".into(),
            running: Some(Installed {
                name: "fw/1".into(),
                release_counter: 1,
                max_release_counter: 1,
            }),
            running_changed: true,
            director: DeviceDirectorState {
                targets_version: new,
                snapshot_version: new,
                timestamp_version: new,
            },
            assigned: Some(("fw/2".into(), 2)),
            assignment_note: "install".into(),
            reports: report
                .then(|| ReportRow {
                    device_id: id.into(),
                    report_id: format!("r-{new}"),
                    target: "fw/1".into(),
                    release_counter: 1,
                    outcome: "installed".into(),
                    reason: None,
                    device_time: 0,
                    received_at: at,
                    rollout_id: Some("r1".into()),
                    stage: Some(0),
                    log_index: None,
                })
                .into_iter()
                .collect(),
            attacks: vec![],
        }
    }

    /// `$n` binds the n-th argument wherever it stands (as sqlx binds
    /// it); a `$n` without an argument is refused, not bound to NULL.
    #[test]
    fn dollar_parameters_bind_by_number() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT, b BIGINT, c BIGINT)")
            .unwrap();
        let insert = Stmt::new(
            "INSERT INTO t (c, a, b) VALUES ($3, $1, $2 + $3)",
            "insert",
            vec![Arg::from("x"), Arg::from(2i64), Arg::from(None::<i64>)],
        );
        assert_eq!(run(&conn, &insert).unwrap(), 1);
        let insert = Stmt::new(
            "INSERT INTO t (c, a, b) VALUES ($3, $1, $2 + $3)",
            "insert",
            vec![Arg::from(Some("y")), Arg::from(2u64), Arg::from(5i64)],
        );
        assert_eq!(run(&conn, &insert).unwrap(), 1);
        let rows: Vec<(String, Option<i64>, Option<i64>)> = conn
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![("x".into(), None, None), ("y".into(), Some(7), Some(5))]
        );
        let missing = Stmt::new(
            "UPDATE t SET b = $2 WHERE a = $1",
            "update",
            vec![Arg::from("x")],
        );
        assert!(matches!(
            run(&conn, &missing),
            Err(rusqlite::Error::InvalidParameterName(name)) if name == "$2"
        ));
    }

    #[tokio::test]
    async fn same_rules_as_apply_checkins() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::SqliteStorage::open(&dir.path().join("c.db"))
            .await
            .unwrap();
        let db = SqliteDirectorDb::new(storage.pool().clone());
        db.migrate().await.unwrap();
        let (a, b) = (record(), record());
        db.insert_devices(&[a.clone(), b.clone()]).await.unwrap();
        let mut conn = db
            .checkin_connection()
            .unwrap()
            .expect("a file database has a check-in connection");

        let out = conn
            .apply(
                &[
                    write(&a.id, "n1", None, 1, true),
                    // same nonce again in the same batch: replay
                    write(&a.id, "n1", Some(1), 2, false),
                    // b has no accepted manifest yet: the compare-and-set fails
                    write(&b.id, "m1", Some(5), 6, false),
                    write(&a.id, "n2", Some(1), 2, true),
                    // a counter that lost the race with the one above
                    write(&a.id, "n3", Some(1), 3, false),
                ],
                // a delivery mark rides in the same transaction
                &[(a.id.clone(), "marker-1".to_owned())],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Committed {
                    rollouts_with_new_reports: vec!["r1".into()]
                },
                WriteOutcome::ReplayedNonce,
                WriteOutcome::Conflict,
                WriteOutcome::Committed {
                    rollouts_with_new_reports: vec!["r1".into()]
                },
                WriteOutcome::Conflict,
            ]
        );
        // Committed and visible to the pool's connections.
        let row = db.get_device(&a.id).await.unwrap().unwrap();
        assert_eq!(row.log_delivery.as_deref(), Some("marker-1"));
        assert_eq!(row.last_counter, Some(2));
        assert_eq!(row.director.timestamp_version, 2);
        assert_eq!(row.assigned, Some(("fw/2".into(), 2)));
        assert_eq!(
            row.record.last_attestation.timestamp(),
            row.last_checkin.unwrap()
        );
        assert_eq!(db.list_reports(&a.id, 10).await.unwrap().len(), 2);
        assert_eq!(db.who_installed("fw/1").await.unwrap().len(), 1);
        // The nonce is in the table the other routes check.
        assert!(!db.insert_nonce(&a.id, "n2", i64::MAX).await.unwrap());

        // A suspended device's manifest cannot be committed.
        assert!(db
            .set_device_status(
                &b.id,
                &DeviceStatus::Suspended {
                    reason: "test".into(),
                    since: chrono::Utc::now(),
                },
                None,
            )
            .await
            .unwrap());
        let out = conn
            .apply(&[write(&b.id, "m2", None, 1, false)], &[])
            .unwrap();
        assert_eq!(out, vec![WriteOutcome::Conflict]);
        let row = db.get_device(&b.id).await.unwrap().unwrap();
        assert_eq!(row.last_counter, None);
        // A re-sent report is not counted twice.
        let out = conn
            .apply(
                &[{
                    let mut w = write(&a.id, "n4", Some(2), 3, true);
                    w.reports[0].report_id = "r-2".into();
                    w
                }],
                &[],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![WriteOutcome::Committed {
                rollouts_with_new_reports: vec![]
            }]
        );
    }
}
