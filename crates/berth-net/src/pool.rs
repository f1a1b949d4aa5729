//! IPv4 subnets, the default address pools and the choice of a free subnet for a new network.
//!
//! A [`Subnet`] is an IPv4 CIDR block whose host bits are zero. [`default_pools`] mirrors docker's
//! `default-address-pools`: 172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/20 … 192.168.240.0/20.
//! [`pick_free`] walks the pools and returns the first subnet that overlaps neither a subnet already
//! used by a network nor a route or address of the host ([`host_subnets`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors of subnet parsing and host route discovery.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The text is not of the form `a.b.c.d/prefix`.
    #[error("subnet {0:?} is not an IPv4 CIDR of the form a.b.c.d/prefix")]
    Syntax(String),
    /// The prefix length is above 32.
    #[error("subnet {text:?} has prefix length {prefix}, which is above 32")]
    Prefix { text: String, prefix: u8 },
    /// Host bits are set: the caller probably meant the canonical form.
    #[error("subnet {text:?} has host bits set; the network address is {canonical}")]
    HostBits { text: String, canonical: Subnet },
    /// A pool's subnet size is smaller than its base block.
    #[error("address pool {base} cannot be split into /{size} subnets: the size must be between {} and 32", base.prefix())]
    PoolSize { base: Subnet, size: u8 },
    /// A file under /proc could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A line of a /proc file could not be understood.
    #[error("cannot parse line {line:?} of {path}")]
    ProcLine { path: String, line: String },
}

/// An IPv4 network: an address with all host bits zero and a prefix length 0..=32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    /// The subnet `addr/prefix`; host bits of `addr` must be zero.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, PoolError> {
        let text = format!("{addr}/{prefix}");
        if prefix > 32 {
            return Err(PoolError::Prefix { text, prefix });
        }
        let canonical = Self::containing(addr, prefix)?;
        if canonical.addr != addr {
            return Err(PoolError::HostBits { text, canonical });
        }
        Ok(canonical)
    }

    /// The subnet of length `prefix` that contains `addr` (host bits cleared).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Result<Self, PoolError> {
        if prefix > 32 {
            return Err(PoolError::Prefix {
                text: format!("{addr}/{prefix}"),
                prefix,
            });
        }
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// The network address (all host bits zero).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask, e.g. 255.255.0.0 for a /16.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The number of addresses in the subnet, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first address (the network address).
    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    /// The last address (the broadcast address for prefixes up to /30).
    pub fn last(&self) -> u32 {
        u32::from(self.addr) | !mask(self.prefix)
    }

    /// The broadcast address (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }

    /// The default gateway: the first host address. `None` for /31 and /32, which have no room
    /// for a gateway besides a container.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| Ipv4Addr::from(self.first() + 1))
    }

    /// Whether `addr` lies in the subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside this subnet.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether the two subnets share at least one address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains_subnet(other) || other.contains_subnet(self)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = PoolError;

    /// Parses `a.b.c.d/prefix`; host bits must be zero (`172.17.0.1/16` is an error naming
    /// `172.17.0.0/16`).
    fn from_str(s: &str) -> Result<Self, PoolError> {
        let syntax = || PoolError::Syntax(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(PoolError::Prefix {
                text: s.to_owned(),
                prefix,
            });
        }
        let canonical = Self::containing(addr, prefix)?;
        if canonical.addr != addr {
            return Err(PoolError::HostBits {
                text: s.to_owned(),
                canonical,
            });
        }
        Ok(canonical)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A block of address space split into equal subnets, as docker's `default-address-pools` entries
/// (`{"base": "172.17.0.0/16", "size": 16}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    base: Subnet,
    size: u8,
}

impl AddressPool {
    /// A pool handing out `/size` subnets of `base`.
    pub fn new(base: Subnet, size: u8) -> Result<Self, PoolError> {
        if size < base.prefix() || size > 32 {
            return Err(PoolError::PoolSize { base, size });
        }
        Ok(Self { base, size })
    }

