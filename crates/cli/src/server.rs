//! `squall server`: wires storage, bus, runner and HTTP together and runs them until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use squall_bus::{Bus, JetStreamQueue, LocalBus, LocalQueue, NatsBus, NatsConnection, NatsSettings, WorkQueue};
use squall_core::sealed::SealingKey;
use squall_runner::cluster::{LeaseSettings, Membership};
use squall_runner::remote::SshSettings;
use squall_runner::{Content, RunnerSettings, Worker};
use squall_server::Listener;
use squall_server::auth::AuthSettings;
use squall_server::rbac::Rbac;
use squall_server::{AppState, NodeIdentity, ServerSettings, WireSettings};
use squall_store::{PgSettings, PgStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};
use crate::{Role, ServerArgs};

const DEFAULT_LISTEN: [&str; 3] = ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"];

pub fn main(args: ServerArgs, json_logs: bool) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("squall: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = json_logs || std::env::var("SQUALL_LOG_FORMAT").is_ok_and(|f| f == "json") || config.log.format == LogFormat::Json;
    init_logging(json, &config.log.level);
    crate::memory::tune_allocator();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("squall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("squall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: text, coloured only on a terminal and never with `NO_COLOR` set, or one
/// JSON object per line (`[log] format = "json"`, `--json`, `SQUALL_LOG_FORMAT=json`) for log
/// collectors. `SQUALL_LOG`, else `level`, filters them.
fn init_logging(json: bool, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQUALL_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().flatten_event(true).init();
    } else {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        logs.with_ansi(colour).init();
    }
}

/// The backends a node runs on: embedded (SQLite, in-process bus and queue) or distributed
/// (PostgreSQL and NATS).
struct Backends {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    queue: Arc<dyn WorkQueue>,
    distributed: bool,
}

impl Backends {
    async fn open(args: &ServerArgs, config: &Config) -> anyhow::Result<Backends> {
        let (Some(db_url), Some(nats_url)) = (&config.database.url, &config.messaging.url) else {
            if args.role != Role::All {
                anyhow::bail!(
                    "--role {} needs the distributed backends ([database] url and [messaging] url): the embedded ones live in one process",
                    args.role.as_str()
                );
            }
            let store = SqliteStore::open(&args.data_dir)
                .await
                .with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?;
            return Ok(Backends {
                store: Arc::new(store),
                bus: Arc::new(LocalBus::default()),
                queue: Arc::new(LocalQueue::default()),
                distributed: false,
            });
        };
        let settings =
            PgSettings { url: db_url.clone(), schema: config.database.schema.clone(), max_connections: config.database.pool_size };
        let store: Arc<dyn Store> = Arc::new(
            PgStore::connect(&settings)
                .await
                .with_context(|| format!("cannot use PostgreSQL at {}", squall_core::auth::redact_url(db_url)))?,
        );
        let m = &config.messaging;
        let nats = NatsSettings {
            url: nats_url.clone(),
            prefix: m.prefix.clone(),
            name: format!("squall {} on {}", args.role.as_str(), hostname()),
            tls_ca_file: m.tls_ca_file.clone(),
            tls_cert_file: m.tls_cert_file.clone(),
            tls_key_file: m.tls_key_file.clone(),
            tls_required: m.tls_required,
            credentials_file: m.credentials_file.clone(),
            token: m.token.clone(),
        };
        let conn = NatsConnection::connect(&nats).await?;
        let bus = Arc::new(NatsBus::start(conn.clone(), Arc::clone(&store)).await?);
        let queue = Arc::new(JetStreamQueue::start(conn).await?);
        tracing::info!(
            postgres = %squall_core::auth::redact_url(db_url),
            nats = %squall_core::auth::redact_url(nats_url),
            prefix = %m.prefix,
            "distributed backends"
        );
        Ok(Backends { store, bus, queue, distributed: true })
    }
}

/// The key that seals secrets: in a cluster every node must have the same, so it must be
/// configured; the embedded server makes its own in the data directory.
fn sealing_key(args: &ServerArgs, config: &Config, distributed: bool) -> anyhow::Result<SealingKey> {
    match (&config.keyvalue.encryption_key_path, distributed) {
        (Some(path), _) => crate::keyfile::load(path, false),
        (None, false) => crate::keyfile::load(&args.data_dir.join(crate::keyfile::DEFAULT_NAME), true),
        (None, true) => anyhow::bail!(
            "a cluster's nodes must share one encryption key for secret parameters: set [keyvalue] encryption_key_path \
             (create the file once with `squall key generate PATH` and give every node a copy)"
        ),
    }
}

fn runner_settings(config: &Config, api_url: String, sealing: SealingKey) -> RunnerSettings {
    RunnerSettings {
        pool_size: config.actionrunner.actions_pool_size,
        kill_grace: Duration::from_secs(config.actionrunner.kill_grace_period),
        stream_output: config.actionrunner.stream_output,
        result_max_bytes: config.actionrunner.result_max_bytes,
        api_url,
        env_allowlist: config.actionrunner.env_allowlist.clone(),
        mask_min_length: config.actionrunner.mask_min_length,
        max_output_bytes: config.actionrunner.max_output_bytes,
        service_token_ttl: config.auth.service_token_ttl,
        store_service_tokens: config.auth.enable,
        ssh: SshSettings {
            remote_dir: config.ssh_runner.remote_dir.clone(),
            allow_partial_failure: config.ssh_runner.allow_partial_failure,
            max_parallel: config.ssh_runner.max_parallel_actions,
            connect_timeout: Duration::from_secs(config.ssh_runner.ssh_connect_timeout),
            default_user: config.system_user.user.clone(),
            default_key_file: config.system_user.ssh_key_file.clone(),
            known_hosts: config.ssh_runner.known_hosts_file.clone(),
        },
        sealing,
        action_user: squall_runner::run_as::ActionUser::detect(&config.system_user.user),
    }
}

/// One line for what loaded, and one warning per pack file that did not load or cannot run.
fn log_content(content: &Content, base_paths: &str) {
    for problem in &content.problems {
        tracing::warn!("pack file {problem}");
    }
    let (runnable, unavailable) = content.action_counts();
    let cannot_run = match unavailable {
        0 => String::new(),
        n => format!(" and {n} that cannot run (`squall pack list` says why)"),
    };
    tracing::info!(
        "loaded {} packs with {runnable} actions{cannot_run} from {base_paths} (and the built-in core pack)",
        content.packs_on_disk()
    );
}

async fn run(args: ServerArgs, config: Config) -> anyhow::Result<()> {
    squall_server::metrics::install();
    let _lock = lock_data_dir(&args.data_dir)?;
    let Backends { store, bus, queue, distributed } = Backends::open(&args, &config).await?;
    let sealing = sealing_key(&args, &config, distributed)?;
    let content = Arc::new(Content::load(&config.content.paths()));
    log_content(&content, &config.content.packs_base_paths);
    let (serves_api, runs_actions) = (args.role != Role::Runner, args.role != Role::Api);

    let listeners = if serves_api { bind(&args).await? } else { Vec::new() };
    let addrs: Vec<(SocketAddr, bool)> = listeners.iter().filter_map(|l| Some((l.socket.local_addr().ok()?, l.stream_service))).collect();
    let api_addrs = || addrs.iter().filter(|(_, stream)| !stream).map(|(a, _)| a);
    let api_addr = api_addrs().find(|a| a.port() == 9101).or(api_addrs().next()).copied();
    let public_url = config.api.public_url.clone().unwrap_or_else(|| match api_addr {
        Some(a) => format!("http://{a}/v1"),
        None => "http://127.0.0.1:9101/v1".into(),
    });

    if runs_actions {
        let exe = std::env::current_exe().context("cannot find the squall binary to start its group keeper")?;
        squall_runner::keeper::install(&exe).context("cannot start the group keeper")?;
    }
    let worker = runs_actions.then(|| {
        let settings = runner_settings(&config, public_url.clone(), sealing.clone());
        Worker::new(Arc::clone(&store), Arc::clone(&bus), Arc::clone(&queue), Arc::clone(&content), settings)
    });
    let stop_work = CancellationToken::new();
    let membership = if distributed {
        let lease = LeaseSettings {
            heartbeat: Duration::from_secs(config.cluster.heartbeat_interval),
            ttl: Duration::from_secs(config.cluster.lease_ttl),
        };
        let membership = Membership::join(Arc::clone(&store), worker.clone(), args.role.roles(), lease).await?;
        membership.start(stop_work.clone());
        Some(membership)
    } else {
        if let Some(w) = &worker {
            w.recover().await.context("start-up recovery failed")?;
        }
        None
    };

    let stop_http = CancellationToken::new();
    let http = if serves_api {
        let mut rbac = Rbac::load(&config.rbac.definitions_path, config.rbac.enable, config.rbac.permission_isolation)
            .map_err(anyhow::Error::msg)
            .context("invalid RBAC definitions")?;
        rbac.assign_admin(ADMIN_USER);
        let state = Arc::new(AppState {
            store: Arc::clone(&store),
            bus: Arc::clone(&bus),
            queue: Arc::clone(&queue),
            catalog: Arc::new(content.catalog.clone()),
            settings: ServerSettings {
                wire: WireSettings { webui_base_url: config.webui.webui_base_url.clone() },
                heartbeat: Duration::from_secs(config.stream.heartbeat),
                credential_check: Duration::from_secs(config.stream.credential_check),
                public_api_url: public_url.clone(),
                max_page_size: config.api.max_page_size,
                node: NodeIdentity {
                    id: membership.as_ref().map(|m| m.node_id()),
                    roles: args.role.roles().to_string(),
                    store: if distributed { "postgres" } else { "sqlite" },
                    bus: if distributed { "nats" } else { "in-process" },
                },
            },
            auth: AuthSettings {
                enable: config.auth.enable,
                token_ttl: config.auth.token_ttl,
                service_token_ttl: config.auth.service_token_ttl,
                dev_user: config.system_user.user.clone(),
            },
            rbac,
            sealing,
            shutting_down: stop_work.clone(),
        });
        if config.auth.enable {
            ensure_admin(&*state.store, &args.data_dir).await?;
        } else {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED ([auth] enable = false): anyone who can reach this server acts as \"{}\" with admin rights. Use this for development only.",
                config.system_user.user
            );
        }
        spawn_garbage_collector(Arc::clone(&state.store), &config, stop_work.clone());
        let http =
            tokio::spawn(squall_server::serve(listeners, squall_server::router(state), config.api.connection_limits(), stop_http.clone()));
        for (a, stream) in &addrs {
            tracing::info!("listening on http://{a}{}", if *stream { " (stream service)" } else { "" });
        }
        Some(http)
    } else {
        if !args.listen.is_empty() || !args.stream_listen.is_empty() {
            tracing::warn!("--listen and --stream-listen are ignored with --role runner: runner nodes serve no HTTP");
        }
        None
    };
    if let Some(w) = &worker {
        w.start(stop_work.clone());
    }
    tracing::info!(role = args.role.as_str(), "squall is running");

    wait_for_signal().await?;
    let grace = if config.actionrunner.graceful_shutdown {
        Duration::from_secs(config.actionrunner.exit_still_active_check)
    } else {
        Duration::ZERO
    };
    tracing::info!(grace_seconds = grace.as_secs(), "shutting down: no new work is taken; running executions get the grace period");
    stop_work.cancel();
    if let Some(w) = &worker {
        let running = w.running_ids();
        if !running.is_empty() {
            tracing::info!(
                "waiting up to {} s for {} running executions to finish ({}); a second Ctrl-C or SIGTERM stops them now",
                grace.as_secs(),
                running.len(),
                running.join(", ")
            );
        }
        tokio::select! {
            () = w.shutdown(grace) => {}
            _ = wait_for_signal() => {
                tracing::warn!("second signal: stopping the running executions now; they end abandoned");
                w.shutdown(Duration::ZERO).await;
            }
        }
    }
    if let Some(m) = &membership {
        m.leave().await;
    }
    stop_http.cancel();
    if let Some(http) = http {
        // Long-lived streams end when the process exits; don't wait on them for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// Runs a retention pass every `collection_interval` (the first a few seconds after start).
fn spawn_garbage_collector(store: Arc<dyn Store>, config: &Config, stop: CancellationToken) {
    let gc = config.garbagecollector.clone();
    let policy = gc.policy();
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let now = squall_core::Timestamp::now();
            match squall_store::retention::collect(&*store, &policy, now, Duration::from_secs(gc.sleep_delay)).await {
                Ok(p) if p.executions + p.outputs > 0 => {
                    tracing::info!(executions = p.executions, outputs = p.outputs, "garbage collection")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "garbage collection failed; will retry"),
            }
            next = tokio::time::Instant::now() + Duration::from_secs(gc.collection_interval);
        }
    });
}

