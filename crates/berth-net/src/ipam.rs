//! IP address management: per network a persistent allocation table under a directory.
//!
//! Each network is one JSON file `<dir>/<network>.json` holding its subnet, gateway, optional
//! `--ip-range` and the table of allocated addresses with their owners (container ids). Every
//! operation takes an exclusive `flock` on `<dir>/.lock` (a fresh open file description per
//! operation, so the lock serialises threads of one process as well as processes), reads the
//! table, changes it and writes it back atomically (temporary file, fsync, rename, fsync of the
//! directory) before the lock is dropped. An address is therefore never handed out twice, and a
//! crash leaves either the old or the new table.
//!
//! Addresses are handed out in order after the last one given (wrapping around), so a released
//! address is not reused at once; the network address, the gateway and the broadcast address are
//! never handed out.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::pool::Subnet;

/// Errors of address management.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The allocation table of a network is not valid JSON of the expected shape.
    #[error("the allocation table {} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The network name is not usable.
    #[error(
        "network name {0:?} is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-' (at most 128 characters)"
    )]
    InvalidName(String),
    /// The owner string is empty.
    #[error("an address owner must not be empty (network {network})")]
    EmptyOwner { network: String },
    /// No network of that name exists.
    #[error("network {0} not found")]
    NotFound(String),
    /// A network of that name already exists.
    #[error("network {0} already exists")]
    Exists(String),
    /// The subnet is too small to hold a gateway and a container.
    #[error(
        "subnet {subnet} of network {network} is too small: a /30 or larger is needed for a gateway and a container"
    )]
    SubnetTooSmall { network: String, subnet: Subnet },
    /// The requested subnet overlaps the subnet of another network.
    #[error("subnet {subnet} of network {network} overlaps subnet {other_subnet} of network {other}")]
    Overlap {
        network: String,
        subnet: Subnet,
        other: String,
        other_subnet: Subnet,
    },
    /// The gateway is not a host address of the subnet.
    #[error("gateway {gateway} of network {network} is not a host address of subnet {subnet}")]
    BadGateway {
        network: String,
        gateway: Ipv4Addr,
        subnet: Subnet,
    },
    /// The ip-range is not inside the subnet.
    #[error("ip range {range} of network {network} is not inside subnet {subnet}")]
    BadRange {
        network: String,
        range: Subnet,
        subnet: Subnet,
    },
    /// The network still has allocated addresses.
    #[error("network {network} is in use: {count} address(es) are allocated, e.g. {example} by {owner}")]
    InUse {
        network: String,
        count: usize,
        example: Ipv4Addr,
        owner: String,
    },
    /// A requested address is outside the network's subnet.
    #[error("address {addr} is outside subnet {subnet} of network {network}")]
    OutsideSubnet {
        network: String,
        addr: Ipv4Addr,
        subnet: Subnet,
    },
    /// A requested address is the network, gateway or broadcast address.
    #[error("address {addr} is the {what} address of network {network} and cannot be assigned")]
    Reserved {
        network: String,
        addr: Ipv4Addr,
        what: &'static str,
    },
    /// A requested address is already allocated.
    #[error("address {addr} of network {network} is already in use by {owner}")]
    AddressInUse {
        network: String,
        addr: Ipv4Addr,
        owner: String,
    },
    /// Every address of the network (or its ip-range) is allocated.
    #[error("no free address left in {range} of network {network}")]
    Exhausted { network: String, range: Subnet },
    /// A MAC address string could not be parsed.
    #[error(
        "MAC address {0:?} is invalid: expected six hexadecimal bytes separated by ':' such as 02:42:ac:11:00:02"
    )]
    Mac(String),
}

