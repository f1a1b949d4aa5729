//! `run` and `create`: docker's container flags, their conversion to the body of `POST /containers/create`
//! (Docker API v1.47: the `Config` fields at the top level, `HostConfig`, `NetworkingConfig`), the pull of a missing
//! image, and `run`'s attach → wait → start → resize sequence with docker's exit codes (125 when the daemon or a
//! flag fails, 126 when the command cannot be executed, 127 when it is not found, else the container's own).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::Path;

use base64::Engine as _;
use berth_image::reference::Reference;
use clap::{ArgAction, Args};
use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::attach::{self, Ended, StreamOpts};
use crate::client::{self, Client, ClientError, JsonLines};
use crate::{CmdResult, Ctx, Failure};

/// The flags `run` and `create` share.
#[derive(Debug, Args, Default, Clone)]
pub struct ContainerFlags {
    /// Attach to STDIN, STDOUT or STDERR.
    #[arg(short = 'a', long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits.
    #[arg(long = "rm")]
    pub rm: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Set meta data on a container.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels.
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long = "entrypoint")]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long = "hostname")]
    pub hostname: Option<String>,
    /// Container NIS domain name.
    #[arg(long = "domainname")]
    pub domainname: Option<String>,
    /// Bind mount a volume (SRC:DST[:OPTS], NAME:DST[:OPTS] or DST for an anonymous volume).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=...,target=...,...).
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s).
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs directory (DST[:OPTS]).
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add a host device to the container (SRC[:DST][:PERMS]).
    #[arg(long = "device")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list.
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Sysctl options.
    #[arg(long = "sysctl", value_name = "KEY=VALUE", value_parser = parse_sysctl)]
    pub sysctl: Vec<(String, String)>,
    /// Ulimit options (NAME=SOFT[:HARD]).
    #[arg(long = "ulimit", value_parser = parse_ulimit)]
    pub ulimit: Vec<Ulimit>,
    /// IPC mode to use (none, private, shareable, host, container:<name|id>).
    #[arg(long = "ipc")]
    pub ipc: Option<String>,
    /// PID namespace to use (host, container:<name|id>).
    #[arg(long = "pid")]
    pub pid: Option<String>,
    /// UTS namespace to use (host).
    #[arg(long = "uts")]
    pub uts: Option<String>,
    /// User namespace to use.
    #[arg(long = "userns")]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private).
    #[arg(long = "cgroupns")]
    pub cgroupns: Option<String>,
    /// Optional parent cgroup for the container.
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Connect a container to a network (NAME, or name=NAME,alias=A,ip=IP,...); repeatable.
    #[arg(long = "network", alias = "net")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33).
    #[arg(long = "ip6")]
    pub ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33).
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Container IPv4/IPv6 link-local addresses.
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    /// Security options (no-new-privileges, seccomp=unconfined|FILE, ...).
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Add Linux capabilities.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long = "privileged")]
    pub privileged: bool,
    /// Memory limit (units b, k, m, g).
    #[arg(short = 'm', long = "memory", value_parser = parse_ram)]
    pub memory: Option<i64>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long = "memory-swap", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_parser = parse_ram)]
    pub memory_reservation: Option<i64>,
    /// Tune container memory swappiness (0 to 100).
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Disable OOM Killer.
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000).
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size", value_parser = parse_ram)]
    pub shm_size: Option<i64>,
    /// Number of CPUs.
    #[arg(long = "cpus", value_parser = parse_nano_cpus)]
    pub cpus: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable.
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long = "init")]
    pub init: bool,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N]).
    #[arg(long = "restart")]
    pub restart: Option<String>,
    /// Logging driver for the container.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options.
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Publish a container's port(s) to the host.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports.
    #[arg(long = "expose")]
    pub expose: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Add additional groups to join.
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Pull image before running ("always", "missing", "never").
    #[arg(long = "pull", default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable.
    #[arg(long = "platform")]
    pub platform: Option<String>,
    /// Runtime to use for this container.
    #[arg(long = "runtime")]
    pub runtime: Option<String>,
    /// Write the container ID to the file.
    #[arg(long = "cidfile")]
    pub cidfile: Option<String>,
    /// Suppress the pull output.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Skip image verification (accepted for docker compatibility).
    #[arg(long = "disable-content-trust", hide = true, default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_content_trust: bool,
    /// Print usage.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments: as docker's, flag parsing stops at the image, so that
    /// `run bb sh -c 'echo $0'` gives `-c` to the command.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

impl ContainerFlags {
    /// The image.
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    /// The command and its arguments.
    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }
}

/// `create`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// `run`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Proxy received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// A `--ulimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// The resource (nofile, nproc, ...).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// docker's `RAMInBytes` (go-units): a number with an optional binary unit `b`, `k`, `m`, `g`, `t`, `p`, optionally
/// followed by `b` or `ib` (`512m`, `1.5g`, `2GiB`), with the same error messages.
pub fn parse_ram(s: &str) -> Result<i64, String> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{s}'"));
    };
    let (num, sfx) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size: f64 = num
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {num:?}: invalid syntax"))?;
    if size < 0.0 || !size.is_finite() {
        return Err(format!("invalid size: '{s}'"));
    }
    if sfx.is_empty() {
        return Ok(size as i64);
    }
    let lower = sfx.to_lowercase();
    let bad = || Err(format!("invalid suffix: '{lower}'"));
    if lower.len() > 3 {
        return bad();
    }
    let b = lower.as_bytes();
    if b[0] == b'b' {
        return if b.len() == 1 { Ok(size as i64) } else { bad() };
    }
    let mul: f64 = match b[0] {
        b'k' => 1024.0,
        b'm' => 1024.0 * 1024.0,
        b'g' => 1024.0 * 1024.0 * 1024.0,
        b't' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        b'p' => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return bad(),
    };
    match b.len() {
        2 if b[1] != b'b' => return bad(),
        3 if &b[1..] != b"ib" => return bad(),
        _ => {}
    }
    Ok((size * mul) as i64)
}

/// `--memory-swap`: `-1` (unlimited) or a size.
pub fn parse_swap(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_ram(s)
}

/// `--cpus 1.5` → NanoCpus (exact: more than 9 decimals is "too precise", as docker).
pub fn parse_nano_cpus(s: &str) -> Result<i64, String> {
    let bad = || format!("failed to parse {s} as a rational number");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = int.starts_with('-');
    let int_digits = int.trim_start_matches(['-', '+']);
    if (int_digits.is_empty() && frac.is_empty())
        || !int_digits.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > 9 {
        return Err("value is too precise".to_string());
    }
    let whole: i64 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().map_err(|_| bad())?
    };
    let frac_nanos: i64 = if frac_trimmed.is_empty() {
        0
    } else {
        format!("{frac_trimmed:0<9}").parse().map_err(|_| bad())?
    };
    let v = whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(bad)?;
    Ok(if neg { -v } else { v })
}

const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit NAME=SOFT[:HARD]` (go-units `ParseUlimit`).
pub fn parse_ulimit(s: &str) -> Result<Ulimit, String> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let num = |v: &str| -> Result<i64, String> {
        v.parse::<i64>()
            .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s1, h)) => {
            if h.contains(':') {
                return Err(format!(
                    "too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
                ));
            }
            (num(s1)?, num(h)?)
        }
        None => {
            let v = num(limits)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// `--sysctl KEY=VALUE`, only the namespaced sysctls docker allows.
pub fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    const ALLOWED: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let not_allowed = || format!("sysctl '{s}' is not allowed");
    let (k, v) = s.split_once('=').ok_or_else(not_allowed)?;
    if ALLOWED.contains(&k) || k.starts_with("net.") || k.starts_with("fs.mqueue.") {
        Ok((k.to_string(), v.to_string()))
    } else {
        Err(not_allowed())
    }
}

/// docker's env file format: `KEY=VALUE` lines (the value taken verbatim), `KEY` alone takes the value from our
/// environment (dropped when unset), blank lines and `#` comments are skipped.
pub fn parse_env_file(content: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out = Vec::new();
    for raw in content.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                if k.is_empty() {
                    return Err(format!("no variable name on line '{line}'"));
                }
                if k.contains(char::is_whitespace) {
                    return Err(format!("variable '{k}' contains whitespaces"));
                }
                out.push(format!("{k}={v}"));
            }
            None => {
                let k = line.trim_end();
                if k.contains(char::is_whitespace) {
                    return Err(format!("variable '{k}' contains whitespaces"));
                }
                if let Some(v) = lookup(k) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// `-e KEY=VALUE` as is; `-e KEY` takes our value when we have one (docker's `ValidateEnv`).
pub fn env_value(e: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (k, has_value) = match e.split_once('=') {
        Some((k, _)) => (k, true),
        None => (e, false),
    };
    if k.is_empty() {
        return Err(format!("invalid environment variable: {e}"));
    }
    if has_value {
        return Ok(e.to_string());
    }
    Ok(lookup(k).map_or_else(|| e.to_string(), |v| format!("{k}={v}")))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a CSV record (docker's `--mount` syntax) at commas outside double quotes.
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn abs_source(src: &str) -> String {
    if (src == "." || src.starts_with("./") || src.starts_with(".."))
        && let Ok(cwd) = std::env::current_dir()
    {
        return normalize(&cwd.join(src));
    }
    src.to_string()
}

fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// `--mount` → a `Mount` object of the API.
pub fn parse_mount(spec: &str) -> Result<Value, String> {
    let mut m = Map::new();
    let mut kind = "volume".to_string();
    let mut bind = Map::new();
    let mut volume = Map::new();
    let mut tmpfs = Map::new();
    let mut target = String::new();
    for field in csv_fields(spec) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.insert("ReadOnly".into(), json!(true));
                }
                "volume-nocopy" => {
                    volume.insert("NoCopy".into(), json!(true));
                }
                "bind-nonrecursive" => {
                    bind.insert("NonRecursive".into(), json!(true));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let boolean = |k: &str| parse_bool(&val).ok_or_else(|| format!("invalid value for {k}: {val}"));
        match key.as_str() {
            "type" => kind = val.to_lowercase(),
            "source" | "src" => {
                m.insert("Source".into(), json!(abs_source(&val)));
            }
            "target" | "dst" | "destination" => target = val.clone(),
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(boolean(&key)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(val.to_lowercase()));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(val.to_lowercase()));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(boolean(&key)?));
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), json!(boolean("volume-nocopy")?));
            }
            "volume-label" => {
                let (k, v) = val.split_once('=').unwrap_or((&val, ""));
                let labels = volume.entry("Labels").or_insert_with(|| json!({}));
                labels[k] = json!(v);
            }
            "volume-driver" => {
                let dc = volume.entry("DriverConfig").or_insert_with(|| json!({}));
                dc["Name"] = json!(val);
            }
            "volume-opt" => {
                let (k, v) = val.split_once('=').unwrap_or((&val, ""));
                let dc = volume.entry("DriverConfig").or_insert_with(|| json!({}));
                if dc.get("Options").is_none() {
                    dc["Options"] = json!({});
                }
                dc["Options"][k] = json!(v);
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), json!(val));
            }
            "tmpfs-size" => {
                let n = parse_ram(&val).map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.insert("SizeBytes".into(), json!(n));
            }
            "tmpfs-mode" => {
                let n =
                    u32::from_str_radix(&val, 8).map_err(|_| format!("invalid value for {key}: {val}"))?;
                tmpfs.insert("Mode".into(), json!(n));
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if kind.is_empty() {
        return Err("type is required".to_string());
    }
    if target.is_empty() {
        return Err("target is required".to_string());
    }
    for (opts, prefix, want) in [
        (&volume, "volume", "volume"),
        (&bind, "bind", "bind"),
        (&tmpfs, "tmpfs", "tmpfs"),
    ] {
        if !opts.is_empty() && kind != want {
            return Err(format!(
                "cannot mix '{prefix}-*' options with mount type '{kind}'"
            ));
        }
    }
    m.insert("Type".into(), json!(kind));
    m.insert("Target".into(), json!(target));
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !volume.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(volume));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    Ok(Value::Object(m))
}

