//! Networks with docker's `bridge` driver (plus the predefined `host` and `none`), over `berth-net`.
//!
//! - A network is a row of the `networks` table (its settings as JSON) and an IPAM table (`berth_net::ipam`,
//!   under `<data-root>/network/ipam`, keyed by the network id). Its bridge (`berth0` for the default network,
//!   `br-<short id>` for the others) is created when the network is created and again at every daemon start;
//!   the bridge carries the gateway address, `route_localnet` (so published ports answer on 127.0.0.1) and
//!   berthd's DNS server for the network (`<gateway>:53`, [`berth_dns`]).
//! - Containers get their interfaces through [`NetworkService::attach`]: an address from IPAM, a veth pair whose
//!   host end (named from the container and network ids, so it can be found again) joins the bridge and whose
//!   other end is created directly inside the container's network namespace as `eth<N>`, with the MAC derived
//!   from the address, the MTU, the address and, for its first network, the default route.
//! - Packet filtering is Berth's own nftables table (`ip berth`): masquerade, isolation between networks,
//!   internal networks and the published ports of running containers, always rendered whole from this
//!   service's state and replaced in one transaction ([`berth_net::nat`]). A published port's host port is held
//!   by a bound socket of berthd's, so no other program can take it and a taken port is refused.
//! - Nothing is kept only in memory that a restart could not rebuild: at start the container service tells this
//!   service which containers still run ([`NetworkService::restore_endpoint`], [`NetworkService::publish`]); the
//!   rest (addresses of containers that no longer run, their veths and namespaces) is released by
//!   [`NetworkService::sweep`].

mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_net::ipam::{Ipam, IpamError, MacAddr};
use berth_net::link::{BridgeConfig, InterfaceAddress, InterfaceConfig, Netlink, VethConfig};
use berth_net::nat::{NatConfig, NetRule, PortMap, Proto};
use berth_net::pool::{AddressPool, Subnet};
use bollard_stubs::models::{
    EndpointResource, Ipam as ApiIpam, IpamConfig, NetworkCreateRequest, NetworkCreateResponse,
    NetworkInspect, NetworkSummary,
};
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError};
use crate::errdefs::{ErrorKind, HasKind};
use crate::events::{Event, EventBus};
use crate::filters::{FilterError, Filters};

/// The DNS port of every network's gateway.
const DNS_PORT: u16 = 53;
/// Berth's nftables table.
const TABLE: &str = "berth";
/// Option naming a network's bridge.
const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Option setting a network's MTU.
const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// Option turning masquerade off.
const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// Option naming the default bridge (docker sets it on `bridge`).
const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";

/// A network operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No network has this name or id.
    #[error("network {0} not found")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the state (name taken, network in use, port taken).
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed on a predefined network.
    #[error("{0}")]
    Forbidden(String),
    /// Something on the host failed (netlink, nftables, files).
    #[error("{0}")]
    System(String),
    /// The state database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A filter is invalid.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

impl HasKind for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) | Self::Filter(_) => ErrorKind::InvalidParameter,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::System(_) | Self::Db(_) => ErrorKind::System,
        }
    }
}

impl From<rusqlite::Error> for NetworkError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

fn ipam_error(e: IpamError) -> NetworkError {
    match e {
        IpamError::OutsideSubnet { .. }
        | IpamError::Reserved { .. }
        | IpamError::BadGateway { .. }
        | IpamError::BadRange { .. }
        | IpamError::SubnetTooSmall { .. }
        | IpamError::Mac(_) => NetworkError::Invalid(e.to_string()),
        IpamError::AddressInUse { .. } | IpamError::Overlap { .. } | IpamError::Exhausted { .. } => {
            NetworkError::Conflict(e.to_string())
        }
        other => NetworkError::System(other.to_string()),
    }
}

fn system(what: impl std::fmt::Display) -> NetworkError {
    NetworkError::System(what.to_string())
}

type Result<T, E = NetworkError> = std::result::Result<T, E>;

/// How the daemon's networking is configured.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The default bridge's interface (`berth0`); `None` disables the default `bridge` network.
    pub bridge: Option<String>,
    /// The default bridge's address and prefix (`--bip`).
    pub bip: Option<String>,
    /// The MTU of the default bridge's containers.
    pub mtu: Option<u32>,
    /// Where subnets are picked from (`--default-address-pool`): `(base CIDR, prefix)`; empty: docker's.
    pub pools: Vec<(String, u8)>,
    /// The host's resolver configuration (containers' resolv.conf and the DNS forwarder's upstreams).
    pub resolv_conf: PathBuf,
    /// Where containers' network namespaces are mounted.
    pub netns_dir: PathBuf,
}

/// A network as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetRecord {
    /// 64 hex digits.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// Unix nanos.
    pub created: i64,
    /// Its subnet (bridge networks).
    pub subnet: Option<Subnet>,
    /// Its gateway: the bridge's address.
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`.
    pub ip_range: Option<Subnet>,
    /// The subnet was given by the user (a container may then ask for an address).
    pub user_subnet: bool,
    /// `--internal`: no traffic leaves the network.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// Driver options as given.
    pub options: HashMap<String, String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// The bridge interface.
    pub bridge: String,
    /// The MTU of its containers' interfaces.
    pub mtu: Option<u32>,
    /// Masquerade traffic leaving the network.
    pub masquerade: bool,
    /// The bridge existed before the network (named with `com.docker.network.bridge.name`): it is used, and left
    /// in place when the network goes, as docker does.
    #[serde(default)]
    pub adopted_bridge: bool,
}

impl NetRecord {
    /// A bridge network (the only kind with interfaces).
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// The predefined networks cannot be removed and have no user-defined features.
    pub fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// Docker resolves names on user-defined networks only.
    pub fn resolves_names(&self) -> bool {
        self.is_bridge() && self.name != "bridge"
    }
}

/// A container's wish for one network (kept in its record).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The network's id.
    pub network_id: String,
    /// `--network-alias` / `--alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// `--mac-address`.
    #[serde(default)]
    pub mac: Option<String>,
    /// What the container got while it runs (cleared on exit).
    #[serde(default)]
    pub live: Option<Attached>,
}

/// An interface a running container has on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attached {
    /// 64 hex digits.
    pub endpoint_id: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Its MAC address.
    pub mac: String,
    /// The interface name inside the container (`eth0`).
    pub ifname: String,
    /// The host end of the veth pair.
    pub host_veth: String,
}

