//! `squall server`: wires storage, bus, runner and HTTP together and runs them until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use squall_bus::{Bus, LocalBus, LocalQueue, WorkQueue};
use squall_runner::{Content, RunnerSettings, Worker};
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
            api_url: public_url,
            env_allowlist: config.actionrunner.env_allowlist.clone(),
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
            dev_user: config.system_user.user.clone(),
        },
    });
    tracing::warn!("authentication is not available yet: every request acts as \"{}\" with admin rights", config.system_user.user);

    let stop_work = CancellationToken::new();
    let stop_http = CancellationToken::new();
    worker.start(stop_work.clone());
    let http = tokio::spawn(squall_server::serve(listeners, squall_server::router(state), stop_http.clone()));
    for a in &addrs {
        tracing::info!("listening on http://{a}");
    }

    wait_for_signal().await?;
    let grace = if config.actionrunner.graceful_shutdown { Duration::from_secs(config.actionrunner.exit_still_active_check) } else { Duration::ZERO };
    tracing::info!(grace_seconds = grace.as_secs(), "shutting down: no new work is taken; running executions get the grace period");
    stop_work.cancel();
    worker.shutdown(grace).await;
    stop_http.cancel();
    // Long-lived streams end when the process exits; don't wait on them for long.
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(listen: &[String]) -> anyhow::Result<Vec<TcpListener>> {
    let wanted: Vec<&str> = if listen.is_empty() { DEFAULT_LISTEN.to_vec() } else { listen.iter().map(String::as_str).collect() };
    let mut listeners = Vec::new();
    for addr in wanted {
        let parsed: SocketAddr = addr.parse().with_context(|| format!("--listen {addr}: expected ADDR:PORT, e.g. 127.0.0.1:9101"))?;
        let listener = TcpListener::bind(parsed).await.with_context(|| format!("cannot listen on {addr} (is another server running there?)"))?;
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
