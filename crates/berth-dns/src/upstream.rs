//! The upstream resolvers, read from a resolv.conf file and re-read when the file changes.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What identifies one version of the file: a rewrite in place changes the mtime, a rename the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    ino: u64,
    len: u64,
}

#[derive(Debug)]
struct Cached {
    /// `None` before the first read and while the file is missing.
    stamp: Option<Stamp>,
    servers: Arc<[SocketAddr]>,
}

/// The upstream list of one server.
#[derive(Debug)]
pub(crate) struct Upstreams {
    path: PathBuf,
    port: u16,
    cached: Mutex<Cached>,
}

impl Upstreams {
    pub(crate) fn new(path: PathBuf, port: u16) -> Self {
        Self {
            path,
            port,
            cached: Mutex::new(Cached {
                stamp: None,
                servers: Arc::from([]),
            }),
        }
    }

    /// The current upstreams, in file order. A missing or unreadable file means none.
    pub(crate) fn current(&self) -> Arc<[SocketAddr]> {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            mtime: m.modified().ok(),
            ino: m.ino(),
            len: m.len(),
        });
        // A poisoned lock only means a panic elsewhere while the cache was swapped; the cache is still valid.
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if stamp.is_some() && cached.stamp == stamp {
            return Arc::clone(&cached.servers);
        }
        let servers: Arc<[SocketAddr]> = match stamp.and_then(|_| std::fs::read_to_string(&self.path).ok()) {
            Some(text) => parse_resolv_conf(&text, self.port).into(),
            None => {
                if stamp.is_some() {
                    tracing::warn!(path = %self.path.display(), "cannot read the resolver configuration");
                }
                Arc::from([])
            }
        };
        tracing::debug!(path = %self.path.display(), ?servers, "upstream resolvers (re)read");
        cached.stamp = stamp;
        cached.servers = Arc::clone(&servers);
        servers
    }
}

/// The `nameserver` addresses of a resolv.conf text, with `port`.
pub(crate) fn parse_resolv_conf(text: &str, port: u16) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(value) = words.next() else { continue };
        if let Some(addr) = parse_nameserver(value, port)
            && !servers.contains(&addr)
        {
            servers.push(addr);
        }
    }
    servers
}

fn parse_nameserver(value: &str, port: u16) -> Option<SocketAddr> {
    let (addr, zone) = match value.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (value, None),
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if zone.is_none() => Some(SocketAddr::new(v4.into(), port)),
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let scope_id = match zone {
                None => 0,
                Some(zone) => zone_index(zone)?,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id)))
        }
    }
}

/// The interface index of a zone (`fe80::1%eth0` or `fe80::1%2`).
fn zone_index(zone: &str) -> Option<u32> {
    if let Ok(index) = zone.parse::<u32>() {
        return Some(index);
    }
    let name = CString::new(zone).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether an upstream address is one of ours (forwarding there would loop).
pub(crate) fn is_self(upstream: SocketAddr, listening: &[SocketAddr]) -> bool {
    listening
        .iter()
        .any(|l| l.port() == upstream.port() && unmapped(l.ip()) == unmapped(upstream.ip()))
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_nameserver_lines() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\n ; nameserver 192.0.2.99\n\
                    nameserver\tfd00::53  # trailing\nnameserver not-an-ip\nnameserver 192.0.2.53\n\
                    nameserver fe80::1%7\noptions ndots:2\n";
        let servers = parse_resolv_conf(text, 53);
        assert_eq!(
            servers,
            vec![
                SocketAddr::new(Ipv4Addr::new(192, 0, 2, 53).into(), 53),
                SocketAddr::new("fd00::53".parse::<IpAddr>().unwrap(), 53),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 7)),
            ]
        );
    }

    #[test]
    fn rereads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let upstreams = Upstreams::new(path.clone(), 5353);
        assert!(upstreams.current().is_empty());
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(
            &*upstreams.current(),
            &[SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 5353)]
        );
        // Replace through a rename (a new inode), as resolvconf tools do.
        let tmp = dir.path().join("resolv.conf.new");
        std::fs::write(&tmp, "nameserver 192.0.2.2\nnameserver 192.0.2.3\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(upstreams.current().len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(upstreams.current().is_empty());
    }

    #[test]
    fn self_detection() {
        let listening = [SocketAddr::new(Ipv4Addr::new(172, 18, 0, 1).into(), 53)];
        assert!(is_self(
            SocketAddr::new(Ipv4Addr::new(172, 18, 0, 1).into(), 53),
            &listening
        ));
        assert!(!is_self(
            SocketAddr::new(Ipv4Addr::new(172, 18, 0, 1).into(), 54),
            &listening
        ));
        assert!(!is_self(
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 53),
            &listening
        ));
        let mapped: IpAddr = "::ffff:172.18.0.1".parse().unwrap();
        assert!(is_self(SocketAddr::new(mapped, 53), &listening));
    }
}
