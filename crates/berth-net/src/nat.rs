//! NAT, published ports and network isolation with nftables, confined to Berth's own table.
//!
//! [`NatConfig`] is a typed description of everything Berth wants from the packet filter. [`NatConfig::render`]
//! turns it into one complete `nft -f -` script that atomically replaces the table `ip <table>` (default
//! `berth`) and touches nothing else:
//!
//! ```text
//! add table ip berth      # make sure the table exists, so that the delete below cannot fail
//! delete table ip berth   # drop the previous generation, with all its chains and rules
//! table ip berth { ... }  # the new generation
//! ```
//!
//! nft applies a script as one transaction, so the table is never seen half-built, and applying the same script
//! twice leaves exactly one copy of every rule.
//!
//! The table holds:
//! - `postrouting` (nat): masquerade of traffic from each non-internal subnet with `masquerade` leaving through
//!   another interface; masquerade of hairpin traffic (a container reaching a published port of its own network);
//!   masquerade of host loopback traffic sent to a container through a published port.
//! - `prerouting` and `output` (nat): traffic to a local address (`fib daddr type local`, as docker) jumps to
//!   `published`, which holds one `dnat` rule per published port. The `output` hook makes `127.0.0.1:hostPort`
//!   work from the host itself; for that the kernel must accept loopback sources on the bridge
//!   (`net.ipv4.conf.<bridge>.route_localnet = 1`, which the caller sets, as docker does without its proxy).
//! - `forward` (filter, policy accept): drops everything into and out of internal networks that does not stay on
//!   their bridge, accepts established/related traffic and new traffic to published container ports, and drops
//!   traffic between two different Berth bridges (isolation of networks).
//!
//! Forwarding itself (`net.ipv4.ip_forward`) is a sysctl and not part of the ruleset.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::pool::Subnet;

/// Table name used when none is configured.
pub const DEFAULT_TABLE: &str = "berth";

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
const MAX_IFNAME_LEN: usize = 15;