/// The settings of a network as stored in its table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The network's name (also its file name).
    pub name: String,
    /// The subnet addresses are taken from.
    pub subnet: Subnet,
    /// The gateway address (the bridge's address), never handed out.
    pub gateway: Ipv4Addr,
    /// When set, addresses are handed out only from this range (`--ip-range`).
    pub ip_range: Option<Subnet>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Table {
    #[serde(flatten)]
    network: Network,
    /// The last address handed out; the next search starts after it.
    last: Option<Ipv4Addr>,
    /// Allocated addresses and their owners.
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The MAC address docker derives from an IPv4 address: `02:42` followed by the four
    /// octets (172.17.0.2 → 02:42:ac:11:00:02), locally administered and unicast.
    pub fn from_ipv4(addr: Ipv4Addr) -> Self {
        let [a, b, c, d] = addr.octets();
        Self([0x02, 0x42, a, b, c, d])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| IpamError::Mac(s.to_owned()))?;
            if part.len() != 2 {
                return Err(IpamError::Mac(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| IpamError::Mac(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(IpamError::Mac(s.to_owned()));
        }
        Ok(Self(out))
    }
}

/// The allocation tables of all networks, stored under one directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    /// fsync after every allocation and release (see [`Ipam::lazy_addresses`]).
    sync_addresses: bool,
}

/// Holds the flock on `<dir>/.lock`; closing the file releases it.
struct Lock {
    _file: File,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
    let path = path.to_path_buf();
    move |source| IpamError::Io { action, path, source }
}

fn check_name(name: &str) -> Result<(), IpamError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IpamError::InvalidName(name.to_owned()))
    }
}

