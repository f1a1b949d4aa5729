//! Container commands: ps, start, stop, restart, kill, rm, inspect, top, stats, wait, cp, rename, pause, unpause,
//! update, export, diff, logs, container prune, the `container` command group with docker's aliases, and the
//! top-level `inspect` (containers, then images, then volumes, as docker's).

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, Subcommand};
use http_body_util::BodyExt as _;
use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::attach::{self, Demux, StreamOpts};
use super::run::{self, parse_nano_cpus, parse_ram, parse_swap};
use super::util::{self, confirm, errors_result, print_inspect, s, short_id};
use crate::client::{self, Client, ClientError, JsonLines};
use crate::format::{Format, align_cells, go_time, human_ago, human_size};
use crate::{CmdResult, Ctx, Failure};

/// `ps`, `container ls`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
}

/// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
}

/// `stop`, `restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container.
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i64>,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the anonymous volumes associated with the container.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link.
    #[arg(short = 'l', long)]
    pub link: bool,
}

/// `container inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
}

/// `inspect` (any object).
#[derive(Debug, Args)]
pub struct AnyInspectArgs {
    /// Names or IDs.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
    /// Display total file sizes if the type is container.
    #[arg(short = 's', long)]
    pub size: bool,
    /// Only inspect objects of the given type (container, image, network, volume).
    #[arg(long = "type")]
    pub kind: Option<String>,
}

/// `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container.
    pub container: String,
    /// ps options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Containers (default: all running).
    pub containers: Vec<String>,
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
}

/// Commands that take only containers: `wait`, `pause`, `unpause`.
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH, a local path, or - (a tar on stdin).
    pub src: String,
    /// DEST_PATH, CONTAINER:DEST_PATH, or - (a tar to stdout).
    pub dst: String,
    /// Archive mode (copy all uid/gid information).
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container.
    pub container: String,
    /// The new name.
    pub new_name: String,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable.
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds.
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds.
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs.
    #[arg(long = "cpus", value_parser = parse_nano_cpus)]
    pub cpus: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit.
    #[arg(short = 'm', long = "memory", value_parser = parse_ram)]
    pub memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_parser = parse_ram)]
    pub memory_reservation: Option<i64>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits.
    #[arg(long = "restart")]
    pub restart: Option<String>,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Container.
    pub container: String,
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

/// `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Container.
    pub container: String,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container.
    pub container: String,
    /// Show extra details provided to logs.
    #[arg(long)]
    pub details: bool,
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes).
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long = "tail", default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes).
    #[arg(long)]
    pub until: Option<String>,
}

/// `port`, `container port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The container port, with the protocol (tcp when not given).
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

