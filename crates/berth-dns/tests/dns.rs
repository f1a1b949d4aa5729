//! The DNS server over real sockets on 127.0.0.0/8: local answers, forwarding to a fake upstream, errors.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_dns::{DnsServer, Entry};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

/// A random loopback address 127.0.0.2-254, so parallel tests rarely share an address.
fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, fastrand::u8(2..=254)))
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

async fn ask_udp(server: SocketAddr, request: &Message, wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.send_to(&request.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, from) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    assert_eq!(from, server);
    Some(Message::from_vec(&buf[..len]).unwrap())
}

async fn udp(server: SocketAddr, request: &Message) -> Message {
    let response = ask_udp(server, request, WAIT).await.expect("no UDP answer");
    assert_eq!(response.metadata.id, request.metadata.id);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    response
}

async fn tcp_exchange(stream: &mut TcpStream, request: &Message) -> Message {
    let bytes = request.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let len = tokio::time::timeout(WAIT, stream.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    let response = Message::from_vec(&answer).unwrap();
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

async fn tcp(server: SocketAddr, request: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    tcp_exchange(&mut stream, request).await
}

fn a_addrs(response: &Message) -> Vec<Ipv4Addr> {
    response
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(A(addr)) => *addr,
            other => panic!("not an A record: {other:?}"),
        })
        .collect()
}

fn entry(names: &[&str], addr: [u8; 4]) -> Entry {
    Entry {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        addr: Ipv4Addr::from(addr),
    }
}

/// A resolv.conf in a temporary directory.
struct ResolvConf {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ResolvConf {
    fn new(nameservers: &[IpAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let conf = Self { _dir: dir, path };
        conf.write(nameservers);
        conf
    }

    fn write(&self, nameservers: &[IpAddr]) {
        let mut text = String::from("# test\nsearch example.test\n");
        for ns in nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        // Write and rename, so the file's identity changes even within one mtime tick.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// A fake upstream resolver on 127.0.0.1 or ::1 (UDP and TCP, same port): answers every A question with 192.0.2.1
/// over UDP and 192.0.2.2 over TCP; names starting with "big." get a truncated (TC) UDP answer.
struct FakeUpstream {
    port: u16,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn fake_answer(packet: &[u8], over_tcp: bool) -> Vec<u8> {
    let request = Message::from_vec(packet).unwrap();
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    let q = &request.queries[0];
    if !over_tcp && q.name().to_ascii().starts_with("big.") {
        response.metadata.truncation = true;
    } else if q.query_type() == RecordType::A {
        let addr = if over_tcp {
            Ipv4Addr::new(192, 0, 2, 2)
        } else {
            Ipv4Addr::new(192, 0, 2, 1)
        };
        response.add_answer(Record::from_rdata(q.name().clone(), 30, RData::A(A(addr))));
    } else if q.query_type() == RecordType::PTR {
        let target = Name::from_ascii("upstream.example.").unwrap();
        response.add_answer(Record::from_rdata(q.name().clone(), 30, RData::PTR(PTR(target))));
    }
    response.to_vec().unwrap()
}

impl FakeUpstream {
    async fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.unwrap()
    }

    async fn start_on(ip: IpAddr) -> std::io::Result<Self> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((ip, 0)).await?;
            let port = udp.local_addr()?.port();
            if let Ok(tcp) = TcpListener::bind((ip, port)).await {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().unwrap().port();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&udp_queries);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                udp.send_to(&fake_answer(&buf[..len], false), peer).await.unwrap();
            }
        });
        let count = Arc::clone(&tcp_queries);
        let tcp_task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut packet = vec![0u8; usize::from(len)];
                        stream.read_exact(&mut packet).await.unwrap();
                        count.fetch_add(1, Ordering::SeqCst);
                        let answer = fake_answer(&packet, true);
                        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        stream.write_all(&framed).await.unwrap();
                    }
                });
            }
        });
        Ok(Self {
            port,
            udp_queries,
            tcp_queries,
            tasks: vec![udp_task, tcp_task],
        })
    }
}

/// A port on `ip` that nothing listens on (UDP and TCP) right now.
async fn unused_port(ip: IpAddr) -> u16 {
    loop {
        let udp = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((ip, port)).await.is_ok() {
            return port;
        }
    }
}

