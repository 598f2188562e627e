//! Pack content: reading StackStorm-format packs (`pack.yaml`, `actions/*.yaml`) from disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use squall_core::action::ActionMetadata;
use squall_core::{Action, Catalog};

/// The loaded catalog plus where each pack lives, so runners can find entry points, and what
/// could not be loaded.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub catalog: Catalog,
    pack_dirs: HashMap<String, PathBuf>,
    /// One entry per file that was skipped or whose action cannot run, in load order.
    pub problems: Vec<PackProblem>,
}

/// A pack file squall skipped or an action it cannot run: one bad file never stops the others
/// from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PackProblem {
    pub path: String,
    pub reason: String,
    /// The action the file defines, when it was registered (as unavailable).
    pub action: Option<String>,
}

#[derive(Deserialize)]
struct PackMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "ref", default)]
    ref_: Option<String>,
}

/// Runners whose actions run a file of the pack (`entry_point`).
const RUNNERS_WITH_ENTRY_POINTS: [&str; 4] = ["local-shell-script", "remote-shell-script", "python-script", "action-chain"];

impl Content {
    /// The built-in `core` pack plus every pack found directly under each of `base_paths`
    /// (a directory holding `pack.yaml`). Base paths that do not exist are skipped; files that
    /// cannot be loaded are recorded in [`Content::problems`].
    pub fn load(base_paths: &[PathBuf]) -> Content {
        let mut content = Content { catalog: Catalog::builtin(), ..Content::default() };
        for base in base_paths {
            for dir in pack_dirs_under(base) {
                content.load_pack(&dir);
            }
        }
        content
    }

    /// The packs in `path`: `path` itself when it holds `pack.yaml`, else its subdirectories
    /// that do (for `squall pack check`).
    pub fn load_path(path: &Path) -> Content {
        if path.join("pack.yaml").is_file() {
            let mut content = Content { catalog: Catalog::builtin(), ..Content::default() };
            content.load_pack(path);
            content
        } else {
            Content::load(&[path.to_path_buf()])
        }
    }

    /// Packs loaded from disk (the built-in `core` pack not counted).
    pub fn packs_on_disk(&self) -> usize {
        self.pack_dirs.len()
    }

    /// How many actions from disk can run, and how many are listed but unavailable.
    pub fn action_counts(&self) -> (usize, usize) {
        let from_disk = self.catalog.actions().filter(|a| a.pack != "core");
        from_disk.fold((0, 0), |(ok, no), a| if a.unavailable.is_some() { (ok, no + 1) } else { (ok + 1, no) })
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

    fn problem(&mut self, path: &Path, reason: String, action: Option<String>) {
        self.problems.push(PackProblem { path: path.display().to_string(), reason, action });
    }

    fn load_pack(&mut self, dir: &Path) {
        let meta_path = dir.join("pack.yaml");
        let fallback = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let pack = match read_text(&meta_path).and_then(|text| pack_name(&text, &fallback)) {
            Ok(pack) => pack,
            Err(reason) => return self.problem(&meta_path, format!("{reason}; the pack is skipped"), None),
        };
        if let Some(first) = self.pack_dirs.get(&pack) {
            let reason = format!("pack \"{pack}\" is already loaded from {}; this copy is skipped", first.display());
            return self.problem(&meta_path, reason, None);
        }
        self.pack_dirs.insert(pack.clone(), dir.to_path_buf());

        let Ok(entries) = std::fs::read_dir(dir.join("actions")) else { return };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        for file in files {
            self.load_action(&pack, dir, &file);
        }
    }

    fn load_action(&mut self, pack: &str, dir: &Path, file: &Path) {
        let relative = format!("actions/{}", file.file_name().unwrap_or_default().to_string_lossy());
        let mut action = match read_text(file).and_then(|text| parse_action(pack, &text, &relative)) {
            Ok(action) => action,
            Err(reason) => return self.problem(file, format!("{reason}; the action is skipped"), None),
        };
        if RUNNERS_WITH_ENTRY_POINTS.contains(&action.runner_type.as_str()) {
            if action.entry_point.is_empty() {
                action.mark_unavailable(format!("runner type \"{}\" needs an entry_point, and none is given", action.runner_type));
            } else if !dir.join("actions").join(&action.entry_point).is_file() {
                action.mark_unavailable(format!("its entry point actions/{} does not exist", action.entry_point));
            } else if action.runner_type == "action-chain" {
                let path = dir.join("actions").join(&action.entry_point);
                let parsed = std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| crate::chain::Chain::parse(&text));
                if let Err(why) = parsed {
                    action.mark_unavailable(format!("its chain actions/{} is not valid: {why}", action.entry_point));
                }
            }
        }
        let ref_ = action.ref_.clone();
        match self.catalog.add_action(action) {
            Err(e) => self.problem(file, format!("{e}; this definition is skipped"), None),
            Ok(()) => {
                if let Some(reason) = self.catalog.action(&ref_).and_then(|a| a.unavailable.clone()) {
                    self.problem(file, format!("action {ref_} cannot run: {reason}"), Some(ref_));
                }
            }
        }
    }
}