/// Errors from rendering or applying Berth's nftables ruleset.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The table name is empty, too long or has characters other than ASCII letters, digits and `_`.
    #[error("invalid nftables table name {0:?}: use 1 to 64 ASCII letters, digits or underscores")]
    InvalidTable(String),
    /// A bridge name is not a valid interface name.
    #[error("invalid bridge name {0:?}: use 1 to 15 ASCII letters, digits, '-', '_' or '.'")]
    InvalidBridge(String),
    /// Two networks use the same bridge.
    #[error("bridge {0} is listed for more than one network")]
    DuplicateBridge(String),
    /// Two networks have overlapping subnets.
    #[error("the subnets {0} and {1} of two networks overlap")]
    OverlappingSubnets(Subnet, Subnet),
    /// A port mapping uses port 0.
    #[error("invalid port mapping {0}: port 0 cannot be published or targeted")]
    PortZero(PortMap),
    /// A range of host ports and a range of container ports are not the same length, or a range is reversed.
    #[error("invalid port range {host_first}-{host_last}:{container_first}-{container_last}: {reason}")]
    InvalidRange {
        /// First host port.
        host_first: u16,
        /// Last host port.
        host_last: u16,
        /// First container port.
        container_first: u16,
        /// Last container port.
        container_last: u16,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two port mappings claim the same host port and protocol on intersecting host addresses.
    #[error("host port {port}/{proto} on {addr} is published twice ({first} and {second})")]
    DuplicateHostPort {
        /// Protocol.
        proto: Proto,
        /// Host port.
        port: u16,
        /// The contested host address (`0.0.0.0` for all).
        addr: Ipv4Addr,
        /// The first mapping.
        first: PortMap,
        /// The conflicting mapping.
        second: PortMap,
    },
    /// A port mapping targets an address outside every configured network.
    #[error("port mapping {0} targets {1}, which is in none of the configured networks")]
    UnknownContainer(PortMap, Ipv4Addr),
    /// A port mapping targets a container on an internal network.
    #[error("port mapping {0} targets internal network {1}, which cannot publish ports")]
    InternalPublish(PortMap, String),
    /// `nft` could not be started or fed.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The nft binary.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `nft` exited with a failure.
    #[error("{program} -f - failed ({status}): {stderr}")]
    Nft {
        /// The nft binary.
        program: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, NatError>;

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One Berth network as the packet filter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRule {
    /// The network's bridge (`berth0`, `br-...`).
    pub bridge: String,
    /// The network's subnet.
    pub subnet: Subnet,
    /// Masquerade traffic from the subnet that leaves through another interface.
    pub masquerade: bool,
    /// Internal network: no traffic in or out except between its own containers.
    pub internal: bool,
}

/// One published port: `[host_ip:]host_port -> container_ip:container_port/proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMap {
    /// Protocol.
    pub proto: Proto,
    /// Host address the port is published on; `None` for every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port.
    pub host_port: u16,
    /// Container address.
    pub container_ip: Ipv4Addr,
    /// Container port.
    pub container_port: u16,
}

impl PortMap {
    /// Expands `host_ports -> container_ports` (inclusive ranges of the same length, as `-p 8000-8002:80-82`)
    /// into one mapping per port. A single container port with a host range (`-p 8000-8002:80`) is refused
    /// here, as each host port needs its own target; the caller picks one host port for that form.
    pub fn range(
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_ports: (u16, u16),
        container_ip: Ipv4Addr,
        container_ports: (u16, u16),
    ) -> Result<Vec<PortMap>> {
        let (hf, hl) = host_ports;
        let (cf, cl) = container_ports;
        let invalid = |reason| NatError::InvalidRange {
            host_first: hf,
            host_last: hl,
            container_first: cf,
            container_last: cl,
            reason,
        };
        if hf > hl || cf > cl {
            return Err(invalid("the first port of a range is greater than the last"));
        }
        if hl - hf != cl - cf {
            return Err(invalid("the host and container ranges have different lengths"));
        }
        let maps: Vec<PortMap> = (0..=hl - hf)
            .map(|i| PortMap {
                proto,
                host_ip,
                host_port: hf + i,
                container_ip,
                container_port: cf + i,
            })
            .collect();
        if let Some(zero) = maps.iter().find(|m| m.host_port == 0 || m.container_port == 0) {
            return Err(NatError::PortZero(*zero));
        }
        Ok(maps)
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}->{}:{}/{}",
            self.host_port, self.container_ip, self.container_port, self.proto
        )
    }
}

/// Everything Berth wants from nftables: one table, its networks and its published ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Name of Berth's table in the `ip` family.
    pub table: String,
    /// The networks.
    pub networks: Vec<NetRule>,
    /// The published ports (ranges already expanded, see [`PortMap::range`]).
    pub ports: Vec<PortMap>,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            table: DEFAULT_TABLE.to_owned(),
            networks: Vec::new(),
            ports: Vec::new(),
        }
    }
}

fn validate_table(table: &str) -> Result<()> {
    let ok = !table.is_empty()
        && table.len() <= 64
        && table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !table.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(NatError::InvalidTable(table.to_owned()))
    }
}

fn validate_bridge(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(NatError::InvalidBridge(name.to_owned()))
    }
}