/// A server listening on a random loopback address, port chosen by the kernel; stopped on drop.
struct Running {
    server: DnsServer,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.stop(self.addr);
    }
}

async fn start(server: &DnsServer, scope: &str, resolve_names: bool) -> Running {
    let ip = loopback();
    let before = server.listening();
    server
        .listen(SocketAddr::new(ip, 0), scope, resolve_names)
        .await
        .unwrap();
    let addr = server
        .listening()
        .into_iter()
        .find(|a| !before.contains(a))
        .unwrap();
    assert_eq!(addr.ip(), ip);
    assert_ne!(addr.port(), 0);
    Running {
        server: server.clone(),
        addr,
    }
}

fn sample_entries() -> Vec<Entry> {
    vec![
        entry(&["web", "web.mynet", "0123456789ab", "shared"], [10, 89, 0, 2]),
        entry(&["db", "db.mynet", "shared"], [10, 89, 0, 3]),
        entry(&["cache", "shared"], [10, 89, 0, 4]),
    ]
}

#[tokio::test]
async fn answers_a_records_over_udp_and_tcp() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;

    for response in [
        udp(running.addr, &query("web.", RecordType::A)).await,
        tcp(running.addr, &query("web.", RecordType::A)).await,
    ] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert!(response.metadata.recursion_desired);
        assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(10, 89, 0, 2)]);
        assert_eq!(response.answers[0].name, Name::from_ascii("web.").unwrap());
    }
    // The short id and the <name>.<network> form, as supplied by the caller.
    let response = udp(running.addr, &query("0123456789ab.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(10, 89, 0, 2)]);
    let response = tcp(running.addr, &query("db.mynet.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(10, 89, 0, 3)]);
    // "db.mynet" is a full name; "mynet" alone or a longer name is not.
    let response = udp(running.addr, &query("mynet.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    let response = udp(running.addr, &query("x.web.mynet.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);

    // A shared alias answers every address, in a varying order.
    let expected: BTreeSet<Ipv4Addr> = [[10, 89, 0, 2], [10, 89, 0, 3], [10, 89, 0, 4]]
        .into_iter()
        .map(Ipv4Addr::from)
        .collect();
    let mut orders = BTreeSet::new();
    for i in 0..30 {
        let request = query("shared.", RecordType::A);
        let response = if i % 2 == 0 {
            udp(running.addr, &request).await
        } else {
            tcp(running.addr, &request).await
        };
        let addrs = a_addrs(&response);
        assert_eq!(addrs.iter().copied().collect::<BTreeSet<_>>(), expected);
        assert_eq!(addrs.len(), 3);
        orders.insert(addrs);
    }
    assert!(
        orders.len() > 1,
        "30 answers for a shared alias all came in the same order"
    );

    // ANY is answered like A.
    let response = udp(running.addr, &query("db.", RecordType::ANY)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(10, 89, 0, 3)]);
}

#[tokio::test]
async fn names_are_case_insensitive_and_the_trailing_dot_is_optional() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", vec![entry(&["Web.MyNet."], [10, 89, 0, 2])]);
    let running = start(&server, "net1", true).await;

    for name in ["web.mynet.", "WEB.MYNET.", "wEb.mYnEt", "web.mynet"] {
        let response = udp(running.addr, &query(name, RecordType::A)).await;
        assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(10, 89, 0, 2)], "{name}");
        // The answer carries the name as asked.
        assert_eq!(
            response.answers[0].name.to_ascii().trim_end_matches('.'),
            name.trim_end_matches('.')
        );
    }
}

#[tokio::test]
async fn other_types_of_a_known_name_are_empty_noerror() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;

    for rtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        for response in [
            udp(running.addr, &query("web.", rtype)).await,
            tcp(running.addr, &query("web.", rtype)).await,
        ] {
            assert_eq!(response.metadata.response_code, ResponseCode::NoError, "{rtype}");
            assert!(response.metadata.authoritative);
            assert!(response.answers.is_empty(), "{rtype}: {:?}", response.answers);
            assert_eq!(response.queries[0].query_type(), rtype);
        }
    }
}