/// `container prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Attach local standard input, output, and error streams to a running container.
    Attach(attach::AttachArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(CpArgs),
    /// Create a new container.
    Create(run::CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(DiffArgs),
    /// Execute a command in a running container.
    Exec(super::exec::ExecArgs),
    /// Export a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Display detailed information on one or more containers.
    Inspect(InspectArgs),
    /// Kill one or more running containers.
    Kill(KillArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// List containers.
    #[command(name = "ls", alias = "list", alias = "ps")]
    Ls(PsArgs),
    /// Pause all processes within one or more containers.
    Pause(ContainersArgs),
    /// List port mappings or a specific mapping for the container.
    Port(PortArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Restart one or more containers.
    Restart(StopArgs),
    /// Remove one or more containers.
    #[command(name = "rm", alias = "remove")]
    Rm(RmArgs),
    /// Create and run a new container from an image.
    Run(run::RunArgs),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(StatsArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Display the running processes of a container.
    Top(TopArgs),
    /// Unpause all processes within one or more containers.
    Unpause(ContainersArgs),
    /// Update configuration of one or more containers.
    Update(UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(ContainersArgs),
}

/// Runs a `container` subcommand.
pub async fn run(ctx: &Ctx, c: ContainerCommand) -> CmdResult {
    match c {
        ContainerCommand::Attach(a) => attach::attach(ctx, a).await,
        ContainerCommand::Cp(a) => cp(ctx, a).await,
        ContainerCommand::Create(a) => run::create(ctx, a).await,
        ContainerCommand::Diff(a) => diff(ctx, a).await,
        ContainerCommand::Exec(a) => super::exec::exec(ctx, a).await,
        ContainerCommand::Export(a) => export(ctx, a).await,
        ContainerCommand::Inspect(a) => inspect(ctx, a).await,
        ContainerCommand::Kill(a) => kill(ctx, a).await,
        ContainerCommand::Logs(a) => logs(ctx, a).await,
        ContainerCommand::Ls(a) => ps(ctx, a).await,
        ContainerCommand::Pause(a) => pause(ctx, a, "pause").await,
        ContainerCommand::Port(a) => port(ctx, a).await,
        ContainerCommand::Prune(a) => prune(ctx, a, false).await.map(|_| ()),
        ContainerCommand::Rename(a) => rename(ctx, a).await,
        ContainerCommand::Restart(a) => stop(ctx, a, "restart").await,
        ContainerCommand::Rm(a) => rm(ctx, a).await,
        ContainerCommand::Run(a) => run::run(ctx, a).await,
        ContainerCommand::Start(a) => start(ctx, a).await,
        ContainerCommand::Stats(a) => stats(ctx, a).await,
        ContainerCommand::Stop(a) => stop(ctx, a, "stop").await,
        ContainerCommand::Top(a) => top(ctx, a).await,
        ContainerCommand::Unpause(a) => pause(ctx, a, "unpause").await,
        ContainerCommand::Update(a) => update(ctx, a).await,
        ContainerCommand::Wait(a) => wait(ctx, a).await,
    }
}

// ---- shared helpers ----

fn i(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// A POST with an empty body where `304 Not Modified` (already in that state) counts as success, as the docker
/// client treats it.
async fn post_ok(c: &Client, path: &str) -> Result<(), ClientError> {
    match c.call(Method::POST, path, &[], client::empty()).await {
        Ok(_) => Ok(()),
        Err(ClientError::Daemon { status, .. }) if status == StatusCode::NOT_MODIFIED => Ok(()),
        Err(e) => Err(e),
    }
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

// ---- ps ----

/// docker's `DisplayablePorts`: consecutive ports grouped into ranges, published ones as `ip:host->port/proto`.
pub fn displayable_ports(ports: &[Value]) -> String {
    #[derive(Clone)]
    struct P {
        ip: String,
        private: u64,
        public: u64,
        kind: String,
    }
    let mut ps: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: s(p, "IP").to_string(),
            private: p.get("PrivatePort").and_then(Value::as_u64).unwrap_or(0),
            public: p.get("PublicPort").and_then(Value::as_u64).unwrap_or(0),
            kind: s(p, "Type").to_string(),
        })
        .collect();
    ps.sort_by(|a, b| (a.private, &a.ip, a.public, &a.kind).cmp(&(b.private, &b.ip, b.public, &b.kind)));
    let form = |key: &str, first: u64, last: u64| -> String {
        let (ip, kind) = match key.rsplit_once('/') {
            Some((ip, k)) => (ip, k),
            None => ("", key),
        };
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            group = format!("{host}:{group}->{group}");
        }
        format!("{group}/{kind}")
    };
    let mut groups: HashMap<String, (u64, u64)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in &ps {
        let mut key = p.kind.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                let host = if p.ip.contains(':') {
                    format!("[{}]", p.ip)
                } else {
                    p.ip.clone()
                };
                host_mappings.push(format!("{host}:{}->{}/{}", p.public, p.private, p.kind));
                continue;
            }
            key = format!("{}/{}", p.ip, p.kind);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (p.private, p.private));
                order.push(key);
            }
            Some(g) if p.private == g.1 + 1 => g.1 = p.private,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (p.private, p.private);
            }
        }
    }
    for k in &order {
        if let Some((a, b)) = groups.get(k) {
            result.push(form(k, *a, *b));
        }
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// One container of `GET /containers/json` as the row docker's formatter offers to templates.
pub fn ps_row(c: &Value, no_trunc: bool) -> Value {
    let trunc = !no_trunc;
    let image = s(c, "Image");
    let image = if image.is_empty() {
        "<no image>".to_string()
    } else if trunc && image.starts_with("sha256:") {
        short_id(image, false)
    } else if trunc && image.contains('@') {
        image.split('@').next().unwrap_or(image).to_string()
    } else {
        image.to_string()
    };
    let names: Vec<String> = c
        .get("Names")
        .and_then(|n| n.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .map(|n| n.trim_start_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default();
    let names = if trunc {
        names
            .iter()
            .find(|n| !n.contains('/'))
            .cloned()
            .map_or(names.clone(), |n| vec![n])
    } else {
        names
    };
    let command = s(c, "Command");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let created = i(c, "Created");
    let mut labels: Vec<String> = c
        .get("Labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let mounts_v = c
        .get("Mounts")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let mounts: Vec<String> = mounts_v
        .iter()
        .map(|m| {
            let n = if s(m, "Name").is_empty() {
                s(m, "Source")
            } else {
                s(m, "Name")
            };
            if trunc { ellipsis(n, 15) } else { n.to_string() }
        })
        .collect();
    let local_volumes = mounts_v.iter().filter(|m| s(m, "Driver") == "local").count();
    let mut networks: Vec<String> = c
        .get("NetworkSettings")
        .and_then(|n| n.get("Networks"))
        .and_then(|n| n.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let size = {
        let rw = human_size(i(c, "SizeRw"));
        let root = i(c, "SizeRootFs");
        if root > 0 {
            format!("{rw} (virtual {})", human_size(root))
        } else {
            rw
        }
    };
    let ports = c
        .get("Ports")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    json!({
        "ID": short_id(s(c, "Id"), no_trunc),
        "Image": image,
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": go_time(created),
        "RunningFor": human_ago(created),
        "Ports": displayable_ports(&ports),
        "State": s(c, "State"),
        "Status": s(c, "Status"),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": local_volumes.to_string(),
    })
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// `ps`.
pub async fn ps(ctx: &Ctx, a: PsArgs) -> CmdResult {
    let c = ctx.client().await?;
    let limit = if a.latest { 1 } else { a.last };
    let want_size = a.size || a.format.contains(".Size");
    let filters = super::filters_json(&a.filter)?;
    let limit_s = if limit > 0 {
        limit.to_string()
    } else {
        String::new()
    };
    let path = client::query(
        "/containers/json",
        &[
            ("all", if a.all { "1" } else { "" }),
            ("limit", &limit_s),
            ("size", if want_size && !a.quiet { "1" } else { "" }),
            ("filters", &filters),
        ],
    );
    let list = c.get_json(&path).await?;
    let list = list.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for x in &list {
            println!("{}", short_id(s(x, "Id"), a.no_trunc));
        }
        return Ok(());
    }
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let f = Format::parse(&a.format, default)?;
    let rows: Vec<Value> = list.iter().map(|x| ps_row(x, a.no_trunc)).collect();
    let headers: HashMap<&str, &str> = PS_HEADERS.iter().copied().collect();
    print!("{}", f.render_rows(&rows, &headers)?);
    Ok(())
}

// ---- start / stop / kill / rm / pause / rename / wait ----

/// `start`.
pub async fn start(ctx: &Ctx, a: StartArgs) -> CmdResult {
    let c = ctx.client().await?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(Failure::from(
                "you cannot start and attach multiple containers at once",
            ));
        }
        return start_attached(&c, &a).await;
    }
    let mut failed = Vec::new();
    for n in &a.containers {
        match post_ok(&c, &format!("/containers/{n}/start")).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::from(format!(
            "Error: failed to start containers: {}",
            failed.join(", ")
        )))
    }
}

async fn start_attached(c: &Client, a: &StartArgs) -> CmdResult {
    let name = &a.containers[0];
    let info = c.get_json(&format!("/containers/{name}/json")).await?;
    let id = s(&info, "Id").to_string();
    let config = info.get("Config").cloned().unwrap_or_default();
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    let tty = flag("Tty");
    let stdin = a.interactive && flag("OpenStdin");
    if stdin && tty && !std::io::stdin().is_terminal() {
        return Err(Failure::from("the input device is not a TTY"));
    }
    let auto_remove = info
        .get("HostConfig")
        .and_then(|h| h.get("AutoRemove"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let path = attach::attach_path(&id, stdin, true, true, a.detach_keys.as_deref());
    let h = attach::hijack(c, &path, client::empty(), tty).await?;
    let pump = tokio::spawn(attach::stream(
        h,
        StreamOpts {
            stdin,
            tty,
            detach_keys: attach::detach_keys(a.detach_keys.as_deref()),
            output: true,
        },
    ));
    let wait = attach::wait_for(c, &id, if auto_remove { "removed" } else { "next-exit" }).await;
    if let Err(e) = util::start_container(c, &id).await {
        pump.abort();
        wait.abort();
        return Err(Failure::from(e));
    }
    let resizer = if tty {
        attach::spawn_resizer(c.clone(), format!("/containers/{id}"))
    } else {
        None
    };
    let proxy = (!tty).then(|| attach::spawn_signal_proxy(c.clone(), id.clone()));
    let ended = pump
        .await
        .map_err(|e| Failure::from(format!("the attach stream failed: {e}")))?;
    attach::finish(ended, resizer, proxy, wait).await
}

/// `stop` and `restart` (`verb`).
pub async fn stop(ctx: &Ctx, a: StopArgs, verb: &str) -> CmdResult {
    let c = ctx.client().await?;
    let t = a.timeout.map(|t| t.to_string()).unwrap_or_default();
    util::each_name(&a.containers, async |n| {
        let path = client::query(
            &format!("/containers/{n}/{verb}"),
            &[("t", &t), ("signal", a.signal.as_deref().unwrap_or(""))],
        );
        post_ok(&c, &path).await
    })
    .await
}

/// `kill`.
pub async fn kill(ctx: &Ctx, a: KillArgs) -> CmdResult {
    let c = ctx.client().await?;
    util::each_name(&a.containers, async |n| {
        let path = client::query(
            &format!("/containers/{n}/kill"),
            &[("signal", a.signal.as_deref().unwrap_or(""))],
        );
        c.call(Method::POST, &path, &[], client::empty())
            .await
            .map(|_| ())
    })
    .await
}

/// `rm`.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut errors = Vec::new();
    for n in &a.containers {
        let n = n.trim_matches('/');
        if n.is_empty() {
            errors.push("Container name cannot be empty".to_string());
            continue;
        }
        let path = client::query(
            &format!("/containers/{n}"),
            &[
                ("force", if a.force { "1" } else { "" }),
                ("v", if a.volumes { "1" } else { "" }),
                ("link", if a.link { "1" } else { "" }),
            ],
        );
        match c.call(Method::DELETE, &path, &[], client::empty()).await {
            Ok(_) => println!("{n}"),
            Err(ClientError::Daemon { status, .. }) if a.force && status == StatusCode::NOT_FOUND => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors_result(errors)
}

/// `pause` / `unpause` (`verb`).
pub async fn pause(ctx: &Ctx, a: ContainersArgs, verb: &str) -> CmdResult {
    let c = ctx.client().await?;
    util::each_name(&a.containers, async |n| {
        let path = format!("/containers/{n}/{verb}");
        c.call(Method::POST, &path, &[], client::empty())
            .await
            .map(|_| ())
    })
    .await
}

/// `rename`.
pub async fn rename(ctx: &Ctx, a: RenameArgs) -> CmdResult {
    let old = a.container.trim();
    let new = a.new_name.trim();
    if old.is_empty() || new.is_empty() {
        return Err(Failure::from("Error: Neither old nor new names may be empty"));
    }
    let c = ctx.client().await?;
    let path = client::query(&format!("/containers/{old}/rename"), &[("name", new)]);
    c.call(Method::POST, &path, &[], client::empty())
        .await
        .map_err(|e| Failure::from(format!("{e}\nError: failed to rename container named {old}")))?;
    Ok(())
}

/// `wait`.
pub async fn wait(ctx: &Ctx, a: ContainersArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut errors = Vec::new();
    for n in &a.containers {
        let r = async {
            let resp = c
                .call(
                    Method::POST,
                    &format!("/containers/{n}/wait"),
                    &[],
                    client::empty(),
                )
                .await?;
            let v = client::body_json(resp).await?;
            attach::exit_status(&v)
        }
        .await;
        match r {
            Ok(code) => println!("{code}"),
            Err(e) => errors.push(e.message),
        }
    }
    errors_result(errors)
}

// ---- inspect ----

/// `container inspect`.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let path = client::query(
            &format!("/containers/{n}/json"),
            &[("size", if a.size { "1" } else { "" })],
        );
        match c.get_json(&path).await {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    print_inspect(&out, &a.format)?;
    errors_result(errors)
}

/// `inspect`: each name is looked up as a container, then an image, then a network, then a volume (or only as
/// `--type`).
pub async fn inspect_any(ctx: &Ctx, a: AnyInspectArgs) -> CmdResult {
    let kinds: Vec<&str> = match a.kind.as_deref() {
        None | Some("") => vec!["container", "image", "network", "volume"],
        Some(k @ ("container" | "image" | "network" | "volume")) => vec![k],
        Some(k) => return Err(util::invalid_type(k)),
    };
    let c = ctx.client().await?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    'names: for n in &a.names {
        for k in &kinds {
            let path = match *k {
                "container" => client::query(
                    &format!("/containers/{n}/json"),
                    &[("size", if a.size { "1" } else { "" })],
                ),
                "image" => format!("/images/{n}/json"),
                "network" => format!("/networks/{}", client::encode(n)),
                _ => format!("/volumes/{n}"),
            };
            match c.get_json(&path).await {
                Ok(v) => {
                    out.push(v);
                    continue 'names;
                }
                Err(ClientError::Daemon { status, .. }) if status == StatusCode::NOT_FOUND => {}
                Err(e) => {
                    errors.push(e.to_string());
                    continue 'names;
                }
            }
        }
        errors.push(format!("Error: No such object: {n}"));
    }
    print_inspect(&out, &a.format)?;
    errors_result(errors)
}

// ---- port ----

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What `port` prints for a container's inspect JSON (`NetworkSettings.Ports`): every mapping as
/// `80/tcp -> 0.0.0.0:8080`, or for one `PRIVATE_PORT[/PROTO]` its host addresses, naturally sorted as docker's.
/// `name` is the container as the user gave it (for the error).
pub fn port_lines(inspect: &Value, name: &str, port: Option<&str>) -> Result<Vec<String>, Failure> {
    let ports = inspect
        .get("NetworkSettings")
        .and_then(|n| n.get("Ports"))
        .and_then(Value::as_object);
    let frontends = |key: &str| -> Vec<String> {
        ports
            .and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|b| join_host_port(s(b, "HostIp"), s(b, "HostPort")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    match port {
        Some(spec) => {
            let (num, proto) = spec.split_once('/').unwrap_or((spec, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(why) = parse_port_number(num) {
                return Err(Failure::from(format!(
                    "Error: invalid port ({num}): strconv.ParseUint: parsing {num:?}: {why}"
                )));
            }
            out = frontends(&format!("{num}/{proto}"));
            if out.is_empty() {
                return Err(Failure::from(format!(
                    "Error: No public port '{spec}' published for {name}"
                )));
            }
        }
        None => {
            for key in ports.map(|p| p.keys().collect::<Vec<_>>()).unwrap_or_default() {
                for f in frontends(key) {
                    out.push(format!("{key} -> {f}"));
                }
            }
        }
    }
    out.sort_by(|a, b| super::network::natural_cmp(a, b));
    Ok(out)
}

/// Go's `strconv.ParseUint(s, 10, 16)`: the reason it fails.
fn parse_port_number(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse::<u16>().map_err(|_| "value out of range")
}

/// `port`.
pub async fn port(ctx: &Ctx, a: PortArgs) -> CmdResult {
    let c = ctx.client().await?;
    let v = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let lines = port_lines(&v, &a.container, a.port.as_deref())?;
    if !lines.is_empty() {
        println!("{}", lines.join("\n"));
    }
    Ok(())
}

// ---- top ----

/// `top`.
pub async fn top(ctx: &Ctx, a: TopArgs) -> CmdResult {
    let c = ctx.client().await?;
    let ps_args = a.ps_args.join(" ");
    let path = client::query(
        &format!("/containers/{}/top", a.container),
        &[("ps_args", &ps_args)],
    );
    let v = c.get_json(&path).await?;
    let strs = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| a.iter().map(|y| y.as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let mut lines = vec![strs(v.get("Titles").unwrap_or(&Value::Null))];
    for p in v
        .get("Processes")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        lines.push(strs(p));
    }
    print!("{}", align_cells(&lines, 20, false));
    Ok(())
}

// ---- stats ----

/// go-units' `BytesSize`: binary units with 4 significant digits (`1.5MiB`, `7.652GiB`).
pub fn bytes_size(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    let digits = if v >= 1000.0 {
        4
    } else if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let decimals = 4usize.saturating_sub(digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

fn hs(n: f64) -> String {
    human_size(n as i64)
}

/// One stats sample as the row docker's `stats` table shows (`container` is the name or id as asked).
pub fn stats_row(container: &str, v: &Value, no_trunc: bool) -> Value {
    let cpu = v.get("cpu_stats").cloned().unwrap_or_default();
    let pre = v.get("precpu_stats").cloned().unwrap_or_default();
    let total = |x: &Value| {
        x.get("cpu_usage")
            .and_then(|u| u.get("total_usage"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let sys = |x: &Value| x.get("system_cpu_usage").and_then(Value::as_f64).unwrap_or(0.0);
    let cpu_delta = total(&cpu) - total(&pre);
    let sys_delta = sys(&cpu) - sys(&pre);
    let mut online = cpu.get("online_cpus").and_then(Value::as_f64).unwrap_or(0.0);
    if online == 0.0 {
        online = cpu
            .get("cpu_usage")
            .and_then(|u| u.get("percpu_usage"))
            .and_then(|p| p.as_array())
            .map_or(0.0, |a| a.len() as f64);
    }
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = v.get("memory_stats").cloned().unwrap_or_default();
    let usage = mem.get("usage").and_then(Value::as_f64).unwrap_or(0.0);
    let stat = |k: &str| mem.get("stats").and_then(|s| s.get(k)).and_then(Value::as_f64);
    let used = match (stat("total_inactive_file"), stat("inactive_file")) {
        (Some(x), _) if x < usage => usage - x,
        (None, Some(x)) if x < usage => usage - x,
        _ => usage,
    };
    let limit = mem.get("limit").and_then(Value::as_f64).unwrap_or(0.0);
    let mem_pct = if limit > 0.0 { used / limit * 100.0 } else { 0.0 };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in v
        .get("networks")
        .and_then(|n| n.as_object())
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += n.get("rx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
        tx += n.get("tx_bytes").and_then(Value::as_f64).unwrap_or(0.0);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in v
        .get("blkio_stats")
        .and_then(|b| b.get("io_service_bytes_recursive"))
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let val = e.get("value").and_then(Value::as_f64).unwrap_or(0.0);
        match s(e, "op").chars().next() {
            Some('r' | 'R') => rd += val,
            Some('w' | 'W') => wr += val,
            _ => {}
        }
    }
    let pids = v
        .get("pids_stats")
        .and_then(|p| p.get("current"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "Container": container,
        "ID": short_id(s(v, "id"), no_trunc),
        "Name": s(v, "name").trim_start_matches('/'),
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(used), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", hs(rx), hs(tx)),
        "BlockIO": format!("{} / {}", hs(rd), hs(wr)),
        "PIDs": pids.to_string(),
    })
}

fn stats_placeholder(container: &str) -> Value {
    json!({"Container": container, "ID": container, "Name": "--", "CPUPerc": "--", "MemUsage": "-- / --",
           "MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--"})
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// `stats`: one table (`--no-stream`), or the table redrawn every second while any container's stream lasts.
pub async fn stats(ctx: &Ctx, a: StatsArgs) -> CmdResult {
    let c = ctx.client().await?;
    let names: Vec<String> = if a.containers.is_empty() {
        let path = client::query("/containers/json", &[("all", if a.all { "1" } else { "" })]);
        c.get_json(&path)
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| s(x, "Id").to_string())
            .collect()
    } else {
        a.containers.clone()
    };
    let f = Format::parse(
        &a.format,
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    )?;
    let headers: HashMap<&str, &str> = STATS_HEADERS.iter().copied().collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<Value, String>)>();
    let mut rows: Vec<Value> = names.iter().map(|n| stats_placeholder(n)).collect();
    let mut open = names.len();
    for (idx, n) in names.iter().enumerate() {
        let c = c.clone();
        let tx = tx.clone();
        let path = client::query(
            &format!("/containers/{n}/stats"),
            &[("stream", if a.no_stream { "0" } else { "1" })],
        );
        tokio::spawn(async move {
            match c.call(Method::GET, &path, &[], client::empty()).await {
                Ok(resp) => {
                    let mut lines = JsonLines::new(resp);
                    while let Ok(Some(v)) = lines.next().await {
                        if tx.send((idx, Ok(v))).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send((idx, Err(e.to_string())));
                }
            }
            let _ = tx.send((idx, Err(String::new())));
        });
    }
    drop(tx);
    let mut errors = Vec::new();
    if a.no_stream {
        while open > 0 {
            let Some((idx, r)) = rx.recv().await else { break };
            match r {
                Ok(v) => rows[idx] = stats_row(&names[idx], &v, a.no_trunc),
                Err(e) => {
                    if !e.is_empty() {
                        errors.push(e);
                    }
                    open -= 1;
                }
            }
        }
        print!("{}", f.render_rows(&rows, &headers)?);
        return errors_result(errors);
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(1000));
    let mut first = true;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some((idx, Ok(v))) => rows[idx] = stats_row(&names[idx], &v, a.no_trunc),
                Some((idx, Err(e))) => {
                    if !e.is_empty() {
                        errors.push(e);
                    }
                    rows[idx] = stats_placeholder(&names[idx]);
                    open -= 1;
                }
                None => open = 0,
            },
            _ = tick.tick() => {
                if first {
                    first = false;
                    continue;
                }
                print!("\x1b[2J\x1b[H{}", f.render_rows(&rows, &headers)?);
                let _ = std::io::stdout().flush();
            }
        }
        if open == 0 {
            print!("\x1b[2J\x1b[H{}", f.render_rows(&rows, &headers)?);
            return errors_result(errors);
        }
    }
}

// ---- update ----

/// The `ContainerUpdate` body; `None` when no flag was given.
pub fn update_body(a: &UpdateArgs) -> Result<Option<Value>, Failure> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("BlkioWeight", a.blkio_weight.map(|x| json!(x)));
    put("CpuPeriod", a.cpu_period.map(|x| json!(x)));
    put("CpuQuota", a.cpu_quota.map(|x| json!(x)));
    put("CpuRealtimePeriod", a.cpu_rt_period.map(|x| json!(x)));
    put("CpuRealtimeRuntime", a.cpu_rt_runtime.map(|x| json!(x)));
    put("CpuShares", a.cpu_shares.map(|x| json!(x)));
    put("NanoCpus", a.cpus.map(|x| json!(x)));
    put("CpusetCpus", a.cpuset_cpus.as_ref().map(|x| json!(x)));
    put("CpusetMems", a.cpuset_mems.as_ref().map(|x| json!(x)));
    put("Memory", a.memory.map(|x| json!(x)));
    put("MemoryReservation", a.memory_reservation.map(|x| json!(x)));
    put("MemorySwap", a.memory_swap.map(|x| json!(x)));
    put("PidsLimit", a.pids_limit.map(|x| json!(x)));
    if let Some(r) = &a.restart {
        put(
            "RestartPolicy",
            Some(run::parse_restart(r).map_err(Failure::from)?),
        );
    }
    Ok((!m.is_empty()).then_some(Value::Object(m)))
}

/// `update`.
pub async fn update(ctx: &Ctx, a: UpdateArgs) -> CmdResult {
    let Some(body) = update_body(&a)? else {
        return Err(Failure::from(
            "you must provide one or more flags when using this command",
        ));
    };
    let c = ctx.client().await?;
    util::each_name(&a.containers, async |n| {
        let resp = c
            .call(
                Method::POST,
                &format!("/containers/{n}/update"),
                &[("content-type", "application/json".to_string())],
                client::full(body.to_string()),
            )
            .await?;
        let v = client::body_json(resp).await.unwrap_or_default();
        for w in v.get("Warnings").and_then(|w| w.as_array()).into_iter().flatten() {
            eprintln!("{}", w.as_str().unwrap_or(""));
        }
        Ok::<(), ClientError>(())
    })
    .await
}

// ---- export / diff ----

/// `export`.
pub async fn export(ctx: &Ctx, a: ExportArgs) -> CmdResult {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::from(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let c = ctx.client().await?;
    let resp = c
        .call(
            Method::GET,
            &format!("/containers/{}/export", a.container),
            &[],
            client::empty(),
        )
        .await?;
    util::write_body(resp, a.output.as_deref(), "export", "tmp").await
}

/// `diff`.
pub async fn diff(ctx: &Ctx, a: DiffArgs) -> CmdResult {
    let c = ctx.client().await?;
    let v = c
        .get_json(&format!("/containers/{}/changes", a.container))
        .await?;
    for ch in v.as_array().into_iter().flatten() {
        let kind = match i(ch, "Kind") {
            0 => "C",
            1 => "A",
            2 => "D",
            _ => "?",
        };
        println!("{kind} {}", s(ch, "Path"));
    }
    Ok(())
}

// ---- logs ----

fn go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mul = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += n * mul;
    }
    Some(if neg { -total } else { total })
}

/// docker's `GetTimestamp`: a Go duration (`10m`, `1h30m`) is that long before `now`; RFC 3339 times and dates
/// (`2024-01-02`, `2024-01-02T15:04`, local times taken as UTC) become `seconds.nanos`; unix timestamps pass.
pub fn api_timestamp(value: &str, now_secs: i64) -> Result<String, Failure> {
    if value != "0"
        && let Some(d) = go_duration(value)
    {
        return Ok((now_secs - d as i64).to_string());
    }
    let ts = |t: jiff::Timestamp| format!("{}.{:09}", t.as_second(), t.subsec_nanosecond());
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(ts(t));
    }
    let utc = jiff::tz::TimeZone::UTC;
    if let Ok(dt) = value.parse::<jiff::civil::DateTime>()
        && let Ok(t) = utc.to_timestamp(dt)
    {
        return Ok(ts(t));
    }
    if let Ok(d) = value.parse::<jiff::civil::Date>()
        && let Ok(t) = utc.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
    {
        return Ok(ts(t));
    }
    if value.contains('-') {
        return Err(Failure::from(format!("invalid timestamp: {value:?}")));
    }
    let (sec, nano) = value.split_once('.').unwrap_or((value, "0"));
    if sec.parse::<i64>().is_ok() && nano.parse::<u64>().is_ok() {
        return Ok(value.to_string());
    }
    Err(Failure::from(format!(
        "failed to parse value as time or duration: {value:?}"
    )))
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// `logs`.
pub async fn logs(ctx: &Ctx, a: LogsArgs) -> CmdResult {
    let since = a
        .since
        .as_deref()
        .map(|v| api_timestamp(v, now_secs()))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|v| api_timestamp(v, now_secs()))
        .transpose()?;
    let c = ctx.client().await?;
    let info = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let tty = info
        .get("Config")
        .and_then(|x| x.get("Tty"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let path = client::query(
        &format!("/containers/{}/logs", s(&info, "Id")),
        &[
            ("stdout", "1"),
            ("stderr", "1"),
            ("since", since.as_deref().unwrap_or("")),
            ("until", until.as_deref().unwrap_or("")),
            ("timestamps", if a.timestamps { "1" } else { "" }),
            ("follow", if a.follow { "1" } else { "" }),
            ("tail", &a.tail),
            ("details", if a.details { "1" } else { "" }),
        ],
    );
    let resp = c.call(Method::GET, &path, &[], client::empty()).await?;
    // API 1.42+ daemons say which it is; older ones call both "raw-stream".
    let multiplexed = resp.headers().get("content-type").and_then(|v| v.to_str().ok())
        == Some("application/vnd.docker.multiplexed-stream")
        || !tty;
    let mut body = resp.into_body();
    let mut demux = Demux::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("error reading the logs: {e}"))?;
        let Ok(d) = frame.into_data() else { continue };
        if !multiplexed {
            attach::write_out(1, &d)?;
            continue;
        }
        let mut err: Option<std::io::Error> = None;
        demux.push(&d, |f| {
            if err.is_none()
                && let Err(e) = attach::write_out(f.stream, f.data)
            {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(Failure::from(e));
        }
    }
    if demux.pending() > 0 {
        return Err(Failure::from("the daemon's stream ended inside a frame"));
    }
    Ok(())
}

// ---- prune ----

/// `container prune` (also part of `system prune`, which asked already: `asked`); returns the space reclaimed.
pub async fn prune(ctx: &Ctx, a: PruneArgs, asked: bool) -> Result<i64, Failure> {
    if !asked
        && !a.force
        && !confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?")
    {
        return Ok(0);
    }
    util::prune(ctx, "/containers/prune", &a.filter, asked, |v| {
        util::print_deleted_names(v, "ContainersDeleted", "Deleted Containers:");
    })
    .await
}

// ---- cp ----

/// A `cp` operand: `CONTAINER:PATH` or a local path (one with a `/` before any `:` is local, as docker's).
pub fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.contains('/') => (Some(c), p),
        _ => (None, arg),
    }
}

/// docker's `SplitPathDirEntry`: (`dir`, `base`) of a path, where `a/b/.` has base `.`.
pub fn split_dir_entry(path: &str) -> (String, String) {
    let cleaned = path.trim_end_matches('/');
    let cleaned = if cleaned.is_empty() { "/" } else { cleaned };
    let p = Path::new(cleaned);
    let base = if cleaned.ends_with("/.") || cleaned == "." {
        ".".to_string()
    } else {
        p.file_name()
            .map_or_else(|| "/".to_string(), |b| b.to_string_lossy().into_owned())
    };
    let dir = match cleaned.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((d, _)) => d.to_string(),
        None => ".".to_string(),
    };
    (dir, base)
}

fn path_stat(h: &hyper::HeaderMap) -> Option<Value> {
    let raw = h.get("x-docker-container-path-stat")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Go's `os.FileMode` bits for directories and symlinks, as in the path-stat header.
const GO_MODE_DIR: u64 = 1 << 31;
const GO_MODE_SYMLINK: u64 = 1 << 27;

async fn stat_in_container(c: &Client, container: &str, path: &str) -> Result<Option<Value>, ClientError> {
    let q = client::query(&format!("/containers/{container}/archive"), &[("path", path)]);
    let resp = c.send(Method::HEAD, &q, &[], client::empty()).await?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        // HEAD has no body: name the container, as the daemon would.
        return Err(ClientError::Daemon {
            status,
            message: format!("cannot stat {path} in container {container}: {status}"),
        });
    }
    Ok(path_stat(resp.headers()))
}

/// Extracts a tar read from `r` into `dst`, as docker's `CopyTo`: into `dst` when it is an existing directory,
/// else into `dst`'s parent with the archive's top entry (`src_base`) renamed to `dst`'s name.
pub fn extract_to(
    r: impl std::io::Read,
    src_base: &str,
    src_is_dir: bool,
    dst: &Path,
    dst_asserts_dir: bool,
) -> Result<(), String> {
    let meta = std::fs::metadata(dst);
    let unpack = |r: &mut dyn std::io::Read, into: &Path| -> Result<(), String> {
        let mut ar = tar::Archive::new(r);
        ar.set_preserve_permissions(true);
        ar.set_preserve_mtime(true);
        ar.set_overwrite(true);
        for entry in ar.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            entry.unpack_in(into).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let mut r = r;
    match meta {
        Ok(m) if m.is_dir() => unpack(&mut r, dst),
        Ok(_) if src_is_dir => Err("cannot copy directory".to_string()),
        Err(_) if !src_is_dir && dst_asserts_dir => Err("no such directory".to_string()),
        _ => {
            let dst_s = dst.to_string_lossy().into_owned();
            let (dir, base) = split_dir_entry(&dst_s);
            let dir = Path::new(&dir);
            if !dir.is_dir() {
                return Err(format!("lstat {}: no such file or directory", dir.display()));
            }
            let tmp = dir.join(format!(".berth-cp-{}", std::process::id()));
            std::fs::create_dir(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
            let res = (|| {
                unpack(&mut r, &tmp)?;
                let from = if src_base == "." {
                    tmp.clone()
                } else {
                    tmp.join(src_base)
                };
                let to = dir.join(&base);
                std::fs::rename(&from, &to).map_err(|e| format!("cannot create {}: {e}", to.display()))
            })();
            let _ = std::fs::remove_dir_all(&tmp);
            res
        }
    }
}

/// A tar of the local `src` whose top entry is named `name` (`.` for a directory's contents), streamed from a
/// thread; the byte count arrives on the returned channel once the archive is written.
fn tar_body(
    src: PathBuf,
    name: String,
    follow: bool,
) -> (
    client::ReqBody,
    tokio::sync::oneshot::Receiver<Result<u64, String>>,
) {
    struct ChanWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>, u64);
    impl std::io::Write for ChanWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .blocking_send(Ok(bytes::Bytes::copy_from_slice(b)))
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload ended"))?;
            self.1 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let err_tx = tx.clone();
        let mut b = tar::Builder::new(ChanWriter(tx, 0));
        b.follow_symlinks(false);
        let r = (|| -> std::io::Result<()> {
            let meta = if follow {
                std::fs::metadata(&src)?
            } else {
                std::fs::symlink_metadata(&src)?
            };
            if meta.is_dir() {
                b.append_dir_all(&name, &src)?;
            } else if follow {
                let mut f = std::fs::File::open(&src)?;
                b.append_file(&name, &mut f)?;
            } else {
                b.append_path_with_name(&src, &name)?;
            }
            b.finish()
        })();
        let result = match r {
            Ok(()) => b.into_inner().map(|w| w.1).map_err(|e| e.to_string()),
            Err(e) => {
                let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                Err(e.to_string())
            }
        };
        let _ = done_tx.send(result);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (item.map(hyper::body::Frame::data), rx))
    });
    (http_body_util::StreamBody::new(stream).boxed_unsync(), done_rx)
}

fn local_abs(p: &str) -> PathBuf {
    let path = Path::new(p);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Keep a trailing "/" or "/.": they carry meaning for cp.
    let mut s = abs.to_string_lossy().into_owned();
    if p.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    PathBuf::from(s)
}

/// `cp`.
pub async fn cp(ctx: &Ctx, a: CpArgs) -> CmdResult {
    let (src_c, src_p) = split_cp_arg(&a.src);
    let (dst_c, dst_p) = split_cp_arg(&a.dst);
    match (src_c, dst_c) {
        (Some(_), Some(_)) => Err(Failure::from("copying between containers is not supported")),
        (None, None) => Err(Failure::from("must specify at least one container source")),
        (Some(c), None) => cp_from(ctx, &a, c, src_p, dst_p).await,
        (None, Some(c)) => cp_to(ctx, &a, src_p, c, dst_p).await,
    }
}

fn report_copy(a: &CpArgs, n: u64, to: &str) {
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {to}",
            human_size(i64::try_from(n).unwrap_or(i64::MAX))
        );
    }
}

async fn cp_from(ctx: &Ctx, a: &CpArgs, container: &str, src: &str, dst: &str) -> CmdResult {
    if src.is_empty() {
        return Err(Failure::from("source path can not be empty"));
    }
    let c = ctx.client().await?;
    let mut src_path = src.to_string();
    let mut rebase: Option<String> = None;
    if a.follow_link
        && let Some(st) = stat_in_container(&c, container, src).await?
        && st.get("mode").and_then(Value::as_u64).unwrap_or(0) & GO_MODE_SYMLINK != 0
    {
        let target = s(&st, "linkTarget").to_string();
        rebase = Some(split_dir_entry(src).1);
        src_path = if target.starts_with('/') {
            target
        } else {
            format!("{}/{target}", split_dir_entry(src).0)
        };
    }
    let q = client::query(
        &format!("/containers/{container}/archive"),
        &[("path", &src_path)],
    );
    let resp = c.call(Method::GET, &q, &[], client::empty()).await?;
    let stat = path_stat(resp.headers()).unwrap_or_default();
    let is_dir = stat.get("mode").and_then(Value::as_u64).unwrap_or(0) & GO_MODE_DIR != 0;
    if dst == "-" {
        return util::write_body(resp, None, "copy", "tmp").await;
    }
    let mut dst_path = local_abs(dst);
    let (_, mut src_base) = split_dir_entry(&src_path);
    if src_base != "." && src_path.trim_end_matches('/').ends_with("/.") {
        src_base = ".".to_string();
    }
    // The archive's entries carry the base name of the path the daemon archived; a followed link keeps the
    // link's own name, so copying into a directory lands as `dir/<link name>`.
    let archive_base = src_base.clone();
    if let Some(name) = &rebase
        && dst_path.is_dir()
    {
        dst_path = dst_path.join(name);
    }
    let asserts_dir = dst.ends_with('/') || dst.ends_with("/.");
    // Stream the body into a pipe read by a blocking extractor.
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
    struct ChanReader(std::sync::mpsc::Receiver<bytes::Bytes>, bytes::Bytes);
    impl std::io::Read for ChanReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.1.is_empty() {
                match self.0.recv() {
                    Ok(b) => self.1 = b,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1 = self.1.slice(n..);
            Ok(n)
        }
    }
    let dst_for_thread = dst_path.clone();
    let extractor = tokio::task::spawn_blocking(move || {
        extract_to(
            ChanReader(rx, bytes::Bytes::new()),
            &archive_base,
            is_dir,
            &dst_for_thread,
            asserts_dir,
        )
    });
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the copy stream broke: {e}"))?;
        if let Ok(d) = frame.into_data() {
            total += d.len() as u64;
            let tx = tx.clone();
            let sent = tokio::task::spawn_blocking(move || tx.send(d).is_ok())
                .await
                .unwrap_or(false);
            if !sent {
                break;
            }
        }
    }
    drop(tx);
    extractor
        .await
        .map_err(|e| Failure::from(format!("the extraction failed: {e}")))?
        .map_err(Failure::from)?;
    report_copy(a, total, &dst_path.to_string_lossy());
    Ok(())
}

