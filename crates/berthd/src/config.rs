//! berthd's configuration: command-line flags merged with `/etc/berth/daemon.json`, as dockerd does (a key set in
//! both places is an error).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
/// The default exec root.
pub const DEFAULT_EXEC_ROOT: &str = "/run/berth";
/// The default cgroup parent of containers.
pub const DEFAULT_CGROUP_PARENT: &str = "/berth";
/// The default bridge interface.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default pid file.
pub const DEFAULT_PIDFILE: &str = "/run/berth/berthd.pid";
/// The default socket.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("the configuration file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A directive given both as a flag and in the file.
    #[error(
        "the following directives are specified both as a flag and in the configuration file: {0} (from flag and from file {1})"
    )]
    Conflict(String, PathBuf),
    /// A host address that is not `unix://PATH`, `tcp://HOST:PORT` or `fd://`.
    #[error("invalid host {0:?}: expected unix:///path or tcp://host:port")]
    BadHost(String),
    /// TCP without TLS verification would give root to anyone who can reach the port.
    #[error(
        "listening on {0} without --tlsverify is refused: anyone reaching the port would control the daemon"
    )]
    InsecureTcp(String),
    /// TLS verification asked for without its files.
    #[error("--tlsverify needs --tlscacert, --tlscert and --tlskey (missing {0})")]
    MissingTls(&'static str),
    /// An unknown log format.
    #[error("invalid log format {0:?}: expected text or json")]
    BadLogFormat(String),
    /// An unknown log level.
    #[error("invalid log level {0:?}: expected debug, info, warn, error or fatal")]
    BadLogLevel(String),
}

/// `daemon.json`, with dockerd's key names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `hosts`.
    pub hosts: Option<Vec<String>>,
    /// `data-root`.
    #[serde(rename = "data-root")]
    pub data_root: Option<PathBuf>,
    /// `pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `insecure-registries`.
    #[serde(rename = "insecure-registries")]
    pub insecure_registries: Option<Vec<String>>,
    /// `debug`.
    pub debug: Option<bool>,
    /// `log-level`.
    #[serde(rename = "log-level")]
    pub log_level: Option<String>,
    /// `log-format` (`text` or `json`).
    #[serde(rename = "log-format")]
    pub log_format: Option<String>,
    /// `tls`.
    pub tls: Option<bool>,
    /// `tlsverify`.
    pub tlsverify: Option<bool>,
    /// `tlscacert`.
    pub tlscacert: Option<PathBuf>,
    /// `tlscert`.
    pub tlscert: Option<PathBuf>,
    /// `tlskey`.
    pub tlskey: Option<PathBuf>,
    /// `group` (of the unix socket).
    pub group: Option<String>,
    /// `exec-root`.
    #[serde(rename = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// `cgroup-parent`.
    #[serde(rename = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// `userns-remap`.
    #[serde(rename = "userns-remap")]
    pub userns_remap: Option<String>,
    /// `bridge`.
    pub bridge: Option<String>,
    /// `bip`.
    pub bip: Option<String>,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `default-address-pools`: `[{"base": "10.10.0.0/16", "size": 24}]`.
    #[serde(rename = "default-address-pools")]
    pub default_address_pools: Option<Vec<AddressPoolConfig>>,
}

/// One entry of `default-address-pools`.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddressPoolConfig {
    /// The range subnets are cut from.
    pub base: String,
    /// The prefix length of each subnet.
    pub size: u8,
}

impl std::str::FromStr for AddressPoolConfig {
    type Err = String;

    /// docker's flag form: `base=10.10.0.0/16,size=24`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => base = Some(v.to_string()),
                Some(("size", v)) => {
                    size = Some(v.parse::<u8>().map_err(|_| format!("invalid pool size {v:?}"))?);
                }
                _ => {
                    return Err(format!(
                        "invalid address pool field {part:?}: expected base=CIDR,size=N"
                    ));
                }
            }
        }
        Ok(Self {
            base: base.ok_or("an address pool needs base=CIDR")?,
            size: size.ok_or("an address pool needs size=N")?,
        })
    }
}

