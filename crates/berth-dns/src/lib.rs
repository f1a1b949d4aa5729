//! Berth's embedded DNS server: berthd runs one listener on each bridge network's gateway address (like
//! podman's aardvark-dns or docker's embedded resolver) so that containers resolve each other by name.
//!
//! A listener serves one *scope* (a network id). A question for a name of that scope (case-insensitive,
//! trailing dot optional, exact match of a full name as given to [`DnsServer::set_entries`]) is answered
//! authoritatively: `A`/`ANY` with every address carrying the name (shuffled per query), other types with an
//! empty NOERROR, and `PTR` of a known address with its first name. Everything else is forwarded unchanged
//! to the upstream resolvers of a resolv.conf file, in order (UDP over UDP, TCP over TCP), 2 s per upstream,
//! SERVFAIL when none answers. Malformed datagrams are dropped, a TCP connection sending one is closed.
//!
//! Dependencies:
//! - `hickory-proto` (default features off, only `std`): parsing and building DNS messages is easy to get
//!   subtly wrong (name compression, EDNS, label rules), and hickory is the maintained, widely used Rust DNS
//!   protocol library. Only its wire format is used: no resolver, no DNSSEC, no async runtime of its own, so
//!   it adds little to the binary and nothing to the idle memory.
//! - `tokio`: the sockets and the per-query tasks; no thread per listener (berthd's runtime runs them).
//! - `fastrand`: shuffling the addresses of a name shared by several containers, as docker does.
//! - `libc`: `if_nametoindex` for a link-local IPv6 nameserver with a zone (`fe80::1%eth0`).
//! - `thiserror`, `tracing`: errors and logs as in the rest of Berth.
//!
//! Memory: the records are two small maps per scope; a listener keeps one 4 KiB receive buffer; a forwarded
//! query holds a 64 KiB buffer only while it waits for the upstream; in-flight queries and TCP connections
//! are capped per listener.

mod answer;
mod forward;
mod records;
mod upstream;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use records::RecordStore;
use upstream::Upstreams;

/// One name set -> one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Every full name the address answers to (e.g. "web", "web.mynet", the short id).
    pub names: Vec<String>,
    /// The address.
    pub addr: Ipv4Addr,
}

/// Errors of [`DnsServer`].
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A socket could not be bound.
    #[error("cannot listen for DNS queries over {proto} on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    /// The address is already served.
    #[error("the DNS server already listens on {addr}")]
    AlreadyListening { addr: SocketAddr },
}

/// The port resolv.conf nameservers are reached on.
const DNS_PORT: u16 = 53;
/// Largest query datagram accepted (a longer one is malformed for us).
const UDP_QUERY_BUF: usize = 4096;
/// Queries being forwarded at once per listener over UDP; more are dropped (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 256;
/// TCP connections open at once per listener; more are closed at once.
const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP client idle this long (or this slow sending a query) is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener tasks share.
#[derive(Debug)]
struct Shared {
    records: RecordStore,
    upstreams: Upstreams,
    /// Every address listened on (upstreams among them are skipped: forwarding there would loop).
    listening: RwLock<Vec<SocketAddr>>,
    /// Client address -> the scopes whose names it resolves (a container on several networks), in order.
    clients: RwLock<HashMap<IpAddr, Vec<String>>>,
}

