//! `berth-runtime`: an OCI runtime with runc's command line.
//!
//! Argument parsing and output only; the work is done by `berth-oci`. The binary stays synchronous and small
//! because its start path is measured against crun.

mod log;
mod update;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use berth_oci::container::{self, create::CreateOptions, create::StartMode};
use berth_oci::state::{DEFAULT_ROOT, Root};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version,
    about = "An OCI container runtime with runc's command line"
)]
struct Cli {
    /// Directory for the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// File to write log messages to (stderr when absent).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of the log: text or json.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = log::Format::Text)]
    log_format: log::Format,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility; cgroups are managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode (auto, true or false); with `spec`, writes a rootless spec.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the container process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when the process has a terminal.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Number of extra descriptors (after stdio) passed to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Do not use pivot_root (for a rootfs on ramfs); chroot after moving the rootfs onto /.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility: no session keyring is created.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// The container id.
    id: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a default config.json into the bundle directory.
    Spec {
        /// The bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container: set it up and leave its process waiting for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start {
        /// The container id.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal to a container's process.
    Kill {
        /// Send it to every process of the container.
        #[arg(short, long)]
        all: bool,
        /// The container id.
        id: String,
        /// The signal, by name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything it made.
    Delete {
        /// Kill the container first if it still runs.
        #[arg(short, long)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// Create and start a container, and wait for it unless detached.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container is started.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for runc compatibility.
        #[arg(long)]
        keep: bool,
    },
    /// List the containers.
    List {
        /// table or json.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a container's processes.
    Ps {
        /// table or json.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// The container id.
        id: String,
        /// Options for ps (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print the features this runtime implements, as JSON.
    Features,
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// Freeze every process of a container.
    Pause {
        /// The container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// Change the resource limits of a container.
    Update(update::UpdateArgs),
    /// Print the container's resource statistics and OOM kills as JSON lines.
    Events {
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between statistics (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// The container id.
        id: String,
    },
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// Unix socket that receives the pty master (with --tty).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Environment variables (NAME=value), added to the container's.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// The user, as uid[:gid].
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json to run instead of the command and flags.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Capabilities to add.
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Number of extra descriptors (after stdio) passed to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc compatibility.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Accepted for runc compatibility (no SELinux or AppArmor here).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Accepted for runc compatibility (no SELinux or AppArmor here).
    #[arg(long)]
    apparmor: Option<String>,
    /// The container id.
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl ExecArgs {
    /// The process to run: process.json, or the container's process with the flags applied.
    fn process(&self, root: &Root) -> Result<oci_spec::runtime::Process> {
        if let Some(path) = &self.process {
            let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            return serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a valid process description", path.display()));
        }
        if self.command.is_empty() {
            bail!("exec needs a command, or --process");
        }
        let mut p = container::exec::template(root, &self.id)?;
        p.set_args(Some(self.command.clone()));
        p.set_terminal(Some(self.tty));
        let mut env = p.env().clone().unwrap_or_default();
        for e in &self.env {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            env.retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
            env.push(e.clone());
        }
        p.set_env(Some(env));
        if let Some(cwd) = &self.cwd {
            p.set_cwd(cwd.clone());
        }
        if let Some(user) = &self.user {
            let (uid, gid) = match user.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (user.as_str(), None),
            };
            let mut u = p.user().clone();
            u.set_uid(
                uid.parse()
                    .with_context(|| format!("--user {user:?}: the uid must be a number"))?,
            );
            if let Some(g) = gid {
                u.set_gid(
                    g.parse()
                        .with_context(|| format!("--user {user:?}: the gid must be a number"))?,
                );
            }
            p.set_user(u);
        }
        if !self.additional_gids.is_empty() {
            let mut u = p.user().clone();
            u.set_additional_gids(Some(self.additional_gids.clone()));
            p.set_user(u);
        }
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        if !self.cap.is_empty() {
            let mut caps = p.capabilities().clone().unwrap_or_default();
            for name in &self.cap {
                let full = if name.to_ascii_uppercase().starts_with("CAP_") {
                    name.to_ascii_uppercase()
                } else {
                    format!("CAP_{}", name.to_ascii_uppercase())
                };
                let cap: oci_spec::runtime::Capability =
                    serde_json::from_value(serde_json::Value::String(full))
                        .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
                let with = |set: &Option<std::collections::HashSet<oci_spec::runtime::Capability>>| {
                    let mut set = set.clone().unwrap_or_default();
                    set.insert(cap);
                    Some(set)
                };
                // As runc: the capability joins every set, and inheritable too so that ambient can hold it.
                let (b, e, p_, i, a) = (
                    with(caps.bounding()),
                    with(caps.effective()),
                    with(caps.permitted()),
                    with(caps.inheritable()),
                    with(caps.ambient()),
                );
                caps.set_bounding(b)
                    .set_effective(e)
                    .set_permitted(p_)
                    .set_inheritable(i)
                    .set_ambient(a);
            }
            p.set_capabilities(Some(caps));
        }
        Ok(p)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            no_pivot: self.no_pivot,
        }
    }
}

/// The `--log` and `--log-format` of a command line clap refused, so that the error still reaches the log
/// file that containerd and dockerd read.
fn log_of_raw_args() -> log::Logger {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    let format = match value("--log-format").as_deref() {
        Some("json") => log::Format::Json,
        _ => log::Format::Text,
    };
    log::Logger::new(value("--log").map(PathBuf::from), format, false)
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            log_of_raw_args().error_to_file(first);
            let _ = write!(std::io::stderr(), "{text}");
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let logger = log::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    let code = match execute(&cli, &logger) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            logger.error(&msg);
            1
        }
    };
    std::process::exit(code);
}

fn warn(logger: &log::Logger, warnings: Vec<String>) {
    for w in warnings {
        logger.warn(&w);
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn execute(cli: &Cli, logger: &log::Logger) -> Result<i32> {
    let root = Root::new(&cli.root);
    logger.debug(&format!("command {:?}", cli.command));
    match &cli.command {
        Command::Spec { bundle } => {
            let rootless = cli.rootless.as_deref() == Some("true");
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists already: remove it first", path.display());
            }
            let spec = if rootless {
                // SAFETY: getuid and getgid cannot fail.
                berth_oci::spec::rootless_spec(unsafe { libc::getuid() }, unsafe { libc::getgid() })
            } else {
                berth_oci::spec::default_spec()
            };
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        }
        Command::Create(args) => {
            container::create::create(&root, &args.options(), StartMode::Detached)?;
        }
        Command::Start { id } => warn(logger, container::start::start(&root, id)?),
        Command::State { id } => print_json(&container::list::state(&root, id)?)?,
        Command::Kill { all, id, signal } => {
            let sig = berth_oci::signal::parse(signal)?;
            container::kill::kill(&root, id, sig, *all)?;
        }
        Command::Delete { force, id } => warn(logger, container::delete::delete(&root, id, *force)?),
        Command::Run { create, detach, .. } => {
            let (code, warnings) = container::run::run(&root, &create.options(), *detach)?;
            warn(logger, warnings);
            return Ok(code);
        }
        Command::List { format, quiet } => {
            let all = container::list::list(&root)?;
            let mut out = std::io::stdout().lock();
            if *quiet {
                for s in &all {
                    writeln!(out, "{}", s.id)?;
                }
            } else if *format == ListFormat::Json {
                serde_json::to_writer(&mut out, &all)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                )?;
                for s in &all {
                    writeln!(
                        out,
                        "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        s.owner
                    )?;
                }
            }
        }
        Command::Ps { format, id, ps_args } => {
            if *format == ListFormat::Json {
                if !ps_args.is_empty() {
                    bail!("ps options cannot be combined with --format json");
                }
                let pids = container::ps::pids(&root, id)?;
                serde_json::to_writer(std::io::stdout().lock(), &pids)?;
                println!();
            } else {
                print!("{}", container::ps::table(&root, id, ps_args)?);
            }
        }
        Command::Features => print_json(&container::features::features())?,
        Command::Pause { id } => container::pause::pause(&root, id)?,
        Command::Resume { id } => container::pause::resume(&root, id)?,
        Command::Update(args) => container::update::update(&root, &args.id, &args.resources()?)?,
        Command::Events { stats, interval, id } => {
            if *stats {
                let event = container::events::stats(&root, id)?;
                println!("{event}");
            } else {
                let interval = update::parse_duration(interval)?;
                container::events::watch(&root, id, interval, |event| {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{event}").and_then(|()| out.flush()).is_ok()
                })?;
            }
        }
        Command::Exec(args) => {
            let opts = container::exec::ExecOptions {
                id: args.id.clone(),
                process: args.process(&root)?,
                console_socket: args.console_socket.clone(),
                detach: args.detach,
                pid_file: args.pid_file.clone(),
                preserve_fds: args.preserve_fds,
            };
            return Ok(container::exec::exec(&root, &opts)?);
        }
    }
    Ok(0)
}