impl Ipam {
    /// Opens (creating it if needed) the IPAM store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, IpamError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let ipam = Self {
            dir,
            sync_addresses: true,
        };
        drop(ipam.lock(false)?);
        Ok(ipam)
    }

    /// The directory holding the tables.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self, exclusive: bool) -> Result<Lock, IpamError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        loop {
            match flock(&file, op) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", &path)(e.into())),
            }
        }
    }

    fn table_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    fn read_table(&self, network: &str) -> Result<Table, IpamError> {
        check_name(network)?;
        let path = self.table_path(network);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IpamError::NotFound(network.to_owned()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| IpamError::Corrupt { path, source })
    }

    /// Allocations and releases are still atomic (written aside and renamed) but no longer fsynced: for a caller
    /// that keeps the authoritative copy elsewhere and reconciles the tables at start ([`Ipam::claim`],
    /// [`Ipam::release_owner`]). Networks are always written durably.
    pub fn lazy_addresses(mut self) -> Self {
        self.sync_addresses = false;
        self
    }

    /// Records that `owner` holds `addr` on `network` (already recorded: nothing to do), as at a restart for a
    /// container that kept running. Another owner holding it is an error naming both.
    pub fn claim(&self, network: &str, addr: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        let _lock = self.lock(true)?;
        let mut table = self.read_table(network)?;
        match table.allocations.get(&addr) {
            Some(o) if o == owner => Ok(()),
            Some(o) => Err(IpamError::AddressInUse {
                network: network.to_owned(),
                addr,
                owner: o.clone(),
            }),
            None => {
                if !table.network.subnet.contains(addr) {
                    return Err(IpamError::OutsideSubnet {
                        network: network.to_owned(),
                        addr,
                        subnet: table.network.subnet,
                    });
                }
                table.allocations.insert(addr, owner.to_owned());
                self.write_table_with(&table, self.sync_addresses)
            }
        }
    }

    fn write_table(&self, table: &Table) -> Result<(), IpamError> {
        self.write_table_with(table, true)
    }

    fn write_table_with(&self, table: &Table, durable: bool) -> Result<(), IpamError> {
        let path = self.table_path(&table.network.name);
        let tmp = self.dir.join(format!(".{}.json.tmp", table.network.name));
        let data = serde_json::to_vec_pretty(table).map_err(|source| IpamError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(&data).map_err(io_err("write", &tmp))?;
        if durable {
            file.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))?;
        if durable { self.sync_dir() } else { Ok(()) }
    }

    fn sync_dir(&self) -> Result<(), IpamError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))
    }

    fn names(&self) -> Result<Vec<String>, IpamError> {
        let mut names = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if check_name(name).is_ok() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Creates a network. `gateway` defaults to the first host address of `subnet`;
    /// `ip_range` (when given) must lie inside `subnet`. The subnet must not overlap any other
    /// network's subnet.
    pub fn create_network(
        &self,
        name: &str,
        subnet: Subnet,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Subnet>,
    ) -> Result<Network, IpamError> {
        check_name(name)?;
        let network = name.to_owned();
        let Some(default_gateway) = subnet.gateway() else {
            return Err(IpamError::SubnetTooSmall { network, subnet });
        };
        let gateway = gateway.unwrap_or(default_gateway);
        if !subnet.contains(gateway) || gateway == subnet.addr() || gateway == subnet.broadcast() {
            return Err(IpamError::BadGateway {
                network,
                gateway,
                subnet,
            });
        }
        if let Some(range) = ip_range
            && !subnet.contains_subnet(&range)
        {
            return Err(IpamError::BadRange {
                network,
                range,
                subnet,
            });
        }
        let _lock = self.lock(true)?;
        for other in self.names()? {
            if other == name {
                return Err(IpamError::Exists(network));
            }
            let table = self.read_table(&other)?;
            if table.network.subnet.overlaps(&subnet) {
                return Err(IpamError::Overlap {
                    network,
                    subnet,
                    other,
                    other_subnet: table.network.subnet,
                });
            }
        }
        let table = Table {
            network: Network {
                name: network,
                subnet,
                gateway,
                ip_range,
            },
            last: None,
            allocations: BTreeMap::new(),
        };
        self.write_table(&table)?;
        Ok(table.network)
    }

    /// Removes a network and whatever it still has allocated (a network whose owner is gone).
    pub fn remove_network_force(&self, name: &str) -> Result<(), IpamError> {
        check_name(name)?;
        let _lock = self.lock(true)?;
        let path = self.table_path(name);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Removes a network; fails when addresses are still allocated in it.
    pub fn remove_network(&self, name: &str) -> Result<(), IpamError> {
        let _lock = self.lock(true)?;
        let table = self.read_table(name)?;
        if let Some((addr, owner)) = table.allocations.iter().next() {
            return Err(IpamError::InUse {
                network: name.to_owned(),
                count: table.allocations.len(),
                example: *addr,
                owner: owner.clone(),
            });
        }
        let path = self.table_path(name);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        self.sync_dir()
    }

    /// The settings of one network.
    pub fn network(&self, name: &str) -> Result<Network, IpamError> {
        let _lock = self.lock(false)?;
        Ok(self.read_table(name)?.network)
    }

    /// All networks, sorted by name.
    pub fn networks(&self) -> Result<Vec<Network>, IpamError> {
        let _lock = self.lock(false)?;
        self.names()?
            .iter()
            .map(|n| Ok(self.read_table(n)?.network))
            .collect()
    }

    /// The allocated addresses of a network and their owners.
    pub fn allocations(&self, network: &str) -> Result<BTreeMap<Ipv4Addr, String>, IpamError> {
        let _lock = self.lock(false)?;
        Ok(self.read_table(network)?.allocations)
    }

    /// Allocates an address of `network` for `owner`: `hint` when given (it must be a free host
    /// address of the subnet, not the gateway), else the next free address of the ip-range (or
    /// subnet) after the last one handed out. The table is on disk before this returns.
    pub fn allocate(
        &self,
        network: &str,
        hint: Option<Ipv4Addr>,
        owner: &str,
    ) -> Result<Ipv4Addr, IpamError> {
        if owner.is_empty() {
            return Err(IpamError::EmptyOwner {
                network: network.to_owned(),
            });
        }
        let _lock = self.lock(true)?;
        let mut table = self.read_table(network)?;
        let net = &table.network;
        let subnet = net.subnet;
        let reserved = |addr: Ipv4Addr| {
            if addr == subnet.addr() {
                Some("network")
            } else if addr == subnet.broadcast() {
                Some("broadcast")
            } else if addr == net.gateway {
                Some("gateway")
            } else {
                None
            }
        };
        let addr = match hint {
            Some(addr) => {
                if !subnet.contains(addr) {
                    return Err(IpamError::OutsideSubnet {
                        network: network.to_owned(),
                        addr,
                        subnet,
                    });
                }
                if let Some(what) = reserved(addr) {
                    return Err(IpamError::Reserved {
                        network: network.to_owned(),
                        addr,
                        what,
                    });
                }
                if let Some(owner) = table.allocations.get(&addr) {
                    return Err(IpamError::AddressInUse {
                        network: network.to_owned(),
                        addr,
                        owner: owner.clone(),
                    });
                }
                addr
            }
            None => {
                let range = net.ip_range.unwrap_or(subnet);
                let (first, last) = (range.first(), range.last());
                let start = table
                    .last
                    .map(u32::from)
                    .filter(|l| (first..last).contains(l))
                    .map_or(first, |l| l + 1);
                let size = u64::from(last - first) + 1;
                let mut found = None;
                for i in 0..size {
                    // `first + (start - first + i) % size` stays within [first, last].
                    let offset = (u64::from(start - first) + i) % size;
                    let candidate = Ipv4Addr::from(first + u32::try_from(offset).unwrap_or(0));
                    if reserved(candidate).is_none() && !table.allocations.contains_key(&candidate) {
                        found = Some(candidate);
                        break;
                    }
                }
                found.ok_or_else(|| IpamError::Exhausted {
                    network: network.to_owned(),
                    range,
                })?
            }
        };
        table.allocations.insert(addr, owner.to_owned());
        if hint.is_none() {
            // Only automatic allocations move the cursor, so a requested address elsewhere in
            // the subnet does not send the search back to the start of the range.
            table.last = Some(addr);
        }
        self.write_table_with(&table, self.sync_addresses)?;
        Ok(addr)
    }

    /// Releases `addr` in `network`. Returns its previous owner, or `None` when it was not
    /// allocated (releasing twice is harmless).
    pub fn release(&self, network: &str, addr: Ipv4Addr) -> Result<Option<String>, IpamError> {
        let _lock = self.lock(true)?;
        let mut table = self.read_table(network)?;
        let owner = table.allocations.remove(&addr);
        if owner.is_some() {
            self.write_table_with(&table, self.sync_addresses)?;
        }
        Ok(owner)
    }

    /// Releases every address held by `owner` in every network; returns what was released.
    pub fn release_owner(&self, owner: &str) -> Result<Vec<(String, Ipv4Addr)>, IpamError> {
        let _lock = self.lock(true)?;
        let mut released = Vec::new();
        for name in self.names()? {
            let mut table = self.read_table(&name)?;
            let before = table.allocations.len();
            table.allocations.retain(|addr, o| {
                if o == owner {
                    released.push((name.clone(), *addr));
                    false
                } else {
                    true
                }
            });
            if table.allocations.len() != before {
                self.write_table_with(&table, self.sync_addresses)?;
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn store() -> (tempfile::TempDir, Ipam) {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path().join("ipam")).unwrap();
        (dir, ipam)
    }

    #[test]
    fn claims_restore_an_owner_and_refuse_another() {
        let (_d, ipam) = store();
        let ipam = ipam.lazy_addresses();
        ipam.create_network("n", s("10.7.0.0/24"), None, None).unwrap();
        ipam.claim("n", ip("10.7.0.9"), "c1").unwrap();
        ipam.claim("n", ip("10.7.0.9"), "c1").unwrap();
        let err = ipam.claim("n", ip("10.7.0.9"), "c2").unwrap_err();
        assert!(err.to_string().contains("c1"), "{err}");
        assert!(matches!(
            ipam.claim("n", ip("10.8.0.1"), "c2"),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert_eq!(
            ipam.allocations("n")
                .unwrap()
                .get(&ip("10.7.0.9"))
                .map(String::as_str),
            Some("c1")
        );
        let err = ipam.allocate("n", Some(ip("10.7.0.9")), "c3").unwrap_err();
        assert!(matches!(err, IpamError::AddressInUse { .. }), "{err}");
        assert_eq!(
            ipam.release_owner("c1").unwrap(),
            vec![("n".to_string(), ip("10.7.0.9"))]
        );
    }

    #[test]
    fn mac_from_address_like_docker() {
        assert_eq!(
            MacAddr::from_ipv4(ip("172.17.0.2")).to_string(),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            MacAddr::from_ipv4(ip("192.168.255.254")).to_string(),
            "02:42:c0:a8:ff:fe"
        );
        let parsed: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(parsed, MacAddr::from_ipv4(ip("172.17.0.2")));
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:00:2",
            "02:42:ac:11:00:zz",
            "",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn create_and_validate_networks() {
        let (_d, ipam) = store();
        let net = ipam
            .create_network("bridge", s("172.17.0.0/16"), None, None)
            .unwrap();
        assert_eq!(net.gateway, ip("172.17.0.1"));
        assert_eq!(ipam.network("bridge").unwrap(), net);

        let err = ipam
            .create_network("bridge", s("10.9.0.0/24"), None, None)
            .unwrap_err();
        assert!(matches!(err, IpamError::Exists(_)), "{err}");
        let err = ipam
            .create_network("other", s("172.17.3.0/24"), None, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("172.17.3.0/24") && err.to_string().contains("bridge"),
            "{err}"
        );
        let err = ipam
            .create_network("wide", s("172.16.0.0/12"), None, None)
            .unwrap_err();
        assert!(matches!(err, IpamError::Overlap { .. }), "{err}");
        let err = ipam
            .create_network("gw", s("10.1.0.0/24"), Some(ip("10.2.0.1")), None)
            .unwrap_err();
        assert!(err.to_string().contains("10.2.0.1"), "{err}");
        let err = ipam
            .create_network("gw", s("10.1.0.0/24"), Some(ip("10.1.0.255")), None)
            .unwrap_err();
        assert!(matches!(err, IpamError::BadGateway { .. }), "{err}");
        let err = ipam
            .create_network("rg", s("10.1.0.0/24"), None, Some(s("10.1.1.0/28")))
            .unwrap_err();
        assert!(err.to_string().contains("10.1.1.0/28"), "{err}");
        let err = ipam
            .create_network("tiny", s("10.3.0.0/31"), None, None)
            .unwrap_err();
        assert!(matches!(err, IpamError::SubnetTooSmall { .. }), "{err}");
        for bad in ["", ".hidden", "a/b", "a b", "-x"] {
            let err = ipam
                .create_network(bad, s("10.4.0.0/24"), None, None)
                .unwrap_err();
            assert!(matches!(err, IpamError::InvalidName(_)), "{bad}: {err}");
        }
        let err = ipam.network("missing").unwrap_err();
        assert!(
            matches!(err, IpamError::NotFound(_)) && err.to_string().contains("missing"),
            "{err}"
        );

        ipam.create_network(
            "user.net-1",
            s("10.1.0.0/24"),
            Some(ip("10.1.0.254")),
            Some(s("10.1.0.128/25")),
        )
        .unwrap();
        let names: Vec<String> = ipam.networks().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "user.net-1"]);
    }

    #[test]
    fn allocation_skips_reserved_and_never_repeats() {
        let (_d, ipam) = store();
        // A /29: .0 network, .1 gateway, .7 broadcast; hosts .2 ... .6.
        ipam.create_network("n", s("10.5.0.0/29"), None, None).unwrap();
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(ipam.allocate("n", None, &format!("c{i}")).unwrap());
        }
        assert_eq!(
            got,
            ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"].map(ip)
        );
        let err = ipam.allocate("n", None, "c5").unwrap_err();
        assert!(
            matches!(err, IpamError::Exhausted { .. }) && err.to_string().contains("10.5.0.0/29"),
            "{err}"
        );
        // Release one in the middle: it comes back only when it is the next free one.
        assert_eq!(ipam.release("n", ip("10.5.0.3")).unwrap().as_deref(), Some("c1"));
        assert_eq!(ipam.release("n", ip("10.5.0.3")).unwrap(), None);
        assert_eq!(ipam.allocate("n", None, "c6").unwrap(), ip("10.5.0.3"));
        assert_eq!(ipam.allocations("n").unwrap().len(), 5);
    }

    #[test]
    fn released_address_not_reused_at_once() {
        let (_d, ipam) = store();
        ipam.create_network("n", s("10.6.0.0/24"), None, None).unwrap();
        let a = ipam.allocate("n", None, "a").unwrap();
        ipam.release("n", a).unwrap();
        let b = ipam.allocate("n", None, "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(b, ip("10.6.0.3"));
    }

    #[test]
    fn custom_gateway_is_skipped() {
        let (_d, ipam) = store();
        ipam.create_network("n", s("10.7.0.0/30"), Some(ip("10.7.0.2")), None)
            .unwrap();
        assert_eq!(ipam.allocate("n", None, "a").unwrap(), ip("10.7.0.1"));
        assert!(matches!(
            ipam.allocate("n", None, "b").unwrap_err(),
            IpamError::Exhausted { .. }
        ));
    }

    #[test]
    fn requested_address_rules() {
        let (_d, ipam) = store();
        ipam.create_network("n", s("10.8.0.0/24"), None, None).unwrap();
        assert_eq!(
            ipam.allocate("n", Some(ip("10.8.0.50")), "a").unwrap(),
            ip("10.8.0.50")
        );

        let err = ipam.allocate("n", Some(ip("10.8.0.50")), "b").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IpamError::AddressInUse { .. }), "{msg}");
        assert!(msg.contains("10.8.0.50") && msg.contains(" a"), "{msg}");

        let err = ipam.allocate("n", Some(ip("10.9.0.5")), "b").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IpamError::OutsideSubnet { .. }), "{msg}");
        assert!(msg.contains("10.9.0.5") && msg.contains("10.8.0.0/24"), "{msg}");

        for (addr, what) in [
            ("10.8.0.0", "network"),
            ("10.8.0.1", "gateway"),
            ("10.8.0.255", "broadcast"),
        ] {
            let err = ipam.allocate("n", Some(ip(addr)), "b").unwrap_err();
            assert!(
                matches!(err, IpamError::Reserved { what: w, .. } if w == what),
                "{err}"
            );
            assert!(err.to_string().contains(addr), "{err}");
        }
        let err = ipam.allocate("n", None, "").unwrap_err();
        assert!(matches!(err, IpamError::EmptyOwner { .. }), "{err}");
        let err = ipam.allocate("nope", None, "a").unwrap_err();
        assert!(matches!(err, IpamError::NotFound(_)), "{err}");
        // Failed requests changed nothing.
        assert_eq!(
            ipam.allocations("n").unwrap().into_iter().collect::<Vec<_>>(),
            [(ip("10.8.0.50"), "a".into())]
        );
    }

    #[test]
    fn ip_range_limits_automatic_allocation() {
        let (_d, ipam) = store();
        ipam.create_network("n", s("10.10.0.0/24"), None, Some(s("10.10.0.16/30")))
            .unwrap();
        let got: Vec<Ipv4Addr> = (0..4)
            .map(|i| ipam.allocate("n", None, &format!("c{i}")).unwrap())
            .collect();
        assert_eq!(
            got,
            ["10.10.0.16", "10.10.0.17", "10.10.0.18", "10.10.0.19"].map(ip)
        );
        let err = ipam.allocate("n", None, "c4").unwrap_err();
        assert!(err.to_string().contains("10.10.0.16/30"), "{err}");
        // An explicit address elsewhere in the subnet is still allowed.
        assert_eq!(
            ipam.allocate("n", Some(ip("10.10.0.200")), "c5").unwrap(),
            ip("10.10.0.200")
        );
        // The range containing the gateway skips it.
        ipam.create_network("m", s("10.11.0.0/24"), None, Some(s("10.11.0.0/30")))
            .unwrap();
        assert_eq!(ipam.allocate("m", None, "x").unwrap(), ip("10.11.0.2"));
        assert_eq!(ipam.allocate("m", None, "y").unwrap(), ip("10.11.0.3"));
        assert!(matches!(
            ipam.allocate("m", None, "z").unwrap_err(),
            IpamError::Exhausted { .. }
        ));
    }

    #[test]
    fn release_owner_and_remove_network() {
        let (_d, ipam) = store();
        ipam.create_network("a", s("10.12.0.0/24"), None, None).unwrap();
        ipam.create_network("b", s("10.13.0.0/24"), None, None).unwrap();
        let a1 = ipam.allocate("a", None, "ctr1").unwrap();
        let b1 = ipam.allocate("b", None, "ctr1").unwrap();
        let a2 = ipam.allocate("a", None, "ctr2").unwrap();

        let err = ipam.remove_network("a").unwrap_err();
        assert!(
            matches!(err, IpamError::InUse { count: 2, .. }) && err.to_string().contains("ctr1"),
            "{err}"
        );

        let mut released = ipam.release_owner("ctr1").unwrap();
        released.sort();
        assert_eq!(released, [("a".to_owned(), a1), ("b".to_owned(), b1)]);
        assert!(ipam.release_owner("ctr1").unwrap().is_empty());
        assert_eq!(
            ipam.allocations("a").unwrap().keys().copied().collect::<Vec<_>>(),
            [a2]
        );
        assert!(ipam.allocations("b").unwrap().is_empty());

        ipam.remove_network("b").unwrap();
        assert!(matches!(ipam.network("b").unwrap_err(), IpamError::NotFound(_)));
        assert!(matches!(
            ipam.remove_network("b").unwrap_err(),
            IpamError::NotFound(_)
        ));
        // The freed subnet can be used again.
        ipam.create_network("c", s("10.13.0.0/16"), None, None).unwrap();
    }

    #[test]
    fn tables_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (first, second) = {
            let ipam = Ipam::open(&path).unwrap();
            ipam.create_network("bridge", s("172.17.0.0/16"), None, Some(s("172.17.5.0/24")))
                .unwrap();
            let first = ipam.allocate("bridge", None, "c1").unwrap();
            let second = ipam.allocate("bridge", Some(ip("172.17.9.9")), "c2").unwrap();
            (first, second)
        };
        let ipam = Ipam::open(&path).unwrap();
        let net = ipam.network("bridge").unwrap();
        assert_eq!(net.subnet, s("172.17.0.0/16"));
        assert_eq!(net.ip_range, Some(s("172.17.5.0/24")));
        let table = ipam.allocations("bridge").unwrap();
        assert_eq!(table.get(&first).map(String::as_str), Some("c1"));
        assert_eq!(table.get(&second).map(String::as_str), Some("c2"));
        // The range's first address is a host address of the /16, so it is handed out.
        assert_eq!(first, ip("172.17.5.0"));
        ipam.release("bridge", first).unwrap();
        let third = ipam.allocate("bridge", None, "c3").unwrap();
        assert_ne!(third, first);
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn corrupt_table_is_reported() {
        let (_d, ipam) = store();
        let path = ipam.dir().join("broken.json");
        fs::write(&path, b"{not json").unwrap();
        let err = ipam.allocate("broken", None, "a").unwrap_err();
        assert!(
            matches!(err, IpamError::Corrupt { .. }) && err.to_string().contains("broken.json"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_allocations_are_distinct_and_all_released() {
        let (_d, ipam) = store();
        ipam.create_network("busy", s("10.20.0.0/24"), None, None)
            .unwrap();
        let dir = Arc::new(ipam.dir().to_path_buf());
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let dir = Arc::clone(&dir);
                std::thread::spawn(move || {
                    // Each thread opens its own handle, as separate processes would.
                    let ipam = Ipam::open(dir.as_path()).unwrap();
                    ipam.allocate("busy", None, &format!("ctr-{i}")).unwrap()
                })
            })
            .collect();
        let addrs: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let distinct: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        assert_eq!(distinct.len(), 100);
        let net = ipam.network("busy").unwrap();
        for a in &distinct {
            assert!(
                net.subnet.contains(*a) && *a != net.gateway && *a != net.subnet.broadcast(),
                "{a}"
            );
        }
        let table = ipam.allocations("busy").unwrap();
        assert_eq!(table.keys().copied().collect::<BTreeSet<_>>(), distinct);

        let releasers: Vec<_> = (0..100)
            .map(|i| {
                let ipam = ipam.clone();
                std::thread::spawn(move || ipam.release_owner(&format!("ctr-{i}")).unwrap())
            })
            .collect();
        let released: BTreeSet<Ipv4Addr> = releasers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .map(|(_, a)| a)
            .collect();
        assert_eq!(released, distinct);
        assert!(ipam.allocations("busy").unwrap().is_empty());
        ipam.remove_network("busy").unwrap();
    }
}