/// The command line.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "The Berth daemon: the Docker Engine API over a unix socket or TLS"
)]
pub struct Flags {
    /// Daemon socket(s) to listen on: unix:///path or tcp://host:port (repeatable).
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// The daemon configuration file.
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Root directory of persistent state.
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Path of the pid file.
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Registries reachable over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Debug mode.
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Log level: debug, info, warn, error, fatal.
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Use TLS; implied by --tlsverify.
    #[arg(long = "tls")]
    pub tls: bool,
    /// Use TLS and require client certificates signed by --tlscacert.
    #[arg(long = "tlsverify")]
    pub tlsverify: bool,
    /// Trust certificates signed by this CA.
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// The server certificate.
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// The server key.
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Group owning the unix socket (default: "berth" or "docker" when such a group exists, else root).
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Root directory of execution state: the runtime's state, bundles, monitors' sockets.
    #[arg(long = "exec-root", value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// The parent cgroup of containers.
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Map container root to an unprivileged range of host ids: "default" (user berthremap), USER, USER:GROUP,
    /// UID or UID:GID, with their ranges from /etc/subuid and /etc/subgid.
    #[arg(long = "userns-remap", value_name = "USER[:GROUP]")]
    pub userns_remap: Option<String>,
    /// The default bridge network's interface ("none": no default bridge network).
    #[arg(short = 'b', long = "bridge", value_name = "NAME")]
    pub bridge: Option<String>,
    /// The default bridge's address and prefix (its subnet and gateway), e.g. 172.17.0.1/16.
    #[arg(long = "bip", value_name = "CIDR")]
    pub bip: Option<String>,
    /// The MTU of containers' interfaces on the default bridge.
    #[arg(long = "mtu", value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// Where network subnets are picked from: base=CIDR,size=PREFIX (repeatable; default docker's pools).
    #[arg(long = "default-address-pool", value_name = "base=CIDR,size=N")]
    pub default_address_pools: Vec<AddressPoolConfig>,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(String),
}

impl Host {
    /// Parses `unix:///path`, a bare `/path`, or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Ok(Self::Unix(PathBuf::from("/run/berth/berth.sock")));
            }
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            let addr = if a.is_empty() {
                "127.0.0.1:2376".to_string()
            } else if a.starts_with(':') {
                format!("127.0.0.1{a}")
            } else if a.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                a.to_string()
            } else {
                format!("{a}:2376")
            };
            return Ok(Self::Tcp(addr));
        }
        Err(ConfigError::BadHost(s.to_string()))
    }
}

/// TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Client CA; `Some` means client certificates are required.
    pub ca: Option<PathBuf>,
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening addresses.
    pub hosts: Vec<Host>,
    /// The data root.
    pub data_root: PathBuf,
    /// The pid file.
    pub pidfile: PathBuf,
    /// Insecure registries.
    pub insecure_registries: Vec<String>,
    /// Debug mode.
    pub debug: bool,
    /// The tracing filter.
    pub log_level: String,
    /// Logs as JSON lines.
    pub log_json: bool,
    /// TLS, for TCP hosts.
    pub tls: Option<TlsFiles>,
    /// The unix socket's group.
    pub group: Option<String>,
    /// The exec root.
    pub exec_root: PathBuf,
    /// The cgroup parent of containers.
    pub cgroup_parent: String,
    /// `userns-remap` as given (absent or empty: off).
    pub userns_remap: Option<String>,
    /// The default bridge (`None`: `--bridge none`).
    pub bridge: Option<String>,
    /// `--bip`.
    pub bip: Option<String>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--default-address-pool` (empty: docker's defaults).
    pub default_address_pools: Vec<AddressPoolConfig>,
}

impl Config {
    /// Merges flags with the configuration file (the default one only when it exists).
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let (path, explicit) = match &flags.config_file {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let file = read_file(&path, explicit)?;
        Self::merge(flags, file, &path)
    }

    fn merge(flags: &Flags, file: FileConfig, path: &Path) -> Result<Self, ConfigError> {
        let mut conflicts = Vec::new();
        let mut pick = |name: &str, flag_set: bool, file_set: bool| {
            if flag_set && file_set {
                conflicts.push(name.to_string());
            }
        };
        pick("hosts", !flags.hosts.is_empty(), file.hosts.is_some());
        pick(
            "userns-remap",
            flags.userns_remap.is_some(),
            file.userns_remap.is_some(),
        );
        pick("data-root", flags.data_root.is_some(), file.data_root.is_some());
        pick("pidfile", flags.pidfile.is_some(), file.pidfile.is_some());
        pick(
            "insecure-registries",
            !flags.insecure_registries.is_empty(),
            file.insecure_registries.is_some(),
        );
        pick("debug", flags.debug, file.debug.is_some());
        pick("log-level", flags.log_level.is_some(), file.log_level.is_some());
        pick(
            "log-format",
            flags.log_format.is_some(),
            file.log_format.is_some(),
        );
        pick("tlsverify", flags.tlsverify, file.tlsverify.is_some());
        pick("tlscacert", flags.tlscacert.is_some(), file.tlscacert.is_some());
        pick("tlscert", flags.tlscert.is_some(), file.tlscert.is_some());
        pick("tlskey", flags.tlskey.is_some(), file.tlskey.is_some());
        pick("group", flags.group.is_some(), file.group.is_some());
        pick("exec-root", flags.exec_root.is_some(), file.exec_root.is_some());
        pick(
            "cgroup-parent",
            flags.cgroup_parent.is_some(),
            file.cgroup_parent.is_some(),
        );
        pick("bridge", flags.bridge.is_some(), file.bridge.is_some());
        pick("bip", flags.bip.is_some(), file.bip.is_some());
        pick("mtu", flags.mtu.is_some(), file.mtu.is_some());
        pick(
            "default-address-pools",
            !flags.default_address_pools.is_empty(),
            file.default_address_pools.is_some(),
        );
        if !conflicts.is_empty() {
            return Err(ConfigError::Conflict(conflicts.join(", "), path.to_path_buf()));
        }
        let host_strings = if flags.hosts.is_empty() {
            file.hosts.unwrap_or_default()
        } else {
            flags.hosts.clone()
        };
        let mut hosts = host_strings
            .iter()
            .map(|h| Host::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            hosts.push(Host::parse(DEFAULT_HOST)?);
        }
        let debug = flags.debug || file.debug.unwrap_or(false);
        let log_level = flags.log_level.clone().or(file.log_level).unwrap_or_else(|| {
            if debug {
                "debug".to_string()
            } else {
                "info".to_string()
            }
        });
        let log_level = match log_level.as_str() {
            "debug" | "info" | "warn" | "error" => log_level,
            "fatal" | "panic" => "error".to_string(),
            "warning" => "warn".to_string(),
            _ => return Err(ConfigError::BadLogLevel(log_level)),
        };
        let log_format = flags
            .log_format
            .clone()
            .or(file.log_format)
            .unwrap_or_else(|| "text".to_string());
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError::BadLogFormat(log_format));
        }
        let tlsverify = flags.tlsverify || file.tlsverify.unwrap_or(false);
        let tls = flags.tls || file.tls.unwrap_or(false) || tlsverify;
        let ca = flags.tlscacert.clone().or(file.tlscacert);
        let cert = flags.tlscert.clone().or(file.tlscert);
        let key = flags.tlskey.clone().or(file.tlskey);
        let tls = if tls {
            if tlsverify && ca.is_none() {
                return Err(ConfigError::MissingTls("--tlscacert"));
            }
            Some(TlsFiles {
                ca: if tlsverify { ca } else { None },
                cert: cert.ok_or(ConfigError::MissingTls("--tlscert"))?,
                key: key.ok_or(ConfigError::MissingTls("--tlskey"))?,
            })
        } else {
            None
        };
        if tls.as_ref().is_none_or(|t| t.ca.is_none()) {
            // Plain TCP gives root to the network; dockerd 27+ refuses it too. Loopback is allowed for tests.
            if let Some(Host::Tcp(a)) = hosts
                .iter()
                .find(|h| matches!(h, Host::Tcp(a) if tls.is_none() && !is_loopback(a)))
            {
                return Err(ConfigError::InsecureTcp(a.clone()));
            }
        }
        let exec_root = flags
            .exec_root
            .clone()
            .or(file.exec_root.clone())
            .unwrap_or_else(|| DEFAULT_EXEC_ROOT.into());
        let cgroup_parent = flags
            .cgroup_parent
            .clone()
            .or(file.cgroup_parent.clone())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.into());
        let userns_remap = flags
            .userns_remap
            .clone()
            .or(file.userns_remap.clone())
            .filter(|s| !s.trim().is_empty());
        let bridge = flags
            .bridge
            .clone()
            .or(file.bridge.clone())
            .unwrap_or_else(|| DEFAULT_BRIDGE.into());
        let bridge = (bridge != "none").then_some(bridge);
        let default_address_pools = if flags.default_address_pools.is_empty() {
            file.default_address_pools.clone().unwrap_or_default()
        } else {
            flags.default_address_pools.clone()
        };
        Ok(Self {
            exec_root,
            cgroup_parent,
            userns_remap,
            bridge,
            bip: flags.bip.clone().or(file.bip.clone()),
            mtu: flags.mtu.or(file.mtu),
            default_address_pools,
            hosts,
            data_root: flags
                .data_root
                .clone()
                .or(file.data_root)
                .unwrap_or_else(|| DEFAULT_DATA_ROOT.into()),
            pidfile: flags
                .pidfile
                .clone()
                .or(file.pidfile)
                .unwrap_or_else(|| DEFAULT_PIDFILE.into()),
            insecure_registries: if flags.insecure_registries.is_empty() {
                file.insecure_registries.unwrap_or_default()
            } else {
                flags.insecure_registries.clone()
            },
            debug,
            log_level,
            log_json: log_format == "json",
            tls,
            group: flags.group.clone().or(file.group),
        })
    }
}

fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_file(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(FileConfig::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_and_file_merge_and_conflict() {
        let flags = Flags::parse_from(["berthd", "-H", "unix:///tmp/x.sock", "-H", "tcp://127.0.0.1:2375"]);
        let file: FileConfig =
            serde_json::from_str(r#"{"data-root":"/d","insecure-registries":["r:5000"],"debug":true}"#)
                .unwrap();
        let c = Config::merge(&flags, file, Path::new("f")).unwrap();
        assert_eq!(
            c.hosts,
            vec![
                Host::Unix("/tmp/x.sock".into()),
                Host::Tcp("127.0.0.1:2375".into())
            ]
        );
        assert_eq!(c.data_root, PathBuf::from("/d"));
        assert_eq!(c.log_level, "debug");
        let file: FileConfig = serde_json::from_str(r#"{"hosts":["unix:///a"]}"#).unwrap();
        assert!(matches!(
            Config::merge(&flags, file, Path::new("f")),
            Err(ConfigError::Conflict(..))
        ));
        assert!(serde_json::from_str::<FileConfig>(r#"{"bogus":1}"#).is_err());
        let flags = Flags::parse_from(["berthd", "-H", "tcp://0.0.0.0:2376"]);
        assert!(matches!(
            Config::merge(&flags, FileConfig::default(), Path::new("f")),
            Err(ConfigError::InsecureTcp(_))
        ));
        assert!(Host::parse("http://x").is_err());
    }
}
