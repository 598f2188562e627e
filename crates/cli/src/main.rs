//! The `squall` binary.

mod config;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// squall runs automation actions and streams their output live. It speaks StackStorm's API,
/// so the `st2` CLI works against it.
#[derive(Parser)]
#[command(name = "squall", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: API, stream and runner in one process, on embedded storage.
    Server(ServerArgs),
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the database lives; created on first start.
    #[arg(long, env = "SQUALL_DATA_DIR", default_value = "./squall-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (repeatable). Replaces the defaults 127.0.0.1:9100, :9101 and :9102.
    /// Port 0 picks a free port; the chosen addresses are logged.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Configuration file (TOML, st2.conf section and option names).
    #[arg(long, env = "SQUALL_CONFIG")]
    pub config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::main(args),
    }
}
