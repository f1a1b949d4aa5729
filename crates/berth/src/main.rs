//! `berth`: the Berth CLI, with docker's commands, flags, output and exit codes (125 for usage errors, 1 when the
//! daemon or the command fails, as the docker CLI). It talks to berthd (or any Docker Engine API) over the socket
//! chosen by `-H`, `--context`, `BERTH_HOST`, `DOCKER_HOST`, `BERTH_CONTEXT`/`DOCKER_CONTEXT` or the current
//! context, in that order.
//!
//! The HTTP side is hyper's HTTP/1 client over a unix socket, TCP or rustls (see `client`), not bollard: the CLI
//! needs the raw JSON of responses (`--format` templates see every field the daemon sends, also ones a typed
//! client drops), streams bodies both ways (load, import, save, pull progress, events) and prints docker's errors
//! as they come; that is a few hundred lines over crates the daemon already uses, where bollard would add its own
//! TLS stack and a typed model we would convert back to JSON.

mod client;
mod cmd;
mod config;
mod format;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::client::{Client, Endpoint, TlsOptions};

/// The default daemon socket.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Global options (before the command, as docker's).
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Daemon socket to connect to (unix:///path or tcp://host:port).
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Name of the context to use (overrides BERTH_HOST, DOCKER_HOST and the current context).
    #[arg(short = 'c', long = "context", value_name = "NAME")]
    pub context: Option<String>,
    /// Location of the client config files (default ~/.berth, or BERTH_CONFIG).
    #[arg(long = "config", value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Use TLS; implied by --tlsverify.
    #[arg(long = "tls")]
    pub tls: bool,
    /// Use TLS and verify the daemon's certificate.
    #[arg(long = "tlsverify")]
    pub tlsverify: bool,
    /// Trust certs signed only by this CA (default <config>/ca.pem).
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Path to the TLS certificate file (default <config>/cert.pem).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Path to the TLS key file (default <config>/key.pem).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Enable debug output.
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Set the logging level (accepted for docker compatibility).
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-sufficient runtime for containers",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the Berth version information.
    Version(cmd::system::VersionArgs),
    /// Display system-wide information.
    Info(cmd::system::InfoArgs),
    /// Get real time events from the server.
    Events(cmd::system::EventsArgs),
    /// Manage Berth.
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// Download an image from a registry.
    Pull(cmd::image::PullArgs),
    /// Upload an image to a registry.
    Push(cmd::image::PushArgs),
    /// List images.
    Images(cmd::image::ListArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Return low-level information on Berth objects (containers, images, networks, volumes).
    Inspect(cmd::container::AnyInspectArgs),
    /// Show the history of an image.
    History(cmd::image::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(cmd::image::TagArgs),
    /// Remove one or more images.
    Rmi(cmd::image::RmArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(cmd::image::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(cmd::image::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(cmd::image::ImportArgs),
    /// Log in to a registry.
    Login(cmd::login::LoginArgs),
    /// Log out from a registry.
    Logout(cmd::login::LogoutArgs),
    /// Manage contexts.
    #[command(subcommand)]
    Context(cmd::context::ContextCommand),
    /// Create and run a new container from an image.
    Run(cmd::run::RunArgs),
    /// Create a new container.
    Create(cmd::run::CreateArgs),
    /// Start one or more stopped containers.
    Start(cmd::container::StartArgs),
    /// Stop one or more running containers.
    Stop(cmd::container::StopArgs),
    /// Restart one or more containers.
    Restart(cmd::container::StopArgs),
    /// Kill one or more running containers.
    Kill(cmd::container::KillArgs),
    /// Remove one or more containers.
    Rm(cmd::container::RmArgs),
    /// List containers.
    Ps(cmd::container::PsArgs),
    /// Fetch the logs of a container.
    Logs(cmd::container::LogsArgs),
    /// Execute a command in a running container.
    Exec(cmd::exec::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(cmd::attach::AttachArgs),
    /// Display the running processes of a container.
    Top(cmd::container::TopArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(cmd::container::StatsArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(cmd::container::ContainersArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(cmd::container::CpArgs),
    /// Rename a container.
    Rename(cmd::container::RenameArgs),
    /// Pause all processes within one or more containers.
    Pause(cmd::container::ContainersArgs),
    /// Unpause all processes within one or more containers.
    Unpause(cmd::container::ContainersArgs),
    /// Update configuration of one or more containers.
    Update(cmd::container::UpdateArgs),
    /// Export a container's filesystem as a tar archive.
    Export(cmd::container::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(cmd::container::DiffArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(cmd::container::ContainerCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(cmd::network::NetworkCommand),
    /// List port mappings or a specific mapping for the container.
    Port(cmd::container::PortArgs),
    /// Generate the autocompletion script for the specified shell.
    Completion(cmd::CompletionArgs),
}

/// A failed command: the message to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// What to print (already complete).
    pub message: String,
    /// The exit code.
    pub code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            message: e.to_string(),
            code: 1,
        }
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Failure>;

/// How to reach the daemon.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// TLS, for TCP.
    pub tls: Option<TlsOptions>,
    /// The context name (`default` unless one was chosen).
    pub context: String,
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Chooses the daemon as the docker CLI does.
pub fn resolve_target(g: &Global, store: &config::Store) -> Result<Target, Failure> {
    if g.host.is_some() && g.context.is_some() {
        return Err(Failure {
            message: "conflicting options: cannot specify both --host and --context".to_string(),
            code: 125,
        });
    }
    let cert_dir = env_nonempty("BERTH_CERT_PATH")
        .or_else(|| env_nonempty("DOCKER_CERT_PATH"))
        .map_or_else(|| config::config_dir(g.config.as_deref()), PathBuf::from);
    let verify = g.tlsverify
        || g.tls
        || env_nonempty("BERTH_TLS_VERIFY").is_some()
        || env_nonempty("DOCKER_TLS_VERIFY").is_some();
    let flag_tls = || {
        verify.then(|| TlsOptions {
            ca: Some(g.tlscacert.clone().unwrap_or_else(|| cert_dir.join("ca.pem"))),
            cert: Some(g.tlscert.clone().unwrap_or_else(|| cert_dir.join("cert.pem"))).filter(|p| p.exists()),
            key: Some(g.tlskey.clone().unwrap_or_else(|| cert_dir.join("key.pem"))).filter(|p| p.exists()),
        })
    };
    let from_host = |h: &str, context: String| -> Result<Target, Failure> {
        let endpoint = Endpoint::parse(h).map_err(|m| Failure {
            message: m,
            code: 125,
        })?;
        Ok(Target {
            endpoint,
            tls: flag_tls(),
            context,
        })
    };
    if let Some(h) = &g.host {
        return from_host(h, "default".to_string());
    }
    let context = match &g.context {
        Some(c) => Some(c.clone()),
        None => {
            if let Some(h) = env_nonempty("BERTH_HOST").or_else(|| env_nonempty("DOCKER_HOST")) {
                return from_host(&h, "default".to_string());
            }
            env_nonempty("BERTH_CONTEXT").or_else(|| env_nonempty("DOCKER_CONTEXT"))
        }
    };
    let name = match context {
        Some(c) => c,
        None => store.current_context()?,
    };
    if name == "default" {
        return from_host(DEFAULT_HOST, name);
    }
    let meta = store.context(&name)?;
    let host = meta
        .host()
        .ok_or_else(|| Failure::from(format!("context {name:?} has no docker endpoint")))?;
    let endpoint = Endpoint::parse(host).map_err(Failure::from)?;
    let tls_dir = store.tls_dir(&name);
    let tls = if tls_dir.join("ca.pem").exists() {
        Some(TlsOptions {
            ca: Some(tls_dir.join("ca.pem")),
            cert: Some(tls_dir.join("cert.pem")).filter(|p| p.exists()),
            key: Some(tls_dir.join("key.pem")).filter(|p| p.exists()),
        })
    } else {
        flag_tls()
    };
    Ok(Target {
        endpoint,
        tls,
        context: name,
    })
}

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    /// Global flags.
    pub global: Global,
    /// The config directory.
    pub store: config::Store,
}

impl Ctx {
    /// The chosen daemon.
    pub fn target(&self) -> Result<Target, Failure> {
        resolve_target(&self.global, &self.store)
    }

    /// A client with the API version negotiated.
    pub async fn client(&self) -> Result<Client, Failure> {
        let t = self.target()?;
        let mut c = Client::new(t.endpoint, t.tls)?;
        c.negotiate().await?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    // As the docker CLI (and any Unix filter): `berth inspect x | head` ends quietly when the reader goes away.
    // SIGPIPE stays ignored (a daemon closing a request's socket early must give an error, not kill the CLI);
    // a write to a closed stdout panics instead (println!, completions), and such a panic ends the process as
    // SIGPIPE would.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let code = if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                0
            } else {
                125
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(125);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ctx = Ctx {
        store: config::Store::new(config::config_dir(cli.global.config.as_deref())),
        global: cli.global,
    };
    match runtime.block_on(cmd::run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