/// `-v SPEC`: `Ok(Some(bind))` for `SRC:DST[:OPTS]` (a relative `./src` made absolute), `Ok(None)` for an
/// anonymous volume `DST`.
pub fn parse_volume(spec: &str) -> Result<Option<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [""] | [] => Err(format!("invalid spec: {spec}: empty section between colons")),
        [_] => Ok(None),
        [src, rest @ ..] if rest.len() <= 2 => {
            if src.is_empty() || rest[0].is_empty() {
                return Err(format!("invalid spec: {spec}: empty section between colons"));
            }
            let src = if src.starts_with('.') {
                abs_source(src)
            } else {
                (*src).to_string()
            };
            Ok(Some(
                std::iter::once(src.as_str())
                    .chain(rest.iter().copied())
                    .collect::<Vec<_>>()
                    .join(":"),
            ))
        }
        _ => Err(format!("invalid spec: {spec}: too many colons")),
    }
}

/// `--device SRC[:DST][:PERMS]` → a `DeviceMapping`.
pub fn parse_device(spec: &str) -> Result<Value, String> {
    let valid_mode = |m: &str| {
        !m.is_empty()
            && m.len() <= 3
            && m.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
            && m.chars().collect::<std::collections::HashSet<_>>().len() == m.len()
    };
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let mut perms = "rwm".to_string();
    let mut dst = String::new();
    match parts.as_slice() {
        [_] => {}
        [_, b] => {
            if valid_mode(b) {
                perms = (*b).to_string();
            } else {
                dst = (*b).to_string();
            }
        }
        [_, b, c] => {
            perms = (*c).to_string();
            if valid_mode(b) {
                perms = (*b).to_string();
            } else {
                dst = (*b).to_string();
            }
        }
        _ => return Err(format!("invalid device specification: {spec}")),
    }
    let src = parts[0];
    if !src.starts_with('/') {
        return Err(format!("bad format for path: {src}"));
    }
    if !dst.is_empty() && !dst.starts_with('/') {
        return Err(format!("bad format for path: {dst}"));
    }
    if !valid_mode(&perms) {
        return Err(format!("invalid device mode: {perms}"));
    }
    if dst.is_empty() {
        dst = src.to_string();
    }
    Ok(json!({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}))
}

/// `--restart` → `RestartPolicy` (docker's `ParseRestartPolicy`; the daemon checks the name).
pub fn parse_restart(policy: &str) -> Result<Value, String> {
    if policy.is_empty() {
        return Ok(json!({"Name": "no", "MaximumRetryCount": 0}));
    }
    let (name, count) = policy.split_once(':').unwrap_or((policy, ""));
    if policy.contains(':') && name.is_empty() {
        return Err("invalid restart policy format: no policy provided before colon".to_string());
    }
    let mut max = 0i64;
    if !count.is_empty() {
        max = count.parse().map_err(|_| {
            "invalid restart policy format: maximum retry count must be an integer".to_string()
        })?;
    }
    Ok(json!({"Name": name, "MaximumRetryCount": max}))
}

/// `--security-opt` values as sent: `seccomp=FILE` becomes `seccomp=<the file's JSON, compacted>` (the daemon
/// cannot read our files), `seccomp=unconfined|builtin` and everything else pass through.
pub fn security_opts(opts: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(opts.len());
    for opt in opts {
        let (k, v) = match opt.split_once('=') {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => (opt.as_str(), ""),
            None => opt.split_once(':').unwrap_or((opt.as_str(), "")),
        };
        if v.is_empty() && k != "no-new-privileges" {
            return Err(format!("Invalid --security-opt: {opt:?}"));
        }
        if k == "seccomp" && v != "unconfined" && v != "builtin" {
            let content = std::fs::read(v).map_err(|e| {
                format!(
                    "opening seccomp profile ({v}) failed: open {v}: {}",
                    io_reason(&e)
                )
            })?;
            let parsed: Value = serde_json::from_slice(&content)
                .map_err(|e| format!("compacting json for seccomp profile ({v}) failed: {e}"))?;
            out.push(format!("seccomp={parsed}"));
            continue;
        }
        out.push(opt.clone());
    }
    Ok(out)
}

/// An I/O error's reason as Go prints it ("no such file or directory").
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn normalize_caps(caps: &[String]) -> Vec<String> {
    let mut out: Vec<String> = caps
        .iter()
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty())
        .map(|c| {
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect();
    out.sort();
    out.dedup();
    if out.iter().any(|c| c == "ALL") {
        return vec!["ALL".to_string()];
    }
    out
}

/// `--cap-add`/`--cap-drop` as docker sends them: upper case with `CAP_`, `ALL` alone when given, and a cap both
/// added and dropped only added.
pub fn effective_caps(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    let add = normalize_caps(add);
    let drop: Vec<String> = normalize_caps(drop)
        .into_iter()
        .filter(|c| !add.contains(c))
        .collect();
    (add, drop)
}

/// Go's `strconv.ParseUint(s, 10, 16)` with its error text.
fn parse_uint16(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    match s.parse::<u16>() {
        Ok(v) => Ok(u64::from(v)),
        Err(_) => Err(format!("strconv.ParseUint: parsing {s:?}: value out of range")),
    }
}

/// go-connections' `ParsePortRange`: `PORT` or `START-END` (anything after a second `-` is ignored, as there).
pub fn parse_port_range(ports: &str) -> Result<(u64, u64), String> {
    if ports.is_empty() {
        return Err("empty string specified for ports".to_string());
    }
    if !ports.contains('-') {
        let p = parse_uint16(ports)?;
        return Ok((p, p));
    }
    let mut parts = ports.split('-');
    let start = parse_uint16(parts.next().unwrap_or(""))?;
    let end = parse_uint16(parts.next().unwrap_or(""))?;
    if end < start {
        return Err(format!("invalid range specified for port: {ports}"));
    }
    Ok((start, end))
}

/// go-connections' `SplitProtoPort`: `PORT[/PROTO]` → (proto, port); tcp when none is given, both empty when the
/// port is.
pub fn split_proto_port(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return (String::new(), String::new());
    }
    if parts.len() == 1 {
        return ("tcp".to_string(), raw.to_string());
    }
    if parts[1].is_empty() {
        return ("tcp".to_string(), parts[0].to_string());
    }
    (parts[1].to_string(), parts[0].to_string())
}