/// One published port as it is in effect.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// The host address (`None`: every address).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
}

/// One published port as asked for (`-p`): the host port may be a range or empty (any free port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// The host address.
    pub host_ip: Option<Ipv4Addr>,
    /// The first and last acceptable host port; `None`: any free port.
    pub host_ports: Option<(u16, u16)>,
    /// The container port.
    pub container_port: u16,
}

/// Who a container is, for names and addresses.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The container id.
    pub id: &'a str,
    /// The container name (without `/`).
    pub name: &'a str,
}

/// A running container's endpoint on a network (for inspect and DNS).
#[derive(Debug, Clone)]
struct LiveEndpoint {
    name: String,
    aliases: Vec<String>,
    attached: Attached,
}

/// A held host port.
#[derive(Debug)]
struct Reservation {
    map: Published,
    container_ip: Ipv4Addr,
    _socket: OwnedFd,
}

#[derive(Debug, Default)]
struct State {
    /// By id.
    nets: BTreeMap<String, NetRecord>,
    /// Network id -> container id -> endpoint.
    live: HashMap<String, BTreeMap<String, LiveEndpoint>>,
    /// Container id -> published ports.
    ports: HashMap<String, Vec<Reservation>>,
    /// Counts renderings of the ruleset.
    generation: u64,
}

/// The network service.
#[derive(Debug)]
pub struct NetworkService {
    cfg: NetworkConfig,
    db: Arc<Db>,
    events: Arc<EventBus>,
    ipam: Ipam,
    dns: berth_dns::DnsServer,
    state: Mutex<State>,
    /// Serialises rendering and applying the ruleset, so the last state is the one applied.
    nft: Arc<Mutex<Applied>>,
}

/// What was last written to the packet filter.
#[derive(Debug, Default)]
struct Applied {
    /// Whether anything was ever applied.
    any: bool,
    /// The generation of the state it was rendered from.
    generation: u64,
}

fn new_id() -> String {
    crate::containers::names::new_id()
}

fn parse_subnet(s: &str, what: &str) -> Result<Subnet> {
    s.parse::<Subnet>()
        .map_err(|e| NetworkError::Invalid(format!("invalid {what} {s:?}: {e}")))
}

fn parse_ip(s: &str, what: &str) -> Result<Ipv4Addr> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| NetworkError::Invalid(format!("invalid {what} {s:?}: not an IPv4 address")))
}

/// The host end of a container's veth on a network: derived from both ids, so a sweep can find it.
pub fn host_veth_name(container_id: &str, network_id: &str) -> String {
    format!(
        "vb{}{}",
        &container_id[..container_id.len().min(8)],
        &network_id[..network_id.len().min(5)]
    )
}

impl NetworkService {
    /// Opens the service: the table, the predefined networks, every bridge, the DNS listeners and the ruleset.
    pub async fn open(
        cfg: NetworkConfig,
        data_root: &Path,
        db: Arc<Db>,
        events: Arc<EventBus>,
    ) -> Result<Arc<Self>> {
        store::init(&db)?;
        std::fs::create_dir_all(&cfg.netns_dir)
            .map_err(|e| system(format!("cannot create {}: {e}", cfg.netns_dir.display())))?;
        // Allocations are not fsynced: the container records are the authoritative copy, and the tables are
        // reconciled with them at every start (`claim` for running containers, `sweep` for the rest).
        let ipam = Ipam::open(data_root.join("network").join("ipam"))
            .map_err(ipam_error)?
            .lazy_addresses();
        let dns = berth_dns::DnsServer::new(cfg.resolv_conf.clone());
        let svc = Arc::new(Self {
            cfg,
            db,
            events,
            ipam,
            dns,
            state: Mutex::new(State::default()),
            nft: Arc::new(Mutex::new(Applied::default())),
        });
        let mut nets: BTreeMap<String, NetRecord> = store::load(&svc.db)?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !nets.values().any(|n| n.name == name) {
                let rec = predefined(name, driver);
                store::save(&svc.db, &rec)?;
                nets.insert(rec.id.clone(), rec);
            }
        }
        let default = svc.default_bridge(&nets)?;
        match default {
            Some(rec) => {
                store::save(&svc.db, &rec)?;
                nets.insert(rec.id.clone(), rec);
            }
            None => {
                if let Some(old) = nets.values().find(|n| n.name == "bridge").cloned() {
                    // `--bridge none`: the default network is not offered (its row stays for a later start).
                    nets.remove(&old.id);
                }
            }
        }
        // Every bridge network needs an IPAM table; a crash between the row and the table is repaired here.
        let known: HashSet<String> = svc
            .ipam
            .networks()
            .map_err(ipam_error)?
            .into_iter()
            .map(|n| n.name)
            .collect();
        for orphan in known.iter().filter(|id| !nets.contains_key(*id)) {
            // A removal interrupted after the row went (or a create before it came).
            tracing::info!(network = %orphan, "removing the address table of a network that no longer exists");
            let _ = svc.ipam.remove_network_force(orphan);
        }
        for n in nets.values().filter(|n| n.is_bridge()) {
            if !known.contains(&n.id)
                && let Some(subnet) = n.subnet
            {
                svc.ipam
                    .create_network(&n.id, subnet, n.gateway, n.ip_range)
                    .map_err(ipam_error)?;
            }
        }
        svc.lock().nets = nets.clone();
        for n in nets.values().filter(|n| n.is_bridge()) {
            if let Err(e) = svc.bring_up(n).await {
                // One broken network must not keep the daemon (and every other container) down.
                tracing::error!(network = %n.name, error = %e, "cannot set up the network");
            }
        }
        Ok(svc)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pools(&self) -> Result<Vec<AddressPool>> {
        if self.cfg.pools.is_empty() {
            return Ok(berth_net::pool::default_pools());
        }
        self.cfg
            .pools
            .iter()
            .map(|(base, size)| {
                let base = parse_subnet(base, "default address pool")?;
                AddressPool::new(base, *size).map_err(|e| NetworkError::Invalid(e.to_string()))
            })
            .collect()
    }