    /// The block the subnets are taken from.
    pub fn base(&self) -> Subnet {
        self.base
    }

    /// The prefix length of each subnet.
    pub fn size(&self) -> u8 {
        self.size
    }

    /// The subnets of the pool in address order.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> + '_ {
        let step = 1u64 << (32 - u32::from(self.size));
        let count = 1u64 << u32::from(self.size - self.base.prefix());
        let start = u64::from(self.base.first());
        (0..count).map(move |i| {
            // In range: start + i * step stays within the base block, which fits in u32.
            let addr = u32::try_from(start + i * step).unwrap_or(u32::MAX);
            Subnet {
                addr: Ipv4Addr::from(addr),
                prefix: self.size,
            }
        })
    }
}

/// Docker's default address pools: 172.17.0.0/16 … 172.31.0.0/16 as /16 networks, then
/// 192.168.0.0/16 as /20 networks.
pub fn default_pools() -> Vec<AddressPool> {
    let mut pools: Vec<AddressPool> = (17u8..=31)
        .map(|b| AddressPool {
            base: Subnet {
                addr: Ipv4Addr::new(172, b, 0, 0),
                prefix: 16,
            },
            size: 16,
        })
        .collect();
    pools.push(AddressPool {
        base: Subnet {
            addr: Ipv4Addr::new(192, 168, 0, 0),
            prefix: 16,
        },
        size: 20,
    });
    pools
}

/// The first subnet of `pools` (in order) that overlaps none of `taken` (subnets of existing
/// networks) and none of `host_routes` (routes and addresses of the host, see [`host_subnets`]).
/// A default route (`0.0.0.0/0`) in `host_routes` is ignored, as it would overlap everything.
pub fn pick_free(pools: &[AddressPool], taken: &[Subnet], host_routes: &[Subnet]) -> Option<Subnet> {
    pools.iter().flat_map(AddressPool::subnets).find(|candidate| {
        !taken.iter().any(|t| t.overlaps(candidate))
            && !host_routes
                .iter()
                .filter(|r| r.prefix() > 0)
                .any(|r| r.overlaps(candidate))
    })
}

