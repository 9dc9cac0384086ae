//! Many files at once: parallel map over roles, bulk writes made durable
//! with one `syncfs`.
use std::path::{Path, PathBuf};

use crate::error::RepoError;

use custody_fs::AtomicFile;

use super::codec::{fs_err, io_err};

/// `items.map(f)` on up to `available_parallelism` threads (in order).
/// Coarse chunks with `std::thread::scope`: used for canonicalising and
/// serializing many roles (hash bins), where each item is a sizeable, equal
/// piece of work; not worth a thread-pool dependency.
pub(super) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; re-raise it on this thread.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// [`par_map`] where each thread first builds its own state with `init`
/// (e.g. a copy of the trusted metadata) and `f` may change it.
pub(super) fn par_map_with<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || items.len() < 2 {
        let mut st = init();
        return items.iter().map(|i| f(&mut st, i)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let (f, init) = (&f, &init);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                scope.spawn(move || {
                    let mut st = init();
                    c.iter().map(|i| f(&mut st, i)).collect::<Vec<R>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Above this many files, `add_targets` stages without one fsync per file
/// and `save` syncs the file system once.
pub(super) const BULK_FILES: usize = 64;

/// Replace many files in `dir` (in order; the last one, the timestamp when
/// present, becomes visible only after all others are durable).
pub(super) fn write_replace_bulk(dir: &Path, writes: &[(PathBuf, &[u8])]) -> Result<(), RepoError> {
    // Temp files written on all cores (closed at once: 2^16 bins must not
    // mean 2^16 open files); renamed in order below.
    let temps = par_map(writes, |(path, bytes)| -> Result<_, RepoError> {
        let mut tmp = AtomicFile::create(path, crate::fsutil::PUBLIC_FILE).map_err(fs_err)?;
        tmp.write_all(bytes).map_err(fs_err)?;
        Ok(tmp.into_pending())
    });
    let mut temps = temps.into_iter().collect::<Result<Vec<_>, _>>()?;
    bulk_sync(dir)?;
    let last = temps.pop();
    for tmp in temps {
        tmp.rename_into_place().map_err(fs_err)?;
    }
    custody_fs::sync_dir(dir).map_err(fs_err)?;
    if let Some(tmp) = last {
        tmp.rename_into_place().map_err(fs_err)?;
        custody_fs::sync_dir(dir).map_err(fs_err)?;
    }
    Ok(())
}

/// Make everything written under `dir` durable with one `syncfs(2)` (Linux);
/// elsewhere `sync(2)`-less fallback: fsync every file under `dir`.
pub(super) fn bulk_sync(dir: &Path) -> Result<(), RepoError> {
    let d = std::fs::File::open(dir).map_err(io_err(dir))?;
    #[cfg(target_os = "linux")]
    {
        nix::unistd::syncfs(&d).map_err(|e| RepoError::Io {
            path: dir.to_owned(),
            source: std::io::Error::from(e),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        fn fsync_tree(p: &Path) -> std::io::Result<()> {
            for e in std::fs::read_dir(p)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    fsync_tree(&e.path())?;
                }
                std::fs::File::open(e.path())?.sync_all()?;
            }
            Ok(())
        }
        fsync_tree(dir).map_err(io_err(dir))?;
        d.sync_all().map_err(io_err(dir))
    }
}