/// Directories directly under `base` that hold a `pack.yaml`, sorted.
fn pack_dirs_under(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|d| d.join("pack.yaml").is_file()).collect();
    dirs.sort();
    dirs
}

/// Reads a pack file; the error says what is wrong, for a problem line that names the file.
fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))
}

/// The pack's name from its `pack.yaml` text: `ref`, else `name`, else `fallback` (the
/// directory's name). Public, as [`parse_action`], so pack files can be checked without a disk.
pub fn pack_name(text: &str, fallback: &str) -> Result<String, String> {
    let meta: PackMetadata = parse_yaml(text)?;
    Ok(meta.ref_.or(meta.name).unwrap_or_else(|| fallback.to_string()))
}

/// The action an action metadata file (`actions/<name>.yaml`, at `relative` in `pack`) defines.
/// An invalid parameter schema marks it unavailable; what needs the pack's other files (its
/// entry point) is checked by the loader.
pub fn parse_action(pack: &str, text: &str, relative: &str) -> Result<Action, String> {
    let meta: ActionMetadata = parse_yaml(text)?;
    let mut action = Action::from_metadata(pack, meta, relative);
    if let Some(reason) = squall_core::action::parameter_schema_problem(&action.parameters) {
        action.mark_unavailable(format!("invalid parameter schema: {reason}"));
    }
    Ok(action)
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    yaml_serde::from_str(text).map_err(|e| format!("not valid metadata: {e}"))
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
        std::fs::write(pack.join("actions/hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
        let content = Content::load(&[dir.path().to_path_buf()]);
        assert_eq!(content.problems, []);
        let action = content.catalog.action("demo.hello").unwrap();
        assert_eq!(action.metadata_file, "actions/hello.yaml");
        assert_eq!(content.entry_point(action).unwrap(), pack.join("actions/hello.sh"));
    }

    #[test]
    fn bad_files_are_reported_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("mixed");
        std::fs::create_dir_all(pack.join("actions")).unwrap();
        std::fs::write(pack.join("pack.yaml"), "name: mixed\n").unwrap();
        let files = [
            ("good.yaml", "name: good\nrunner_type: local-shell-cmd\n"),
            ("no_runner.yaml", "name: x\n"),
            ("broken.yaml", "name: [unclosed\n"),
            ("flow.yaml", "name: flow\nrunner_type: orquesta\nentry_point: flow.yaml\n"),
            ("lost.yaml", "name: lost\nrunner_type: local-shell-script\nentry_point: lost.sh\n"),
            ("typo.yaml", "name: typo\nrunner_type: local-shell-cmd\nparameters:\n  n: {type: strnig}\n"),
        ];
        for (name, text) in files {
            std::fs::write(pack.join("actions").join(name), text).unwrap();
        }
        let content = Content::load(&[dir.path().to_path_buf()]);
        let reasons: Vec<String> = content.problems.iter().map(ToString::to_string).collect();
        assert_eq!(reasons.len(), 5, "{reasons:#?}");
        let find = |file: &str| reasons.iter().find(|r| r.contains(file)).unwrap_or_else(|| panic!("{file}: {reasons:#?}"));
        assert!(find("no_runner.yaml").contains("runner_type") && find("no_runner.yaml").contains("skipped"));
        assert!(find("broken.yaml").contains("skipped"));
        assert!(find("flow.yaml").contains("\"orquesta\", which squall does not provide"));
        assert!(find("lost.yaml").contains("actions/lost.sh does not exist"));
        assert!(find("typo.yaml").contains("strnig"));
        assert_eq!(content.catalog.action("mixed.good").unwrap().unavailable, None);
        for listed in ["mixed.flow", "mixed.lost", "mixed.typo"] {
            assert!(content.catalog.action(listed).unwrap().unavailable.is_some(), "{listed} is listed as unavailable");
        }
        assert!(content.catalog.action("mixed.x").is_none());
    }
}
