//! `squall pack list|check`: what the server would load from packs on disk, without a server.

use std::path::PathBuf;
use std::process::ExitCode;

use squall_runner::Content;

use crate::config::Config;

/// Packs on disk.
#[derive(clap::Subcommand)]
pub enum PackCommand {
    /// Every pack under `[content] packs_base_paths` and each of its actions: runnable, or why not.
    List {
        /// The server's configuration file (for `[content] packs_base_paths`)
        #[arg(long, env = "SQUALL_CONFIG", hide_env_values = true)]
        config: Option<PathBuf>,
    },
    /// Check a pack directory (or a directory of packs): what loads, what does not and why.
    /// Exits 1 when any file has a problem, 6 when there is no pack to check.
    Check {
        /// A pack directory, or a directory of packs
        path: PathBuf,
    },
}

pub fn main(command: PackCommand, json: bool) -> ExitCode {
    match command {
        PackCommand::List { config } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("squall: invalid configuration: {e}");
                    return ExitCode::from(crate::client::exit::ERROR);
                }
            };
            let content = Content::load(&config.content.paths());
            if json {
                crate::client::render::json(&as_json(&content));
            } else {
                println!("packs from {}", config.content.packs_base_paths);
                report(&content);
            }
            ExitCode::SUCCESS
        }
        PackCommand::Check { path } => {
            if !path.is_dir() {
                eprintln!("squall: {} is not a directory", path.display());
                return ExitCode::from(crate::client::exit::ERROR);
            }
            let content = Content::load_path(&path);
            if content.packs_on_disk() == 0 && content.problems.is_empty() {
                eprintln!("squall: no pack in {} (a pack is a directory holding pack.yaml)", path.display());
                return ExitCode::from(crate::client::exit::ERROR);
            }
            if json {
                crate::client::render::json(&as_json(&content));
            } else {
                report(&content);
            }
            if content.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
    }
}

/// What `report` says, for scripts: every action with its pack and whether it runs, and every
/// file that was not loaded.
fn as_json(content: &Content) -> serde_json::Value {
    let actions: Vec<_> = content
        .catalog
        .actions()
        .filter(|a| a.pack != "core")
        .map(|a| serde_json::json!({"ref": a.ref_, "pack": a.pack, "runner_type": a.runner_type, "unavailable": a.unavailable}))
        .collect();
    let not_loaded: Vec<_> =
        content.problems.iter().filter(|p| p.action.is_none()).map(|p| serde_json::json!({"path": p.path, "reason": p.reason})).collect();
    serde_json::json!({"packs": content.packs_on_disk(), "actions": actions, "not_loaded": not_loaded})
}

/// Prints each pack's actions (`ok` or `unavailable: reason`), then every file that was skipped.
fn report(content: &Content) {
    let mut pack = "";
    for action in content.catalog.actions().filter(|a| a.pack != "core") {
        if action.pack != pack {
            pack = &action.pack;
            let dir = content.pack_dir(pack).map(|d| d.display().to_string()).unwrap_or_default();
            println!("\n{pack} ({dir})");
        }
        match &action.unavailable {
            None => println!("  ok           {:<40} {}", action.ref_, action.runner_type),
            Some(reason) => println!("  unavailable  {:<40} {reason}", action.ref_),
        }
    }
    let skipped: Vec<_> = content.problems.iter().filter(|p| p.action.is_none()).collect();
    if !skipped.is_empty() {
        println!("\nnot loaded:");
        for problem in skipped {
            println!("  {problem}");
        }
    }
    let (ok, unavailable) = content.action_counts();
    let skipped = content.problems.iter().filter(|p| p.action.is_none()).count();
    println!("\n{} packs: {ok} actions runnable, {unavailable} unavailable, {skipped} files not loaded", content.packs_on_disk());
}
