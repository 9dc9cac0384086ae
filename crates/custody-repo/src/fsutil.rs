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

/// Write `bytes` to a new file at `path` with mode 0600. Fails with
/// `ErrorKind::AlreadyExists` if anything exists at `path` (never overwrites).
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_of(path);
    // tempfile creates files with mode 0600 on unix.
    let mut tmp = tempfile::Builder::new()
        .prefix(".custody-key-")
        .tempfile_in(dir)?;
    set_private_mode(tmp.as_file())?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    sync_dir(dir)
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

#[cfg(unix)]
fn set_private_mode(f: &fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private_mode(_f: &fs::File) -> std::io::Result<()> {
    Ok(())
}