async fn cp_to(ctx: &Ctx, a: &CpArgs, src: &str, container: &str, dst: &str) -> CmdResult {
    if dst.is_empty() {
        return Err(Failure::from("destination path can not be empty"));
    }
    let c = ctx.client().await?;
    let mut dst_path = dst.to_string();
    let mut st = stat_in_container(&c, container, dst).await?;
    if let Some(x) = &st
        && x.get("mode").and_then(Value::as_u64).unwrap_or(0) & GO_MODE_SYMLINK != 0
    {
        let target = s(x, "linkTarget").to_string();
        dst_path = if target.starts_with('/') {
            target
        } else {
            format!("{}/{target}", split_dir_entry(dst).0)
        };
        st = stat_in_container(&c, container, &dst_path).await?;
    }
    let dst_is_dir = st
        .as_ref()
        .is_some_and(|x| x.get("mode").and_then(Value::as_u64).unwrap_or(0) & GO_MODE_DIR != 0);
    let (extract_dir, body, done) = if src == "-" {
        if !dst_is_dir {
            return Err(Failure::from(format!(
                "destination \"{container}:{dst}\" must be a directory"
            )));
        }
        (dst_path.clone(), client::reader_body(tokio::io::stdin()), None)
    } else {
        let src_abs = local_abs(src);
        let meta = if a.follow_link {
            std::fs::metadata(&src_abs)
        } else {
            std::fs::symlink_metadata(&src_abs)
        }
        .map_err(|e| Failure::from(format!("lstat {}: {}", src_abs.display(), run::io_reason(&e))))?;
        let (_, mut src_base) = split_dir_entry(&src_abs.to_string_lossy());
        if src.trim_end_matches('/').ends_with("/.") || src == "." {
            src_base = ".".to_string();
        }
        let (dst_dir, dst_base) = split_dir_entry(&dst_path);
        let (extract_dir, name) = match (st.is_some(), dst_is_dir, meta.is_dir()) {
            (true, true, _) => (dst_path.clone(), src_base),
            (true, false, true) => return Err(Failure::from("cannot copy directory")),
            (true, false, false) => (dst_dir, dst_base),
            (false, _, true) => (dst_dir, dst_base),
            (false, _, false) if dst.ends_with('/') => return Err(Failure::from("no such directory")),
            (false, _, false) => (dst_dir, dst_base),
        };
        let (body, done) = tar_body(src_abs, name, a.follow_link);
        (extract_dir, body, Some(done))
    };
    let q = client::query(
        &format!("/containers/{container}/archive"),
        &[
            ("path", &extract_dir),
            ("noOverwriteDirNonDir", "true"),
            ("copyUIDGID", if a.archive { "true" } else { "" }),
        ],
    );
    c.call(
        Method::PUT,
        &q,
        &[("content-type", "application/x-tar".to_string())],
        body,
    )
    .await?;
    if let Some(done) = done {
        let n = done
            .await
            .map_err(|_| Failure::from("the archive writer ended early"))?
            .map_err(Failure::from)?;
        report_copy(a, n, &format!("{container}:{dst}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_display_as_docker() {
        let p = |ip: &str, private: u64, public: u64, t: &str| json!({"IP": ip, "PrivatePort": private, "PublicPort": public, "Type": t});
        assert_eq!(displayable_ports(&[]), "");
        assert_eq!(displayable_ports(&[p("", 80, 0, "tcp")]), "80/tcp");
        assert_eq!(
            displayable_ports(&[p("", 80, 0, "tcp"), p("", 81, 0, "tcp"), p("", 83, 0, "tcp")]),
            "80-81/tcp, 83/tcp"
        );
        assert_eq!(
            displayable_ports(&[p("0.0.0.0", 80, 8080, "tcp")]),
            "0.0.0.0:8080->80/tcp"
        );
        assert_eq!(
            displayable_ports(&[p("0.0.0.0", 80, 80, "tcp"), p("0.0.0.0", 81, 81, "tcp")]),
            "0.0.0.0:80-81->80-81/tcp"
        );
        assert_eq!(
            displayable_ports(&[p("::", 80, 8080, "udp")]),
            "[::]:8080->80/udp"
        );
    }

    #[test]
    fn ports_of_published_ranges_as_docker_28() {
        let p = |ip: &str, private: u64, public: u64, t: &str| json!({"IP": ip, "PrivatePort": private, "PublicPort": public, "Type": t});
        // -p 8000-8002:80-82: docker's DisplayablePorts only groups ports whose public and private numbers are
        // equal; others are listed one by one.
        assert_eq!(
            displayable_ports(&[
                p("0.0.0.0", 82, 8002, "tcp"),
                p("0.0.0.0", 80, 8000, "tcp"),
                p("0.0.0.0", 81, 8001, "tcp")
            ]),
            "0.0.0.0:8000->80/tcp, 0.0.0.0:8001->81/tcp, 0.0.0.0:8002->82/tcp"
        );
        // -p 80-82:80-82 collapses.
        assert_eq!(
            displayable_ports(&[
                p("0.0.0.0", 80, 80, "tcp"),
                p("0.0.0.0", 81, 81, "tcp"),
                p("0.0.0.0", 82, 82, "tcp")
            ]),
            "0.0.0.0:80-82->80-82/tcp"
        );
        // Exposed only, published, udp, a gap (a group closed by a gap comes first, as docker's).
        assert_eq!(
            displayable_ports(&[
                p("", 443, 0, "tcp"),
                p("127.0.0.1", 80, 8080, "tcp"),
                p("0.0.0.0", 53, 53, "udp"),
                p("", 90, 0, "tcp"),
                p("", 91, 0, "tcp"),
            ]),
            "90-91/tcp, 0.0.0.0:53->53/udp, 443/tcp, 127.0.0.1:8080->80/tcp"
        );
        let c = json!({"Id": "x", "Ports": [p("0.0.0.0", 80, 8080, "tcp")],
                       "NetworkSettings": {"Networks": {"n2": {}, "n1": {}}}});
        let r = ps_row(&c, false);
        assert_eq!(r["Ports"], "0.0.0.0:8080->80/tcp");
        assert_eq!(r["Networks"], "n1,n2");
        let f = Format::parse("{{.Ports}}|{{.Networks}}", "").unwrap();
        assert_eq!(f.render(&r).unwrap(), "0.0.0.0:8080->80/tcp|n1,n2");
    }

    #[test]
    fn port_output() {
        let v = json!({"NetworkSettings": {"Ports": {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
            "9/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}],
            "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
            "443/tcp": null,
        }}});
        assert_eq!(
            port_lines(&v, "web", None).unwrap(),
            vec![
                "9/tcp -> 127.0.0.1:9000",
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080"
            ]
        );
        assert_eq!(
            port_lines(&v, "web", Some("80")).unwrap(),
            vec!["0.0.0.0:8080", "[::]:8080"]
        );
        assert_eq!(
            port_lines(&v, "web", Some("53/udp")).unwrap(),
            vec!["0.0.0.0:5353"]
        );
        let e = port_lines(&v, "web", Some("81/tcp")).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.code),
            ("Error: No public port '81/tcp' published for web", 1)
        );
        assert_eq!(
            port_lines(&v, "web", Some("443")).unwrap_err().message,
            "Error: No public port '443' published for web"
        );
        assert_eq!(
            port_lines(&v, "web", Some("http")).unwrap_err().message,
            "Error: invalid port (http): strconv.ParseUint: parsing \"http\": invalid syntax"
        );
        assert_eq!(
            port_lines(&v, "web", Some("70000")).unwrap_err().message,
            "Error: invalid port (70000): strconv.ParseUint: parsing \"70000\": value out of range"
        );
        assert!(port_lines(&json!({}), "web", None).unwrap().is_empty());
    }

    #[test]
    fn ps_rows() {
        let c = json!({
            "Id": "1fe0ee0ef689b6197fbc639a83c5f594b42cfb8dd9f6411f2df38c4e0ca672bf",
            "Names": ["/s2"], "Image": "bb", "Command": "sh -c 'echo out; echo err >&2'",
            "Created": 0, "State": "exited", "Status": "Exited (2) 1 second ago",
            "Labels": {"b": "2", "a": "1"}, "SizeRw": 0, "SizeRootFs": 1_980_000,
            "Mounts": [{"Name": "3857d9a887eca4c1d2e3f4", "Driver": "local"}, {"Source": "/tmp", "Type": "bind"}],
            "NetworkSettings": {"Networks": {"none": {}}},
        });
        let r = ps_row(&c, false);
        assert_eq!(r["ID"], "1fe0ee0ef689");
        assert_eq!(r["Command"], "\"sh -c 'echo out; ec…\"");
        assert_eq!(r["Names"], "s2");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Size"], "0B (virtual 1.98MB)");
        assert_eq!(r["Mounts"], "3857d9a887eca4…,/tmp");
        assert_eq!(r["LocalVolumes"], "1");
        assert_eq!(r["Networks"], "none");
        assert_eq!(r["CreatedAt"], "1970-01-01 00:00:00 +0000 UTC");
        let r = ps_row(&c, true);
        assert_eq!(r["Command"], "\"sh -c 'echo out; echo err >&2'\"");
        assert_eq!(r["ID"].as_str().unwrap().len(), 64);
        let img = json!({"Id": "x", "Image": "sha256:159dcc5ffc8398a00a88dae6b7d3c1b6"});
        assert_eq!(ps_row(&img, false)["Image"], "159dcc5ffc83");
        assert_eq!(ellipsis("abc", 3), "abc");
        assert_eq!(ellipsis("abcd", 3), "ab…");
    }

    #[test]
    fn stats_as_docker() {
        assert_eq!(bytes_size(384.0 * 1024.0), "384KiB");
        assert_eq!(bytes_size(23.54 * 1024.0 * 1024.0 * 1024.0), "23.54GiB");
        assert_eq!(bytes_size(1536.0 * 1024.0), "1.5MiB");
        assert_eq!(bytes_size(0.0), "0B");
        let v = json!({
            "id": "634c000850251e4c6a854bad83a04266e4ac34e9501514b7c7acc3c26fb16a58", "name": "/s1",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2_000_000, "limit": 100_000_000, "stats": {"total_inactive_file": 1_000_000}},
            "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 2000}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "write", "value": 8192}]},
            "pids_stats": {"current": 3},
        });
        let r = stats_row("s1", &v, false);
        assert_eq!(r["ID"], "634c00085025");
        assert_eq!(r["Name"], "s1");
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "976.6KiB / 95.37MiB");
        assert_eq!(r["MemPerc"], "1.00%");
        assert_eq!(r["NetIO"], "1kB / 2kB");
        assert_eq!(r["BlockIO"], "4.1kB / 8.19kB");
        assert_eq!(r["PIDs"], "3");
        // cgroup v2: inactive_file.
        let v2 = json!({"memory_stats": {"usage": 3000, "limit": 6000, "stats": {"inactive_file": 1000}}});
        assert_eq!(stats_row("x", &v2, false)["MemPerc"], "33.33%");
    }

    #[test]
    fn top_table() {
        let lines = vec![
            vec!["UID".to_string(), "PID".to_string(), "CMD".to_string()],
            vec!["root".to_string(), "6638".to_string(), "sleep 1000".to_string()],
        ];
        assert_eq!(
            align_cells(&lines, 20, false),
            format!(
                "UID{}PID{}CMD\nroot{}6638{}sleep 1000\n",
                " ".repeat(17),
                " ".repeat(17),
                " ".repeat(16),
                " ".repeat(16)
            )
        );
    }

    #[test]
    fn timestamps_for_logs() {
        let now = 1_000_000;
        assert_eq!(api_timestamp("10m", now).unwrap(), (now - 600).to_string());
        assert_eq!(api_timestamp("1h30m", now).unwrap(), (now - 5400).to_string());
        assert_eq!(api_timestamp("1.5s", now).unwrap(), (now - 1).to_string());
        assert_eq!(api_timestamp("0", now).unwrap(), "0");
        assert_eq!(api_timestamp("1700000000", now).unwrap(), "1700000000");
        assert_eq!(api_timestamp("1700000000.5", now).unwrap(), "1700000000.5");
        assert_eq!(
            api_timestamp("2013-01-02T13:23:37Z", now).unwrap(),
            "1357133017.000000000"
        );
        assert_eq!(
            api_timestamp("2013-01-02T13:23:37.5+01:00", now).unwrap(),
            "1357129417.500000000"
        );
        assert_eq!(api_timestamp("2013-01-02", now).unwrap(), "1357084800.000000000");
        assert_eq!(
            api_timestamp("2013-01-02T13:23", now).unwrap(),
            "1357132980.000000000"
        );
        assert!(api_timestamp("2013-13-45", now).is_err());
        assert!(api_timestamp("yesterday", now).is_err());
    }

    #[test]
    fn update_bodies() {
        let mut a = UpdateArgs {
            containers: vec!["c".into()],
            blkio_weight: None,
            cpu_period: None,
            cpu_quota: None,
            cpu_rt_period: None,
            cpu_rt_runtime: None,
            cpu_shares: None,
            cpus: None,
            cpuset_cpus: None,
            cpuset_mems: None,
            memory: None,
            memory_reservation: None,
            memory_swap: None,
            pids_limit: None,
            restart: None,
        };
        assert!(update_body(&a).unwrap().is_none());
        a.memory = Some(10 << 20);
        a.memory_swap = Some(-1);
        a.restart = Some("on-failure:2".into());
        assert_eq!(
            update_body(&a).unwrap().unwrap(),
            json!({"Memory": 10_485_760, "MemorySwap": -1,
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
        );
    }

    #[test]
    fn cp_paths_and_extraction() {
        assert_eq!(split_cp_arg("c1:/etc/passwd"), (Some("c1"), "/etc/passwd"));
        assert_eq!(split_cp_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
        assert_eq!(split_dir_entry("/etc/passwd"), ("/etc".into(), "passwd".into()));
        assert_eq!(split_dir_entry("/etc/"), ("/".into(), "etc".into()));
        assert_eq!(split_dir_entry("/etc/."), ("/etc".into(), ".".into()));
        assert_eq!(split_dir_entry("/"), ("/".into(), "/".into()));

        let tar_of = |entries: &[(&str, Option<&[u8]>)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, data) in entries {
                let mut h = tar::Header::new_gnu();
                match data {
                    Some(d) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(d.len() as u64);
                        h.set_mode(0o644);
                        h.set_cksum();
                        b.append_data(&mut h, name, *d).unwrap();
                    }
                    None => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_size(0);
                        h.set_mode(0o755);
                        h.set_cksum();
                        b.append_data(&mut h, name, &[][..]).unwrap();
                    }
                }
            }
            b.into_inner().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A directory into an existing directory: lands inside it.
        let t = tar_of(&[("bin", None), ("bin/sh", Some(b"x"))]);
        extract_to(&t[..], "bin", true, d, false).unwrap();
        assert_eq!(std::fs::read(d.join("bin/sh")).unwrap(), b"x");
        // A directory to a new name: renamed.
        extract_to(&t[..], "bin", true, &d.join("newbin"), false).unwrap();
        assert_eq!(std::fs::read(d.join("newbin/sh")).unwrap(), b"x");
        // A file to a new name, and over an existing file.
        let f = tar_of(&[("passwd", Some(b"root"))]);
        extract_to(&f[..], "passwd", false, &d.join("pw"), false).unwrap();
        assert_eq!(std::fs::read(d.join("pw")).unwrap(), b"root");
        extract_to(&f[..], "passwd", false, &d.join("pw"), false).unwrap();
        // Errors as docker's.
        assert_eq!(
            extract_to(&t[..], "bin", true, &d.join("pw"), false).unwrap_err(),
            "cannot copy directory"
        );
        assert_eq!(
            extract_to(&f[..], "passwd", false, &d.join("nodir/"), true).unwrap_err(),
            "no such directory"
        );
        // Entries that climb out are refused by unpack_in, nothing written outside.
        let mut evil = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        {
            let name = b"../escaped";
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
        }
        h.set_cksum();
        evil.append(&h, &b"x"[..]).unwrap();
        let evil = evil.into_inner().unwrap();
        let inner = d.join("inner");
        std::fs::create_dir(&inner).unwrap();
        let _ = extract_to(&evil[..], "x", false, &inner, false);
        assert!(!d.join("escaped").exists());
        // No temp directories left behind.
        assert!(
            std::fs::read_dir(d).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".berth-cp"))
        );
    }
}
