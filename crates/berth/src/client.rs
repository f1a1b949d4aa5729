//! The HTTP side of the CLI: the Engine API over a unix socket or TCP (with TLS and client certificates), with
//! version negotiation as the docker CLI does it.
//!
//! This uses hyper's HTTP/1 connection API directly rather than bollard. The CLI needs the raw JSON of responses
//! (`--format` templates see every field the daemon sends, including ones a typed client would drop), streams
//! request and response bodies both ways (`load`, `import`, `save`, pull progress, events), and decodes docker's
//! errors itself; a connection per command over hyper is about 200 lines and keeps the dependency tree to what the
//! daemon already uses.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// The API version this CLI speaks at most.
pub const CLIENT_API_VERSION: &str = "1.47";

/// A request body.
pub type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection.
    #[error("Cannot connect to the Berth daemon at {host}. Is the berth daemon running? ({source})")]
    Connect {
        /// The host.
        host: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS setup or handshake failed.
    #[error("TLS with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("the request to the daemon failed: {0}")]
    Http(String),
    /// The daemon answered with an error.
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// The status.
        status: StatusCode,
        /// docker's `message`.
        message: String,
    },
    /// A response that is not what the API documents.
    #[error("unexpected response from the daemon: {0}")]
    Decode(String),
}

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///path` or `tcp://host:port` (docker's `-H` syntax).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("invalid host {s:?}: the socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            if a.is_empty() {
                return Err(format!("invalid host {s:?}: the address is empty"));
            }
            let has_port = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            return Ok(Self::Tcp(if has_port {
                a.to_string()
            } else {
                format!("{a}:2376")
            }));
        }
        Err(format!(
            "invalid host {s:?}: expected unix:///path or tcp://host:port"
        ))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// TLS files for a TCP endpoint.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The CA that signed the daemon's certificate (otherwise nothing is trusted).
    pub ca: Option<PathBuf>,
    /// The client certificate.
    pub cert: Option<PathBuf>,
    /// The client key.
    pub key: Option<PathBuf>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A client for one daemon.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    version: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn tls_config(endpoint: &Endpoint, t: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let host = endpoint.to_string();
    let err = |reason: String| ClientError::Tls {
        host: host.clone(),
        reason,
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        t.ca.as_ref()
            .ok_or_else(|| err("no CA certificate given (--tlscacert)".to_string()))?;
    for c in CertificateDer::pem_slice_iter(&read(ca)?) {
        let c = c.map_err(|e| err(format!("{}: {e}", ca.display())))?;
        roots.add(c).map_err(|e| err(format!("{}: {e}", ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| err(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| err(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `path?k=v&...` skipping empty values.
pub fn query(path: &str, params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// An empty body.
pub fn empty() -> ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A streamed body from a reader.
pub fn reader_body(r: impl AsyncRead + Send + 'static) -> ReqBody {
    let stream = tokio_util::io::ReaderStream::new(r);
    let stream = futures_util::StreamExt::map(stream, |r| r.map(hyper::body::Frame::data));
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

/// A request to `uri` with the headers every request carries (`Host`, the CLI's `User-Agent`).
fn request(method: Method, uri: String) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "berth")
        .header(
            "user-agent",
            format!("Berth-Client/{} (linux)", env!("CARGO_PKG_VERSION")),
        )
}

/// A response's whole body (empty when reading it fails).
async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// An error status as [`ClientError::Daemon`], with docker's `message` from a JSON body, else the body's text.
fn daemon_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_string());
    ClientError::Daemon { status, message }
}

impl Client {
    /// A client for `endpoint`; TLS only for TCP endpoints when `tls` is given.
    pub fn new(endpoint: Endpoint, tls: Option<TlsOptions>) -> Result<Self, ClientError> {
        let tls = match (&endpoint, tls) {
            (Endpoint::Tcp(addr), Some(t)) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
                    ClientError::Tls {
                        host: endpoint.to_string(),
                        reason: e.to_string(),
                    }
                })?;
                Some((tls_config(&endpoint, &t)?, name))
            }
            _ => None,
        };
        Ok(Self {
            endpoint,
            tls,
            version: CLIENT_API_VERSION.to_string(),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The negotiated API version.
    pub fn version(&self) -> &str {
        &self.version
    }

    async fn connect(&self) -> Result<Pin<Box<dyn Io>>, ClientError> {
        let cerr = |source| ClientError::Connect {
            host: self.endpoint.to_string(),
            source,
        };
        match &self.endpoint {
            Endpoint::Unix(p) => Ok(Box::pin(tokio::net::UnixStream::connect(p).await.map_err(cerr)?)),
            Endpoint::Tcp(a) => {
                let tcp = tokio::net::TcpStream::connect(a).await.map_err(cerr)?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    None => Ok(Box::pin(tcp)),
                    Some((config, name)) => {
                        let c = tokio_rustls::TlsConnector::from(config.clone());
                        let s = c.connect(name.clone(), tcp).await.map_err(|e| ClientError::Tls {
                            host: self.endpoint.to_string(),
                            reason: e.to_string(),
                        })?;
                        Ok(Box::pin(s))
                    }
                }
            }
        }
    }

    /// A new connection with the HTTP/1 handshake done, its driver spawned (`upgrades`: able to hand the
    /// connection over after `101 Switching Protocols`).
    async fn handshake(
        &self,
        upgrades: bool,
    ) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>, ClientError> {
        let io = self.connect().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Ok(sender)
    }

    /// Sends a request to `/v<version><path>` (or `path` as is when it starts with `/_ping`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: ReqBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut sender = self.handshake(false).await?;
        let uri = if path.starts_with("/_ping") {
            path.to_string()
        } else {
            format!("/v{}{path}", self.version)
        };
        let mut req = request(method, uri);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(body).map_err(|e| ClientError::Http(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Like [`Self::send`], turning an error status into [`ClientError::Daemon`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: ReqBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let resp = self.send(method, path, headers, body).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = body_bytes(resp).await;
        Err(daemon_error(status, &bytes))
    }

    /// Sends a request that asks for an HTTP upgrade (`Connection: Upgrade`, `Upgrade: tcp`, as the docker CLI
    /// does for attach and exec start) and returns the hijacked connection with the response's content type
    /// (`application/vnd.docker.multiplexed-stream` or `application/vnd.docker.raw-stream`). An error status is
    /// [`ClientError::Daemon`]; a success that is not `101 Switching Protocols` is [`ClientError::Decode`].
    pub async fn upgrade(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
    ) -> Result<(Option<String>, TokioIo<hyper::upgrade::Upgraded>), ClientError> {
        let mut sender = self.handshake(true).await?;
        let req = request(method, format!("/v{}{path}", self.version))
            .header("content-type", "application/json")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let upgraded = hyper::upgrade::on(resp)
                .await
                .map_err(|e| ClientError::Http(format!("the connection upgrade failed: {e}")))?;
            return Ok((content_type, TokioIo::new(upgraded)));
        }
        let bytes = body_bytes(resp).await;
        if status.is_success() {
            return Err(ClientError::Decode(format!(
                "the daemon answered {status} instead of upgrading the connection"
            )));
        }
        Err(daemon_error(status, &bytes))
    }

    /// GETs JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let resp = self.call(Method::GET, path, &[], empty()).await?;
        body_json(resp).await
    }

    /// `HEAD /_ping`, then uses the lower of the daemon's and this client's API versions, as docker does.
    pub async fn negotiate(&mut self) -> Result<(), ClientError> {
        let resp = self.send(Method::HEAD, "/_ping", &[], empty()).await?;
        let server = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.version = match server {
            Some(v) if version_lt(&v, CLIENT_API_VERSION) => v,
            Some(_) => CLIENT_API_VERSION.to_string(),
            None => "1.24".to_string(),
        };
        Ok(())
    }
}

/// Whether API version `a` < `b`.
pub fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| -> (u32, u32) {
        let (x, y) = s.split_once('.').unwrap_or((s, "0"));
        (x.parse().unwrap_or(0), y.parse().unwrap_or(0))
    };
    p(a) < p(b)
}

/// Reads a whole JSON body.
pub async fn body_json(resp: Response<Incoming>) -> Result<serde_json::Value, ClientError> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Splits a streamed body into JSON values, one per line (or concatenated objects).
pub struct JsonLines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl JsonLines {
    /// Reads `resp`'s body as a stream of JSON values.
    pub fn new(resp: Response<Incoming>) -> Self {
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next value, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if !self.buf.is_empty() {
                let mut de = serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
                match de.next() {
                    Some(Ok(v)) => {
                        let used = de.byte_offset();
                        self.buf.drain(..used);
                        return Ok(Some(v));
                    }
                    Some(Err(e)) if !e.is_eof() => return Err(ClientError::Decode(e.to_string())),
                    _ => {}
                }
            }
            if self.done {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ClientError::Decode(
                        "the stream ended inside a JSON value".to_string(),
                    ))
                };
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_queries() {
        assert_eq!(
            Endpoint::parse("unix:///a/b.sock").unwrap(),
            Endpoint::Unix("/a/b.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://1.2.3.4").unwrap(),
            Endpoint::Tcp("1.2.3.4:2376".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://h:2375").unwrap().to_string(),
            "tcp://h:2375"
        );
        assert!(Endpoint::parse("ssh://x").is_err());
        assert_eq!(
            query("/images/create", &[("fromImage", "a/b"), ("tag", "")]),
            "/images/create?fromImage=a%2Fb"
        );
        assert!(version_lt("1.41", "1.47"));
        assert!(!version_lt("1.47", "1.47"));
    }
}