/// docker's `convertToStandardNotation`: the long `-p` syntax (`published=8080,target=80,protocol=udp`) as
/// `8080:80/udp`; other values unchanged.
pub fn publish_standard_notation(spec: &str) -> Result<String, String> {
    if !spec.contains('=') {
        return Ok(spec.to_string());
    }
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([("protocol", "tcp")]);
    for param in spec.split(',') {
        match param.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k, v);
            }
            _ => {
                return Err(format!(
                    "invalid publish opts format (should be name=value but got '{param}')"
                ));
            }
        }
    }
    let get = |k: &str| params.get(k).copied().unwrap_or("");
    Ok(format!(
        "{}:{}/{}",
        get("published"),
        get("target"),
        get("protocol")
    ))
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]` → (`"80/tcp"`, `{"HostIp", "HostPort"}`) pairs, as go-connections'
/// `ParsePortSpec`: a container range gets one binding per port (with a host range of the same size, or no host
/// port); a single container port with a host range gets one binding with the range as `HostPort`.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, Value)>, String> {
    let spec = &publish_standard_notation(spec)?;
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (ip, host_port, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (proto, container) = split_proto_port(container);
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let ip = if let Some(inner) = ip.strip_prefix('[') {
        match inner.split_once(']') {
            None => {
                return Err(format!(
                    "invalid IP address {ip}: address {ip}:: missing ']' in address"
                ));
            }
            Some((host, "")) => host.to_string(),
            Some(_) => {
                return Err(format!(
                    "invalid IP address {ip}: address {ip}:: missing port in address"
                ));
            }
        }
    } else {
        ip
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (start, end) =
        parse_port_range(&container).map_err(|_| format!("invalid containerPort: {container}"))?;
    let (mut host_start, mut host_end) = (0, 0);
    if !host_port.is_empty() {
        (host_start, host_end) =
            parse_port_range(host_port).map_err(|_| format!("invalid hostPort: {host_port}"))?;
        if end - start != host_end - host_start && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {container} and {host_port}"
            ));
        }
    }
    let count = end - start + 1;
    Ok((0..count)
        .map(|i| {
            let mut hp = String::new();
            if !host_port.is_empty() {
                hp = (host_start + i).to_string();
                if count == 1 && host_start != host_end {
                    hp = format!("{hp}-{host_end}");
                }
            }
            (
                format!("{}/{proto}", start + i),
                json!({"HostIp": ip, "HostPort": hp}),
            )
        })
        .collect())
}

/// `--expose PORT[-PORT][/PROTO]` → port keys, with docker's errors.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    if spec.contains(':') {
        return Err(format!("invalid port format for --expose: {spec}"));
    }
    let (proto, port) = split_proto_port(spec);
    let (a, b) = parse_port_range(&port)
        .map_err(|e| format!("invalid range format for --expose: {spec}, error: {e}"))?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// `--add-host NAME:IP` (or `NAME=IP`) → `NAME:IP`; the IP may be `host-gateway`.
pub fn parse_add_host(spec: &str) -> Result<String, String> {
    let (name, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| format!("bad format for add-host: {spec:?}"))?;
    if name.is_empty() {
        return Err(format!("bad format for add-host: {spec:?}"));
    }
    let bare = ip.trim_start_matches('[').trim_end_matches(']');
    if bare != "host-gateway" && bare.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address in add-host: {ip:?}"));
    }
    Ok(format!("{name}:{bare}"))
}

/// One `--network` value: a name, or docker's long syntax `name=N,alias=A,ip=IP,ip6=IP,mac-address=M,
/// link-local-ip=IP,driver-opt=K=V,gw-priority=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAttachment {
    /// The network (name or ID).
    pub target: String,
    /// Network-scoped aliases.
    pub aliases: Vec<String>,
    /// The IPv4 address.
    pub ipv4: String,
    /// The IPv6 address.
    pub ipv6: String,
    /// The MAC address.
    pub mac: String,
    /// Link-local addresses.
    pub link_local: Vec<String>,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Gateway priority.
    pub gw_priority: i64,
}

/// docker's `NetworkOpt.Set`: the long syntax when the value has `word=word` in it (keys and values are
/// lower-cased, as docker does), else the value is the network.
pub fn parse_network_opt(value: &str) -> Result<NetworkAttachment, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = value.as_bytes();
    let long = (1..bytes.len().saturating_sub(1))
        .any(|i| bytes[i] == b'=' && word(bytes[i - 1]) && word(bytes[i + 1]));
    if !long {
        return Ok(NetworkAttachment {
            target: value.to_string(),
            ..Default::default()
        });
    }
    let mut n = NetworkAttachment::default();
    for field in csv_fields(value) {
        let lower = field.to_lowercase();
        let (key, val) = match lower.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k.trim(), v.trim()),
            _ => return Err(format!("invalid field {field}")),
        };
        match key {
            "name" => n.target = val.to_string(),
            "alias" => n.aliases.push(val.to_string()),
            "ip" => n.ipv4 = val.to_string(),
            "ip6" => n.ipv6 = val.to_string(),
            "mac-address" => n.mac = val.to_string(),
            "link-local-ip" => n.link_local.push(val.to_string()),
            "driver-opt" => match val.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    n.driver_opts.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => return Err("invalid key value pair format in driver options".to_string()),
            },
            "gw-priority" => {
                n.gw_priority = val.parse().map_err(|_| {
                    let why = if !val.is_empty()
                        && val
                            .trim_start_matches(['-', '+'])
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    {
                        "value out of range"
                    } else {
                        "invalid syntax"
                    };
                    format!("invalid gw-priority ({val}): {why}")
                })?;
            }
            other => return Err(format!("invalid field key {other}")),
        }
    }
    if n.target.is_empty() {
        return Err("network name/id is not specified".to_string());
    }
    Ok(n)
}

/// docker's `NetworkMode.IsUserDefined`.
pub fn is_user_defined(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none")
        && mode.split_once(':').is_none_or(|(k, _)| k != "container")
}

/// Go's `net.ParseMAC` accepts 6, 8 or 20 octets as `xx:xx:..`, `xx-xx-..` or `xxxx.xxxx.xxxx`.
pub fn valid_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let octets_ok = |n: usize| matches!(n, 6 | 8 | 20);
    if s.len() < 14 {
        return false;
    }
    let b = s.as_bytes();
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2] as char;
        let parts: Vec<&str> = s.split(sep).collect();
        octets_ok(parts.len()) && parts.iter().all(|p| hex(p, 2))
    } else if b[4] == b'.' {
        let parts: Vec<&str> = s.split('.').collect();
        octets_ok(parts.len() * 2) && parts.iter().all(|p| hex(p, 4))
    } else {
        false
    }
}

/// docker's `parseNetworkAttachmentOpt`: one attachment as an `EndpointSettings` (only the fields set).
fn endpoint_settings(n: &NetworkAttachment) -> Result<Value, String> {
    if n.target.trim().is_empty() {
        return Err("no name set for network".to_string());
    }
    if !is_user_defined(&n.target) && !n.aliases.is_empty() {
        return Err("network-scoped aliases are only supported for user-defined networks".to_string());
    }
    let mut ep = Map::new();
    if !n.ipv4.is_empty() || !n.ipv6.is_empty() || !n.link_local.is_empty() {
        let mut ipam = Map::new();
        if !n.ipv4.is_empty() {
            ipam.insert("IPv4Address".into(), json!(n.ipv4));
        }
        if !n.ipv6.is_empty() {
            ipam.insert("IPv6Address".into(), json!(n.ipv6));
        }
        if !n.link_local.is_empty() {
            ipam.insert("LinkLocalIPs".into(), json!(n.link_local));
        }
        ep.insert("IPAMConfig".into(), Value::Object(ipam));
    }
    if !n.aliases.is_empty() {
        ep.insert("Aliases".into(), json!(n.aliases));
    }
    if !n.mac.is_empty() {
        if !valid_mac(n.mac.trim()) {
            return Err(format!("{} is not a valid mac address", n.mac));
        }
        ep.insert("MacAddress".into(), json!(n.mac));
    }
    if !n.driver_opts.is_empty() {
        ep.insert("DriverOpts".into(), json!(n.driver_opts));
    }
    if n.gw_priority != 0 {
        ep.insert("GwPriority".into(), json!(n.gw_priority));
    }
    Ok(Value::Object(ep))
}

/// docker's `applyContainerOptions`: `--network-alias`, `--ip`, `--ip6`, `--mac-address` and `--link-local-ip`
/// apply to the first network, and conflict with the same setting in its long syntax.
fn apply_container_options(n: &mut NetworkAttachment, flags: &ContainerFlags) -> Result<(), String> {
    let conflict = |what: &str| Err(format!("conflicting options: cannot specify both {what}"));
    let ip = flags.ip.clone().unwrap_or_default();
    let ip6 = flags.ip6.clone().unwrap_or_default();
    let mac = flags.mac_address.clone().unwrap_or_default();
    if !n.aliases.is_empty() && !flags.network_alias.is_empty() {
        return conflict("--network-alias and per-network alias");
    }
    if !n.ipv4.is_empty() && !ip.is_empty() {
        return conflict("--ip and per-network IPv4 address");
    }
    if !n.ipv6.is_empty() && !ip6.is_empty() {
        return conflict("--ip6 and per-network IPv6 address");
    }
    if !n.mac.is_empty() && !mac.is_empty() {
        return conflict("--mac-address and per-network MAC address");
    }
    if !n.link_local.is_empty() && !flags.link_local_ip.is_empty() {
        return conflict("--link-local-ip and per-network link-local IP addresses");
    }
    if !flags.network_alias.is_empty() {
        n.aliases = flags.network_alias.clone();
    }
    if !ip.is_empty() {
        n.ipv4 = ip;
    }
    if !ip6.is_empty() {
        n.ipv6 = ip6;
    }
    if !mac.is_empty() {
        n.mac = mac;
    }
    if !flags.link_local_ip.is_empty() {
        n.link_local = flags.link_local_ip.clone();
    }
    Ok(())
}

