//! The data directory holds every execution, its output and the credentials' hashes: only the
//! server's user may read it. New directories are made 0700 and database files 0600, and
//! looser modes (from an older squall, or a directory made by hand) are tightened on open.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Result, StoreError};

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one.
pub fn directory(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
    tighten(dir, 0o700);
    Ok(())
}

/// Creates the SQLite database file 0600 before SQLite does (SQLite would follow the umask;
/// its `-wal` and `-shm` files take the database file's mode), and tightens existing ones.
pub fn database_files(db: &Path) -> Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .map_err(|source| StoreError::DataDir { path: db.display().to_string(), source })?;
    for suffix in ["", "-wal", "-shm"] {
        let path = db.with_file_name(format!("{}{suffix}", db.file_name().and_then(|n| n.to_str()).unwrap_or("squall.db")));
        if path.exists() {
            tighten(&path, 0o600);
        }
    }
    Ok(())
}

/// Sets `mode` when group or others have any access; a file we do not own is left as it is,
/// with a warning (the server can still run, an operator should look).
fn tighten(path: &Path, mode: u32) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(path = %path.display(), "mode {current:o} let other users read squall's data; changed to {mode:o}"),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "mode {current:o} lets other users read squall's data; set it to {mode:o}")
        }
    }
}
