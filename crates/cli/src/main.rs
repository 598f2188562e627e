//! The `squall` binary.

mod client;
mod config;
mod keyfile;
mod memory;
mod pack;
mod purge;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// squall runs automation actions and streams their output live. It speaks StackStorm's API,
/// so the `st2` CLI works against it.
///
/// Exit codes of `run` and `execution tail`: 0 succeeded, 1 failed, 3 timeout, 4 canceled,
/// 5 abandoned; 2 for bad usage and 6 when the request itself failed (server unreachable,
/// unknown action or id, bad parameter, missing credentials).
///
/// Credentials: SQUALL_AUTH_TOKEN, else SQUALL_API_KEY, else the token cached by `squall login`.
#[derive(Parser)]
#[command(name = "squall", version, about, long_about = None)]
struct Cli {
    /// Server URL [env: SQUALL_URL; else `url` in ~/.config/squall/config.toml; default http://127.0.0.1:9101]
    #[arg(long, global = true)]
    url: Option<String>,
    /// Machine-readable output: one JSON document, or for `tail` one JSON object per record and
    /// line; `server` logs JSON lines. Human messages still go to stderr.
    #[arg(long, short = 'j', global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The version of this squall, with the commit it was built from.
    Version,
    /// Run the server: API, stream and runner in one process on embedded storage, or one node of
    /// a cluster on PostgreSQL and NATS (`--role`).
    Server(ServerArgs),
    /// Run an action: `squall run core.local cmd='uname -a'` (or `squall run core.local uname -a`).
    Run {
        /// Action reference, e.g. core.local
        action: String,
        #[command(flatten)]
        options: RunOptions,
    },
    /// Inspect and control executions.
    #[command(subcommand)]
    Execution(ExecutionCommand),
    /// List and describe actions.
    #[command(subcommand)]
    Action(ActionCommand),
    /// Log in to the server: caches its token (mode 0600) in ~/.config/squall/token.json, one
    /// per server; a token is only sent to the server that issued it. The password is read from
    /// stdin, or prompted for without echo on a terminal.
    Login {
        /// The user to log in as
        user: String,
        /// Token lifetime in seconds (at most the server's [auth] token_ttl)
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Forget the token cached for the server.
    Logout {
        /// Forget the tokens of every server
        #[arg(long)]
        all: bool,
    },
    /// Who the server thinks you are.
    Whoami,
    /// Manage API keys (stored hashed; a key is shown only when created).
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Manage local users, directly in the server's data directory.
    #[command(subcommand)]
    User(UserCommand),
    /// Benchmark a scenario against its own temporary server: `squall bench ingest --json`.
    Bench(squall_bench::BenchArgs),
    /// Delete old executions or their output now, on the data directory.
    #[command(subcommand)]
    Purge(purge::PurgeCommand),
    /// The key that seals secret parameter values at rest.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Packs on disk: what loads and runs, what does not and why (no server needed).
    #[command(subcommand)]
    Pack(pack::PackCommand),
    /// Print a shell completion script: `squall completion bash > /etc/bash_completion.d/squall`.
    Completion {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new random key (mode 0600) to PATH, for `[keyvalue] encryption_key_path`. Give
    /// every node of a cluster the same file. An existing file is never replaced.
    Generate {
        /// Where to write the key
        path: PathBuf,
    },
}

/// `--mine`: `last` means the caller's own newest execution rather than anyone's.
#[derive(clap::Args)]
struct Mine {
    /// Your own newest execution instead of the id (`last` is the newest by anyone)
    #[arg(long)]
    mine: bool,
}

/// How `run` and `re-run` take parameters and wait.
#[derive(clap::Args)]
struct RunOptions {
    /// Parameters as key=value; words without `=` form `cmd` (put them after `--` if they start with `-`)
    #[arg(value_name = "KEY=VALUE")]
    parameters: Vec<String>,
    /// Print the execution id and return at once
    #[arg(long = "async", short = 'a', conflicts_with = "tail")]
    asynchronous: bool,
    /// Stream the output live while it runs
    #[arg(long)]
    tail: bool,
}

impl RunOptions {
    fn wait(&self) -> client::execution::Wait {
        use client::execution::Wait;
        match (self.asynchronous, self.tail) {
            (true, _) => Wait::Async,
            (_, true) => Wait::Tail,
            _ => Wait::Result,
        }
    }
}

#[derive(Subcommand)]
enum ExecutionCommand {
    /// The most recent executions, newest last.
    List {
        /// How many
        #[arg(short = 'n', long = "limit", default_value_t = 20)]
        n: u32,
        /// Only this status
        #[arg(long, value_parser = [
            "requested", "scheduled", "delayed", "running", "canceling",
            "succeeded", "failed", "timeout", "canceled", "abandoned",
        ])]
        status: Option<String>,
        /// Only this action
        #[arg(long)]
        action: Option<String>,
        /// Only executions you started
        #[arg(long)]
        mine: bool,
    },
    /// One execution (`last` for the newest).
    Get {
        /// Execution id, or `last` (the newest, by anyone)
        id: String,
        /// Show the status history too
        #[arg(long, short = 'd')]
        detail: bool,
    },
    /// Cancel an execution; its whole process group is stopped.
    Cancel {
        /// Execution id, or `last` (the newest, by anyone)
        #[arg(default_value = "last")]
        id: String,
        #[command(flatten)]
        mine: Mine,
    },
    /// Run an execution again, optionally overriding parameters.
    #[command(name = "re-run")]
    ReRun {
        /// Execution id, or `last` (the newest, by anyone)
        id: String,
        #[command(flatten)]
        mine: Mine,
        #[command(flatten)]
        options: RunOptions,
    },
    /// The stored output so far, byte-exact (does not wait). With --json: one object whose
    /// `data` is the output as text.
    Output {
        /// Execution id, or `last` (the newest, by anyone)
        id: String,
        /// Only this stream (it goes to stdout)
        #[arg(long = "type", value_parser = ["stdout", "stderr"])]
        kind: Option<String>,
        /// Only the output of this remote host (remote runners)
        #[arg(long)]
        host: Option<String>,
    },
    /// Everything so far, then live output until the execution completes. The action's stdout
    /// goes to stdout and its stderr to stderr; status lines go to stderr.
    Tail {
        /// Execution id, or `last` (the newest, by anyone)
        #[arg(default_value = "last")]
        id: String,
        #[command(flatten)]
        mine: Mine,
        /// Only this stream (it goes to stdout)
        #[arg(long = "type", value_parser = ["stdout", "stderr"])]
        kind: Option<String>,
        /// Only the output of this remote host (remote runners)
        #[arg(long)]
        host: Option<String>,
        /// Prefix each record with [timestamp][stream], and [host] for remote runners
        #[arg(long)]
        include_metadata: bool,
        /// Prefix each line with the time it was recorded
        #[arg(long)]
        timestamps: bool,
        /// Only output produced from now on (StackStorm's tail behaviour)
        #[arg(long)]
        only_new: bool,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key (for yourself, or for --user if you are an admin); prints the key.
    Create {
        /// The user the key is for (admins only; default: you)
        #[arg(long)]
        user: Option<String>,
    },
    /// Your keys (every key for an admin).
    List,
    /// Let a key authenticate again.
    Enable {
        /// The key's id (`squall apikey list`)
        id: String,
    },
    /// Stop a key from authenticating (it stays listed).
    Disable {
        /// The key's id (`squall apikey list`)
        id: String,
    },
    /// Remove a key.
    Delete {
        /// The key's id (`squall apikey list`)
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin or prompted for.
    Add {
        /// The user's name
        name: String,
        /// The server's data directory
        #[arg(long, env = "SQUALL_DATA_DIR", hide_env_values = true, default_value = "./squall-data")]
        data_dir: PathBuf,
    },
    /// Change a user's password.
    Passwd {
        /// The user's name
        name: String,
        /// The server's data directory
        #[arg(long, env = "SQUALL_DATA_DIR", hide_env_values = true, default_value = "./squall-data")]
        data_dir: PathBuf,
    },
    /// Remove a user with their tokens and API keys.
    Remove {
        /// The user's name
        name: String,
        /// The server's data directory
        #[arg(long, env = "SQUALL_DATA_DIR", hide_env_values = true, default_value = "./squall-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ActionCommand {
    /// Actions, sorted by pack and name.
    List {
        /// Only this pack's actions
        #[arg(long, short = 'p')]
        pack: Option<String>,
    },
    /// One action and its parameters.
    Get {
        /// Action reference, e.g. core.local
        reference: String,
    },
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where the database lives; created on first start.
    #[arg(long, env = "SQUALL_DATA_DIR", hide_env_values = true, default_value = "./squall-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (repeatable). With this or --stream-listen, only the addresses given
    /// are served; the defaults are 127.0.0.1:9100, :9101 and :9102 (the stream service).
    /// Port 0 picks a free port; the chosen addresses are logged.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Address of the stream service (repeatable), as st2stream: there `/v1/executions/ID/output`
    /// is the live SSE stream rather than plain text. Without it, a listener on port 9102 is the
    /// stream service, as in StackStorm.
    #[arg(long = "stream-listen", value_name = "ADDR:PORT")]
    pub stream_listen: Vec<String>,
    /// Configuration file (TOML, st2.conf section and option names).
    #[arg(long, env = "SQUALL_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// What this node does: `api` serves the REST API, auth and streams; `runner` runs
    /// executions; `all` both. `api` and `runner` need the distributed backends ([database]
    /// and [messaging]); any mix runs on any number of nodes.
    #[arg(long, value_enum, default_value_t = Role::All, env = "SQUALL_ROLE", hide_env_values = true)]
    pub role: Role,
}

/// A server node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Api,
    Runner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Runner => "runner",
        }
    }

    /// The roles as the node registry lists them.
    pub fn roles(self) -> &'static str {
        match self {
            Role::All => "api,runner",
            Role::Api => "api",
            Role::Runner => "runner",
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == squall_runner::keeper::SUBCOMMAND) {
        squall_runner::keeper::keeper_main();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::main(args, cli.json),
        Command::Version => {
            let (version, commit) = (env!("CARGO_PKG_VERSION"), option_env!("SQUALL_COMMIT").unwrap_or("commit unknown"));
            if cli.json {
                client::render::json(&serde_json::json!({"version": version, "commit": commit}));
            } else {
                println!("squall {version} ({commit})");
            }
            ExitCode::SUCCESS
        }
        Command::Bench(mut args) => {
            args.json |= cli.json;
            squall_bench::main(args)
        }
        Command::Purge(cmd) => purge::main(cmd, cli.json),
        Command::Pack(cmd) => pack::main(cmd, cli.json),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "squall", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Key(KeyCommand::Generate { path }) => match keyfile::generate(&path) {
            Ok(()) => {
                if cli.json {
                    client::render::json(&serde_json::json!({"written": path}));
                } else {
                    println!("wrote a new encryption key to {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("squall: {e:#}");
                ExitCode::from(client::exit::ERROR)
            }
        },
        command => client_main(cli.url, cli.json, command),
    }
}

fn client_main(url: Option<String>, json: bool, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("squall: cannot start the async runtime: {e}");
            return ExitCode::from(client::exit::ERROR);
        }
    };
    match runtime.block_on(run_client(url, json, command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("squall: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

async fn run_client(url: Option<String>, json: bool, command: Command) -> client::CliResult<u8> {
    use client::execution;
    use client::{action, auth, tail};
    if let Command::User(cmd) = &command {
        return match cmd {
            UserCommand::Add { name, data_dir } => auth::user_admin(data_dir, "add", name, json).await,
            UserCommand::Passwd { name, data_dir } => auth::user_admin(data_dir, "passwd", name, json).await,
            UserCommand::Remove { name, data_dir } => auth::user_admin(data_dir, "remove", name, json).await,
        };
    }
    let api = client::Api::new(&client::resolve_url(url)?)?;
    match command {
        Command::Server(_)
        | Command::Bench(_)
        | Command::Purge(_)
        | Command::Pack(_)
        | Command::Key(_)
        | Command::Version
        | Command::Completion { .. } => {
            unreachable!("handled in main")
        }
        Command::Run { action, options } => execution::run(&api, &action, &options.parameters, options.wait(), json).await,
        Command::Execution(ExecutionCommand::List { n, status, action, mine }) => {
            execution::list(&api, n, status, action, mine, json).await
        }
        Command::Execution(ExecutionCommand::Get { id, detail }) => execution::get(&api, &id, json, detail).await,
        Command::Execution(ExecutionCommand::Cancel { id, mine }) => {
            execution::cancel(&api, &client::pick(&api, &id, mine.mine).await?, json).await
        }
        Command::Execution(ExecutionCommand::ReRun { id, mine, options }) => {
            let id = client::pick(&api, &id, mine.mine).await?;
            execution::rerun(&api, &id, &options.parameters, options.wait(), json).await
        }
        Command::Execution(ExecutionCommand::Output { id, kind, host }) => {
            execution::output(&api, &id, kind.as_deref(), host.as_deref(), json).await
        }
        Command::Execution(ExecutionCommand::Tail { id, mine, kind, host, include_metadata, timestamps, only_new }) => {
            let id = client::pick(&api, &id, mine.mine).await?;
            tail::tail(&api, &id, &tail::TailOptions { kind, host, include_metadata, timestamps, only_new, json }).await
        }
        Command::Action(ActionCommand::List { pack }) => action::list(&api, pack, json).await,
        Command::Action(ActionCommand::Get { reference }) => action::get(&api, &reference, json).await,
        Command::Login { user, ttl } => auth::login(&api, &user, ttl, json).await,
        Command::Logout { all } => auth::logout(&api, all, json),
        Command::Whoami => auth::whoami(&api, json).await,
        Command::Apikey(ApikeyCommand::Create { user }) => auth::apikey_create(&api, user, json).await,
        Command::Apikey(ApikeyCommand::List) => auth::apikey_list(&api, json).await,
        Command::Apikey(ApikeyCommand::Enable { id }) => auth::apikey_enable(&api, &id, true, json).await,
        Command::Apikey(ApikeyCommand::Disable { id }) => auth::apikey_enable(&api, &id, false, json).await,
        Command::Apikey(ApikeyCommand::Delete { id }) => auth::apikey_delete(&api, &id, json).await,
        Command::User(_) => unreachable!("handled above"),
    }
}
