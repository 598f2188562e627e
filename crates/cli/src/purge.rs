//! `squall purge executions|output`: retention by hand, on the data directory, in the same
//! bounded batches the server's garbage collector uses.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use squall_core::Timestamp;
use squall_store::retention;
use squall_store::{PurgeScope, SqliteStore, Store};

/// What to purge.
#[derive(clap::Subcommand)]
pub enum PurgeCommand {
    /// Delete executions (and their output) that ended more than DURATION ago.
    Executions {
        #[command(flatten)]
        common: PurgeArgs,
        /// Also delete executions in any unfinished state that started more than DURATION ago
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        include_running_older_than: Option<Duration>,
    },
    /// Delete only the output of executions that ended more than DURATION ago.
    Output {
        #[command(flatten)]
        common: PurgeArgs,
    },
}

#[derive(clap::Args)]
pub struct PurgeArgs {
    /// Age, e.g. 30d, 12h, 1w2d, 90m; 0s for everything that has ended
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Duration,
    /// Only this action (pack.name) or pack
    #[arg(long)]
    action: Option<String>,
    /// Print how many would go, change nothing
    #[arg(long)]
    dry_run: bool,
    /// The server's data directory
    #[arg(long, env = "SQUALL_DATA_DIR", hide_env_values = true, default_value = "./squall-data")]
    data_dir: PathBuf,
}

/// `30d`, `12h`, `1w2d`, `90m`, `45s`: whole numbers of units; `0s` means "now" (everything
/// that has ended).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("\"{text}\" is not a duration: use a number with a unit, e.g. 30d, 12h, 1w2d, 90m, 45s");
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// The store of an existing data directory: a missing one is an error, never created.
pub async fn open_existing(data_dir: &std::path::Path) -> Result<SqliteStore, String> {
    if !data_dir.join("squall.db").is_file() {
        return Err(format!(
            "no squall data directory at {} (no squall.db there); name it with --data-dir or SQUALL_DATA_DIR",
            data_dir.display()
        ));
    }
    SqliteStore::open(data_dir).await.map_err(|e| format!("cannot open the database in {}: {e}", data_dir.display()))
}

fn before(age: Duration) -> Timestamp {
    Timestamp(Timestamp::now().micros() - age.as_micros() as i64)
}

pub fn main(cmd: PurgeCommand, json: bool) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cmd, json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("squall: {e}");
            ExitCode::from(crate::client::exit::ERROR)
        }
    }
}

async fn run(cmd: PurgeCommand, json: bool) -> Result<(), String> {
    let (common, running, output_only) = match cmd {
        PurgeCommand::Executions { common, include_running_older_than } => (common, include_running_older_than, false),
        PurgeCommand::Output { common } => (common, None, true),
    };
    let store = open_existing(&common.data_dir).await?;
    let scope = PurgeScope {
        ended_before: Some(before(common.older_than)),
        unfinished_started_before: running.map(before),
        with_output: output_only,
        only: common.action.into_iter().collect(),
        except: Vec::new(),
    };
    let what = if output_only { "executions' output" } else { "executions" };
    let total = retention::count(&store, &scope).await.map_err(|e| e.to_string())?;
    let kind = if output_only { "output" } else { "executions" };
    if common.dry_run {
        let outcome = serde_json::json!({"purge": kind, "dry_run": true, "would_purge": total});
        crate::client::render::done(json, outcome, format!("{total} {what} would be purged"));
        return Ok(());
    }
    let show = std::io::stderr().is_terminal();
    let mut progress = move |done: u64| {
        if show {
            let width = 30;
            let filled = (done * width / total.max(1)) as usize;
            eprint!("\r[{}{}] {done}/{total} {what}", "#".repeat(filled), " ".repeat(width as usize - filled.min(width as usize)));
            let _ = std::io::stderr().flush();
        }
    };
    let done = if output_only {
        retention::purge_output(&store, &scope, &mut progress).await
    } else {
        retention::purge_executions(&store, &scope, &mut progress).await
    }
    .map_err(|e| e.to_string())?;
    store.reclaim_space().await.map_err(|e| e.to_string())?;
    if show {
        eprintln!();
    }
    let outcome = serde_json::json!({"purge": kind, "dry_run": false, "purged": done});
    crate::client::render::done(json, outcome, format!("purged {done} {what}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("1w2d").unwrap(), Duration::from_secs(9 * 86_400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO, "everything that has ended");
        for bad in ["", "-3d", "10", "3x", "d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