/// docker's `parseNetworkOpts`: `HostConfig.NetworkMode` (the first `--network`, else `default`: the daemon's
/// default network) and `NetworkingConfig.EndpointsConfig`: an entry per network, except that a single
/// `--network` without settings gets none (as docker's CLI: the daemon creates it from `NetworkMode`); without
/// `--network` there is always a `default` entry, with the per-container settings.
pub fn network_endpoints(flags: &ContainerFlags) -> Result<(String, Map<String, Value>), String> {
    let mut endpoints = Map::new();
    let mut nets = flags
        .network
        .iter()
        .map(|v| {
            parse_network_opt(v).map_err(|e| format!("invalid argument \"{v}\" for \"--network\" flag: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        let mut n = NetworkAttachment {
            target: "default".to_string(),
            ..Default::default()
        };
        apply_container_options(&mut n, flags)?;
        endpoints.insert("default".to_string(), endpoint_settings(&n)?);
        return Ok(("default".to_string(), endpoints));
    }
    let single = nets.len() == 1;
    let (mut user_defined, mut other) = (false, false);
    for (i, n) in nets.iter_mut().enumerate() {
        if is_user_defined(&n.target) {
            user_defined = true;
        } else {
            other = true;
        }
        if i == 0 {
            apply_container_options(n, flags)?;
        }
        let ep = endpoint_settings(n)?;
        if endpoints.contains_key(&n.target) {
            return Err(format!("network {:?} is specified multiple times", n.target));
        }
        if i == 0 && single && ep.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        endpoints.insert(n.target.clone(), ep);
    }
    if user_defined && other {
        return Err(
            "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
                .to_string(),
        );
    }
    Ok((nets[0].target.clone(), endpoints))
}

/// The pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull when the image is missing.
    Missing,
    /// Always pull first.
    Always,
    /// Never pull.
    Never,
}

/// Everything `POST /containers/create` needs.
#[derive(Debug)]
pub struct CreateRequest {
    /// The JSON body.
    pub body: Value,
    /// `?name=`.
    pub name: Option<String>,
    /// `?platform=`.
    pub platform: Option<String>,
    /// When to pull.
    pub pull: PullPolicy,
    /// The image as given.
    pub image: String,
}

fn labels_map(
    flags: &ContainerFlags,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Map<String, Value>, String> {
    let mut labels = Map::new();
    let mut lines = Vec::new();
    for f in &flags.label_file {
        let content = std::fs::read_to_string(f).map_err(|e| format!("open {f}: {}", io_reason(&e)))?;
        lines.extend(parse_env_file(&content, lookup)?);
    }
    lines.extend(flags.label.iter().cloned());
    for l in lines {
        let (k, v) = l.split_once('=').unwrap_or((&l, ""));
        labels.insert(k.to_string(), json!(v));
    }
    Ok(labels)
}

fn ns_mode(flag: &str, v: &str, extra: &[&str]) -> Result<(), String> {
    let ok = v.is_empty()
        || v == "host"
        || extra.contains(&v)
        || v.strip_prefix("container:").is_some_and(|c| !c.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("--{flag}: invalid {} mode", flag.to_uppercase()))
    }
}

/// Converts the flags to the create request (`detach`: `run -d`, or `create`, which attaches nothing).
pub fn build(
    flags: &ContainerFlags,
    detach: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<CreateRequest, String> {
    let pull = match flags.pull.as_str() {
        "missing" | "" => PullPolicy::Missing,
        "always" => PullPolicy::Always,
        "never" => PullPolicy::Never,
        other => {
            return Err(format!(
                "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
            ));
        }
    };
    let mut attach_stdin = flags.interactive;
    let (mut attach_stdout, mut attach_stderr) = (flags.attach.is_empty(), flags.attach.is_empty());
    for a in &flags.attach {
        match a.to_lowercase().as_str() {
            "stdin" => attach_stdin = true,
            "stdout" => attach_stdout = true,
            "stderr" => attach_stderr = true,
            _ => {
                return Err(format!(
                    "invalid argument {a:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                ));
            }
        }
    }
    if detach {
        attach_stdin = false;
        attach_stdout = false;
        attach_stderr = false;
    }

    let mut env = Vec::new();
    for f in &flags.env_file {
        let content = std::fs::read_to_string(f).map_err(|e| format!("open {f}: {}", io_reason(&e)))?;
        env.extend(parse_env_file(&content, lookup)?);
    }
    for e in &flags.env {
        env.push(env_value(e, lookup)?);
    }

    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for v in &flags.volume {
        match parse_volume(v)? {
            Some(b) => binds.push(Value::String(b)),
            None => {
                volumes.insert(v.clone(), json!({}));
            }
        }
    }
    let mounts = flags
        .mount
        .iter()
        .map(|m| parse_mount(m).map_err(|e| format!("invalid argument {m:?} for \"--mount\" flag: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tmpfs = Map::new();
    for t in &flags.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(dst.to_string(), json!(opts));
    }
    let devices = flags
        .device
        .iter()
        .map(|d| parse_device(d).map_err(|e| format!("invalid argument {d:?} for \"--device\" flag: {e}")))
        .collect::<Result<Vec<_>, _>>()?;

    let mut exposed = Map::new();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in &flags.publish {
        for (port, b) in parse_publish(p)? {
            exposed.insert(port.clone(), json!({}));
            bindings.entry(port).or_default().push(b);
        }
    }
    for e in &flags.expose {
        for port in parse_expose(e)? {
            exposed.insert(port, json!({}));
        }
    }

    let restart = parse_restart(flags.restart.as_deref().unwrap_or(""))?;
    if flags.rm
        && restart["Name"]
            .as_str()
            .is_some_and(|n| n != "no" && !n.is_empty())
    {
        return Err("conflicting options: cannot specify both --restart and --rm".to_string());
    }
    for (flag, v, extra) in [
        ("pid", &flags.pid, &[][..]),
        ("uts", &flags.uts, &[][..]),
        ("ipc", &flags.ipc, &["none", "private", "shareable"][..]),
    ] {
        ns_mode(flag, v.as_deref().unwrap_or(""), extra)?;
    }
    let mut log_config = Map::new();
    for o in &flags.log_opt {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            format!("invalid argument {o:?} for \"--log-opt\" flag: invalid key value pair format")
        })?;
        log_config.insert(k.to_string(), json!(v));
    }
    let (cap_add, cap_drop) = effective_caps(&flags.cap_add, &flags.cap_drop);
    let security = security_opts(&flags.security_opt)?;
    let add_hosts = flags
        .add_host
        .iter()
        .map(|h| {
            parse_add_host(h).map_err(|e| format!("invalid argument {h:?} for \"--add-host\" flag: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for d in &flags.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "invalid argument {d:?} for \"--dns\" flag: IP address is not correctly formatted: {d}"
            ));
        }
    }
    let mut sysctls = Map::new();
    for (k, v) in &flags.sysctl {
        sysctls.insert(k.clone(), json!(v));
    }
    let mut ulimits: Vec<Ulimit> = Vec::new();
    for u in &flags.ulimit {
        ulimits.retain(|x| x.name != u.name);
        ulimits.push(u.clone());
    }

    let (network_mode, endpoints) = network_endpoints(flags)?;

    let mut host = Map::new();
    let mut set = |k: &str, v: Value| {
        host.insert(k.to_string(), v);
    };
    set("Binds", json!(binds));
    set("AutoRemove", json!(flags.rm));
    set("RestartPolicy", restart);
    set(
        "LogConfig",
        json!({"Type": flags.log_driver.clone().unwrap_or_default(), "Config": log_config}),
    );
    set("PortBindings", json!(bindings));
    set("PublishAllPorts", json!(flags.publish_all));
    set("Privileged", json!(flags.privileged));
    set("ReadonlyRootfs", json!(flags.read_only));
    set("CapAdd", json!(cap_add));
    set("CapDrop", json!(cap_drop));
    set("SecurityOpt", json!(security));
    set("Devices", json!(devices));
    set(
        "Ulimits",
        json!(
            ulimits
                .iter()
                .map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard}))
                .collect::<Vec<_>>()
        ),
    );
    set("Dns", json!(flags.dns));
    set("DnsSearch", json!(flags.dns_search));
    set("DnsOptions", json!(flags.dns_option));
    set("ExtraHosts", json!(add_hosts));
    set("GroupAdd", json!(flags.group_add));
    set("VolumesFrom", json!(flags.volumes_from));
    set("DeviceCgroupRules", json!(flags.device_cgroup_rule));
    set("IpcMode", json!(flags.ipc.clone().unwrap_or_default()));
    set("PidMode", json!(flags.pid.clone().unwrap_or_default()));
    set("UTSMode", json!(flags.uts.clone().unwrap_or_default()));
    set("UsernsMode", json!(flags.userns.clone().unwrap_or_default()));
    set("CgroupnsMode", json!(flags.cgroupns.clone().unwrap_or_default()));
    set(
        "CgroupParent",
        json!(flags.cgroup_parent.clone().unwrap_or_default()),
    );
    set("Memory", json!(flags.memory.unwrap_or(0)));
    set("MemorySwap", json!(flags.memory_swap.unwrap_or(0)));
    set("MemoryReservation", json!(flags.memory_reservation.unwrap_or(0)));
    set("NanoCpus", json!(flags.cpus.unwrap_or(0)));
    set("CpuPeriod", json!(flags.cpu_period.unwrap_or(0)));
    set("CpuQuota", json!(flags.cpu_quota.unwrap_or(0)));
    set("CpuShares", json!(flags.cpu_shares.unwrap_or(0)));
    set("CpusetCpus", json!(flags.cpuset_cpus.clone().unwrap_or_default()));
    set("CpusetMems", json!(flags.cpuset_mems.clone().unwrap_or_default()));
    set("BlkioWeight", json!(flags.blkio_weight.unwrap_or(0)));
    set("OomKillDisable", json!(flags.oom_kill_disable));
    set("OomScoreAdj", json!(flags.oom_score_adj.unwrap_or(0)));
    set("ShmSize", json!(flags.shm_size.unwrap_or(0)));
    set("MemorySwappiness", json!(flags.memory_swappiness.unwrap_or(-1)));
    if !mounts.is_empty() {
        set("Mounts", json!(mounts));
    }
    if !tmpfs.is_empty() {
        set("Tmpfs", Value::Object(tmpfs));
    }
    if !sysctls.is_empty() {
        set("Sysctls", Value::Object(sysctls));
    }
    if let Some(p) = flags.pids_limit {
        set("PidsLimit", json!(p));
    }
    if flags.init {
        set("Init", json!(true));
    }
    set("NetworkMode", json!(network_mode));
    if let Some(r) = &flags.runtime {
        set("Runtime", json!(r));
    }
    if flags.tty
        && !detach
        && let Some((h, w)) = attach::terminal_size()
    {
        set("ConsoleSize", json!([h, w]));
    }

    let entrypoint = match &flags.entrypoint {
        Some(e) if !e.is_empty() => json!([e]),
        Some(_) => json!([""]),
        None => Value::Null,
    };
    if flags.image().starts_with('-') {
        return Err(format!("unknown flag: {}", flags.image()));
    }
    let cmd = if flags.command().is_empty() {
        Value::Null
    } else {
        json!(flags.command())
    };
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    put("Hostname", json!(flags.hostname.clone().unwrap_or_default()));
    put("Domainname", json!(flags.domainname.clone().unwrap_or_default()));
    put("User", json!(flags.user.clone().unwrap_or_default()));
    put("AttachStdin", json!(attach_stdin));
    put("AttachStdout", json!(attach_stdout));
    put("AttachStderr", json!(attach_stderr));
    put("Tty", json!(flags.tty));
    put("OpenStdin", json!(flags.interactive));
    put("StdinOnce", json!(attach_stdin && !detach));
    put("Env", if env.is_empty() { Value::Null } else { json!(env) });
    put("Cmd", cmd);
    put("Entrypoint", entrypoint);
    put("Image", json!(flags.image()));
    put("Labels", Value::Object(labels_map(flags, lookup)?));
    put("Volumes", Value::Object(volumes));
    put("WorkingDir", json!(flags.workdir.clone().unwrap_or_default()));
    if !exposed.is_empty() {
        put("ExposedPorts", Value::Object(exposed));
    }
    if let Some(s) = &flags.stop_signal {
        put("StopSignal", json!(s));
    }
    if let Some(t) = flags.stop_timeout {
        put("StopTimeout", json!(t));
    }
    put("HostConfig", Value::Object(host));
    put("NetworkingConfig", json!({"EndpointsConfig": endpoints}));
    Ok(CreateRequest {
        body: Value::Object(body),
        name: flags.name.clone(),
        platform: flags.platform.clone(),
        pull,
        image: flags.image().to_string(),
    })
}

/// A usage error of `run`/`create` as docker prints it (exit 125).
pub fn usage_error(cmd: &str, msg: &str) -> Failure {
    Failure {
        message: format!(
            "berth: {}\n\nRun 'berth {cmd} --help' for more information",
            msg.trim_end_matches('.')
        ),
        code: 125,
    }
}

/// docker's exit code for an error of create or start: 127 when the command is not found, 126 when it cannot be
/// executed, 125 otherwise.
pub fn error_code(msg: &str) -> u8 {
    if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("system cannot find the file specified")
    {
        127
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        126
    } else {
        125
    }
}

fn daemon_failure(cmd: &str, e: &dyn std::fmt::Display) -> Failure {
    let msg = e.to_string();
    let mut f = usage_error(cmd, &msg);
    f.code = error_code(&msg);
    f
}

fn auth_header(ctx: &Ctx, registry: &str) -> Vec<(&'static str, String)> {
    let Ok(creds) = berth_image::credentials::Credentials::load(&ctx.store.config_file()) else {
        return Vec::new();
    };
    let Some(c) = creds.get(registry) else {
        return Vec::new();
    };
    let json = json!({"username": c.username, "password": c.password, "serveraddress": registry});
    vec![(
        "x-registry-auth",
        base64::engine::general_purpose::URL_SAFE.encode(json.to_string()),
    )]
}

/// Pulls `image` for `run`/`create`: bars on a terminal, else plain status lines on stderr (stdout carries only
/// what the command prints, such as the id of `run -d`).
pub async fn pull_image(
    ctx: &Ctx,
    c: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
) -> Result<(), Failure> {
    let r = Reference::parse_named(image).map_err(|e| Failure::from(e.to_string()))?;
    let tag = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let path = client::query(
        "/images/create",
        &[
            ("fromImage", &r.familiar_name()),
            ("tag", &tag),
            ("platform", platform.unwrap_or("")),
        ],
    );
    let resp = c
        .call(
            Method::POST,
            &path,
            &auth_header(ctx, r.registry()),
            client::empty(),
        )
        .await?;
    let mut lines = JsonLines::new(resp);
    if std::io::stdout().is_terminal() && !quiet {
        crate::progress::show(lines, false).await?;
        return Ok(());
    }
    let mut last: std::collections::HashMap<String, String> = Default::default();
    while let Some(m) = lines.next().await? {
        let field = |k: &str| m.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let err = m
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| field("error"));
        if !err.is_empty() {
            return Err(Failure::from(ClientError::Daemon {
                status: StatusCode::OK,
                message: err,
            }));
        }
        if quiet {
            continue;
        }
        let (id, status) = (field("id"), field("status"));
        let has_total = m
            .get("progressDetail")
            .and_then(|d| d.get("total"))
            .is_some_and(|t| t.as_i64().unwrap_or(0) > 0);
        if status.is_empty() || has_total {
            continue;
        }
        if id.is_empty() {
            eprintln!("{status}");
        } else if last.get(&id) != Some(&status) {
            eprintln!("{id}: {status}");
            last.insert(id, status);
        }
    }
    Ok(())
}

