//! Forwarding a query unchanged to the upstream resolvers, in order, UDP over UDP and TCP over TCP.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one upstream gave no answer (logged; the next upstream is tried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("the upstream resolver {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
    #[error("exchanging a query with the upstream resolver {upstream} over {proto} failed: {source}")]
    Io {
        upstream: SocketAddr,
        proto: &'static str,
        source: io::Error,
    },
    #[error("the upstream resolver {upstream} sent a {len}-byte answer, shorter than a DNS header")]
    Short { upstream: SocketAddr, len: usize },
    #[error("the upstream resolver {upstream} answered with id {got}, not the query's id {want}")]
    WrongId {
        upstream: SocketAddr,
        got: u16,
        want: u16,
    },
}

/// The id of a DNS message (its first two bytes).
pub(crate) fn message_id(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
}

/// Whether the QR bit of a DNS message says "response".
fn is_response(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| b & 0x80 != 0)
}

/// Sends `query` to each upstream over UDP until one answers; the answer is returned as received (same id,
/// truncated answers included). `None` when all failed.
pub(crate) async fn forward_udp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    forward(query, upstreams, "UDP", udp_exchange).await
}

/// Sends `query` to each upstream over TCP (2-byte length framing) until one answers.
pub(crate) async fn forward_tcp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    forward(query, upstreams, "TCP", tcp_exchange).await
}

/// Tries `exchange` with each upstream in order, each within [`UPSTREAM_TIMEOUT`].
async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    transport: &str,
    exchange: impl AsyncFn(&[u8], u16, SocketAddr) -> Result<Vec<u8>, ForwardError>,
) -> Option<Vec<u8>> {
    let id = message_id(query)?;
    for &upstream in upstreams {
        let result = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange(query, id, upstream))
            .await
            .unwrap_or(Err(ForwardError::Timeout {
                upstream,
                timeout: UPSTREAM_TIMEOUT,
            }));
        match result {
            Ok(answer) => return Some(answer),
            Err(error) => tracing::debug!(%error, transport, "forwarding"),
        }
    }
    None
}

async fn udp_exchange(query: &[u8], id: u16, upstream: SocketAddr) -> Result<Vec<u8>, ForwardError> {
    let io = |source| ForwardError::Io {
        upstream,
        proto: "UDP",
        source,
    };
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket with a random port, connected: the kernel only delivers datagrams from the upstream.
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buf).await.map_err(io)?;
        let answer = buf.get(..len).unwrap_or_default();
        match message_id(answer) {
            // Stray datagrams (an old answer, a non-response) are skipped; the timeout bounds the wait.
            Some(got) if got == id && is_response(answer) && len >= 12 => {
                buf.truncate(len);
                return Ok(buf);
            }
            _ => tracing::debug!(%upstream, len, "ignoring a stray datagram from the upstream"),
        }
    }
}

async fn tcp_exchange(query: &[u8], id: u16, upstream: SocketAddr) -> Result<Vec<u8>, ForwardError> {
    let io = |source| ForwardError::Io {
        upstream,
        proto: "TCP",
        source,
    };
    let len = u16::try_from(query.len()).map_err(|_| {
        io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "query longer than 65535 bytes",
        ))
    })?;
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let answer_len = usize::from(stream.read_u16().await.map_err(io)?);
    if answer_len < 12 {
        return Err(ForwardError::Short {
            upstream,
            len: answer_len,
        });
    }
    let mut answer = vec![0u8; answer_len];
    stream.read_exact(&mut answer).await.map_err(io)?;
    match message_id(&answer) {
        Some(got) if got == id => Ok(answer),
        got => Err(ForwardError::WrongId {
            upstream,
            got: got.unwrap_or_default(),
            want: id,
        }),
    }
}
