//! Pack content: reading StackStorm-format packs (`pack.yaml`, `actions/*.yaml`) from disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use squall_core::action::{ActionMetadata, CatalogError};
use squall_core::{Action, Catalog};

/// The loaded catalog plus where each pack lives, so runners can find entry points.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub catalog: Catalog,
    pack_dirs: HashMap<String, PathBuf>,
}

/// A pack that cannot be loaded; the message names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not valid pack metadata: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Catalog { path: String, source: CatalogError },
}

#[derive(Deserialize)]
struct PackMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "ref", default)]
    ref_: Option<String>,
}

impl Content {
    /// The built-in `core` pack plus every pack found directly under each of `base_paths`
    /// (a directory holding `pack.yaml`). Base paths that do not exist are skipped.
    pub fn load(base_paths: &[PathBuf]) -> Result<Content, ContentError> {
        let mut content = Content { catalog: Catalog::builtin(), pack_dirs: HashMap::new() };
        for base in base_paths {
            let Ok(entries) = std::fs::read_dir(base) else { continue };
            let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            dirs.sort();
            for dir in dirs.into_iter().filter(|d| d.join("pack.yaml").is_file()) {
                content.load_pack(&dir)?;
            }
        }
        Ok(content)
    }

    /// Packs loaded from disk (the built-in `core` pack not counted).
    pub fn packs_on_disk(&self) -> usize {
        self.pack_dirs.len()
    }

    /// The directory of an action's pack, when it came from disk.
    pub fn pack_dir(&self, pack: &str) -> Option<&Path> {
        self.pack_dirs.get(pack).map(PathBuf::as_path)
    }

    /// Absolute path of a script action's entry point (`<pack>/actions/<entry_point>`).
    pub fn entry_point(&self, action: &Action) -> Option<PathBuf> {
        if action.entry_point.is_empty() {
            return None;
        }
        Some(self.pack_dir(&action.pack)?.join("actions").join(&action.entry_point))
    }

    fn load_pack(&mut self, dir: &Path) -> Result<(), ContentError> {
        let meta_path = dir.join("pack.yaml");
        let meta: PackMetadata = read_yaml(&meta_path)?;
        let fallback = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pack = meta.ref_.or(meta.name).unwrap_or(fallback);
        self.pack_dirs.insert(pack.clone(), dir.to_path_buf());

        let Ok(entries) = std::fs::read_dir(dir.join("actions")) else { return Ok(()) };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        for file in files {
            let meta: ActionMetadata = read_yaml(&file)?;
            let relative = format!("actions/{}", file.file_name().unwrap_or_default().to_string_lossy());
            let action = Action::from_metadata(&pack, meta, &relative);
            self.catalog.add_action(action).map_err(|source| ContentError::Catalog { path: file.display().to_string(), source })?;
        }
        Ok(())
    }
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ContentError> {
    let text = std::fs::read_to_string(path).map_err(|source| ContentError::Io { path: path.display().to_string(), source })?;
    yaml_serde::from_str(&text).map_err(|e| ContentError::Invalid { path: path.display().to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_pack_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("demo");
        std::fs::create_dir_all(pack.join("actions")).unwrap();
        std::fs::write(pack.join("pack.yaml"), "name: demo\nversion: 1.0.0\n").unwrap();
        std::fs::write(
            pack.join("actions/hello.yaml"),
            "name: hello\nrunner_type: local-shell-script\nentry_point: hello.sh\nparameters:\n  who:\n    type: string\n    position: 0\n",
        )
        .unwrap();
        let content = Content::load(&[dir.path().to_path_buf()]).unwrap();
        let action = content.catalog.action("demo.hello").unwrap();
        assert_eq!(action.metadata_file, "actions/hello.yaml");
        assert_eq!(content.entry_point(action).unwrap(), pack.join("actions/hello.sh"));
    }

    #[test]
    fn bad_metadata_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("bad");
        std::fs::create_dir_all(pack.join("actions")).unwrap();
        std::fs::write(pack.join("pack.yaml"), "name: bad\n").unwrap();
        std::fs::write(pack.join("actions/x.yaml"), "name: x\n").unwrap();
        let err = Content::load(&[dir.path().to_path_buf()]).unwrap_err().to_string();
        assert!(err.contains("x.yaml") && err.contains("runner_type"), "{err}");
    }
}