fn familiar_tagged(image: &str) -> String {
    match Reference::parse_named(image) {
        Ok(r) => match (r.digest(), r.tag()) {
            (Some(d), _) => format!("{}@{d}", r.familiar_name()),
            (None, t) => format!("{}:{}", r.familiar_name(), t.unwrap_or("latest")),
        },
        Err(_) => image.to_string(),
    }
}

/// `POST /containers/create`, pulling the image first (`--pull always`) or when it is missing; returns the id.
pub async fn create_container(
    ctx: &Ctx,
    c: &Client,
    req: &CreateRequest,
    quiet: bool,
) -> Result<String, ClientErrorOr> {
    if req.pull == PullPolicy::Always {
        pull_image(ctx, c, &req.image, req.platform.as_deref(), quiet)
            .await
            .map_err(ClientErrorOr::Failure)?;
    }
    let path = client::query(
        "/containers/create",
        &[
            ("name", req.name.as_deref().unwrap_or("")),
            ("platform", req.platform.as_deref().unwrap_or("")),
        ],
    );
    let body = req.body.to_string();
    let resp = match c
        .call(
            Method::POST,
            &path,
            &[("content-type", "application/json".to_string())],
            client::full(body.clone()),
        )
        .await
    {
        Ok(r) => r,
        Err(ClientError::Daemon { status, message })
            if status == StatusCode::NOT_FOUND
                && message.to_lowercase().contains("no such image")
                && req.pull == PullPolicy::Missing =>
        {
            eprintln!("Unable to find image '{}' locally", familiar_tagged(&req.image));
            pull_image(ctx, c, &req.image, req.platform.as_deref(), quiet)
                .await
                .map_err(ClientErrorOr::Failure)?;
            c.call(
                Method::POST,
                &path,
                &[("content-type", "application/json".to_string())],
                client::full(body),
            )
            .await?
        }
        Err(e) => return Err(e.into()),
    };
    let v = client::body_json(resp).await?;
    for w in v.get("Warnings").and_then(|w| w.as_array()).into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    let id = v
        .get("Id")
        .and_then(|x| x.as_str())
        .ok_or_else(|| ClientError::Decode("the create response has no Id".to_string()))?;
    Ok(id.to_string())
}

/// A client error, or a failure already worded.
#[derive(Debug)]
pub enum ClientErrorOr {
    /// From the daemon.
    Client(ClientError),
    /// Worded.
    Failure(Failure),
}

impl From<ClientError> for ClientErrorOr {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

impl std::fmt::Display for ClientErrorOr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(e) => write!(f, "{e}"),
            Self::Failure(e) => write!(f, "{}", e.message),
        }
    }
}

fn write_cidfile(path: Option<&str>, id: &str) -> Result<(), Failure> {
    let Some(p) = path else { return Ok(()) };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, id.as_bytes()))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::from(format!(
                    "container ID file found, make sure the other container isn't running or delete {p}"
                ))
            } else {
                Failure::from(format!("failed to create the container ID file: {e}"))
            }
        })
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn check_cidfile(path: Option<&str>) -> Result<(), Failure> {
    if let Some(p) = path
        && Path::new(p).exists()
    {
        return Err(Failure::from(format!(
            "container ID file found, make sure the other container isn't running or delete {p}"
        )));
    }
    Ok(())
}

/// `create`.
pub async fn create(ctx: &Ctx, a: CreateArgs) -> CmdResult {
    let req = build(&a.flags, true, &env_lookup).map_err(|e| usage_error("create", &e))?;
    check_cidfile(a.flags.cidfile.as_deref())?;
    let c = ctx.client().await?;
    let id = create_container(ctx, &c, &req, a.flags.quiet)
        .await
        .map_err(|e| daemon_failure("create", &e))?;
    write_cidfile(a.flags.cidfile.as_deref(), &id)?;
    println!("{id}");
    Ok(())
}