/// The administrator created on first start.
const ADMIN_USER: &str = "st2admin";

/// Creates `st2admin` on first start, with `SQUALL_ADMIN_PASSWORD` or a random password that is
/// written to `<data-dir>/initial-admin-password` (mode 0600) and printed once.
async fn ensure_admin(store: &dyn Store, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if store.user(ADMIN_USER).await?.is_some() {
        return Ok(());
    }
    let (password, generated) = match std::env::var("SQUALL_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (squall_core::auth::new_secret(), true),
    };
    let hash = squall_server::credentials::hash_password(&password);
    if !store.create_user(ADMIN_USER, &hash).await? {
        return Ok(()); // another node created it first
    }
    if generated {
        use std::io::{IsTerminal, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join("initial-admin-password");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{password}")?;
        // On a terminal the operator sees it once; a log (a file, the journal) never holds it.
        if std::io::stderr().is_terminal() {
            eprintln!(
                "\nCreated user {ADMIN_USER} with password {password}\n(also saved in {}; this is shown only once)\n",
                path.display()
            );
        } else {
            tracing::warn!("created user {ADMIN_USER} with a generated password, saved in {} (mode 0600)", path.display());
        }
    } else {
        tracing::info!("created user {ADMIN_USER} with the password from SQUALL_ADMIN_PASSWORD");
    }
    Ok(())
}

/// Holds `<data-dir>/server.lock` while the server runs: a second server on the same data
/// directory would take the first one's running executions for dead and mark them abandoned.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "another squall server (pid {}) is using the data directory {}; stop it, or give this server its own --data-dir",
                pid.trim(),
                dir.display()
            )
        }
        Err((_, e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

async fn bind(args: &ServerArgs) -> anyhow::Result<Vec<Listener>> {
    let defaults = args.listen.is_empty() && args.stream_listen.is_empty();
    let plain: Vec<&str> = if defaults { DEFAULT_LISTEN.to_vec() } else { args.listen.iter().map(String::as_str).collect() };
    let port_9102_is_stream = args.stream_listen.is_empty();
    let mut listeners = Vec::new();
    for (addr, option, explicit_stream) in
        plain.iter().map(|a| (*a, "--listen", false)).chain(args.stream_listen.iter().map(|a| (a.as_str(), "--stream-listen", true)))
    {
        let parsed: SocketAddr = addr.parse().with_context(|| format!("{option} {addr}: expected ADDR:PORT, e.g. 127.0.0.1:9101"))?;
        let socket =
            TcpListener::bind(parsed).await.with_context(|| format!("cannot listen on {addr} (is another server running there?)"))?;
        let stream_service = explicit_stream || (port_9102_is_stream && parsed.port() == 9102);
        listeners.push(Listener { socket, stream_service });
    }
    Ok(listeners)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