#[tokio::test]
async fn ptr_of_a_known_address_is_its_first_name_and_unknown_ones_are_forwarded() {
    let upstream = FakeUpstream::start().await;
    let conf = ResolvConf::new(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), upstream.port);
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;

    for response in [
        udp(running.addr, &query("2.0.89.10.in-addr.arpa.", RecordType::PTR)).await,
        tcp(running.addr, &query("2.0.89.10.IN-ADDR.ARPA", RecordType::PTR)).await,
    ] {
        assert!(response.metadata.authoritative);
        assert_eq!(response.answers.len(), 1);
        match &response.answers[0].data {
            RData::PTR(PTR(target)) => assert_eq!(*target, Name::from_ascii("web.").unwrap()),
            other => panic!("not a PTR: {other:?}"),
        }
    }
    assert_eq!(
        upstream.udp_queries.load(Ordering::SeqCst) + upstream.tcp_queries.load(Ordering::SeqCst),
        0
    );

    let response = udp(running.addr, &query("9.9.89.10.in-addr.arpa.", RecordType::PTR)).await;
    assert!(!response.metadata.authoritative);
    match &response.answers[0].data {
        RData::PTR(PTR(target)) => assert_eq!(*target, Name::from_ascii("upstream.example.").unwrap()),
        other => panic!("not a PTR: {other:?}"),
    }
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_names_are_forwarded_over_the_same_transport() {
    let upstream = FakeUpstream::start().await;
    let conf = ResolvConf::new(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), upstream.port);
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;

    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(!response.metadata.authoritative);
    assert_eq!(
        (
            upstream.udp_queries.load(Ordering::SeqCst),
            upstream.tcp_queries.load(Ordering::SeqCst)
        ),
        (1, 0)
    );

    let response = tcp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(
        (
            upstream.udp_queries.load(Ordering::SeqCst),
            upstream.tcp_queries.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    // A truncated UDP answer is relayed as it is (the client then retries over TCP).
    let response = udp(running.addr, &query("big.example.com.", RecordType::A)).await;
    assert!(response.metadata.truncation);
    assert!(response.answers.is_empty());
    let response = tcp(running.addr, &query("big.example.com.", RecordType::A)).await;
    assert!(!response.metadata.truncation);
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 2)]);

    // Several queries on one TCP connection, local and forwarded mixed.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    for (name, want) in [
        ("web.", [10, 89, 0, 2]),
        ("other.example.", [192, 0, 2, 2]),
        ("db.", [10, 89, 0, 3]),
    ] {
        let response = tcp_exchange(&mut stream, &query(name, RecordType::A)).await;
        assert_eq!(a_addrs(&response), vec![Ipv4Addr::from(want)], "{name}");
    }
}

