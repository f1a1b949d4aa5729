//! berthd: the Berth daemon. Serves the Docker Engine API (the part that berth-engine implements) on unix sockets
//! and, optionally, TCP with TLS and client certificates.
//!
//! The runtime is tokio's multi-threaded one with two workers: the API work is I/O-bound, the CPU-heavy parts of a
//! pull (hashing, decompression, unpacking) run on the blocking pool, and two workers keep the idle footprint small
//! (see `bench/daemon.sh`).

mod api;
mod config;
mod listen;
mod pidfile;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use anyhow::Context as _;
use axum::ServiceExt as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tower::Layer as _;

use crate::config::{Config, Flags, Host};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_name("berthd")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(config));
    // Streams still open after the grace period are dropped here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berthd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTHD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if config.log_json {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// A binary berthd runs: next to berthd itself (an install or a cargo build puts them together), else on PATH.
fn helper_binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    anyhow::bail!("cannot find {name} next to berthd or on PATH; install it with berthd")
}

async fn run(config: Config) -> anyhow::Result<()> {
    let pidfile = pidfile::PidFile::take(&config.pidfile)?;
    let engine = berth_engine::Engine::open(berth_engine::EngineConfig {
        data_root: config.data_root.clone(),
        insecure_registries: config.insecure_registries.clone(),
        debug: config.debug,
        exec_root: config.exec_root.clone(),
        runtime: helper_binary("berth-runtime")?,
        monitor: helper_binary("berth-monitor")?,
        init: helper_binary("berth-init")?,
        cgroup_parent: config.cgroup_parent.clone(),
        userns_remap: config.userns_remap.clone(),
        bridge: config.bridge.clone(),
        bip: config.bip.clone(),
        mtu: config.mtu,
        address_pools: config
            .default_address_pools
            .iter()
            .map(|p| (p.base.clone(), p.size))
            .collect(),
        resolv_conf: std::env::var_os("BERTH_RESOLV_CONF").map_or_else(
            || std::path::PathBuf::from("/etc/resolv.conf"),
            std::path::PathBuf::from,
        ),
    })
    .await
    .context("cannot open the engine")?;
    let shutdown = CancellationToken::new();
    let state = api::AppState {
        engine: Arc::new(engine),
        shutdown: shutdown.clone(),
        event_listeners: Arc::new(AtomicI64::new(0)),
    };
    let app = axum::middleware::from_fn(api::negotiate).layer(api::router(state.clone()));

    let gid = match &config.group {
        Some(g) => Some(listen::group_id(g).with_context(|| format!("the group {g:?} does not exist"))?),
        None => listen::group_id("berth").or_else(|| listen::group_id("docker")),
    };
    let tls = config.tls.as_ref().map(listen::tls_acceptor).transpose()?;
    let mut servers = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for host in &config.hosts {
        let app = app.clone();
        let stop = shutdown.clone().cancelled_owned();
        match host {
            Host::Unix(path) => {
                let (l, guard) = listen::bind_unix(path, gid).await?;
                sockets.push(guard);
                tracing::info!(socket = %path.display(), "API listening");
                servers.spawn(async move {
                    axum::serve(l, app.into_make_service())
                        .with_graceful_shutdown(stop)
                        .await
                });
            }
            Host::Tcp(addr) => {
                let l = listen::bind_tcp(addr).await?;
                let local = l
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| addr.clone());
                match &tls {
                    Some(acceptor) => {
                        tracing::info!(addr = %local, client_certs = config.tls.as_ref().is_some_and(|t| t.ca.is_some()), "API listening with TLS");
                        let l = listen::TlsListener::new(l, acceptor.clone())?;
                        servers.spawn(async move {
                            axum::serve(l, app.into_make_service())
                                .with_graceful_shutdown(stop)
                                .await
                        });
                    }
                    None => {
                        tracing::warn!(addr = %local, "API listening on plain TCP (loopback only)");
                        servers.spawn(async move {
                            axum::serve(l, app.into_make_service())
                                .with_graceful_shutdown(stop)
                                .await
                        });
                    }
                }
            }
        }
    }
    state.engine.events().publish(berth_engine::events::Event::new(
        "daemon",
        "start",
        state.engine.id(),
        &[("name", &berth_engine::system::hostname())],
    ));
    tracing::info!(version = berth_engine::system::VERSION, api = berth_engine::system::API_VERSION, data_root = %config.data_root.display(), pid = std::process::id(), "berthd started");

    let why = wait_for_signal(&mut servers).await?;
    tracing::info!(reason = why, "shutting down");
    shutdown.cancel();
    let drain = async {
        while let Some(r) = servers.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a listener ended with an error"),
                Err(e) => tracing::warn!(error = %e, "a listener task failed"),
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 10 s; closing them");
        servers.abort_all();
    }
    drop(sockets);
    drop(pidfile);
    tracing::info!("berthd stopped");
    Ok(())
}

async fn wait_for_signal(
    servers: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
        r = servers.join_next() => match r {
            Some(Ok(Err(e))) => Err(anyhow::anyhow!("a listener failed: {e}")),
            Some(Err(e)) => Err(anyhow::anyhow!("a listener task failed: {e}")),
            _ => Err(anyhow::anyhow!("a listener stopped")),
        },
    }
}