    /// The default `bridge` network as it should be now (`None` when disabled).
    fn default_bridge(&self, nets: &BTreeMap<String, NetRecord>) -> Result<Option<NetRecord>> {
        let Some(bridge) = self.cfg.bridge.clone() else {
            return Ok(None);
        };
        berth_net::link::validate_name(&bridge)
            .map_err(|_| NetworkError::Invalid(format!("invalid bridge name {bridge:?}")))?;
        let existing = nets.values().find(|n| n.name == "bridge").cloned();
        let (subnet, gateway) = match &self.cfg.bip {
            Some(bip) => {
                let (addr, prefix) = bip.split_once('/').ok_or_else(|| {
                    NetworkError::Invalid(format!("invalid --bip {bip:?}: expected ADDRESS/PREFIX"))
                })?;
                let addr = parse_ip(addr, "--bip address")?;
                let prefix: u8 = prefix
                    .parse()
                    .map_err(|_| NetworkError::Invalid(format!("invalid --bip prefix in {bip:?}")))?;
                let subnet = Subnet::containing(addr, prefix)
                    .map_err(|e| NetworkError::Invalid(format!("--bip: {e}")))?;
                (subnet, addr)
            }
            None => match existing.as_ref().and_then(|e| Some((e.subnet?, e.gateway?))) {
                Some(sg) => sg,
                None => {
                    let taken: Vec<Subnet> = nets.values().filter_map(|n| n.subnet).collect();
                    let subnet = self.pick_subnet(&taken)?;
                    let gateway = subnet
                        .gateway()
                        .ok_or_else(|| NetworkError::Invalid(format!("subnet {subnet} is too small")))?;
                    (subnet, gateway)
                }
            },
        };
        let mut rec = existing.unwrap_or_else(|| {
            let mut r = predefined("bridge", "bridge");
            r.masquerade = true;
            r
        });
        if rec.subnet != Some(subnet) || rec.gateway != Some(gateway) {
            // The subnet changed (--bip): a new IPAM table; the old one must not hold addresses.
            let _ = self.ipam.remove_network(&rec.id);
            rec.subnet = Some(subnet);
            rec.gateway = Some(gateway);
        }
        rec.bridge = bridge;
        rec.mtu = self.cfg.mtu;
        rec.options = HashMap::from([
            (OPT_DEFAULT_BRIDGE.to_string(), "true".to_string()),
            (OPT_BRIDGE_NAME.to_string(), rec.bridge.clone()),
            (OPT_MASQUERADE.to_string(), "true".to_string()),
        ]);
        Ok(Some(rec))
    }

    fn pick_subnet(&self, taken: &[Subnet]) -> Result<Subnet> {
        let host = berth_net::pool::host_subnets().map_err(system)?;
        berth_net::pool::pick_free(&self.pools()?, taken, &host).ok_or_else(|| {
            NetworkError::Conflict(
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to \
                 the network"
                    .into(),
            )
        })
    }