#[tokio::test]
async fn without_name_resolution_even_known_names_are_forwarded() {
    let upstream = FakeUpstream::start().await;
    let conf = ResolvConf::new(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), upstream.port);
    server.set_entries("bridge", sample_entries());
    let running = start(&server, "bridge", false).await;

    let response = udp(running.addr, &query("web.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    let response = tcp(running.addr, &query("web.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    let response = udp(running.addr, &query("2.0.89.10.in-addr.arpa.", RecordType::PTR)).await;
    assert!(!response.metadata.authoritative);
    assert_eq!(
        (
            upstream.udp_queries.load(Ordering::SeqCst),
            upstream.tcp_queries.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
}

#[tokio::test]
async fn upstreams_are_tried_in_order_and_servfail_when_all_fail() {
    let upstream = FakeUpstream::start().await;
    // 127.0.0.3 has nothing on the fake's port: refused at once, then the second upstream answers.
    let down = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let conf = ResolvConf::new(&[down, IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), upstream.port);
    let running = start(&server, "net1", true).await;

    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    let response = tcp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 2)]);

    // Only the dead one left: SERVFAIL, with the question echoed.
    conf.write(&[down]);
    for response in [
        udp(running.addr, &query("example.com.", RecordType::A)).await,
        tcp(running.addr, &query("example.com.", RecordType::A)).await,
    ] {
        assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(
            response.queries[0].name(),
            &Name::from_ascii("example.com.").unwrap()
        );
    }
    // None configured: SERVFAIL too.
    conf.write(&[]);
    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    // The file is re-read when it changes.
    conf.write(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn forwards_to_an_ipv6_upstream() {
    let Ok(upstream) = FakeUpstream::start_on(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)).await else {
        eprintln!("skipped: ::1 is not available on this host");
        return;
    };
    let conf = ResolvConf::new(&[IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), upstream.port);
    let running = start(&server, "net1", true).await;
    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    let response = tcp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(a_addrs(&response), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(
        (
            upstream.udp_queries.load(Ordering::SeqCst),
            upstream.tcp_queries.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_times_out_into_servfail() {
    // A UDP socket that reads nothing: the query is accepted by the kernel and never answered.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let conf = ResolvConf::new(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), port);
    let running = start(&server, "net1", true).await;

    let started = std::time::Instant::now();
    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(4500),
        "{waited:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn never_forwards_to_itself() {
    let ip = loopback();
    let port = unused_port(ip).await;
    let conf = ResolvConf::new(&[ip]);
    let server = DnsServer::with_upstream_port(conf.path.clone(), port);
    server
        .listen(SocketAddr::new(ip, port), "net1", true)
        .await
        .unwrap();
    let running = Running {
        server: server.clone(),
        addr: SocketAddr::new(ip, port),
    };

    let started = std::time::Instant::now();
    let response = udp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    let response = tcp(running.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn scopes_are_separate() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", vec![entry(&["web"], [10, 89, 0, 2])]);
    server.set_entries("net2", vec![entry(&["web"], [10, 90, 0, 2])]);
    let one = start(&server, "net1", true).await;
    let two = start(&server, "net2", true).await;
    let three = start(&server, "net3", true).await;

    assert_eq!(
        a_addrs(&udp(one.addr, &query("web.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 2)]
    );
    assert_eq!(
        a_addrs(&udp(two.addr, &query("web.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 90, 0, 2)]
    );
    let response = udp(three.addr, &query("web.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    let mut listening = server.listening();
    listening.sort();
    let mut expected = vec![one.addr, two.addr, three.addr];
    expected.sort();
    assert_eq!(listening, expected);
}

#[tokio::test]
async fn a_client_on_several_scopes_resolves_the_names_of_all_of_them() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", vec![entry(&["web"], [10, 89, 0, 2])]);
    server.set_entries(
        "net2",
        vec![entry(&["web"], [10, 90, 0, 2]), entry(&["db"], [10, 90, 0, 3])],
    );
    let one = start(&server, "net1", true).await;
    // The test's queries come from 127.0.0.1.
    server.set_client_scopes(Ipv4Addr::LOCALHOST.into(), vec!["net1".into(), "net2".into()]);
    assert_eq!(
        a_addrs(&udp(one.addr, &query("db.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 90, 0, 3)],
        "a name of the client's other scope"
    );
    assert_eq!(
        a_addrs(&tcp(one.addr, &query("web.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 2)],
        "the first scope in the client's order wins"
    );
    server.set_client_scopes(Ipv4Addr::LOCALHOST.into(), Vec::new());
    let response = udp(one.addr, &query("db.", RecordType::A)).await;
    assert_eq!(
        response.metadata.response_code,
        ResponseCode::ServFail,
        "forgotten: only the listener's scope"
    );
}

#[tokio::test]
async fn set_entries_replaces_the_scope() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;
    assert_eq!(
        a_addrs(&udp(running.addr, &query("db.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 3)]
    );

    server.set_entries("net1", vec![entry(&["db2"], [10, 89, 0, 7])]);
    let response = udp(running.addr, &query("db.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        a_addrs(&udp(running.addr, &query("db2.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 7)]
    );

    server.set_entries("net1", vec![]);
    let response = udp(running.addr, &query("db2.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn stop_closes_the_sockets() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    let ip = loopback();
    server.listen(SocketAddr::new(ip, 0), "net1", true).await.unwrap();
    let addr = server.listening()[0];
    assert_eq!(a_addrs(&udp(addr, &query("web.", RecordType::A)).await).len(), 1);
    // A connection open before stop is closed by it too.
    let mut open = TcpStream::connect(addr).await.unwrap();

    server.stop(addr);
    server.stop(addr); // unknown now: no-op
    assert!(server.listening().is_empty());
    assert!(
        ask_udp(addr, &query("web.", RecordType::A), Duration::from_millis(500))
            .await
            .is_none()
    );
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, open.read(&mut byte)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The sockets are closed: the address can be bound again, by us and by the server.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(UdpSocket::bind(addr).await.unwrap());
    drop(TcpListener::bind(addr).await.unwrap());
    assert!(TcpStream::connect(addr).await.is_err());
    server.listen(addr, "net1", true).await.unwrap();
    assert_eq!(server.listening(), vec![addr]);
    assert_eq!(a_addrs(&tcp(addr, &query("web.", RecordType::A)).await).len(), 1);
    server.stop(addr);
    // Listening again right after stop waits for the old sockets to close.
    server.listen(addr, "net1", true).await.unwrap();
    assert_eq!(a_addrs(&udp(addr, &query("web.", RecordType::A)).await).len(), 1);
    server.stop(addr);
}

#[tokio::test]
async fn malformed_packets_are_ignored_and_the_server_keeps_answering() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    let running = start(&server, "net1", true).await;

    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut response_packet = query("web.", RecordType::A);
    response_packet.metadata.message_type = MessageType::Response;
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        b"definitely not a DNS message at all".to_vec(),
        // Header claiming one question, with a label running past the end.
        vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a', b'b'],
        // A compression pointer pointing at itself.
        vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        response_packet.to_vec().unwrap(),
        vec![0u8; 5000],
    ];
    for _ in 0..20 {
        garbage.push((0..fastrand::usize(0..600)).map(|_| fastrand::u8(..)).collect());
    }
    for packet in &garbage {
        client.send_to(packet, running.addr).await.unwrap();
    }
    let mut buf = [0u8; 1500];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(
        a_addrs(&udp(running.addr, &query("web.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 2)]
    );

    // TCP: garbage closes the connection; a too-short length too; the server still accepts new ones.
    for payload in [
        vec![0u8, 20].into_iter().chain([0xffu8; 20]).collect::<Vec<u8>>(),
        vec![0, 3, 1, 2, 3],
    ] {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        stream.write_all(&payload).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(
        a_addrs(&tcp(running.addr, &query("db.", RecordType::A)).await),
        vec![Ipv4Addr::new(10, 89, 0, 3)]
    );
}

#[tokio::test]
async fn bind_failures_name_the_address_and_leave_nothing_listening() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());

    // TEST-NET-1 is not configured on this host: the bind fails (no packet is sent).
    let foreign = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 0);
    let error = server.listen(foreign, "net1", true).await.unwrap_err();
    assert!(error.to_string().contains("192.0.2.1"), "{error}");
    assert!(server.listening().is_empty());

    // UDP binds but TCP's port is taken: the UDP socket is released again.
    let ip = loopback();
    let port = unused_port(ip).await;
    let taken = TcpListener::bind((ip, port)).await.unwrap();
    let addr = SocketAddr::new(ip, port);
    let error = server.listen(addr, "net1", true).await.unwrap_err();
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert!(error.to_string().contains("TCP"), "{error}");
    assert!(server.listening().is_empty());
    drop(UdpSocket::bind(addr).await.unwrap());
    drop(taken);

    // Listening twice on one address is refused, the first listener keeps serving.
    server.listen(addr, "net1", true).await.unwrap();
    let error = server.listen(addr, "net2", true).await.unwrap_err();
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert_eq!(server.listening(), vec![addr]);
    server.set_entries("net1", sample_entries());
    assert_eq!(a_addrs(&udp(addr, &query("web.", RecordType::A)).await).len(), 1);
    server.stop(addr);
}

#[tokio::test]
async fn dropping_the_last_server_handle_stops_its_listeners() {
    let conf = ResolvConf::new(&[]);
    let server = DnsServer::new(conf.path.clone());
    server.set_entries("net1", sample_entries());
    server
        .listen(SocketAddr::new(loopback(), 0), "net1", true)
        .await
        .unwrap();
    let addr = server.listening()[0];
    assert_eq!(a_addrs(&udp(addr, &query("web.", RecordType::A)).await).len(), 1);
    drop(server);
    assert!(
        ask_udp(addr, &query("web.", RecordType::A), Duration::from_millis(500))
            .await
            .is_none()
    );
}
