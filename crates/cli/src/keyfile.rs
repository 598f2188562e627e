//! The key that seals secret parameter values at rest (`[keyvalue] encryption_key_path`, as in
//! st2.conf): 32 random bytes, hex, in a file only its owner can read. On the embedded backend
//! it defaults to `<data dir>/encryption.key` and is created on first start; a configured path
//! must exist (every node of a cluster needs the same key, so none may invent its own).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use squall_core::sealed::{KEY_LEN, SealingKey};

/// The file name of the default key in the data directory.
pub const DEFAULT_NAME: &str = "encryption.key";

/// Reads the key at `path`; when it does not exist and `create` is set, makes a new one there.
pub fn load(path: &Path, create: bool) -> anyhow::Result<SealingKey> {
    if !path.exists() {
        if !create {
            bail!(
                "the encryption key {} does not exist; create it once with `squall key generate {}` and give every node the same file",
                path.display(),
                path.display()
            );
        }
        generate(path)?;
        tracing::info!(
            "created the encryption key for secret parameters at {}; back it up with the data: without it, secret parameters of stored executions cannot be read",
            path.display()
        );
    }
    let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the encryption key {} can be read by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the encryption key {}", path.display()))?;
    let bytes: [u8; KEY_LEN] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not an encryption key: expected {} hexadecimal digits", path.display(), KEY_LEN * 2))?;
    Ok(SealingKey::from_bytes(&bytes))
}

/// Writes a new random key to `path` (mode 0600); refuses to replace an existing file.
pub fn generate(path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the encryption key {}", path.display()))?;
    writeln!(file, "{}", hex::encode(SealingKey::generate())).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let e = load(&path, false).unwrap_err().to_string();
        assert!(e.contains("squall key generate"), "{e}");
        load(&path, true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let first = std::fs::read_to_string(&path).unwrap();
        load(&path, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "an existing key is kept");
        assert!(generate(&path).is_err(), "never replaced");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&path, false).unwrap_err().to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(load(&path, false).unwrap_err().to_string().contains("hexadecimal"));
    }
}