/// The subnets in use by the host in the caller's network namespace: every route of the main
/// table (from `/proc/net/route`, default routes left out) and every local address as a /32
/// (from `/proc/net/fib_trie`).
pub fn host_subnets() -> Result<Vec<Subnet>, PoolError> {
    let read = |path: &str| {
        std::fs::read_to_string(Path::new(path)).map_err(|source| PoolError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let mut out = parse_proc_net_route(&read("/proc/net/route")?)?;
    out.extend(parse_fib_trie_local(&read("/proc/net/fib_trie")?)?);
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses `/proc/net/route`: destinations and masks are hexadecimal in network byte order as the
/// kernel prints a big-endian word with `%08X` on this machine. Default routes are left out.
pub fn parse_proc_net_route(text: &str) -> Result<Vec<Subnet>, PoolError> {
    const PATH: &str = "/proc/net/route";
    let bad = |line: &str| PoolError::ProcLine {
        path: PATH.to_owned(),
        line: line.to_owned(),
    };
    let hex = |field: &str, line: &str| {
        u32::from_str_radix(field, 16)
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
            .map_err(|_| bad(line))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(bad(line));
        }
        let dest = hex(fields[1], line)?;
        let netmask = u32::from(hex(fields[7], line)?);
        let prefix = netmask.leading_ones();
        if netmask.count_ones() != prefix {
            return Err(bad(line));
        }
        let prefix = u8::try_from(prefix).map_err(|_| bad(line))?;
        if prefix == 0 {
            continue;
        }
        out.push(Subnet::containing(dest, prefix)?);
    }
    Ok(out)
}

/// Parses `/proc/net/fib_trie` and returns each local address (`/32 host LOCAL`) as a /32.
pub fn parse_fib_trie_local(text: &str) -> Result<Vec<Subnet>, PoolError> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("|-- ") {
            leaf = rest.trim().parse().ok();
        } else if trimmed.starts_with("+-- ") {
            leaf = None;
        } else if trimmed.starts_with("/32 ")
            && trimmed.split_whitespace().last() == Some("LOCAL")
            && let Some(addr) = leaf
        {
            out.push(Subnet::containing(addr, 32)?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn parse_and_format() {
        let n = s("172.17.0.0/16");
        assert_eq!(n.addr(), Ipv4Addr::new(172, 17, 0, 0));
        assert_eq!(n.prefix(), 16);
        assert_eq!(n.to_string(), "172.17.0.0/16");
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(n.size(), 65536);
        assert_eq!(s("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(s("10.1.2.3/32").broadcast(), Ipv4Addr::new(10, 1, 2, 3));
    }

    #[test]
    fn parse_errors_name_the_input() {
        for bad in [
            "172.17.0.0",
            "172.17.0/16",
            "172.17.0.0/",
            "172.17.0.0/+1",
            "x/16",
            "1.2.3.4/1a",
        ] {
            let err = bad.parse::<Subnet>().unwrap_err();
            assert!(matches!(err, PoolError::Syntax(_)), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
        let err = "10.0.0.0/33".parse::<Subnet>().unwrap_err();
        assert!(matches!(err, PoolError::Prefix { prefix: 33, .. }), "{err}");
        let err = "172.17.0.1/16".parse::<Subnet>().unwrap_err();
        assert!(err.to_string().contains("172.17.0.1/16"), "{err}");
        assert!(err.to_string().contains("172.17.0.0/16"), "{err}");
        assert!(Subnet::new(Ipv4Addr::new(10, 0, 0, 1), 24).is_err());
        assert_eq!(
            Subnet::containing(Ipv4Addr::new(10, 0, 0, 77), 24).unwrap(),
            s("10.0.0.0/24")
        );
    }

    #[test]
    fn gateway_broadcast_contains() {
        let n = s("192.168.16.0/20");
        assert_eq!(n.gateway(), Some(Ipv4Addr::new(192, 168, 16, 1)));
        assert_eq!(n.broadcast(), Ipv4Addr::new(192, 168, 31, 255));
        assert!(n.contains(Ipv4Addr::new(192, 168, 31, 255)));
        assert!(n.contains(Ipv4Addr::new(192, 168, 16, 0)));
        assert!(!n.contains(Ipv4Addr::new(192, 168, 32, 0)));
        assert!(!n.contains(Ipv4Addr::new(192, 168, 15, 255)));
        assert_eq!(s("10.0.0.0/31").gateway(), None);
        assert_eq!(s("10.0.0.0/30").gateway(), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn overlap_rules() {
        let a = s("172.17.0.0/16");
        assert!(a.overlaps(&s("172.17.5.0/24")));
        assert!(s("172.17.5.0/24").overlaps(&a));
        assert!(a.overlaps(&s("172.16.0.0/12")));
        assert!(a.overlaps(&a));
        assert!(a.overlaps(&s("172.17.255.255/32")));
        assert!(!a.overlaps(&s("172.18.0.0/16")));
        assert!(!a.overlaps(&s("172.16.255.255/32")));
        assert!(s("0.0.0.0/0").overlaps(&a));
        assert!(a.contains_subnet(&s("172.17.1.0/24")));
        assert!(!s("172.17.1.0/24").contains_subnet(&a));
    }

    #[test]
    fn serde_round_trip() {
        let n = s("10.88.0.0/16");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"10.88.0.0/16\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), n);
        assert!(serde_json::from_str::<Subnet>("\"10.88.0.1/16\"").is_err());
    }

    #[test]
    fn default_pools_match_docker() {
        let all: Vec<Subnet> = default_pools()
            .iter()
            .flat_map(|p| p.subnets().collect::<Vec<_>>())
            .collect();
        assert_eq!(all.len(), 15 + 16);
        assert_eq!(all[0], s("172.17.0.0/16"));
        assert_eq!(all[1], s("172.18.0.0/16"));
        assert_eq!(all[14], s("172.31.0.0/16"));
        assert_eq!(all[15], s("192.168.0.0/20"));
        assert_eq!(all[16], s("192.168.16.0/20"));
        assert_eq!(all[30], s("192.168.240.0/20"));
    }

    #[test]
    fn pool_size_checked() {
        assert!(AddressPool::new(s("10.0.0.0/8"), 7).is_err());
        assert!(AddressPool::new(s("10.0.0.0/8"), 33).is_err());
        let p = AddressPool::new(s("10.0.0.0/8"), 8).unwrap();
        assert_eq!(p.subnets().collect::<Vec<_>>(), vec![s("10.0.0.0/8")]);
        let p = AddressPool::new(s("10.0.0.0/30"), 32).unwrap();
        assert_eq!(p.subnets().count(), 4);
        assert_eq!(p.subnets().last(), Some(s("10.0.0.3/32")));
    }

    #[test]
    fn pick_free_skips_taken_and_host_routes() {
        let pools = default_pools();
        assert_eq!(pick_free(&pools, &[], &[]), Some(s("172.17.0.0/16")));
        // docker0 on the host and a default route: 172.17 is skipped, the default route ignored.
        let host = [s("0.0.0.0/0"), s("172.17.0.0/16"), s("10.0.2.15/32")];
        assert_eq!(pick_free(&pools, &[], &host), Some(s("172.18.0.0/16")));
        // A taken network and a narrow host route inside 172.19.
        let taken = [s("172.18.0.0/16")];
        let host = [s("172.17.0.0/16"), s("172.19.3.0/24")];
        assert_eq!(pick_free(&pools, &taken, &host), Some(s("172.20.0.0/16")));
        // A host address alone is enough to skip a subnet.
        let host = [s("172.17.200.9/32")];
        assert_eq!(pick_free(&pools, &[], &host), Some(s("172.18.0.0/16")));
        // A wide route (172.16.0.0/12) covers all 172.x pools: next is 192.168.0.0/20.
        let host = [s("172.16.0.0/12")];
        assert_eq!(pick_free(&pools, &[], &host), Some(s("192.168.0.0/20")));
        let taken = [s("192.168.0.0/19")];
        assert_eq!(pick_free(&pools, &taken, &host), Some(s("192.168.32.0/20")));
        // Everything used: nothing left.
        let host = [s("172.16.0.0/12"), s("192.168.0.0/16")];
        assert_eq!(pick_free(&pools, &[], &host), None);
    }

    #[test]
    fn parse_route_table() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0202000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes = parse_proc_net_route(text).unwrap();
        assert_eq!(routes, vec![s("10.0.2.0/24"), s("172.17.0.0/16")]);
        let err = parse_proc_net_route("header\neth0 zz\n").unwrap_err();
        assert!(err.to_string().contains("eth0 zz"), "{err}");
        let noncontiguous = "h\neth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FF00FF\t0\t0\t0\n";
        assert!(parse_proc_net_route(noncontiguous).is_err());
    }

    #[test]
    fn parse_fib_trie() {
        let text = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.2.0/24 2 0 2
        |-- 10.0.2.0
           /24 link UNICAST
        |-- 10.0.2.15
           /32 host LOCAL
        |-- 10.0.2.255
           /32 link BROADCAST
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.0.2.15
        /32 host LOCAL
";
        let local = parse_fib_trie_local(text).unwrap();
        assert_eq!(local, vec![s("10.0.2.15/32"), s("127.0.0.1/32")]);
    }

    #[test]
    fn host_subnets_reads_this_namespace() {
        let subnets = host_subnets().unwrap();
        assert!(subnets.iter().all(|n| n.prefix() > 0), "{subnets:?}");
        let mut sorted = subnets.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, subnets);
        // The pool choice must never return something overlapping what the host uses.
        if let Some(free) = pick_free(&default_pools(), &[], &subnets) {
            assert!(
                !subnets.iter().any(|h| h.overlaps(&free)),
                "{free} overlaps {subnets:?}"
            );
        }
    }
}