/// `run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> CmdResult {
    let f = &a.flags;
    if a.detach && !f.attach.is_empty() {
        return Err(Failure::from(
            "conflicting options: cannot specify both --attach and --detach",
        ));
    }
    let req = build(f, a.detach, &env_lookup).map_err(|e| usage_error("run", &e))?;
    let attach_stdin = req.body["AttachStdin"].as_bool().unwrap_or(false);
    if !a.detach && attach_stdin && f.tty && !std::io::stdin().is_terminal() {
        return Err(Failure::from("the input device is not a TTY"));
    }
    check_cidfile(f.cidfile.as_deref())?;
    let c = ctx.client().await?;
    let id = create_container(ctx, &c, &req, f.quiet)
        .await
        .map_err(|e| daemon_failure("run", &e))?;
    write_cidfile(f.cidfile.as_deref(), &id)?;

    if a.detach {
        super::util::start_container(&c, &id)
            .await
            .map_err(|e| daemon_failure("run", &e))?;
        println!("{id}");
        return Ok(());
    }

    let attach_stdout = req.body["AttachStdout"].as_bool().unwrap_or(false);
    let attach_stderr = req.body["AttachStderr"].as_bool().unwrap_or(false);
    let pump = if attach_stdin || attach_stdout || attach_stderr {
        let path = attach::attach_path(
            &id,
            attach_stdin,
            attach_stdout,
            attach_stderr,
            a.detach_keys.as_deref(),
        );
        let h = attach::hijack(&c, &path, client::empty(), f.tty)
            .await
            .map_err(|e| daemon_failure("run", &e))?;
        let opts = StreamOpts {
            stdin: attach_stdin,
            tty: f.tty,
            detach_keys: attach::detach_keys(a.detach_keys.as_deref()),
            output: attach_stdout || attach_stderr,
        };
        Some(tokio::spawn(attach::stream(h, opts)))
    } else {
        None
    };
    let condition = if f.rm { "removed" } else { "next-exit" };
    let wait = attach::wait_for(&c, &id, condition).await;

    if let Err(e) = super::util::start_container(&c, &id).await {
        if let Some(p) = pump {
            p.abort();
            let _ = p.await;
        }
        let failure = daemon_failure("run", &e);
        if f.rm {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
        } else {
            wait.abort();
        }
        return Err(failure);
    }
    let resizer = if f.tty {
        attach::spawn_resizer(c.clone(), format!("/containers/{id}"))
    } else {
        None
    };
    let proxy = (!f.tty && a.sig_proxy).then(|| attach::spawn_signal_proxy(c.clone(), id.clone()));

    let ended = match pump {
        Some(p) => p
            .await
            .map_err(|e| Failure::from(format!("the attach stream failed: {e}")))?,
        None => Ok(Ended::Output),
    };
    if let Some(r) = resizer {
        r.abort();
    }
    let finish = |r: Result<Ended, Failure>| -> Result<bool, Failure> { r.map(|e| e == Ended::Detached) };
    if finish(ended)? {
        wait.abort();
        if let Some(p) = proxy {
            p.abort();
        }
        return Ok(());
    }
    let status = wait
        .await
        .map_err(|e| Failure::from(format!("waiting for the container failed: {e}")));
    if let Some(p) = proxy {
        p.abort();
    }
    match status? {
        Ok(s) => attach::status_failure(s),
        Err(e) => Err(Failure {
            message: e.message,
            code: 125,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn flags(image: &str) -> ContainerFlags {
        ContainerFlags {
            image_and_command: vec![image.to_string()],
            pull: "missing".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn memory_units_as_docker() {
        assert_eq!(parse_ram("100").unwrap(), 100);
        assert_eq!(parse_ram("1b").unwrap(), 1);
        assert_eq!(parse_ram("10k").unwrap(), 10 * 1024);
        assert_eq!(parse_ram("10m").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_ram("10M").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_ram("1.5g").unwrap(), 1536 * 1024 * 1024);
        assert_eq!(parse_ram("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_ram("2gb").unwrap(), 2 << 30);
        assert_eq!(parse_ram("32 MB").unwrap(), 32 << 20);
        assert_eq!(parse_ram("5x").unwrap_err(), "invalid suffix: 'x'");
        assert_eq!(parse_ram("abc").unwrap_err(), "invalid size: 'abc'");
        assert_eq!(parse_ram("5mx").unwrap_err(), "invalid suffix: 'mx'");
        assert_eq!(parse_ram("5bb").unwrap_err(), "invalid suffix: 'bb'");
        assert!(parse_ram("-5m").is_err());
        assert_eq!(parse_swap("-1").unwrap(), -1);
        assert_eq!(parse_swap("20m").unwrap(), 20 << 20);
    }

    #[test]
    fn cpus_are_exact() {
        assert_eq!(parse_nano_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_nano_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(parse_nano_cpus(".25").unwrap(), 250_000_000);
        assert_eq!(parse_nano_cpus("1.000000001").unwrap(), 1_000_000_001);
        assert_eq!(parse_nano_cpus("1.5000000000").unwrap(), 1_500_000_000);
        assert_eq!(
            parse_nano_cpus("1.0000000001").unwrap_err(),
            "value is too precise"
        );
        assert_eq!(
            parse_nano_cpus("abc").unwrap_err(),
            "failed to parse abc as a rational number"
        );
    }

    #[test]
    fn env_files_and_env_flags() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let content = "\u{feff}# comment\n\nA=1\n  B=x y \nHOME\nUNSET\nC=\nD=a=b\n";
        assert_eq!(
            parse_env_file(content, &lookup).unwrap(),
            vec!["A=1", "B=x y ", "HOME=/root", "C=", "D=a=b"]
        );
        assert_eq!(
            parse_env_file("B = x\n", &lookup).unwrap_err(),
            "variable 'B ' contains whitespaces"
        );
        assert_eq!(
            parse_env_file("=x\n", &lookup).unwrap_err(),
            "no variable name on line '=x'"
        );
        assert_eq!(
            parse_env_file("A B=x\n", &lookup).unwrap_err(),
            "variable 'A B' contains whitespaces"
        );
        assert_eq!(env_value("A=1", &lookup).unwrap(), "A=1");
        assert_eq!(env_value("HOME", &lookup).unwrap(), "HOME=/root");
        assert_eq!(env_value("UNSET", &lookup).unwrap(), "UNSET");
        assert!(env_value("=x", &lookup).is_err());
        // --env-file entries come before -e ones.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, "FROM_FILE=1\n").unwrap();
        let mut f = flags("busybox");
        f.env = vec!["X=2".into()];
        f.env_file = vec![p.to_string_lossy().into_owned()];
        let r = build(&f, false, &no_env).unwrap();
        assert_eq!(r.body["Env"], json!(["FROM_FILE=1", "X=2"]));
        f.env_file = vec!["/nonexistent/env".into()];
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "open /nonexistent/env: no such file or directory"
        );
    }

    #[test]
    fn mounts_volumes_tmpfs_devices() {
        let m = parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true,
                   "BindOptions": {"Propagation": "rshared"}})
        );
        let m =
            parse_mount("type=volume,src=data,dst=/d,volume-nocopy,volume-opt=o=size=1m,volume-label=a=b")
                .unwrap();
        assert_eq!(
            m,
            json!({"Type": "volume", "Source": "data", "Target": "/d",
                   "VolumeOptions": {"NoCopy": true, "DriverConfig": {"Options": {"o": "size=1m"}}, "Labels": {"a": "b"}}})
        );
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            m,
            json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1_048_576, "Mode": 0o1770}})
        );
        assert_eq!(
            parse_mount("\"type=bind\",src=/x,target=\"/a,b\"").unwrap()["Target"],
            json!("/a,b")
        );
        assert_eq!(parse_mount("type=bind,src=/a").unwrap_err(), "target is required");
        assert_eq!(
            parse_mount("type=bind,target=/a,volume-nocopy").unwrap_err(),
            "cannot mix 'volume-*' options with mount type 'bind'"
        );
        assert_eq!(
            parse_mount("target=/a,bogus=1").unwrap_err(),
            "unexpected key 'bogus' in 'bogus=1'"
        );
        assert_eq!(
            parse_mount("target=/a,bogus").unwrap_err(),
            "invalid field 'bogus' must be a key=value pair"
        );
        assert_eq!(
            parse_mount("target=/a,tmpfs-size=5x").unwrap_err(),
            "invalid value for tmpfs-size: 5x"
        );

        assert_eq!(parse_volume("/data").unwrap(), None);
        assert_eq!(parse_volume("/tmp:/mnt:ro").unwrap().unwrap(), "/tmp:/mnt:ro");
        assert_eq!(parse_volume("name:/mnt").unwrap().unwrap(), "name:/mnt");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            parse_volume("./x:/mnt").unwrap().unwrap(),
            format!("{}/x:/mnt", normalize(&cwd))
        );
        assert!(parse_volume("a:b:c:d").is_err());
        assert!(parse_volume(":/x").is_err());

        let mut f = flags("busybox");
        f.volume = vec!["/tmp:/mnt:ro".into(), "/data".into()];
        f.tmpfs = vec!["/run:size=1m".into(), "/t".into()];
        f.device = vec!["/dev/fuse".into(), "/dev/sda:/dev/xvda:r".into()];
        let r = build(&f, false, &no_env).unwrap();
        assert_eq!(r.body["HostConfig"]["Binds"], json!(["/tmp:/mnt:ro"]));
        assert_eq!(r.body["Volumes"], json!({"/data": {}}));
        assert_eq!(
            r.body["HostConfig"]["Tmpfs"],
            json!({"/run": "size=1m", "/t": ""})
        );
        assert_eq!(
            r.body["HostConfig"]["Devices"],
            json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
                   {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}])
        );
        assert_eq!(
            parse_device("/dev/sda:rw").unwrap()["CgroupPermissions"],
            json!("rw")
        );
        assert_eq!(parse_device("sda").unwrap_err(), "bad format for path: sda");
        assert!(parse_device("/a:/b:c:d").is_err());
        assert_eq!(parse_device("/a:/b:rx").unwrap_err(), "invalid device mode: rx");
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_publish("127.0.0.1:8080:80").unwrap(),
            vec![(
                "80/tcp".to_string(),
                json!({"HostIp": "127.0.0.1", "HostPort": "8080"})
            )]
        );
        assert_eq!(
            parse_publish("8080:80/udp").unwrap(),
            vec![("80/udp".to_string(), json!({"HostIp": "", "HostPort": "8080"}))]
        );
        assert_eq!(
            parse_publish("80").unwrap(),
            vec![("80/tcp".to_string(), json!({"HostIp": "", "HostPort": ""}))]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            vec![(
                "80/tcp".to_string(),
                json!({"HostIp": "127.0.0.1", "HostPort": ""})
            )]
        );
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            vec![("80/tcp".to_string(), json!({"HostIp": "::1", "HostPort": "8080"}))]
        );
        let r = parse_publish("8000-8001:80-81").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[1],
            ("81/tcp".to_string(), json!({"HostIp": "", "HostPort": "8001"}))
        );
        assert_eq!(
            parse_publish("8000-8010:80").unwrap()[0].1,
            json!({"HostIp": "", "HostPort": "8000-8010"})
        );
        assert_eq!(parse_publish("99999:80").unwrap_err(), "invalid hostPort: 99999");
        assert_eq!(parse_publish("80/xyz").unwrap_err(), "invalid proto: xyz");
        assert_eq!(parse_publish("1:x").unwrap_err(), "invalid containerPort: x");
        assert!(parse_publish("8000-8002:80-81").is_err());
        assert!(parse_publish("nonip:1:2").is_err());
        assert_eq!(parse_expose("80-81/udp").unwrap(), vec!["80/udp", "81/udp"]);

        let mut f = flags("busybox");
        f.publish = vec!["127.0.0.1:8080:80".into(), "9090:80".into()];
        f.expose = vec!["443".into()];
        let r = build(&f, false, &no_env).unwrap();
        assert_eq!(r.body["ExposedPorts"], json!({"80/tcp": {}, "443/tcp": {}}));
        assert_eq!(
            r.body["HostConfig"]["PortBindings"],
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "", "HostPort": "9090"}]})
        );
    }

    #[test]
    fn publish_as_go_connections() {
        let one = |spec: &str| parse_publish(spec).unwrap();
        // A range on both sides: one binding per port.
        assert_eq!(
            one("8000-8002:80-82"),
            vec![
                ("80/tcp".to_string(), json!({"HostIp": "", "HostPort": "8000"})),
                ("81/tcp".to_string(), json!({"HostIp": "", "HostPort": "8001"})),
                ("82/tcp".to_string(), json!({"HostIp": "", "HostPort": "8002"})),
            ]
        );
        // A host range for one container port: one binding with the range.
        assert_eq!(
            one("8000-8002:80"),
            vec![(
                "80/tcp".to_string(),
                json!({"HostIp": "", "HostPort": "8000-8002"})
            )]
        );
        // A container range without host ports: one binding per port, HostPort "".
        assert_eq!(
            one("127.0.0.1::80-81/udp"),
            vec![
                (
                    "80/udp".to_string(),
                    json!({"HostIp": "127.0.0.1", "HostPort": ""})
                ),
                (
                    "81/udp".to_string(),
                    json!({"HostIp": "127.0.0.1", "HostPort": ""})
                ),
            ]
        );
        assert_eq!(one("80/UDP")[0].0, "80/udp");
        assert_eq!(one("80/")[0].0, "80/tcp");
        assert_eq!(one("0.0.0.0:8080:80/sctp")[0].0, "80/sctp");
        // IPv6 without brackets: everything before the last two parts is the address.
        assert_eq!(
            one("::1:8080:80"),
            vec![("80/tcp".to_string(), json!({"HostIp": "::1", "HostPort": "8080"}))]
        );
        assert_eq!(
            one("[::1]::80"),
            vec![("80/tcp".to_string(), json!({"HostIp": "::1", "HostPort": ""}))]
        );
        // The long syntax.
        assert_eq!(
            one("published=8080,target=80,protocol=udp"),
            vec![("80/udp".to_string(), json!({"HostIp": "", "HostPort": "8080"}))]
        );
        assert_eq!(
            one("target=80")[0],
            ("80/tcp".to_string(), json!({"HostIp": "", "HostPort": ""}))
        );
        let err = |spec: &str| parse_publish(spec).unwrap_err();
        assert_eq!(
            err("published=1,bogus"),
            "invalid publish opts format (should be name=value but got 'bogus')"
        );
        assert_eq!(
            err("8000:80-81"),
            "invalid ranges specified for container and host Ports: 80-81 and 8000"
        );
        assert_eq!(
            err("8000-8002:80-81"),
            "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"
        );
        assert_eq!(err("8080:"), "invalid proto: ");
        assert_eq!(err("80-"), "invalid containerPort: 80-");
        assert_eq!(err("82-80"), "invalid containerPort: 82-80");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(err("x:80"), "invalid hostPort: x");
        assert_eq!(err("1.2.3:80:80"), "invalid IP address: 1.2.3");
        assert_eq!(err("80/tcpx"), "invalid proto: tcpx");
        // --expose
        assert_eq!(parse_expose("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(
            parse_expose("7000-7001/udp").unwrap(),
            vec!["7000/udp", "7001/udp"]
        );
        assert_eq!(
            parse_expose("80:80").unwrap_err(),
            "invalid port format for --expose: 80:80"
        );
        assert_eq!(
            parse_expose("x").unwrap_err(),
            "invalid range format for --expose: x, error: strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_expose("9-1").unwrap_err(),
            "invalid range format for --expose: 9-1, error: invalid range specified for port: 9-1"
        );
        // The body: ExposedPorts from -p and --expose, PortBindings per port.
        let mut f = flags("busybox");
        f.publish = vec!["8000-8001:80-81".into(), "53:53/udp".into(), "90".into()];
        f.expose = vec!["100/udp".into()];
        let r = build(&f, false, &no_env).unwrap();
        assert_eq!(
            r.body["ExposedPorts"],
            json!({"80/tcp": {}, "81/tcp": {}, "53/udp": {}, "90/tcp": {}, "100/udp": {}})
        );
        assert_eq!(
            r.body["HostConfig"]["PortBindings"],
            json!({"80/tcp": [{"HostIp": "", "HostPort": "8000"}], "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
                   "53/udp": [{"HostIp": "", "HostPort": "53"}], "90/tcp": [{"HostIp": "", "HostPort": ""}]})
        );
        f.publish = vec!["bad:1:2".into()];
        assert_eq!(build(&f, false, &no_env).unwrap_err(), "invalid IP address: bad");
    }

    #[test]
    fn networks_as_docker() {
        let net = |f: &ContainerFlags| {
            let r = build(f, false, &no_env).unwrap();
            (
                r.body["HostConfig"]["NetworkMode"].clone(),
                r.body["NetworkingConfig"]["EndpointsConfig"].clone(),
            )
        };
        let mut f = flags("bb");
        // As docker's CLI: no --network is the daemon's default network, with an (empty) endpoint for it.
        assert_eq!(net(&f), (json!("default"), json!({"default": {}})));
        // --ip, --network-alias, --mac-address go to the (first) network.
        f.network = vec!["n1".into()];
        f.ip = Some("10.5.0.9".into());
        f.network_alias = vec!["web".into(), "www".into()];
        f.mac_address = Some("02:42:0a:05:00:09".into());
        assert_eq!(
            net(&f),
            (
                json!("n1"),
                json!({"n1": {"IPAMConfig": {"IPv4Address": "10.5.0.9"}, "Aliases": ["web", "www"],
                              "MacAddress": "02:42:0a:05:00:09"}})
            )
        );
        // Several networks: each gets an entry, the first is the NetworkMode and has the settings.
        f.network = vec!["n1".into(), "n2".into()];
        f.network_alias.clear();
        f.mac_address = None;
        assert_eq!(
            net(&f),
            (
                json!("n1"),
                json!({"n1": {"IPAMConfig": {"IPv4Address": "10.5.0.9"}}, "n2": {}})
            )
        );
        f.ip = None;
        assert_eq!(net(&f).1, json!({"n1": {}, "n2": {}}));
        // The long syntax.
        f.network = vec!["name=n1,alias=a1,ip=10.5.0.7".into(), "n2".into()];
        assert_eq!(
            net(&f).1,
            json!({"n1": {"IPAMConfig": {"IPv4Address": "10.5.0.7"}, "Aliases": ["a1"]}, "n2": {}})
        );
        f.ip = Some("10.5.0.8".into());
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "conflicting options: cannot specify both --ip and per-network IPv4 address"
        );
        f.ip = None;
        f.network = vec!["n1".into(), "n1".into()];
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "network \"n1\" is specified multiple times"
        );
        f.network = vec!["n1".into(), "host".into()];
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
        );
        f.network = vec!["bridge".into()];
        f.network_alias = vec!["x".into()];
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "network-scoped aliases are only supported for user-defined networks"
        );
        // --ip on the default bridge is the daemon's to refuse.
        f.network_alias.clear();
        f.ip = Some("172.17.0.9".into());
        assert_eq!(
            net(&f),
            (
                json!("bridge"),
                json!({"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}})
            )
        );
        f.network.clear();
        assert_eq!(
            net(&f),
            (
                json!("default"),
                json!({"default": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}})
            )
        );
        f.ip = None;
        f.mac_address = Some("zz:42:0a:05:00:09".into());
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "zz:42:0a:05:00:09 is not a valid mac address"
        );
        assert!(valid_mac("02-42-0A-05-00-09"));
        assert!(valid_mac("0242.0a05.0009"));
        assert!(valid_mac("02:42:0a:05:00:09:00:01"));
        assert!(!valid_mac("02:42:0a:05:00"));
        assert!(!valid_mac("02:42:0a:05:00:9"));
        assert_eq!(
            parse_network_opt("name=n,bogus=1").unwrap_err(),
            "invalid field key bogus"
        );
        assert_eq!(
            parse_network_opt("alias=x").unwrap_err(),
            "network name/id is not specified"
        );
        assert_eq!(
            parse_network_opt("name=n,driver-opt=a=B,gw-priority=5").unwrap(),
            NetworkAttachment {
                target: "n".into(),
                driver_opts: BTreeMap::from([("a".to_string(), "b".to_string())]),
                gw_priority: 5,
                ..Default::default()
            }
        );
        assert_eq!(
            parse_network_opt("container:abc").unwrap().target,
            "container:abc"
        );
        assert!(!is_user_defined("container:abc"));
        assert!(is_user_defined("mynet"));
    }

    #[test]
    fn ulimits_sysctls_restart() {
        assert_eq!(
            parse_ulimit("nofile=100:200").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200
            }
        );
        assert_eq!(
            parse_ulimit("nproc=50").unwrap(),
            Ulimit {
                name: "nproc".into(),
                soft: 50,
                hard: 50
            }
        );
        assert_eq!(
            parse_ulimit("nofile=5:2").unwrap_err(),
            "ulimit soft limit must be less than or equal to hard limit: 5 > 2"
        );
        assert_eq!(parse_ulimit("bogus=1").unwrap_err(), "invalid ulimit type: bogus");
        assert_eq!(
            parse_ulimit("nofile").unwrap_err(),
            "invalid ulimit argument: nofile"
        );
        assert!(parse_ulimit("nofile=x").is_err());
        let mut f = flags("busybox");
        f.ulimit = vec![
            parse_ulimit("nofile=1:2").unwrap(),
            parse_ulimit("nofile=3:4").unwrap(),
        ];
        let r = build(&f, false, &no_env).unwrap();
        assert_eq!(
            r.body["HostConfig"]["Ulimits"],
            json!([{"Name": "nofile", "Soft": 3, "Hard": 4}])
        );

        assert_eq!(
            parse_sysctl("net.ipv4.ip_forward=1").unwrap(),
            ("net.ipv4.ip_forward".into(), "1".into())
        );
        assert_eq!(parse_sysctl("kernel.shmmax=1=2").unwrap().1, "1=2");
        assert_eq!(
            parse_sysctl("foo.bar=1").unwrap_err(),
            "sysctl 'foo.bar=1' is not allowed"
        );
        assert!(parse_sysctl("kernel.hostname=x").is_err());

        assert_eq!(
            parse_restart("").unwrap(),
            json!({"Name": "no", "MaximumRetryCount": 0})
        );
        assert_eq!(
            parse_restart("always").unwrap(),
            json!({"Name": "always", "MaximumRetryCount": 0})
        );
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(
            parse_restart("on-failure:x").unwrap_err(),
            "invalid restart policy format: maximum retry count must be an integer"
        );
        assert_eq!(
            parse_restart(":3").unwrap_err(),
            "invalid restart policy format: no policy provided before colon"
        );
        f.rm = true;
        f.restart = Some("always".into());
        assert_eq!(
            build(&f, false, &no_env).unwrap_err(),
            "conflicting options: cannot specify both --restart and --rm"
        );
        f.restart = Some("no".into());
        assert!(build(&f, false, &no_env).is_ok());
    }

    #[test]
    fn security_caps_and_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("profile.json");
        std::fs::write(
            &p,
            "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": []\n}\n",
        )
        .unwrap();
        let opts = security_opts(&[
            "no-new-privileges".into(),
            format!("seccomp={}", p.display()),
            "seccomp=unconfined".into(),
            "no-new-privileges:true".into(),
        ])
        .unwrap();
        assert_eq!(opts[0], "no-new-privileges");
        assert_eq!(
            opts[1],
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#
        );
        assert_eq!(opts[2], "seccomp=unconfined");
        assert_eq!(opts[3], "no-new-privileges:true");
        assert_eq!(
            security_opts(&["seccomp=/nonexist".into()]).unwrap_err(),
            "opening seccomp profile (/nonexist) failed: open /nonexist: no such file or directory"
        );
        std::fs::write(&p, "{not json").unwrap();
        assert!(
            security_opts(&[format!("seccomp={}", p.display())])
                .unwrap_err()
                .starts_with("compacting json for seccomp profile")
        );
        assert_eq!(
            security_opts(&["label".into()]).unwrap_err(),
            "Invalid --security-opt: \"label\""
        );

        assert_eq!(
            effective_caps(
                &["net_admin".into(), "CAP_SYS_TIME".into()],
                &["chown".into(), "NET_ADMIN".into()]
            ),
            (
                vec!["CAP_NET_ADMIN".into(), "CAP_SYS_TIME".into()],
                vec!["CAP_CHOWN".into()]
            )
        );
        assert_eq!(
            effective_caps(&["all".into(), "chown".into()], &[]),
            (vec!["ALL".to_string()], vec![])
        );
        assert_eq!(
            effective_caps(&[], &["ALL".into()]),
            (vec![], vec!["ALL".to_string()])
        );

        let mut f = flags("busybox");
        f.pid = Some("host".into());
        f.ipc = Some("container:abc".into());
        f.uts = Some("host".into());
        assert!(build(&f, false, &no_env).is_ok());
        f.pid = Some("bogus".into());
        assert_eq!(build(&f, false, &no_env).unwrap_err(), "--pid: invalid PID mode");
        f.pid = None;
        f.ipc = Some("container:".into());
        assert_eq!(build(&f, false, &no_env).unwrap_err(), "--ipc: invalid IPC mode");
    }

    #[test]
    fn full_body_as_docker_sends_it() {
        let mut f = flags("bb");
        f.interactive = true;
        f.env = vec!["A=1".into()];
        f.label = vec!["x=y".into()];
        f.memory = Some(parse_ram("10m").unwrap());
        f.memory_swap = Some(parse_swap("20m").unwrap());
        f.cpus = Some(parse_nano_cpus("0.5").unwrap());
        f.pids_limit = Some(50);
        f.init = true;
        f.restart = Some("on-failure:3".into());
        f.cap_add = vec!["net_admin".into()];
        f.network = vec!["none".into()];
        f.stop_timeout = Some(5);
        f.entrypoint = Some(String::new());
        f.image_and_command.push("true".into());
        f.add_host = vec!["a:1.2.3.4".into()];
        f.dns = vec!["1.1.1.1".into()];
        f.name = Some("t1".into());
        let r = build(&f, false, &no_env).unwrap();
        let b = &r.body;
        assert_eq!(r.name.as_deref(), Some("t1"));
        assert_eq!(b["Image"], "bb");
        assert_eq!(b["Cmd"], json!(["true"]));
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(
            (
                b["AttachStdin"].clone(),
                b["OpenStdin"].clone(),
                b["StdinOnce"].clone()
            ),
            (json!(true), json!(true), json!(true))
        );
        assert_eq!(b["Labels"], json!({"x": "y"}));
        assert_eq!(b["StopTimeout"], 5);
        let h = &b["HostConfig"];
        assert_eq!(h["Memory"], 10_485_760);
        assert_eq!(h["MemorySwap"], 20_971_520);
        assert_eq!(h["NanoCpus"], 500_000_000);
        assert_eq!(h["PidsLimit"], 50);
        assert_eq!(h["Init"], true);
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(h["CapAdd"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["ExtraHosts"], json!(["a:1.2.3.4"]));
        assert_eq!(b["NetworkingConfig"], json!({"EndpointsConfig": {}}));
        // Detached: nothing attached, no StdinOnce; no Init/PidsLimit unless asked.
        let mut d = flags("bb");
        d.interactive = true;
        let r = build(&d, true, &no_env).unwrap();
        assert_eq!(r.body["AttachStdin"], false);
        assert_eq!(r.body["AttachStdout"], false);
        assert_eq!(r.body["StdinOnce"], false);
        assert_eq!(r.body["OpenStdin"], true);
        assert!(r.body["HostConfig"].get("Init").is_none());
        assert!(r.body["HostConfig"].get("PidsLimit").is_none());
        assert_eq!(r.body["Cmd"], Value::Null);
        // -a picks the streams.
        let mut a = flags("bb");
        a.attach = vec!["STDERR".into()];
        let r = build(&a, false, &no_env).unwrap();
        assert_eq!(
            (r.body["AttachStdout"].clone(), r.body["AttachStderr"].clone()),
            (json!(false), json!(true))
        );
        a.attach = vec!["bogus".into()];
        assert!(build(&a, false, &no_env).is_err());
        a.attach.clear();
        a.pull = "sometimes".into();
        assert!(
            build(&a, false, &no_env)
                .unwrap_err()
                .starts_with("invalid pull option")
        );
        a.pull = "never".into();
        a.network = vec!["mynet".into()];
        let r = build(&a, false, &no_env).unwrap();
        assert_eq!(r.pull, PullPolicy::Never);
        // As docker's CLI: a single network without settings is only the NetworkMode.
        assert_eq!(r.body["HostConfig"]["NetworkMode"], "mynet");
        assert_eq!(r.body["NetworkingConfig"], json!({"EndpointsConfig": {}}));
    }

    #[test]
    fn exit_codes_from_errors() {
        assert_eq!(
            error_code("Error response from daemon: exec: \"nonexist\": executable file not found in $PATH"),
            127
        );
        assert_eq!(error_code("open /x: no such file or directory"), 127);
        assert_eq!(error_code("exec /etc: permission denied"), 126);
        assert_eq!(error_code("No such image: x"), 125);
        let f = usage_error("run", "bad thing.");
        assert_eq!(f.code, 125);
        assert_eq!(
            f.message,
            "berth: bad thing\n\nRun 'berth run --help' for more information"
        );
    }
}