/// The script deleting `ip <table>` if it exists (and nothing else).
fn removal_script(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

impl NatConfig {
    /// Checks names, subnets and port mappings; every refusal names the offending value.
    pub fn validate(&self) -> Result<()> {
        validate_table(&self.table)?;
        let mut bridges = HashSet::new();
        for (i, net) in self.networks.iter().enumerate() {
            validate_bridge(&net.bridge)?;
            if !bridges.insert(net.bridge.as_str()) {
                return Err(NatError::DuplicateBridge(net.bridge.clone()));
            }
            if let Some(other) = self.networks[..i].iter().find(|o| o.subnet.overlaps(&net.subnet)) {
                return Err(NatError::OverlappingSubnets(other.subnet, net.subnet));
            }
        }
        for (i, map) in self.ports.iter().enumerate() {
            if map.host_port == 0 || map.container_port == 0 {
                return Err(NatError::PortZero(*map));
            }
            let net = self.network_of(map)?;
            if net.internal {
                return Err(NatError::InternalPublish(*map, net.bridge.clone()));
            }
            let clash = self.ports[..i].iter().find(|o| {
                o.proto == map.proto
                    && o.host_port == map.host_port
                    && (o.host_ip.is_none() || map.host_ip.is_none() || o.host_ip == map.host_ip)
            });
            if let Some(first) = clash {
                return Err(NatError::DuplicateHostPort {
                    proto: map.proto,
                    port: map.host_port,
                    addr: map.host_ip.or(first.host_ip).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    first: *first,
                    second: *map,
                });
            }
        }
        Ok(())
    }

    fn network_of(&self, map: &PortMap) -> Result<&NetRule> {
        self.networks
            .iter()
            .find(|n| n.subnet.contains(map.container_ip))
            .ok_or(NatError::UnknownContainer(*map, map.container_ip))
    }

    /// Renders the complete `nft -f -` script replacing `ip <table>` (see the module documentation).
    pub fn render(&self) -> Result<String> {
        self.validate()?;
        let mut s = removal_script(&self.table);
        let mut line = |text: &str| {
            s.push_str(text);
            s.push('\n');
        };
        line(&format!("table ip {} {{", self.table));

        // nat postrouting
        line("\tchain postrouting {");
        line("\t\ttype nat hook postrouting priority srcnat; policy accept;");
        for net in self.networks.iter().filter(|n| !n.internal) {
            let (b, sub) = (&net.bridge, net.subnet);
            if net.masquerade {
                line(&format!("\t\tip saddr {sub} oifname != \"{b}\" masquerade"));
            }
            line(&format!(
                "\t\tip saddr {sub} ip daddr {sub} oifname \"{b}\" ct status dnat masquerade"
            ));
            line(&format!(
                "\t\tip saddr 127.0.0.0/8 oifname \"{b}\" ct status dnat masquerade"
            ));
        }
        line("\t}");

        // nat prerouting / output -> published
        line("\tchain prerouting {");
        line("\t\ttype nat hook prerouting priority dstnat; policy accept;");
        line("\t\tfib daddr type local jump published");
        line("\t}");
        line("\tchain output {");
        // nft 1.0.6 (Debian bookworm) accepts the name `dstnat` only on prerouting: -100 is its value.
        line("\t\ttype nat hook output priority -100; policy accept;");
        line("\t\tfib daddr type local jump published");
        line("\t}");
        line("\tchain published {");
        for map in &self.ports {
            let daddr = map
                .host_ip
                .map(|ip| format!("ip daddr {ip} "))
                .unwrap_or_default();
            line(&format!(
                "\t\t{daddr}{} dport {} dnat to {}:{}",
                map.proto, map.host_port, map.container_ip, map.container_port
            ));
        }
        line("\t}");

        // filter forward
        line("\tchain forward {");
        line("\t\ttype filter hook forward priority filter; policy accept;");
        for net in self.networks.iter().filter(|n| n.internal) {
            let b = &net.bridge;
            line(&format!("\t\tiifname \"{b}\" oifname != \"{b}\" drop"));
            line(&format!("\t\toifname \"{b}\" iifname != \"{b}\" drop"));
        }
        line("\t\tct state established,related accept");
        for map in &self.ports {
            // network_of cannot fail here: validate() checked every mapping.
            let net = self.network_of(map)?;
            line(&format!(
                "\t\tip daddr {} oifname \"{}\" {} dport {} ct status dnat accept",
                map.container_ip, net.bridge, map.proto, map.container_port
            ));
        }
        for net in &self.networks {
            let others: Vec<String> = self
                .networks
                .iter()
                .filter(|o| o.bridge != net.bridge)
                .map(|o| format!("\"{}\"", o.bridge))
                .collect();
            if !others.is_empty() {
                line(&format!(
                    "\t\tiifname \"{}\" oifname {{ {} }} drop",
                    net.bridge,
                    others.join(", ")
                ));
            }
        }
        line("\t}");
        line("}");
        Ok(s)
    }
}

/// The nft binary: `/usr/sbin/nft` or `/sbin/nft` when present, else `nft` from `PATH`.
pub fn nft_program() -> PathBuf {
    ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map_or_else(|| PathBuf::from("nft"), Path::to_path_buf)
}

/// Runs `nft -f -` with `script` on stdin, in the network namespace `netns` (the caller's when `None`).
///
/// The namespace is entered by the child alone, between fork and exec (`setns` is a single async-signal-safe
/// system call), so no thread of the caller ever changes namespace and no file descriptor is passed on.
pub fn apply(script: &str, netns: Option<BorrowedFd<'_>>) -> Result<()> {
    run_nft(&["-f", "-"], Some(script), netns).map(|_| ())
}

/// Deletes the table `ip <table>` (with its chains and rules) in `netns`; an absent table is not an error.
pub fn remove(table: &str, netns: Option<BorrowedFd<'_>>) -> Result<()> {
    validate_table(table)?;
    apply(&removal_script(table), netns)
}

/// Runs nft with `args` and optional stdin in `netns`, returning its standard output.
pub fn run_nft(args: &[&str], stdin: Option<&str>, netns: Option<BorrowedFd<'_>>) -> Result<String> {
    let program = nft_program();
    let spawn_err = |source| NatError::Spawn {
        program: program.clone(),
        source,
    };
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fd) = netns {
        let raw = fd.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only performs the setns system call,
        // which is async-signal-safe; `raw` stays open because the caller's BorrowedFd outlives this function,
        // which waits for the child.
        unsafe {
            cmd.pre_exec(move || {
                // SAFETY: `raw` is an open namespace descriptor in the child (inherited, closed only at exec).
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::thread::move_into_link_name_space(
                    fd,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(io::Error::from)
            });
        }
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(text) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // A write error (nft exited early) shows up as nft's failure status below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NatError::Nft {
            program,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn sample() -> NatConfig {
        NatConfig {
            networks: vec![
                NetRule {
                    bridge: "berth0".into(),
                    subnet: sub("172.17.0.0/16"),
                    masquerade: true,
                    internal: false,
                },
                NetRule {
                    bridge: "br-int".into(),
                    subnet: sub("172.18.0.0/16"),
                    masquerade: true,
                    internal: true,
                },
            ],
            ports: vec![
                PortMap {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_ip: ip("172.17.0.2"),
                    container_port: 80,
                },
                PortMap {
                    proto: Proto::Udp,
                    host_ip: Some(ip("127.0.0.1")),
                    host_port: 5353,
                    container_ip: ip("172.17.0.3"),
                    container_port: 53,
                },
            ],
            ..NatConfig::default()
        }
    }

    const SAMPLE: &str = "add table ip berth
delete table ip berth
table ip berth {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade
\t\tip saddr 172.17.0.0/16 ip daddr 172.17.0.0/16 oifname \"berth0\" ct status dnat masquerade
\t\tip saddr 127.0.0.0/8 oifname \"berth0\" ct status dnat masquerade
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain published {
\t\ttcp dport 8080 dnat to 172.17.0.2:80
\t\tip daddr 127.0.0.1 udp dport 5353 dnat to 172.17.0.3:53
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"br-int\" oifname != \"br-int\" drop
\t\toifname \"br-int\" iifname != \"br-int\" drop
\t\tct state established,related accept
\t\tip daddr 172.17.0.2 oifname \"berth0\" tcp dport 80 ct status dnat accept
\t\tip daddr 172.17.0.3 oifname \"berth0\" udp dport 53 ct status dnat accept
\t\tiifname \"berth0\" oifname { \"br-int\" } drop
\t\tiifname \"br-int\" oifname { \"berth0\" } drop
\t}
}
";

    #[test]
    fn renders_sample_exactly() {
        assert_eq!(sample().render().unwrap(), SAMPLE);
    }

    #[test]
    fn script_replaces_only_its_own_table() {
        let cfg = NatConfig {
            table: "berth_t1".into(),
            ..sample()
        };
        let script = cfg.render().unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "add table ip berth_t1",
                "delete table ip berth_t1",
                "table ip berth_t1 {"
            ]
        );
        assert_eq!(lines.last(), Some(&"}"));
        // Every other top-level statement is inside the table block: no other table, no flush ruleset.
        assert_eq!(script.matches("table ").count(), 3);
        assert!(!script.contains("flush"));
        assert_eq!(
            removal_script("berth_t1"),
            "add table ip berth_t1\ndelete table ip berth_t1\n"
        );
    }

    #[test]
    fn masquerade_off_and_empty_config() {
        let mut cfg = sample();
        cfg.networks[0].masquerade = false;
        let script = cfg.render().unwrap();
        assert!(!script.contains("oifname != \"berth0\" masquerade"));
        assert!(script.contains("ct status dnat masquerade"));
        let empty = NatConfig::default().render().unwrap();
        assert!(empty.contains("chain published {\n\t}"));
        assert!(!empty.contains("drop"));
    }

    #[test]
    fn ranges_expand() {
        let maps = PortMap::range(Proto::Tcp, None, (8000, 8002), ip("172.17.0.2"), (80, 82)).unwrap();
        let pairs: Vec<(u16, u16)> = maps.iter().map(|m| (m.host_port, m.container_port)).collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        let err = PortMap::range(Proto::Tcp, None, (8000, 8002), ip("172.17.0.2"), (80, 80)).unwrap_err();
        assert!(err.to_string().contains("8000-8002:80-80"), "{err}");
        let err = PortMap::range(Proto::Udp, None, (0, 1), ip("172.17.0.2"), (5, 6)).unwrap_err();
        assert!(matches!(err, NatError::PortZero(m) if m.host_port == 0), "{err}");
    }

    #[test]
    fn rejects_bad_input() {
        let mut cfg = sample();
        cfg.ports[0].host_port = 0;
        let err = cfg.render().unwrap_err();
        assert!(err.to_string().contains("0->172.17.0.2:80/tcp"), "{err}");

        let mut cfg = sample();
        let mut dup = cfg.ports[1];
        dup.host_ip = None;
        dup.container_ip = ip("172.17.0.9");
        cfg.ports.push(dup);
        let err = cfg.render().unwrap_err();
        assert_eq!(
            err.to_string(),
            "host port 5353/udp on 127.0.0.1 is published twice \
             (127.0.0.1:5353->172.17.0.3:53/udp and 5353->172.17.0.9:53/udp)"
        );

        // Same port on two different host addresses, or two protocols, is fine.
        let mut cfg = sample();
        let mut other = cfg.ports[1];
        other.host_ip = Some(ip("127.0.0.2"));
        cfg.ports.push(other);
        let mut tcp = cfg.ports[1];
        tcp.proto = Proto::Tcp;
        cfg.ports.push(tcp);
        cfg.render().unwrap();

        let mut cfg = sample();
        cfg.ports[0].container_ip = ip("10.9.9.9");
        assert!(cfg.render().unwrap_err().to_string().contains("10.9.9.9"));

        let mut cfg = sample();
        cfg.ports[0].container_ip = ip("172.18.0.2");
        assert!(
            cfg.render()
                .unwrap_err()
                .to_string()
                .contains("internal network br-int")
        );

        let mut cfg = sample();
        cfg.networks[1].bridge = "berth0\" drop;".into();
        assert!(matches!(cfg.render(), Err(NatError::InvalidBridge(_))));

        let mut cfg = sample();
        cfg.networks[1].bridge = "berth0".into();
        assert!(matches!(cfg.render(), Err(NatError::DuplicateBridge(b)) if b == "berth0"));

        let mut cfg = sample();
        cfg.networks[1].subnet = sub("172.17.5.0/24");
        assert!(
            cfg.render()
                .unwrap_err()
                .to_string()
                .contains("172.17.0.0/16 and 172.17.5.0/24")
        );

        for bad in ["", "ber th", "1berth", "berth;flush"] {
            let cfg = NatConfig {
                table: bad.into(),
                ..sample()
            };
            assert!(matches!(cfg.render(), Err(NatError::InvalidTable(_))), "{bad:?}");
            assert!(
                matches!(remove(bad, None), Err(NatError::InvalidTable(_))),
                "{bad:?}"
            );
        }
    }

    /// A named network namespace (`ip netns add`), deleted on drop.
    struct NetnsGuard {
        name: String,
    }

    impl NetnsGuard {
        fn new() -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!("berth-nt-{}-{nanos}", std::process::id());
            let status = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
            assert!(status.success(), "ip netns add {name} failed");
            NetnsGuard { name }
        }

        fn path(&self) -> PathBuf {
            PathBuf::from("/run/netns").join(&self.name)
        }
    }

    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
        }
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// (chain name, rule count) of `ip <table>` in the namespace, from `nft -j list table`.
    fn list_table(table: &str, netns: BorrowedFd<'_>) -> Result<Vec<(String, usize)>> {
        let out = run_nft(&["-j", "list", "table", "ip", table], None, Some(netns))?;
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let items = json["nftables"].as_array().unwrap();
        let mut chains: Vec<(String, usize)> = items
            .iter()
            .filter_map(|i| i.get("chain"))
            .map(|c| (c["name"].as_str().unwrap().to_owned(), 0))
            .collect();
        for rule in items.iter().filter_map(|i| i.get("rule")) {
            assert_eq!(rule["table"], table);
            let chain = rule["chain"].as_str().unwrap();
            chains.iter_mut().find(|(n, _)| n == chain).unwrap().1 += 1;
        }
        chains.sort();
        Ok(chains)
    }

    #[test]
    fn applies_in_a_test_namespace_idempotently_and_removes() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        if !nft_program().is_absolute() {
            panic!("nft is not installed (package nftables)");
        }
        let ns = NetnsGuard::new();
        let file = std::fs::File::open(ns.path()).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        let table = format!("berth_t{}", std::process::id());
        let cfg = NatConfig {
            table: table.clone(),
            ..sample()
        };
        let script = cfg.render().unwrap();

        let expected: Vec<(String, usize)> = vec![
            ("forward".into(), 7),
            ("output".into(), 1),
            ("postrouting".into(), 3),
            ("prerouting".into(), 1),
            ("published".into(), 2),
        ];
        apply(&script, Some(fd)).unwrap();
        assert_eq!(list_table(&table, fd).unwrap(), expected);
        let text = run_nft(&["list", "table", "ip", &table], None, Some(fd)).unwrap();
        assert!(text.contains("dnat to 172.17.0.2:80"), "{text}");
        assert!(
            text.contains("iifname \"br-int\" oifname != \"br-int\" drop"),
            "{text}"
        );

        // Applying again replaces the table: same chains, no duplicated rule.
        apply(&script, Some(fd)).unwrap();
        assert_eq!(list_table(&table, fd).unwrap(), expected);

        // A smaller config replaces the larger one.
        let smaller = NatConfig {
            ports: vec![],
            ..cfg.clone()
        };
        apply(&smaller.render().unwrap(), Some(fd)).unwrap();
        let after = list_table(&table, fd).unwrap();
        assert_eq!(after.iter().find(|(n, _)| n == "published").unwrap().1, 0);

        // The root namespace never saw the table.
        assert!(run_nft(&["list", "table", "ip", &table], None, None).is_err());

        remove(&table, Some(fd)).unwrap();
        assert!(matches!(list_table(&table, fd), Err(NatError::Nft { .. })));
        // Removing an absent table is fine.
        remove(&table, Some(fd)).unwrap();
    }
}