    /// Creates (or repairs) the bridge of `net`, its sysctls, its DNS listener and the ruleset.
    async fn bring_up(&self, net: &NetRecord) -> Result<()> {
        let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else {
            return Ok(());
        };
        let n = net.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut nl = Netlink::open().map_err(system)?;
            nl.ensure_bridge(&BridgeConfig {
                name: n.bridge.clone(),
                mtu: n.mtu,
                address: Some(InterfaceAddress {
                    addr: gateway,
                    prefix: subnet.prefix(),
                }),
            })
            .map_err(system)?;
            // Published ports answer on 127.0.0.1 through the output hook's dnat (docker without its proxy).
            write_sysctl(&format!("net/ipv4/conf/{}/route_localnet", n.bridge), "1")?;
            if n.masquerade && !n.internal {
                write_sysctl("net/ipv4/ip_forward", "1")?;
            }
            Ok(())
        })
        .await
        .map_err(system)??;
        self.sync_rules().await?;
        let addr = SocketAddr::from((gateway, DNS_PORT));
        if let Err(e) = self.dns.listen(addr, &net.id, net.resolves_names()).await {
            tracing::warn!(network = %net.name, error = %e, "no DNS server for the network's containers");
        }
        Ok(())
    }

    /// Renders the ruleset from the state and applies it (nothing is written while no bridge network exists
    /// and nothing was applied before).
    async fn sync_rules(&self) -> Result<()> {
        let (config, generation) = {
            let mut st = self.lock();
            st.generation += 1;
            let config = NatConfig {
                table: TABLE.to_string(),
                networks: st
                    .nets
                    .values()
                    .filter(|n| n.is_bridge())
                    .filter_map(|n| {
                        Some(NetRule {
                            bridge: n.bridge.clone(),
                            subnet: n.subnet?,
                            masquerade: n.masquerade && !n.internal,
                            internal: n.internal,
                        })
                    })
                    .collect(),
                ports: st
                    .ports
                    .values()
                    .flatten()
                    .map(|r| PortMap {
                        proto: if r.map.udp { Proto::Udp } else { Proto::Tcp },
                        host_ip: r.map.host_ip,
                        host_port: r.map.host_port,
                        container_ip: r.container_ip,
                        container_port: r.map.container_port,
                    })
                    .collect(),
            };
            (config, st.generation)
        };
        let nft = self.nft.clone();
        let script = config.render().map_err(system)?;
        let empty = config.networks.is_empty();
        // Applying runs nft; serialise it so an older script is never applied after a newer one.
        tokio::task::spawn_blocking(move || {
            let mut applied = nft.lock().unwrap_or_else(PoisonError::into_inner);
            if (empty && !applied.any) || generation < applied.generation {
                // Nothing to do, or a newer state was applied already.
                return Ok(());
            }
            berth_net::nat::apply(&script, None).map_err(system)?;
            applied.any = true;
            applied.generation = generation;
            Ok(())
        })
        .await
        .map_err(system)?
    }

    fn publish_dns(&self, st: &State, network_id: &str) {
        let Some(net) = st.nets.get(network_id) else {
            return;
        };
        let entries = st
            .live
            .get(network_id)
            .map(|eps| {
                eps.iter()
                    .map(|(cid, ep)| {
                        let mut names = vec![ep.name.clone(), cid[..12.min(cid.len())].to_string()];
                        names.extend(ep.aliases.iter().cloned());
                        let qualified: Vec<String> =
                            names.iter().map(|n| format!("{n}.{}", net.name)).collect();
                        names.extend(qualified);
                        berth_dns::Entry {
                            names,
                            addr: ep.attached.ip,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.dns.set_entries(network_id, entries);
    }

    /// Tells the DNS server which networks' names each address of a container resolves: all its user-defined
    /// networks, its first interface's first (docker's resolver answers with every network of the container).
    fn publish_client_scopes(&self, st: &State, container_id: &str) {
        let mut mine: Vec<(&Attached, &NetRecord)> = st
            .live
            .iter()
            .filter_map(|(nid, eps)| Some((&eps.get(container_id)?.attached, st.nets.get(nid)?)))
            .collect();
        mine.sort_by(|a, b| a.0.ifname.cmp(&b.0.ifname));
        let scopes: Vec<String> = mine
            .iter()
            .filter(|(_, n)| n.resolves_names())
            .map(|(_, n)| n.id.clone())
            .collect();
        for (a, _) in &mine {
            self.dns
                .set_client_scopes(std::net::IpAddr::V4(a.ip), scopes.clone());
        }
    }

    /// Finds a network by full id, name, or unique id prefix (docker's order).
    pub fn get(&self, name: &str) -> Result<NetRecord> {
        let st = self.lock();
        find(&st.nets, name).cloned()
    }

    /// The default network of a container that names none (`bridge`, or none when it is disabled).
    pub fn default_network(&self) -> Option<NetRecord> {
        self.lock().nets.values().find(|n| n.name == "bridge").cloned()
    }

    /// `POST /networks/create`.
    pub async fn create(&self, req: NetworkCreateRequest) -> Result<NetworkCreateResponse> {
        let name = req.name.trim().to_string();
        validate_name(&name)?;
        let driver = req
            .driver
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(NetworkError::Invalid(format!(
                "plugin \"{driver}\" not found: only the bridge driver can create networks"
            )));
        }
        if req.enable_ipv6 == Some(true) {
            return Err(NetworkError::Invalid(
                "IPv6 networks are not supported by Berth".into(),
            ));
        }
        if req.config_only == Some(true) || req.config_from.is_some() || req.ingress == Some(true) {
            return Err(NetworkError::Invalid(
                "config-only, config-from and ingress networks are swarm features Berth does not have".into(),
            ));
        }
        let options = req.options.clone().unwrap_or_default();
        let mtu = match options.get(OPT_MTU) {
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| {
                        NetworkError::Invalid(format!("invalid MTU {v:?}: expected 68 to 65535"))
                    })?,
            ),
            None => None,
        };
        let masquerade = match options.get(OPT_MASQUERADE).map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => {
                return Err(NetworkError::Invalid(format!(
                    "invalid value {v:?} for {OPT_MASQUERADE}"
                )));
            }
        };
        for k in options.keys() {
            if !k.starts_with("com.docker.network.") {
                return Err(NetworkError::Invalid(format!(
                    "unknown bridge network option {k:?}"
                )));
            }
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if let Some(d) = ipam.driver.as_deref()
            && !d.is_empty()
            && d != "default"
        {
            return Err(NetworkError::Invalid(format!(
                "IPAM driver \"{d}\" not found: only \"default\" exists"
            )));
        }
        let configs = ipam.config.clone().unwrap_or_default();
        if configs.len() > 1 {
            return Err(NetworkError::Invalid(
                "Berth networks have one IPv4 subnet".into(),
            ));
        }
        let given = configs.first().cloned().unwrap_or_default();
        let subnet = given
            .subnet
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_subnet(s, "subnet"))
            .transpose()?;
        let gateway = given
            .gateway
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_ip(s, "gateway"))
            .transpose()?;
        let ip_range = given
            .ip_range
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_subnet(s, "ip-range"))
            .transpose()?;
        if subnet.is_none() && (gateway.is_some() || ip_range.is_some()) {
            return Err(NetworkError::Invalid(
                "a gateway or an ip range needs a subnet (--subnet)".into(),
            ));
        }
        let id = new_id();
        let bridge = options
            .get(OPT_BRIDGE_NAME)
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        berth_net::link::validate_name(&bridge)
            .map_err(|_| NetworkError::Invalid(format!("invalid bridge name {bridge:?}")))?;
        let adopted_bridge = Netlink::open()
            .and_then(|mut nl| nl.link_index(&bridge))
            .map_err(system)?
            .is_some();
        let rec = {
            let mut st = self.lock();
            if st.nets.values().any(|n| n.name == name) {
                return Err(NetworkError::Conflict(format!(
                    "network with name {name} already exists"
                )));
            }
            if st.nets.values().any(|n| n.bridge == bridge && n.is_bridge()) {
                return Err(NetworkError::Conflict(format!(
                    "bridge {bridge} is used by another network"
                )));
            }
            let taken: Vec<(&NetRecord, Subnet)> =
                st.nets.values().filter_map(|n| Some((n, n.subnet?))).collect();
            let subnet = match subnet {
                Some(s) => {
                    if let Some((other, os)) = taken.iter().find(|(_, os)| os.overlaps(&s)) {
                        return Err(NetworkError::Conflict(format!(
                            "invalid pool request: Pool overlaps with other one on this address space: subnet \
                             {s} overlaps subnet {os} of network {}",
                            other.name
                        )));
                    }
                    s
                }
                None => {
                    let t: Vec<Subnet> = taken.iter().map(|(_, s)| *s).collect();
                    self.pick_subnet(&t)?
                }
            };
            let ipam_net = self
                .ipam
                .create_network(&id, subnet, gateway, ip_range)
                .map_err(ipam_error)?;
            let rec = NetRecord {
                id: id.clone(),
                name: name.clone(),
                driver: driver.clone(),
                created: crate::time::now_nanos(),
                subnet: Some(subnet),
                gateway: Some(ipam_net.gateway),
                ip_range,
                user_subnet: given.subnet.is_some(),
                internal: req.internal.unwrap_or(false),
                attachable: req.attachable.unwrap_or(false),
                options,
                labels: req.labels.clone().unwrap_or_default(),
                bridge,
                mtu,
                masquerade,
                adopted_bridge,
            };
            if let Err(e) = store::save(&self.db, &rec) {
                let _ = self.ipam.remove_network(&id);
                return Err(e);
            }
            st.nets.insert(id.clone(), rec.clone());
            rec
        };
        if let Err(e) = self.bring_up(&rec).await {
            let _ = self.remove_now(&rec).await;
            return Err(e);
        }
        self.events.publish(Event::new(
            "network",
            "create",
            &id,
            &[("name", &name), ("type", &driver)],
        ));
        Ok(NetworkCreateResponse {
            id,
            warning: String::new(),
        })
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let rec = self.get(name)?;
        if rec.is_predefined() {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                rec.name
            )));
        }
        {
            let st = self.lock();
            if let Some(eps) = st.live.get(&rec.id).filter(|e| !e.is_empty()) {
                let users: Vec<&str> = eps.values().map(|e| e.name.as_str()).collect();
                return Err(NetworkError::Conflict(format!(
                    "error while removing network: network {} id {} has active endpoints ({})",
                    rec.name,
                    rec.id,
                    users.join(", ")
                )));
            }
        }
        self.remove_now(&rec).await?;
        self.events.publish(Event::new(
            "network",
            "destroy",
            &rec.id,
            &[("name", &rec.name), ("type", &rec.driver)],
        ));
        Ok(())
    }

    /// Removes a network: its DNS listener, its bridge, then its row, its IPAM table and its rules. A crash
    /// before the row goes leaves a network whose bridge the next start makes again; after it, an IPAM table
    /// without a row, which the next start removes.
    async fn remove_now(&self, rec: &NetRecord) -> Result<()> {
        if let Some(gw) = rec.gateway {
            self.dns.stop(SocketAddr::from((gw, DNS_PORT)));
        }
        let bridge = rec.bridge.clone();
        if rec.is_bridge() && !rec.adopted_bridge {
            tokio::task::spawn_blocking(move || {
                if let Ok(mut nl) = Netlink::open() {
                    let _ = nl.delete_bridge(&bridge);
                }
            })
            .await
            .map_err(system)?;
        }
        store::delete(&self.db, &rec.id)?;
        self.lock().nets.remove(&rec.id);
        let _ = self.ipam.remove_network(&rec.id);
        self.sync_rules().await
    }

    /// `POST /networks/prune`: removes the user-defined networks no running container is on.
    pub async fn prune(&self, filters: &Filters) -> Result<Vec<String>> {
        filters.validate(&["until", "label", "label!"])?;
        let until = match filters.get("until").first() {
            Some(u) => Some(
                crate::time::parse_api_timestamp(u)
                    .ok_or_else(|| NetworkError::Invalid(format!("invalid filter 'until={u}'")))?,
            ),
            None => None,
        };
        let candidates: Vec<NetRecord> = {
            let st = self.lock();
            st.nets
                .values()
                .filter(|n| !n.is_predefined())
                .filter(|n| st.live.get(&n.id).is_none_or(BTreeMap::is_empty))
                .filter(|n| labels_match(filters, &n.labels))
                .filter(|n| until.is_none_or(|u| n.created < u))
                .cloned()
                .collect()
        };
        let mut removed = Vec::new();
        for n in candidates {
            if self.remove(&n.id).await.is_ok() {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// `GET /networks`.
    pub fn list(&self, filters: &Filters) -> Result<Vec<NetworkSummary>> {
        filters.validate(&["driver", "id", "label", "name", "scope", "type", "dangling"])?;
        let st = self.lock();
        let mut out = Vec::new();
        for n in st.nets.values() {
            let ok = filters.get("driver").iter().all(|d| *d == n.driver)
                && filters.get("id").iter().all(|p| n.id.starts_with(p))
                && filters.get("name").iter().all(|p| n.name.contains(p))
                && filters.get("scope").iter().all(|s| *s == "local")
                && filters.get("type").iter().all(|t| match *t {
                    "custom" => !n.is_predefined(),
                    "builtin" => n.is_predefined(),
                    _ => false,
                })
                && labels_match(filters, &n.labels)
                && filters.get("dangling").iter().all(|d| {
                    let unused = st.live.get(&n.id).is_none_or(BTreeMap::is_empty) && !n.is_predefined();
                    (*d == "true" || *d == "1") == unused
                });
            if ok {
                let v = serde_json::to_value(self.inspect_locked(&st, n, false)).map_err(system)?;
                out.push(serde_json::from_value(v).map_err(system)?);
            }
        }
        out.sort_by(|a: &NetworkSummary, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `GET /networks/{id}`.
    pub fn inspect(&self, name: &str) -> Result<NetworkInspect> {
        let st = self.lock();
        let n = find(&st.nets, name)?;
        Ok(self.inspect_locked(&st, n, true))
    }

    fn inspect_locked(&self, st: &State, n: &NetRecord, containers: bool) -> NetworkInspect {
        let eps = st.live.get(&n.id);
        NetworkInspect {
            name: Some(n.name.clone()),
            id: Some(n.id.clone()),
            created: Some(crate::time::rfc3339_nanos(n.created)),
            scope: Some("local".into()),
            driver: Some(n.driver.clone()),
            enable_ipv4: Some(n.is_bridge()),
            enable_ipv6: Some(false),
            ipam: Some(ApiIpam {
                driver: Some("default".into()),
                options: None,
                config: Some(match (n.subnet, n.gateway) {
                    (Some(s), Some(g)) => vec![IpamConfig {
                        subnet: Some(s.to_string()),
                        gateway: Some(g.to_string()),
                        ip_range: n.ip_range.map(|r| r.to_string()),
                        auxiliary_addresses: None,
                    }],
                    _ => Vec::new(),
                }),
            }),
            internal: Some(n.internal),
            attachable: Some(n.attachable),
            ingress: Some(false),
            config_only: Some(false),
            options: Some(n.options.clone()),
            labels: Some(n.labels.clone()),
            containers: Some(if containers {
                eps.map(|eps| {
                    eps.iter()
                        .map(|(cid, ep)| {
                            (
                                cid.clone(),
                                EndpointResource {
                                    name: Some(ep.name.clone()),
                                    endpoint_id: Some(ep.attached.endpoint_id.clone()),
                                    mac_address: Some(ep.attached.mac.clone()),
                                    ipv4_address: Some(format!("{}/{}", ep.attached.ip, ep.attached.prefix)),
                                    ipv6_address: Some(String::new()),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
            } else {
                HashMap::new()
            }),
            ..Default::default()
        }
    }

    /// Checks what a container asks of a network before anything is made (create and connect).
    pub fn check_endpoint(&self, net: &NetRecord, ep: &EndpointConfig) -> Result<()> {
        if !net.is_bridge() {
            if ep.ipv4.is_some() || !ep.aliases.is_empty() {
                return Err(NetworkError::Invalid(format!(
                    "network-scoped aliases and addresses are supported only on bridge networks, not {}",
                    net.name
                )));
            }
            return Ok(());
        }
        if !ep.aliases.is_empty() && net.name == "bridge" {
            return Err(NetworkError::Invalid(
                "network-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
        if let Some(ip) = ep.ipv4 {
            if net.name == "bridge" {
                return Err(NetworkError::Invalid(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            if !net.user_subnet {
                return Err(NetworkError::Invalid(
                    "user specified IP address is supported only when connecting to networks with user \
                     configured subnets"
                        .into(),
                ));
            }
            if let Some(s) = net.subnet
                && !s.contains(ip)
            {
                return Err(NetworkError::Invalid(format!(
                    "no configured subnet contains IP address {ip}: network {} has subnet {s}",
                    net.name
                )));
            }
        }
        if let Some(mac) = &ep.mac {
            mac.parse::<MacAddr>()
                .map_err(|e| NetworkError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Connects a container's network namespace to `net`: address, veth, interface `ifname` (with the default
    /// route when `default_route`), DNS names. On failure nothing is left.
    pub async fn attach(
        &self,
        member: &Member<'_>,
        netns: &Path,
        net: &NetRecord,
        ep: &EndpointConfig,
        ifname: &str,
        default_route: bool,
    ) -> Result<Attached> {
        self.check_endpoint(net, ep)?;
        let (Some(subnet), Some(gateway)) = (net.subnet, net.gateway) else {
            return Err(NetworkError::Invalid(format!(
                "network {} has no addresses",
                net.name
            )));
        };
        if !self.lock().nets.contains_key(&net.id) {
            return Err(NetworkError::NotFound(net.name.clone()));
        }
        let ip = self
            .ipam
            .allocate(&net.id, ep.ipv4, member.id)
            .map_err(|e| match e {
                IpamError::AddressInUse { addr, .. } => {
                    NetworkError::Conflict(format!("Address already in use: {addr} on network {}", net.name))
                }
                other => ipam_error(other),
            })?;
        let mac = match &ep.mac {
            Some(m) => m
                .parse::<MacAddr>()
                .map_err(|e| NetworkError::Invalid(e.to_string()))?,
            None => MacAddr::from_ipv4(ip),
        };
        let host_veth = host_veth_name(member.id, &net.id);
        let made = {
            let (netns, host_veth, ifname, bridge, mtu) = (
                netns.to_path_buf(),
                host_veth.clone(),
                ifname.to_string(),
                net.bridge.clone(),
                net.mtu,
            );
            let internal = net.internal;
            tokio::task::spawn_blocking(move || -> Result<()> {
                let fd = berth_net::link::open_netns_path(netns).map_err(system)?;
                let mut nl = Netlink::open().map_err(system)?;
                // A veth of an earlier run that the kernel has not yet destroyed with its namespace.
                let _ = nl.delete_link(&host_veth);
                nl.create_veth(
                    &VethConfig {
                        host_name: host_veth.clone(),
                        peer_name: ifname.clone(),
                        bridge: Some(bridge),
                        mtu,
                    },
                    std::os::fd::AsFd::as_fd(&fd),
                )
                .map_err(system)?;
                let configured = berth_net::link::setup_container_interface(
                    std::os::fd::AsFd::as_fd(&fd),
                    &InterfaceConfig {
                        current_name: ifname.clone(),
                        name: ifname,
                        mac: Some(mac.0),
                        mtu,
                        address: Some(InterfaceAddress {
                            addr: ip,
                            prefix: subnet.prefix(),
                        }),
                        gateway: (default_route && !internal).then_some(gateway),
                    },
                );
                if let Err(e) = configured {
                    let _ = nl.delete_link(&host_veth);
                    return Err(system(e));
                }
                Ok(())
            })
            .await
            .map_err(system)
            .and_then(|r| r)
        };
        if let Err(e) = made {
            let _ = self.ipam.release(&net.id, ip);
            return Err(e);
        }
        let attached = Attached {
            endpoint_id: new_id(),
            ip,
            prefix: subnet.prefix(),
            gateway,
            mac: mac.to_string(),
            ifname: ifname.to_string(),
            host_veth,
        };
        self.restore_endpoint(member, net, ep, &attached);
        self.events.publish(Event::new(
            "network",
            "connect",
            &net.id,
            &[
                ("container", member.id),
                ("name", &net.name),
                ("type", &net.driver),
            ],
        ));
        Ok(attached)
    }

    /// At daemon start, for a container that kept running: its address is claimed again in IPAM (a release or
    /// allocation lost in a crash is repaired), then its endpoint is recorded as [`NetworkService::attach`] does.
    pub fn restore_running(
        &self,
        member: &Member<'_>,
        net: &NetRecord,
        ep: &EndpointConfig,
        attached: &Attached,
    ) {
        if let Err(e) = self.ipam.claim(&net.id, attached.ip, member.id) {
            tracing::warn!(container = %member.id, network = %net.name, error = %e, "cannot claim the container's address again");
        }
        self.restore_endpoint(member, net, ep, attached);
    }

    /// Records a running container's endpoint (after [`NetworkService::attach`], or at daemon start for a
    /// container that kept running) and publishes its DNS names.
    pub fn restore_endpoint(
        &self,
        member: &Member<'_>,
        net: &NetRecord,
        ep: &EndpointConfig,
        attached: &Attached,
    ) {
        let mut st = self.lock();
        st.live.entry(net.id.clone()).or_default().insert(
            member.id.to_string(),
            LiveEndpoint {
                name: member.name.to_string(),
                aliases: ep.aliases.clone(),
                attached: attached.clone(),
            },
        );
        self.publish_dns(&st, &net.id);
        self.publish_client_scopes(&st, member.id);
    }

    /// Disconnects a running container from a network: its DNS names, the veth, the address.
    pub async fn detach(&self, container_id: &str, network_id: &str, attached: Option<&Attached>) {
        self.detach_inner(container_id, network_id, attached, true).await;
    }

    /// Like [`NetworkService::detach`]; `delete_veth == false` leaves the veth to the kernel, which destroys it
    /// with the container's namespace (deleting a veth waits for an RCU grace period, tens of milliseconds on
    /// the exit path of every container).
    async fn detach_inner(
        &self,
        container_id: &str,
        network_id: &str,
        attached: Option<&Attached>,
        delete_veth: bool,
    ) {
        let name = {
            let mut st = self.lock();
            let gone = st
                .live
                .get_mut(network_id)
                .and_then(|eps| eps.remove(container_id));
            if let Some(ep) = gone.as_ref().map(|g| &g.attached).or(attached) {
                self.dns
                    .set_client_scopes(std::net::IpAddr::V4(ep.ip), Vec::new());
            }
            self.publish_dns(&st, network_id);
            self.publish_client_scopes(&st, container_id);
            st.nets
                .get(network_id)
                .map(|n| (n.name.clone(), n.driver.clone()))
        };
        if delete_veth {
            let veth = attached
                .map(|a| a.host_veth.clone())
                .unwrap_or_else(|| host_veth_name(container_id, network_id));
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut nl) = Netlink::open() {
                    let _ = nl.delete_link(&veth);
                }
            })
            .await;
        }
        if let Some(a) = attached {
            let _ = self.ipam.release(network_id, a.ip);
        }
        if let Some((name, driver)) = name {
            self.events.publish(Event::new(
                "network",
                "disconnect",
                network_id,
                &[("container", container_id), ("name", &name), ("type", &driver)],
            ));
        }
    }

    /// Everything a container that no longer runs may still hold: endpoints, addresses, ports, its namespace
    /// (unmounted: the kernel destroys it and its veths once no process is left in it).
    pub async fn release_container(&self, container_id: &str) {
        let (nets, had_ports): (Vec<(String, Option<Attached>)>, bool) = {
            let mut st = self.lock();
            let had_ports = st.ports.remove(container_id).is_some_and(|p| !p.is_empty());
            let nets = st
                .live
                .iter_mut()
                .filter_map(|(nid, eps)| {
                    eps.remove(container_id)
                        .map(|ep| (nid.clone(), Some(ep.attached)))
                })
                .collect();
            (nets, had_ports)
        };
        for (nid, attached) in &nets {
            // The namespace goes below, and its veths with it.
            self.detach_inner(container_id, nid, attached.as_ref(), false)
                .await;
        }
        if had_ports && let Err(e) = self.sync_rules().await {
            tracing::warn!(container = %container_id, error = %e, "cannot update the packet filter");
        }
        if nets.is_empty() {
            // Nothing known in memory (a start that failed early, the start-up sweep): look in every table.
            let _ = self.ipam.release_owner(container_id);
        }
        let ns = self.netns_path(container_id);
        let _ = tokio::task::spawn_blocking(move || berth_net::netns::remove(&ns)).await;
    }

    /// Where a container's network namespace is mounted.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.cfg.netns_dir.join(container_id)
    }

    /// Creates a container's network namespace (loopback up).
    pub async fn create_netns(&self, container_id: &str) -> Result<PathBuf> {
        let path = self.netns_path(container_id);
        let p = path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _ = berth_net::netns::remove(&p);
            berth_net::netns::create(&p).map_err(system)?;
            let up = (|| {
                let fd = berth_net::link::open_netns_path(p.clone())?;
                let mut nl = Netlink::open_in(std::os::fd::AsFd::as_fd(&fd))?;
                nl.set_up("lo")
            })();
            if let Err(e) = up {
                let _ = berth_net::netns::remove(&p);
                return Err(system(e));
            }
            Ok(())
        })
        .await
        .map_err(system)??;
        Ok(path)
    }

    /// Mounts the network namespace of process `pid` (a created container's, made by the runtime) where
    /// [`NetworkService::netns_path`] says, so the rest of the service treats it like one it made.
    pub async fn adopt_netns(&self, container_id: &str, pid: i64) -> Result<PathBuf> {
        let path = self.netns_path(container_id);
        let p = path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _ = berth_net::netns::remove(&p);
            berth_net::netns::adopt(&p, &format!("/proc/{pid}/ns/net")).map_err(system)
        })
        .await
        .map_err(system)??;
        Ok(path)
    }

    /// Reserves the host ports of `requests` for a container at `container_ip` and adds their rules. A port
    /// that is taken (by a program or another container) fails the whole request and nothing is kept.
    pub async fn publish(
        &self,
        container_id: &str,
        container_ip: Ipv4Addr,
        requests: &[PortRequest],
    ) -> Result<Vec<Published>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut held = Vec::new();
        for r in requests {
            held.push(reserve(r, container_ip)?);
        }
        let out: Vec<Published> = held.iter().map(|h| h.map).collect();
        self.lock()
            .ports
            .entry(container_id.to_string())
            .or_default()
            .extend(held);
        if let Err(e) = self.sync_rules().await {
            self.lock().ports.remove(container_id);
            let _ = self.sync_rules().await;
            return Err(e);
        }
        Ok(out)
    }

    /// `GET /info`-style counts and a sweep at start: releases addresses, namespaces and veths of containers
    /// that are not in `running`.
    pub async fn sweep(&self, running: &HashSet<String>) {
        let owners: Vec<(String, Ipv4Addr, String)> = self
            .ipam
            .networks()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|n| {
                self.ipam
                    .allocations(&n.name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(ip, owner)| (n.name.clone(), ip, owner))
            })
            .collect();
        let mut gone: HashSet<String> = owners
            .iter()
            .filter(|(_, _, o)| !running.contains(o))
            .map(|(_, _, o)| o.clone())
            .collect();
        if let Ok(dir) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !running.contains(&name) {
                    gone.insert(name);
                }
            }
        }
        for id in gone {
            tracing::info!(container = %id, "releasing the network resources of a container that no longer runs");
            let nets: Vec<String> = self.lock().nets.keys().cloned().collect();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut nl) = Netlink::open() {
                    for nid in nets {
                        let _ = nl.delete_link(&host_veth_name(&id2, &nid));
                    }
                }
            })
            .await;
            self.release_container(&id).await;
        }
        if let Err(e) = self.sync_rules().await {
            tracing::warn!(error = %e, "cannot apply the packet filter rules");
        }
    }

    /// The host's resolver configuration.
    pub fn host_resolv_conf(&self) -> String {
        std::fs::read_to_string(&self.cfg.resolv_conf).unwrap_or_default()
    }

    /// The resolv.conf a container on `nets` gets (the `--dns*` options are applied by the caller).
    pub fn resolv_conf(&self, nets: &[NetRecord]) -> (Vec<String>, String) {
        let host = std::fs::read_to_string(&self.cfg.resolv_conf).unwrap_or_default();
        let gateways: Vec<String> = nets
            .iter()
            .filter(|n| n.resolves_names())
            .filter_map(|n| n.gateway)
            .map(|g| g.to_string())
            .take(3)
            .collect();
        if !gateways.is_empty() {
            return (gateways, host);
        }
        let remote: Vec<String> = host
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.starts_with("127.") && s != "::1")
            .collect();
        if remote.is_empty()
            && let Some(g) = nets.iter().find_map(|n| n.gateway)
        {
            // Only loopback resolvers: berthd forwards to them from the host.
            return (vec![g.to_string()], host);
        }
        (remote, host)
    }
}

/// Binds (without listening) a socket on the host port so no other program can take it.
fn reserve(r: &PortRequest, container_ip: Ipv4Addr) -> Result<Reservation> {
    use rustix::net::{AddressFamily, SocketType, bind, ipproto, socket};
    let ip = r.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let candidates: Vec<u16> = match r.host_ports {
        Some((a, b)) => (a..=b).collect(),
        None => vec![0],
    };
    let proto_name = if r.udp { "udp" } else { "tcp" };
    let mut last_err = None;
    for port in candidates {
        let (ty, proto) = if r.udp {
            (SocketType::DGRAM, ipproto::UDP)
        } else {
            (SocketType::STREAM, ipproto::TCP)
        };
        let fd = socket(AddressFamily::INET, ty, Some(proto)).map_err(system)?;
        let _ = rustix::io::ioctl_fioclex(&fd);
        let addr = std::net::SocketAddrV4::new(ip, port);
        match bind(&fd, &addr) {
            Ok(()) => {
                let bound = std::net::SocketAddrV4::try_from(rustix::net::getsockname(&fd).map_err(system)?)
                    .map_err(|_| system("the bound socket has no IPv4 address"))?;
                return Ok(Reservation {
                    map: Published {
                        udp: r.udp,
                        host_ip: r.host_ip,
                        host_port: bound.port(),
                        container_port: r.container_port,
                    },
                    container_ip,
                    _socket: fd,
                });
            }
            Err(e) => last_err = Some((port, e)),
        }
    }
    let (port, e) = last_err.unwrap_or((0, rustix::io::Errno::ADDRINUSE));
    let shown = match r.host_ports {
        Some((a, b)) if a != b => format!("{a}-{b}"),
        _ => port.to_string(),
    };
    Err(if e == rustix::io::Errno::ADDRINUSE {
        NetworkError::Conflict(format!(
            "Bind for {ip}:{shown} failed: port is already allocated ({proto_name})"
        ))
    } else {
        NetworkError::System(format!("cannot reserve host port {ip}:{shown}/{proto_name}: {e}"))
    })
}

/// `label` and `label!` filters.
fn labels_match(filters: &Filters, labels: &HashMap<String, String>) -> bool {
    filters.match_labels("label", labels)
        && !filters
            .get("label!")
            .iter()
            .any(|l| Filters::from_pairs([("label", *l)]).match_labels("label", labels))
}

fn write_sysctl(name: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(name);
    std::fs::write(&path, value).map_err(|e| system(format!("cannot write {}: {e}", path.display())))
}

fn predefined(name: &str, driver: &str) -> NetRecord {
    NetRecord {
        id: new_id(),
        name: name.to_string(),
        driver: driver.to_string(),
        created: crate::time::now_nanos(),
        subnet: None,
        gateway: None,
        ip_range: None,
        user_subnet: false,
        internal: false,
        attachable: false,
        options: HashMap::new(),
        labels: HashMap::new(),
        bridge: String::new(),
        mtu: None,
        masquerade: false,
        adopted_bridge: false,
    }
}

fn find<'a>(nets: &'a BTreeMap<String, NetRecord>, name: &str) -> Result<&'a NetRecord> {
    if name.is_empty() {
        return Err(NetworkError::NotFound(String::new()));
    }
    if let Some(n) = nets.get(name) {
        return Ok(n);
    }
    if let Some(n) = nets.values().find(|n| n.name == name) {
        return Ok(n);
    }
    let matches: Vec<&NetRecord> = nets.values().filter(|n| n.id.starts_with(name)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(NetworkError::NotFound(name.to_string())),
        _ => Err(NetworkError::Invalid(format!(
            "network {name} is ambiguous ({} matches found based on ID prefix)",
            matches.len()
        ))),
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(NetworkError::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// Parses `HostConfig.PortBindings` (and, with `publish_all`, the exposed ports) into requests.
pub fn port_requests(
    bindings: Option<&bollard_stubs::models::PortMap>,
    exposed: &[String],
    publish_all: bool,
) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let parse_key = |key: &str| -> Result<(u16, bool)> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            other => {
                return Err(NetworkError::Invalid(format!(
                    "invalid proto {other:?} in port {key:?}: Berth publishes tcp and udp"
                )));
            }
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| NetworkError::Invalid(format!("invalid containerPort: {port}")))?;
        Ok((port, udp))
    };
    if let Some(b) = bindings {
        let mut keys: Vec<&String> = b.keys().collect();
        keys.sort();
        for key in keys {
            let (container_port, udp) = parse_key(key)?;
            seen.insert(key.clone());
            let list = b.get(key).cloned().flatten().unwrap_or_default();
            let list = if list.is_empty() {
                vec![bollard_stubs::models::PortBinding::default()]
            } else {
                list
            };
            for pb in list {
                let host_ip = match pb.host_ip.as_deref().filter(|s| !s.is_empty()) {
                    None | Some("0.0.0.0") => None,
                    Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                        NetworkError::Invalid(format!(
                            "invalid host IP {s:?}: Berth publishes on IPv4 addresses"
                        ))
                    })?),
                };
                let host_ports = match pb.host_port.as_deref().filter(|s| !s.is_empty() && *s != "0") {
                    None => None,
                    Some(s) => {
                        let (a, b) = s.split_once('-').unwrap_or((s, s));
                        let parse = |p: &str| {
                            p.parse::<u16>()
                                .ok()
                                .filter(|p| *p != 0)
                                .ok_or_else(|| NetworkError::Invalid(format!("invalid hostPort: {s}")))
                        };
                        let (a, b) = (parse(a)?, parse(b)?);
                        if a > b {
                            return Err(NetworkError::Invalid(format!("invalid hostPort: {s}")));
                        }
                        Some((a, b))
                    }
                };
                out.push(PortRequest {
                    udp,
                    host_ip,
                    host_ports,
                    container_port,
                });
            }
        }
    }
    if publish_all {
        for key in exposed {
            if seen.contains(key) {
                continue;
            }
            let (container_port, udp) = parse_key(key)?;
            out.push(PortRequest {
                udp,
                host_ip: None,
                host_ports: None,
                container_port,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
