//! Crash-safe file writes: temp file in the same directory, fsync, rename,
//! fsync the directory. A power cut leaves the old or the new file, never a mix.
use std::fs;
use std::io::Write;
use std::path::Path;

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directory fsync makes the rename durable (POSIX).
    fs::File::open(dir)?.sync_all()
}

/// Atomically replace (or create) the file at `path` with `bytes`.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".custody-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}
