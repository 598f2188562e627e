//! `squall server`: wires storage, bus, runner and HTTP together and runs them until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use squall_bus::{Bus, LocalBus, LocalQueue, WorkQueue};
use squall_runner::remote::SshSettings;
use squall_runner::{Content, RunnerSettings, Worker};
use squall_server::auth::AuthSettings;
use squall_server::rbac::Rbac;
use squall_server::{AppState, ServerSettings, WireSettings};
use squall_store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::ServerArgs;
use crate::config::Config;

const DEFAULT_LISTEN: [&str; 3] = ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"];

pub fn main(args: ServerArgs) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("squall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("squall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQUALL_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref()).map_err(anyhow::Error::msg).context("invalid configuration")?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&args.data_dir).await.with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?,
    );
    let sealing = match &config.keyvalue.encryption_key_path {
        Some(path) => crate::keyfile::load(path, false)?,
        None => crate::keyfile::load(&args.data_dir.join(crate::keyfile::DEFAULT_NAME), true)?,
    };
    let content = Arc::new(Content::load(&config.content.paths()).context("cannot load packs")?);
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::default());
    let queue: Arc<dyn WorkQueue> = Arc::new(LocalQueue::default());

    let listeners = bind(&args.listen).await?;
    let addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let api_addr = addrs.iter().find(|a| a.port() == 9101).or(addrs.first()).copied();
    let public_url = config.api.public_url.clone().unwrap_or_else(|| match api_addr {
        Some(a) => format!("http://{a}/v1"),
        None => "http://127.0.0.1:9101/v1".into(),
    });

    let mut rbac = Rbac::load(&config.rbac.definitions_path, config.rbac.enable, config.rbac.permission_isolation)
        .map_err(anyhow::Error::msg)
        .context("invalid RBAC definitions")?;
    rbac.assign_admin(ADMIN_USER);

    let worker = Worker::new(
        Arc::clone(&store),
        Arc::clone(&bus),
        Arc::clone(&queue),
        Arc::clone(&content),
        RunnerSettings {
            pool_size: config.actionrunner.actions_pool_size,
            kill_grace: Duration::from_secs(config.actionrunner.kill_grace_period),
            stream_output: config.actionrunner.stream_output,
            result_max_bytes: config.actionrunner.result_max_bytes,
            api_url: public_url.clone(),
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
            sealing: sealing.clone(),
        },
    );
    worker.recover().await.context("start-up recovery failed")?;

    let state = Arc::new(AppState {
        store,
        bus,
        queue,
        catalog: Arc::new(content.catalog.clone()),
        settings: ServerSettings {
            wire: WireSettings { webui_base_url: config.webui.webui_base_url.clone() },
            heartbeat: Duration::from_secs(config.stream.heartbeat),
            public_api_url: public_url.clone(),
        },
        auth: AuthSettings {
            enable: config.auth.enable,
            token_ttl: config.auth.token_ttl,
            service_token_ttl: config.auth.service_token_ttl,
            dev_user: config.system_user.user.clone(),
        },
        rbac,
        sealing,
    });
    if config.auth.enable {
        ensure_admin(&*state.store, &args.data_dir).await?;
    } else {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED ([auth] enable = false): anyone who can reach this server acts as \"{}\" with admin rights. Use this for development only.",
            config.system_user.user
        );
    }

    let stop_work = CancellationToken::new();
    let stop_http = CancellationToken::new();
    worker.start(stop_work.clone());
    spawn_garbage_collector(Arc::clone(&state.store), &config, stop_work.clone());
    let http = tokio::spawn(squall_server::serve(listeners, squall_server::router(state), stop_http.clone()));
    for a in &addrs {
        tracing::info!("listening on http://{a}");
    }

    wait_for_signal().await?;
    let grace = if config.actionrunner.graceful_shutdown {
        Duration::from_secs(config.actionrunner.exit_still_active_check)
    } else {
        Duration::ZERO
    };
    tracing::info!(grace_seconds = grace.as_secs(), "shutting down: no new work is taken; running executions get the grace period");
    stop_work.cancel();
    worker.shutdown(grace).await;
    stop_http.cancel();
    // Long-lived streams end when the process exits; don't wait on them for long.
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    tracing::info!("stopped");
    Ok(())
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
    store.put_user(ADMIN_USER, Some(&hash)).await?;
    if generated {
        use std::io::Write;
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
        eprintln!("\nCreated user {ADMIN_USER} with password {password}\n(also saved in {}; this is shown only once)\n", path.display());
    } else {
        tracing::info!("created user {ADMIN_USER} with the password from SQUALL_ADMIN_PASSWORD");
    }
    Ok(())
}

async fn bind(listen: &[String]) -> anyhow::Result<Vec<TcpListener>> {
    let wanted: Vec<&str> = if listen.is_empty() { DEFAULT_LISTEN.to_vec() } else { listen.iter().map(String::as_str).collect() };
    let mut listeners = Vec::new();
    for addr in wanted {
        let parsed: SocketAddr = addr.parse().with_context(|| format!("--listen {addr}: expected ADDR:PORT, e.g. 127.0.0.1:9101"))?;
        let listener =
            TcpListener::bind(parsed).await.with_context(|| format!("cannot listen on {addr} (is another server running there?)"))?;
        listeners.push(listener);
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