#[derive(Debug)]
struct Listener {
    tasks: [JoinHandle<()>; 2],
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    /// Tasks of stopped listeners whose sockets may not be closed yet; `listen` on the same address waits.
    stopping: Mutex<HashMap<SocketAddr, Vec<JoinHandle<()>>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let listeners = self.listeners.get_mut().unwrap_or_else(|e| e.into_inner());
        for listener in listeners.values() {
            listener.tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

/// The embedded DNS server. Cheap to clone; the last clone dropped stops every listener.
#[derive(Debug, Clone)]
pub struct DnsServer {
    inner: Arc<Inner>,
}

impl DnsServer {
    /// Upstream resolvers are read from `resolv_conf` (re-read when its mtime changes; `nameserver` lines,
    /// IPv4 and IPv6, port 53).
    pub fn new(resolv_conf: PathBuf) -> Self {
        Self::with_upstream_port(resolv_conf, DNS_PORT)
    }

    /// Like [`DnsServer::new`], with the upstreams reached on `port` instead of 53 (resolv.conf has no port
    /// syntax; tests run their fake upstream on an unprivileged port).
    #[doc(hidden)]
    pub fn with_upstream_port(resolv_conf: PathBuf, port: u16) -> Self {
        let shared = Arc::new(Shared {
            records: RecordStore::default(),
            upstreams: Upstreams::new(resolv_conf, port),
            listening: RwLock::new(Vec::new()),
            clients: RwLock::new(HashMap::new()),
        });
        Self {
            inner: Arc::new(Inner {
                shared,
                listeners: Mutex::new(HashMap::new()),
                stopping: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Binds UDP and TCP on `addr` (e.g. 172.18.0.1:53) and serves queries there for `scope` (a network id)
    /// until [`DnsServer::stop`]. `resolve_names == false`: only forward (docker's default bridge has no name
    /// resolution). Port 0 binds a free port, the same for UDP and TCP; [`DnsServer::listening`] reports it.
    /// Errors (naming the address) if either bind fails; nothing is left listening then.
    pub async fn listen(&self, addr: SocketAddr, scope: &str, resolve_names: bool) -> Result<(), DnsError> {
        let pending = lock(&self.inner.stopping).remove(&addr).unwrap_or_default();
        for task in pending {
            // The task was aborted; awaiting it returns once its future (and so its socket) is dropped.
            let _ = task.await;
        }
        if lock(&self.inner.listeners).contains_key(&addr) {
            return Err(DnsError::AlreadyListening { addr });
        }
        let (udp, tcp) = bind_pair(addr).await?;
        let bound = udp.local_addr().map_err(|source| DnsError::Bind {
            proto: "UDP",
            addr,
            source,
        })?;
        let ctx = Arc::new(ListenCtx {
            addr: bound,
            scope: scope.to_owned(),
            resolve_names,
            shared: Arc::clone(&self.inner.shared),
        });
        let mut listeners = lock(&self.inner.listeners);
        if listeners.contains_key(&bound) {
            return Err(DnsError::AlreadyListening { addr: bound });
        }
        let tasks = [
            tokio::spawn(serve_udp(udp, Arc::clone(&ctx))),
            tokio::spawn(serve_tcp(tcp, ctx)),
        ];
        listeners.insert(bound, Listener { tasks });
        write(&self.inner.shared.listening).push(bound);
        tracing::debug!(addr = %bound, scope, resolve_names, "DNS listener started");
        Ok(())
    }

    /// Stops the listeners on `addr` (closes the sockets; later queries get no answer). Unknown addr: no-op.
    pub fn stop(&self, addr: SocketAddr) {
        let Some(listener) = lock(&self.inner.listeners).remove(&addr) else {
            return;
        };
        write(&self.inner.shared.listening).retain(|a| *a != addr);
        listener.tasks.iter().for_each(JoinHandle::abort);
        let mut stopping = lock(&self.inner.stopping);
        stopping.retain(|_, tasks| {
            tasks.retain(|t| !t.is_finished());
            !tasks.is_empty()
        });
        stopping.entry(addr).or_default().extend(listener.tasks);
        tracing::debug!(%addr, "DNS listener stopped");
    }

    /// Replaces all records of `scope`.
    pub fn set_entries(&self, scope: &str, entries: Vec<Entry>) {
        self.inner.shared.records.set(scope, entries);
    }

    /// Makes queries from `client` resolve the names of every scope in `scopes` (in order) instead of only the
    /// listener's: docker's resolver answers a container with the names of all its networks. An empty list
    /// forgets the client.
    pub fn set_client_scopes(&self, client: IpAddr, scopes: Vec<String>) {
        let mut clients = write(&self.inner.shared.clients);
        if scopes.is_empty() {
            clients.remove(&client);
        } else {
            clients.insert(client, scopes);
        }
    }

    /// The addresses listened on (for tests / inspection), with the actual port when 0 was asked for.
    pub fn listening(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = lock(&self.inner.listeners).keys().copied().collect();
        addrs.sort();
        addrs
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while holding it; the maps stay consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Binds UDP then TCP on the same address and port (with port 0: a free port, retried if TCP has it taken).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(addr).await.map_err(|source| DnsError::Bind {
            proto: "UDP",
            addr,
            source,
        })?;
        let port = udp
            .local_addr()
            .map_err(|source| DnsError::Bind {
                proto: "UDP",
                addr,
                source,
            })?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse && attempts < 8 => continue,
            Err(source) => {
                return Err(DnsError::Bind {
                    proto: "TCP",
                    addr: tcp_addr,
                    source,
                });
            }
        }
    }
}

/// One listener's configuration.
#[derive(Debug)]
struct ListenCtx {
    addr: SocketAddr,
    scope: String,
    resolve_names: bool,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

impl ListenCtx {
    /// The local answer to `request` when it is about this scope's names.
    fn local(&self, request: &Message, transport: Transport, client: IpAddr) -> Option<Vec<u8>> {
        if !self.resolve_names {
            return None;
        }
        let limit = match transport {
            Transport::Udp => answer::udp_limit(request),
            Transport::Tcp => usize::from(u16::MAX),
        };
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        let scopes = self
            .shared
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned();
        match scopes {
            Some(scopes) => scopes.iter().find_map(|scope| {
                let records = self.shared.records.get(scope)?;
                answer::local_answer(request, &records, limit)
            }),
            None => {
                let records = self.shared.records.get(&self.scope)?;
                answer::local_answer(request, &records, limit)
            }
        }
    }

    /// Forwards `packet` (the encoded `request`) upstream; SERVFAIL when no upstream answers.
    async fn forward(&self, packet: &[u8], request: &Message, transport: Transport) -> Option<Vec<u8>> {
        let upstreams: Vec<SocketAddr> = {
            let all = self.shared.upstreams.current();
            let listening = self.shared.listening.read().unwrap_or_else(|e| e.into_inner());
            all.iter()
                .copied()
                .filter(|u| *u != self.addr && !upstream::is_self(*u, &listening))
                .collect()
        };
        let answer = match transport {
            Transport::Udp => forward::forward_udp(packet, &upstreams).await,
            Transport::Tcp => forward::forward_tcp(packet, &upstreams).await,
        };
        match answer {
            Some(answer) => Some(answer),
            None => {
                tracing::debug!(addr = %self.addr, upstreams = upstreams.len(), "no upstream answered");
                answer::servfail(request)
            }
        }
    }
}

/// Decodes a query; `None` (drop it) when malformed or not a query.
fn decode_query(packet: &[u8]) -> Option<Message> {
    let message = Message::from_vec(packet).ok()?;
    (message.metadata.message_type == MessageType::Query).then_some(message)
}

async fn serve_udp(socket: UdpSocket, ctx: Arc<ListenCtx>) {
    // Forwarding tasks hand their answer back here, so that only this task owns the socket and aborting
    // it closes the socket.
    let (answers_tx, mut answers_rx) = mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let mut in_flight = JoinSet::new();
    let mut buf = vec![0u8; UDP_QUERY_BUF];
    loop {
        while in_flight.try_join_next().is_some() {}
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(addr = %ctx.addr, %error, "receiving a DNS datagram");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if len >= buf.len() {
                    continue; // cut by our buffer: not a query we can answer
                }
                let packet = buf.get(..len).unwrap_or_default();
                let Some(request) = decode_query(packet) else {
                    tracing::debug!(addr = %ctx.addr, %peer, len, "dropping a malformed DNS datagram");
                    continue;
                };
                if let Some(answer) = ctx.local(&request, Transport::Udp, peer.ip()) {
                    send_answer(&socket, &answer, peer).await;
                    continue;
                }
                if in_flight.len() >= MAX_UDP_IN_FLIGHT {
                    tracing::debug!(addr = %ctx.addr, %peer, "too many queries in flight, dropping one");
                    continue;
                }
                let packet = packet.to_vec();
                let ctx = Arc::clone(&ctx);
                let answers_tx = answers_tx.clone();
                in_flight.spawn(async move {
                    if let Some(answer) = ctx.forward(&packet, &request, Transport::Udp).await {
                        let _ = answers_tx.send((answer, peer)).await;
                    }
                });
            }
            Some((answer, peer)) = answers_rx.recv() => send_answer(&socket, &answer, peer).await,
        }
    }
}

async fn send_answer(socket: &UdpSocket, answer: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(answer, peer).await {
        tracing::debug!(%peer, %error, "sending a DNS answer");
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<ListenCtx>) {
    // Connections live in this set: aborting the accept task drops the set, which aborts them too.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                while connections.try_join_next().is_some() {}
                if connections.len() >= MAX_TCP_CONNECTIONS {
                    tracing::debug!(addr = %ctx.addr, %peer, "too many DNS connections, closing one");
                    continue;
                }
                connections.spawn(serve_connection(stream, Arc::clone(&ctx)));
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::debug!(addr = %ctx.addr, %error, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves length-prefixed queries on one connection, one after the other, until EOF, idleness or garbage.
async fn serve_connection(mut stream: TcpStream, ctx: Arc<ListenCtx>) {
    let peer = match stream.peer_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        if len < 12 {
            return;
        }
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(request) = decode_query(&packet) else {
            tracing::debug!(addr = %ctx.addr, "closing a DNS connection that sent a malformed message");
            return;
        };
        let answer = match ctx.local(&request, Transport::Tcp, peer) {
            Some(answer) => Some(answer),
            None => ctx.forward(&packet, &request, Transport::Tcp).await,
        };
        let Some(answer) = answer else { return };
        let Ok(answer_len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&answer_len.to_be_bytes());
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
