//! Kernel links for container networking, driven through rtnetlink: a bridge, a veth pair whose host end is a
//! bridge port and whose peer lives in the container's network namespace, and the container side's `eth0`
//! (name, MAC, MTU, IPv4 address, default route) and loopback.
//!
//! # Why a synchronous netlink socket
//!
//! Messages are built and parsed with `netlink-packet-route` and sent over a blocking `netlink-sys` socket rather
//! than through the tokio-based `rtnetlink` handle. Every operation here is a short request/acknowledge exchange,
//! the crate is a synchronous library, and a netlink socket belongs to the network namespace it was created in for
//! its whole life. That last property gives a clean way to work inside a container's namespace from a
//! multi-threaded process: [`Netlink::open_in`] creates the socket on a short-lived thread that has entered the
//! namespace with `setns`, and the returned socket can then be used from any thread without any thread of the
//! caller ever changing namespace. An async runtime would add nothing but a reactor to this.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Errors from link operations.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be created or bound.
    #[error("could not open a netlink route socket: {source}")]
    Socket {
        /// The underlying error.
        source: io::Error,
    },
    /// A network namespace file could not be opened.
    #[error("could not open the network namespace {}: {source}", path.display())]
    OpenNamespace {
        /// The namespace file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `setns` into the given network namespace failed.
    #[error("could not enter the network namespace (fd {fd}): {source}")]
    EnterNamespace {
        /// The namespace file descriptor.
        fd: i32,
        /// The underlying error.
        source: io::Error,
    },
    /// The helper thread that enters a namespace could not be started or panicked.
    #[error("the thread that enters the network namespace {0}")]
    Thread(&'static str),
    /// An interface name is empty, too long or contains a character the kernel rejects.
    #[error("{name:?} is not a valid interface name (1 to 15 characters, no '/', ':' or whitespace)")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// An address prefix length is out of range.
    #[error("prefix length /{prefix} is invalid for an IPv4 address (0 to 32)")]
    InvalidPrefix {
        /// The rejected prefix length.
        prefix: u8,
    },
    /// Sending a request failed.
    #[error("could not send the netlink request to {what}: {source}")]
    Send {
        /// What the request does.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Receiving the answer failed.
    #[error("could not receive the netlink answer to {what}: {source}")]
    Receive {
        /// What the request does.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("could not decode the netlink answer to {what}: {message}")]
    Decode {
        /// What the request does.
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// The kernel refused the request.
    #[error("the kernel refused to {what}: {source}")]
    Kernel {
        /// What the request does.
        what: String,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// A named link does not exist.
    #[error("there is no network interface named {name}")]
    NotFound {
        /// The missing link's name.
        name: String,
    },
    /// A link exists under the bridge's name but is not a bridge.
    #[error("the network interface {name} exists but is not a bridge")]
    NotBridge {
        /// The link's name.
        name: String,
    },
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, LinkError>;

/// An IPv4 address with its prefix length, as assigned to an interface (`172.17.0.1/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl InterfaceAddress {
    fn broadcast(&self) -> Ipv4Addr {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        Ipv4Addr::from(u32::from(self.addr) | !mask)
    }
}

/// The bridge to create or reuse.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Interface name (≤ 15 characters).
    pub name: String,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
    /// Address to put on the bridge (the network's gateway), if any.
    pub address: Option<InterfaceAddress>,
}

/// A veth pair whose host end joins a bridge and whose peer is moved into another network namespace.
#[derive(Debug, Clone)]
pub struct VethConfig {
    /// Name of the host end (in the socket's namespace).
    pub host_name: String,
    /// Name the peer gets when it is created in the target namespace (renamed later by
    /// [`Netlink::configure_interface`]); must not exist in the target namespace.
    pub peer_name: String,
    /// Bridge to attach the host end to, if any.
    pub bridge: Option<String>,
    /// MTU of both ends, if any.
    pub mtu: Option<u32>,
}

/// The container side of a veth pair, configured inside its namespace.
#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    /// The interface's current name (the veth peer name).
    pub current_name: String,
    /// Its final name, normally `eth0`.
    pub name: String,
    /// MAC address to set, if any.
    pub mac: Option<[u8; 6]>,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
    /// Address to assign, if any.
    pub address: Option<InterfaceAddress>,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// Checks that `name` is acceptable to the kernel as an interface name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(LinkError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn validate_prefix(address: &InterfaceAddress) -> Result<()> {
    if address.prefix > 32 {
        Err(LinkError::InvalidPrefix {
            prefix: address.prefix,
        })
    } else {
        Ok(())
    }
}

/// Opens the network namespace of process `pid` (`/proc/<pid>/ns/net`).
pub fn open_netns_of_pid(pid: i32) -> Result<OwnedFd> {
    open_netns_path(PathBuf::from(format!("/proc/{pid}/ns/net")))
}

/// Opens a network namespace file (`/proc/<pid>/ns/net`, `/run/netns/<name>`, a bind mount of one).
pub fn open_netns_path(path: PathBuf) -> Result<OwnedFd> {
    rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| LinkError::OpenNamespace {
        path,
        source: e.into(),
    })
}

/// Sets up the container side in one call: opens a socket inside `netns`, brings loopback up and configures the
/// interface as [`Netlink::configure_interface`] does. Returns the interface's index inside the namespace.
pub fn setup_container_interface(netns: BorrowedFd<'_>, config: &InterfaceConfig) -> Result<u32> {
    let mut nl = Netlink::open_in(netns)?;
    nl.set_up("lo")?;
    nl.configure_interface(config)
}

/// A route netlink socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|source| LinkError::Socket { source })?;
        socket
            .bind_auto()
            .map_err(|source| LinkError::Socket { source })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| LinkError::Socket { source })?;
        // Extended acks only improve kernel messages; a kernel without them still works.
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Opens a socket inside the network namespace `netns`. The socket is created on a dedicated thread that
    /// enters the namespace and then exits, so no thread of the caller changes namespace; the socket keeps
    /// operating in `netns` from whatever thread uses it.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Self> {
        let fd = netns
            .try_clone_to_owned()
            .map_err(|source| LinkError::EnterNamespace {
                fd: netns.as_raw_fd(),
                source,
            })?;
        let handle = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn(move || -> Result<Netlink> {
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| LinkError::EnterNamespace {
                    fd: fd.as_raw_fd(),
                    source: e.into(),
                })?;
                Netlink::open()
            })
            .map_err(|_| LinkError::Thread("could not be started"))?;
        handle.join().map_err(|_| LinkError::Thread("panicked"))?
    }

    /// Returns the index of the link named `name`, or `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.map(|m| m.header.index))
    }

    /// Returns the names of all links in the socket's namespace.
    pub fn link_names(&mut self) -> Result<Vec<String>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            netlink_packet_core::NLM_F_DUMP,
            "list the network interfaces",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => link_name(&l),
                _ => None,
            })
            .collect())
    }

    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>> {
        validate_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &format!("look up the interface {name}"),
        ) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(LinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn require_link(&mut self, name: &str) -> Result<u32> {
        self.link_index(name)?.ok_or_else(|| LinkError::NotFound {
            name: name.to_owned(),
        })
    }

    /// Creates the bridge if it does not exist (an existing bridge of that name is reused; an existing link of
    /// another kind is an error), sets its MTU, adds its address (already present is fine) and brings it up.
    /// Returns its index.
    pub fn ensure_bridge(&mut self, config: &BridgeConfig) -> Result<u32> {
        validate_name(&config.name)?;
        if let Some(a) = &config.address {
            validate_prefix(a)?;
        }
        let index = match self.get_link(&config.name)? {
            Some(existing) => {
                if link_kind(&existing) != Some(&InfoKind::Bridge) {
                    return Err(LinkError::NotBridge {
                        name: config.name.clone(),
                    });
                }
                existing.header.index
            }
            None => {
                let mut msg = LinkMessage::default();
                msg.attributes.push(LinkAttribute::IfName(config.name.clone()));
                if let Some(mtu) = config.mtu {
                    msg.attributes.push(LinkAttribute::Mtu(mtu));
                }
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
                match self.request(
                    RouteNetlinkMessage::NewLink(msg),
                    NLM_F_CREATE | NLM_F_EXCL,
                    &format!("create the bridge {}", config.name),
                ) {
                    Ok(_) => {}
                    // Created concurrently by someone else: reuse it like an existing one.
                    Err(LinkError::Kernel { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                self.require_link(&config.name)?
            }
        };
        if let Some(mtu) = config.mtu {
            self.set_link(
                index,
                &config.name,
                vec![LinkAttribute::Mtu(mtu)],
                None,
                "set the MTU of",
            )?;
        }
        if let Some(address) = &config.address {
            self.add_address(index, &config.name, address)?;
        }
        self.set_link(index, &config.name, Vec::new(), Some(true), "bring up")?;
        Ok(index)
    }

    /// Creates a veth pair: the host end `host_name` in this socket's namespace, attached to the bridge (if any)
    /// and up; the peer `peer_name` created directly inside `netns`. Returns the host end's index.
    pub fn create_veth(&mut self, config: &VethConfig, netns: BorrowedFd<'_>) -> Result<u32> {
        validate_name(&config.host_name)?;
        validate_name(&config.peer_name)?;
        let bridge_index = match &config.bridge {
            Some(b) => Some(self.require_link(b)?),
            None => None,
        };
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(config.peer_name.clone()));
        peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(config.host_name.clone()));
        if let Some(mtu) = config.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create the veth pair {} / {}", config.host_name, config.peer_name),
        )?;
        let index = self.require_link(&config.host_name)?;
        let configured = (|| {
            if let (Some(bi), Some(b)) = (bridge_index, &config.bridge) {
                self.set_link(
                    index,
                    &config.host_name,
                    vec![LinkAttribute::Controller(bi)],
                    None,
                    &format!("attach to the bridge {b}"),
                )?;
            }
            self.set_link(index, &config.host_name, Vec::new(), Some(true), "bring up")
        })();
        if let Err(e) = configured {
            // Do not leave a half-configured pair behind; deleting one end removes both.
            let _ = self.delete_link(&config.host_name);
            return Err(e);
        }
        Ok(index)
    }

    /// Configures an interface of this socket's namespace: renames `current_name` to `name` (while it is down),
    /// sets its MAC and MTU, adds the address, brings it up and adds the default route via the gateway.
    /// Returns its index.
    pub fn configure_interface(&mut self, config: &InterfaceConfig) -> Result<u32> {
        validate_name(&config.name)?;
        if let Some(a) = &config.address {
            validate_prefix(a)?;
        }
        let index = self.require_link(&config.current_name)?;
        let mut attrs = Vec::new();
        if config.name != config.current_name {
            attrs.push(LinkAttribute::IfName(config.name.clone()));
        }
        if let Some(mac) = config.mac {
            attrs.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = config.mtu {
            attrs.push(LinkAttribute::Mtu(mtu));
        }
        if !attrs.is_empty() {
            // Renaming requires the link to be down; the fresh veth peer is.
            self.set_link(index, &config.current_name, Vec::new(), Some(false), "bring down")?;
            self.set_link(
                index,
                &config.current_name,
                attrs,
                None,
                &format!("rename to {} and configure", config.name),
            )?;
        }
        if let Some(address) = &config.address {
            self.add_address(index, &config.name, address)?;
        }
        self.set_link(index, &config.name, Vec::new(), Some(true), "bring up")?;
        if let Some(gateway) = config.gateway {
            self.add_default_route(index, &config.name, gateway)?;
        }
        Ok(index)
    }

    /// Brings the link `name` up.
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        let index = self.require_link(name)?;
        self.set_link(index, name, Vec::new(), Some(true), "bring up")
    }

    /// Deletes the link `name` (for a veth, both ends go). Returns `false` if there was no such link.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        self.delete_index(index, name)
    }

    /// Deletes the bridge `name`; its ports are detached by the kernel. Returns `false` if there was no such
    /// link; a link of that name that is not a bridge is an error and is left alone.
    pub fn delete_bridge(&mut self, name: &str) -> Result<bool> {
        let Some(link) = self.get_link(name)? else {
            return Ok(false);
        };
        if link_kind(&link) != Some(&InfoKind::Bridge) {
            return Err(LinkError::NotBridge {
                name: name.to_owned(),
            });
        }
        self.delete_index(link.header.index, name)
    }

    fn delete_index(&mut self, index: u32, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            RouteNetlinkMessage::DelLink(msg),
            0,
            &format!("delete the interface {name}"),
        ) {
            Ok(_) => Ok(true),
            // Gone in between (a veth whose peer was deleted, a concurrent delete).
            Err(LinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc_enodev()) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn set_link(
        &mut self,
        index: u32,
        name: &str,
        attributes: Vec<LinkAttribute>,
        up: Option<bool>,
        verb: &str,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(up) = up {
            msg.header.change_mask = LinkFlags::Up;
            msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        }
        msg.attributes = attributes;
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("{verb} the interface {name}"),
        )?;
        Ok(())
    }

    fn add_address(&mut self, index: u32, name: &str, address: &InterfaceAddress) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = address.prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(address.addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(address.addr)));
        if address.prefix < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(address.broadcast()));
        }
        let what = format!("add the address {}/{} to {name}", address.addr, address.prefix);
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        ) {
            Ok(_) => Ok(()),
            Err(LinkError::Kernel { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn add_default_route(&mut self, index: u32, name: &str, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add the default route via {gateway} on {name}"),
        )?;
        Ok(())
    }

    /// Sends one request and collects the answers until the acknowledgement (or the end of a dump).
    fn request(
        &mut self,
        payload: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket.send(&out, 0).map_err(|source| LinkError::Send {
            what: what.to_owned(),
            source,
        })?;

        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            let n = self
                .socket
                .recv(&mut self.buf, 0)
                .map_err(|source| LinkError::Receive {
                    what: what.to_owned(),
                    source,
                })?;
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                    LinkError::Decode {
                        what: what.to_owned(),
                        message: e.to_string(),
                    }
                })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(LinkError::Decode {
                        what: what.to_owned(),
                        message: "zero-length message".into(),
                    });
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(answers),
                            Some(code) => Err(LinkError::Kernel {
                                what: what.to_owned(),
                                source: io::Error::from_raw_os_error(code.get().saturating_neg()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

const fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn names_are_validated() {
        assert!(validate_name("eth0").is_ok());
        assert!(validate_name("berth-t-abcdefg").is_ok());
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", "a:b", ".", ".."] {
            assert!(
                matches!(validate_name(bad), Err(LinkError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn broadcast_addresses() {
        let a = InterfaceAddress {
            addr: Ipv4Addr::new(172, 17, 0, 1),
            prefix: 16,
        };
        assert_eq!(a.broadcast(), Ipv4Addr::new(172, 17, 255, 255));
        let b = InterfaceAddress {
            addr: Ipv4Addr::new(10, 1, 2, 3),
            prefix: 24,
        };
        assert_eq!(b.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        let c = InterfaceAddress {
            addr: Ipv4Addr::new(10, 1, 2, 3),
            prefix: 0,
        };
        assert_eq!(c.broadcast(), Ipv4Addr::BROADCAST);
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// A unique short prefix for this test process and call: `b<pid hex><counter>`.
    fn unique(role: char) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("b{:x}{n:x}{role}", std::process::id())
    }

    /// A named network namespace (`ip netns add`), deleted on drop, also on panic.
    struct TestNetns {
        name: String,
        fd: OwnedFd,
    }

    impl TestNetns {
        fn new(role: char) -> Self {
            let name = format!("berth-test-{}", unique(role));
            let status = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .expect("run ip netns add");
            assert!(status.success(), "ip netns add {name} failed");
            // Construct the guard before anything else can fail so the namespace is always removed.
            let path = PathBuf::from(format!("/run/netns/{name}"));
            match open_netns_path(path) {
                Ok(fd) => Self { name, fd },
                Err(e) => {
                    let _ = Command::new("ip").args(["netns", "del", &name]).status();
                    panic!("open the test namespace: {e}");
                }
            }
        }

        fn path(&self) -> String {
            format!("/run/netns/{}", self.name)
        }

        fn ip_json(&self, args: &[&str]) -> String {
            let out = Command::new("ip")
                .args(["-n", &self.name, "-j"])
                .args(args)
                .output()
                .expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        fn ping(&self, to: Ipv4Addr) -> bool {
            let target = to.to_string();
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net={}", self.path()));
            if std::path::Path::new("/usr/bin/ping").exists() || std::path::Path::new("/bin/ping").exists() {
                cmd.args(["ping", "-c1", "-W1", &target]);
            } else {
                cmd.args(["busybox", "ping", "-c1", "-W1", &target]);
            }
            cmd.output().map(|o| o.status.success()).unwrap_or(false)
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        }
    }

    #[test]
    fn bridge_veths_and_ping_between_namespaces() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let host = TestNetns::new('h');
        let c1 = TestNetns::new('a');
        let c2 = TestNetns::new('b');
        let mut nl = Netlink::open_in(host.fd.as_fd()).expect("socket in the host test namespace");

        let bridge = format!("{}br", unique('x'));
        let gw = Ipv4Addr::new(10, 213, 7, 1);
        let bridge_cfg = BridgeConfig {
            name: bridge.clone(),
            mtu: Some(1400),
            address: Some(InterfaceAddress { addr: gw, prefix: 24 }),
        };
        let bi = nl.ensure_bridge(&bridge_cfg).expect("create the bridge");
        // Existing bridge is fine and keeps its index.
        assert_eq!(nl.ensure_bridge(&bridge_cfg).expect("reuse the bridge"), bi);
        let bjson = host.ip_json(&["addr", "show", &bridge]);
        assert!(
            bjson.contains("\"10.213.7.1\"") && bjson.contains("\"mtu\":1400"),
            "{bjson}"
        );

        let mut host_ends = Vec::new();
        for (ns, last, mac) in [
            (&c1, 2u8, [0x02, 0x42, 10, 213, 7, 2]),
            (&c2, 3u8, [0x02, 0x42, 10, 213, 7, 3]),
        ] {
            let host_name = format!("{}v", unique('h'));
            let peer_name = format!("{}p", unique('p'));
            nl.create_veth(
                &VethConfig {
                    host_name: host_name.clone(),
                    peer_name: peer_name.clone(),
                    bridge: Some(bridge.clone()),
                    mtu: Some(1400),
                },
                ns.fd.as_fd(),
            )
            .expect("create the veth pair");
            let addr = Ipv4Addr::new(10, 213, 7, last);
            setup_container_interface(
                ns.fd.as_fd(),
                &InterfaceConfig {
                    current_name: peer_name,
                    name: "eth0".into(),
                    mac: Some(mac),
                    mtu: Some(1400),
                    address: Some(InterfaceAddress { addr, prefix: 24 }),
                    gateway: Some(gw),
                },
            )
            .expect("configure eth0");

            let link = ns.ip_json(&["link", "show", "eth0"]);
            let mac_text = format!("\"02:42:0a:d5:07:{last:02x}\"");
            assert!(
                link.contains(&mac_text) && link.contains("\"mtu\":1400"),
                "{link}"
            );
            assert!(link.contains("\"UP\""), "{link}");
            let lo = ns.ip_json(&["link", "show", "lo"]);
            assert!(lo.contains("\"UP\""), "{lo}");
            let route = ns.ip_json(&["route", "show", "default"]);
            assert!(
                route.contains("\"gateway\":\"10.213.7.1\"") && route.contains("\"dev\":\"eth0\""),
                "{route}"
            );
            let port = host.ip_json(&["link", "show", &host_name]);
            assert!(
                port.contains(&format!("\"master\":\"{bridge}\"")) && port.contains("\"UP\""),
                "{port}"
            );
            host_ends.push(host_name);
        }

        // Bridge ports may take a moment to reach forwarding state.
        let reach = |from: &TestNetns, to: Ipv4Addr| (0..10).any(|_| from.ping(to));
        assert!(
            reach(&c1, Ipv4Addr::new(10, 213, 7, 3)),
            "namespace a cannot reach b"
        );
        assert!(
            reach(&c2, Ipv4Addr::new(10, 213, 7, 2)),
            "namespace b cannot reach a"
        );
        assert!(reach(&c1, gw), "namespace a cannot reach the gateway");

        // Deleting the host end removes the pair, also the eth0 inside the namespace.
        assert!(nl.delete_link(&host_ends[0]).expect("delete veth"));
        assert!(!nl.delete_link(&host_ends[0]).expect("delete a missing veth"));
        let mut in_c1 = Netlink::open_in(c1.fd.as_fd()).expect("socket in namespace a");
        assert_eq!(in_c1.link_index("eth0").expect("look up eth0"), None);
        // A veth is not a bridge: delete_bridge refuses it.
        assert!(matches!(
            nl.delete_bridge(&host_ends[1]),
            Err(LinkError::NotBridge { .. })
        ));

        assert!(nl.delete_bridge(&bridge).expect("delete the bridge"));
        assert!(!nl.delete_bridge(&bridge).expect("delete a missing bridge"));
        assert!(nl.delete_link(&host_ends[1]).expect("delete the second veth"));
        let left = nl.link_names().expect("list links");
        assert_eq!(
            left,
            vec!["lo".to_string()],
            "links left in the host test namespace"
        );
    }

    #[test]
    fn errors_name_the_interface() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = TestNetns::new('e');
        let mut nl = Netlink::open_in(ns.fd.as_fd()).expect("socket in the test namespace");
        let err = nl.set_up("nosuchlink0").expect_err("missing link");
        assert!(err.to_string().contains("nosuchlink0"), "{err}");
        let err = nl
            .ensure_bridge(&BridgeConfig {
                name: "lo".into(),
                mtu: None,
                address: None,
            })
            .expect_err("lo is not a bridge");
        assert!(
            matches!(err, LinkError::NotBridge { .. }) && err.to_string().contains("lo"),
            "{err}"
        );
        let err = nl
            .create_veth(
                &VethConfig {
                    host_name: "vx0".into(),
                    peer_name: "vx1".into(),
                    bridge: Some("nobr0".into()),
                    mtu: None,
                },
                ns.fd.as_fd(),
            )
            .expect_err("missing bridge");
        assert!(err.to_string().contains("nobr0"), "{err}");
        // A veth peer name that already exists in the target namespace: the kernel refuses, nothing is left.
        let err = nl
            .create_veth(
                &VethConfig {
                    host_name: "vx0".into(),
                    peer_name: "lo".into(),
                    bridge: None,
                    mtu: None,
                },
                ns.fd.as_fd(),
            )
            .expect_err("peer name taken");
        assert!(matches!(err, LinkError::Kernel { .. }), "{err}");
        assert_eq!(nl.link_names().expect("list"), vec!["lo".to_string()]);
    }
}
