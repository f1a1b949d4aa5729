//! The registry client: the OCI distribution spec (the `/v2/` API).
//!
//! - [`RegistryClient::resolve`] fetches a manifest by tag or digest (every kind: Docker schema2, Docker manifest
//!   list, OCI manifest, OCI index), verifies its digest (the `Docker-Content-Digest` header, and the requested
//!   digest when pulling by digest, both by hashing the bytes), and picks the platform's manifest from an index.
//! - [`RegistryClient::fetch_blob`] streams a blob: redirects are followed by hand so that `Authorization` never
//!   goes to another host, transient failures (5xx, 429, resets, timeouts) are retried with backoff bounded in
//!   count and time, and a broken download resumes where it stopped with `Range`. Nothing is buffered whole; the
//!   caller verifies with a [`Verifier`](crate::digest::Verifier) while it unpacks.
//! - Push: [`RegistryClient::push_blob`] (POST, then one streamed PUT), [`RegistryClient::push_blob_chunked`]
//!   (PATCH chunks), [`RegistryClient::mount_blob`] (cross-repository mount), [`RegistryClient::push_manifest`].
//! - Auth ([`auth`]): Bearer tokens from the `WWW-Authenticate` realm (anonymous or with basic credentials),
//!   cached per registry and scope; HTTP basic against the registry.
//! - Transport ([`endpoint`]): HTTPS with verified certificates (rustls, ring), except for insecure registries
//!   (`insecure-registries`, localhost, 127.0.0.0/8, ::1), which are tried with unverified HTTPS, then HTTP.
//!
//! The HTTP client is `reqwest` (default features off; `rustls-no-provider` with the `ring` provider installed
//! here, and `stream`). It gives connection pooling, streaming bodies and rustls in a small API; automatic
//! redirects are turned off because the distribution spec needs control over which hop gets credentials.
//! Names are resolved by [`resolver::Resolver`]: `localhost` maps to 127.0.0.1/::1 without NSS (this crate ends
//! up in static binaries, where glibc's NSS may not load), IP literals never reach a resolver, and other names go
//! to `getaddrinfo` on tokio's blocking pool.

pub mod auth;
mod blob;
pub mod endpoint;
pub mod manifest;
pub mod platform;
mod push;
mod resolver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use oci_spec::image::ImageManifest;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

pub use blob::BlobStream;
pub use endpoint::{InsecurePolicy, Scheme};
pub use platform::{Platform, PlatformError};

use crate::credentials::Credentials;
use crate::digest::{Digest, DigestError};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST, Reference};
use auth::{Challenge, Scope};
use manifest::{MAX_MANIFEST_SIZE, ManifestKind};

/// Errors of the registry client. Messages name the registry, reference or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection could be made, or it broke and retries did not help.
    #[error("the registry {registry} is not reachable: {reason}")]
    Unreachable { registry: String, reason: String },
    /// The registry answered, but not as a registry.
    #[error("{registry} is not a container registry: GET /v2/ answered {status}")]
    NotARegistry { registry: String, status: StatusCode },
    /// Wrong or missing credentials.
    #[error("unauthorized: {reason} for {registry}")]
    Unauthorized { registry: String, reason: &'static str },
    /// The credentials are right but lack access.
    #[error("denied: access to {repository} on {registry} is denied")]
    Denied { registry: String, repository: String },
    /// The token endpoint failed.
    #[error("cannot get a token for {registry} from {realm}: {reason}")]
    Token {
        registry: String,
        realm: String,
        reason: String,
    },
    /// No such tag, digest or repository.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// No such blob.
    #[error("blob unknown: {digest} in {repository}")]
    BlobUnknown { repository: String, digest: Digest },
    /// The manifest's bytes do not hash to the digest expected.
    #[error("the manifest of {reference} has digest {actual}, expected {expected}")]
    ManifestDigestMismatch {
        reference: String,
        actual: Digest,
        expected: Digest,
    },
    /// The manifest is not JSON of a known shape.
    #[error("the manifest of {reference} is invalid")]
    InvalidManifest {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest of a kind we cannot use (schema1, a nested index, an artifact).
    #[error("the manifest of {reference} has the unsupported media type {media_type:?}")]
    UnsupportedManifest { reference: String, media_type: String },
    /// A manifest larger than 4 MiB.
    #[error("the manifest of {reference} is larger than {MAX_MANIFEST_SIZE} bytes")]
    ManifestTooLarge { reference: String },
    /// The index has no manifest for the platform.
    #[error(
        "no matching manifest for {platform} in the manifest list entries of {reference} (available: {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    /// A digest in the registry's answer or in a document is malformed.
    #[error("the registry {registry} sent an invalid digest")]
    InvalidDigest {
        registry: String,
        #[source]
        source: DigestError,
    },
    /// A blob did not verify.
    #[error("the blob {digest} of {repository} is corrupt")]
    BlobDigest {
        repository: String,
        digest: Digest,
        #[source]
        source: DigestError,
    },
    /// A blob is longer than its descriptor says.
    #[error("the blob {digest} of {repository} is longer than the {size} bytes announced")]
    BlobTooLong {
        repository: String,
        digest: Digest,
        size: u64,
    },
    /// A download broke off and could not be resumed within the retry bounds.
    #[error(
        "the download of {digest} from {registry} broke off at byte {offset} of {size} and could not be resumed: {reason}"
    )]
    Interrupted {
        registry: String,
        digest: Digest,
        offset: u64,
        size: u64,
        reason: String,
    },
    /// The registry answered an unexpected status.
    #[error("the registry {registry} answered {status} to {what}: {message}")]
    Status {
        registry: String,
        what: String,
        status: StatusCode,
        message: String,
    },
    /// The registry's answer lacks something the protocol requires.
    #[error("the registry {registry} broke the protocol: {what}")]
    Protocol { registry: String, what: String },
    /// The upload body failed.
    #[error("cannot read the content to upload for {digest}")]
    UploadBody {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl RegistryError {
    /// Whether retrying later may help (the registry is down or broke off, or answered 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Interrupted { .. } => true,
            RegistryError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

/// The client's configuration (from the daemon's config).
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// `host[:port]` or CIDR entries; localhost, 127.0.0.0/8 and ::1 are always insecure-allowed.
    pub insecure_registries: Vec<String>,
    /// Credentials by registry (from `config.json`).
    pub credentials: Credentials,
    /// The `User-Agent` header; empty means `berth/<version>`.
    pub user_agent: String,
}

/// Bounds of retries of transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// The first backoff; doubled each time.
    pub first_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
    /// Resumptions of one blob download after it broke without progress in between.
    pub resumes: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
            max_elapsed: Duration::from_secs(60),
            resumes: 5,
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    fn may_retry(&self, attempt: u32, started: Instant) -> bool {
        attempt < self.attempts && started.elapsed() + self.backoff(attempt) < self.max_elapsed
    }
}

/// The result of [`RegistryClient::resolve`]: the platform's image manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest of the image manifest (verified).
    pub manifest_digest: Digest,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// Its bytes as served (hashing to `manifest_digest`).
    pub manifest_bytes: Bytes,
    /// Its media type (Docker schema2 or OCI manifest).
    pub media_type: String,
    /// The digest of the index or manifest list the manifest was chosen from, if any (docker's repo digest).
    pub index_digest: Option<Digest>,
    /// The index's bytes, if any.
    pub index_bytes: Option<Bytes>,
    /// The platform of the chosen index entry, if any.
    pub platform: Option<Platform>,
}

impl Resolved {
    /// The digest docker shows as the image's repo digest: the index's if there was one, else the manifest's.
    pub fn repo_digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.manifest_digest)
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// `https://host:port`
    base: String,
    scheme: Scheme,
    challenge: Option<Challenge>,
}

struct CachedToken {
    token: String,
    valid_until: Instant,
}

struct Inner {
    policy: InsecurePolicy,
    user_agent: String,
    credentials: RwLock<Credentials>,
    http: Result<reqwest::Client, String>,
    http_unverified: Result<reqwest::Client, String>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    tokens: Mutex<HashMap<(String, Scope), CachedToken>>,
    retry: RetryPolicy,
}

/// A registry client. Cheap to clone; clones share connections, endpoints and tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// How a request is to be sent.
pub(crate) struct Call<'a> {
    registry: &'a str,
    scope: &'a Scope,
    /// Whether the request may be sent again on transient failures (false for streamed bodies).
    retry: bool,
}

fn build_http(verify: bool) -> Result<reqwest::Client, String> {
    // Both clients use ring; installing it as the process default is harmless if someone did already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(16)
        .dns_resolver(resolver::Resolver);
    if !verify {
        // Only insecure registries (local ones, mostly) use this client. They are tried with HTTPS first; a
        // plain-HTTP server that does not answer a TLS hello should not hold the fallback to HTTP up long.
        b = b
            .tls_danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(5));
    }
    b.build().map_err(|e| error_chain(&e))
}

impl RegistryClient {
    /// A client; the HTTP clients are built here (an error setting up TLS is reported by the first request).
    pub fn new(config: ClientConfig) -> Self {
        let user_agent = if config.user_agent.is_empty() {
            format!("berth/{}", env!("CARGO_PKG_VERSION"))
        } else {
            config.user_agent
        };
        RegistryClient {
            inner: Arc::new(Inner {
                policy: InsecurePolicy::new(&config.insecure_registries),
                user_agent,
                credentials: RwLock::new(config.credentials),
                http: build_http(true),
                http_unverified: build_http(false),
                endpoints: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                retry: RetryPolicy::default(),
            }),
        }
    }

    /// The same configuration with other retry bounds (a fresh client: nothing is shared with `self`).
    pub fn with_retry_policy(self, retry: RetryPolicy) -> Self {
        let creds = self.credentials();
        let mut c = RegistryClient::new(ClientConfig {
            insecure_registries: Vec::new(),
            credentials: creds,
            user_agent: self.inner.user_agent.clone(),
        });
        if let Some(inner) = Arc::get_mut(&mut c.inner) {
            inner.policy = self.inner.policy.clone();
            inner.retry = retry;
        }
        c
    }

    /// The insecure-registry policy in force.
    pub fn insecure_policy(&self) -> &InsecurePolicy {
        &self.inner.policy
    }

    /// The schemes `registry` is tried with, in order (HTTPS only, unless it is insecure).
    pub fn schemes(&self, registry: &str) -> &'static [Scheme] {
        self.inner.policy.schemes(registry)
    }

    /// A copy of the credentials in use.
    pub fn credentials(&self) -> Credentials {
        self.inner
            .credentials
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Uses `user`/`password` for `registry` from now on (drops cached tokens of that registry).
    pub fn set_credentials(&self, registry: &str, user: &str, password: &str) {
        if let Ok(mut c) = self.inner.credentials.write() {
            c.insert(registry, user, password);
        }
        self.forget_tokens(registry);
    }

    fn forget_tokens(&self, registry: &str) {
        if let Ok(mut t) = self.inner.tokens.lock() {
            t.retain(|(r, _), _| r != registry);
        }
    }

    fn credential(&self, registry: &str) -> Option<(String, String)> {
        let c = self.inner.credentials.read().ok()?;
        c.get(registry).map(|c| (c.username.clone(), c.password.clone()))
    }

    fn http(&self, scheme: Scheme) -> Result<&reqwest::Client, RegistryError> {
        let c = match scheme {
            Scheme::Https => &self.inner.http,
            Scheme::HttpsUnverified | Scheme::Http => &self.inner.http_unverified,
        };
        c.as_ref().map_err(|e| RegistryError::Client(e.clone()))
    }

    /// The host serving `registry`'s API (`docker.io` → `registry-1.docker.io`).
    pub fn api_host(registry: &str) -> &str {
        if registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            registry
        }
    }

    /// Checks that `registry` answers `/v2/`; learns its scheme and auth challenge.
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        self.probe(registry).await.map(|_| ())
    }

    async fn endpoint(&self, registry: &str) -> Result<Endpoint, RegistryError> {
        if let Some(ep) = self
            .inner
            .endpoints
            .lock()
            .ok()
            .and_then(|m| m.get(registry).cloned())
        {
            return Ok(ep);
        }
        self.probe(registry).await
    }

    /// `GET /v2/` with each allowed scheme until one answers.
    async fn probe(&self, registry: &str) -> Result<Endpoint, RegistryError> {
        let host = Self::api_host(registry);
        let mut last = String::from("no scheme is allowed");
        for &scheme in self.schemes(registry) {
            let base = format!("{}://{host}", scheme.url_scheme());
            let http = self.http(scheme)?;
            let started = Instant::now();
            let mut attempt = 0;
            let resp = loop {
                attempt += 1;
                let req = http
                    .get(format!("{base}/v2/"))
                    .header(header::USER_AGENT, &self.inner.user_agent);
                match req.send().await {
                    Ok(r) if r.status().is_server_error() && self.inner.retry.may_retry(attempt, started) => {
                        tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                    }
                    Ok(r) => break Ok(r),
                    Err(e) if is_transient(&e) && self.inner.retry.may_retry(attempt, started) => {
                        tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                    }
                    Err(e) => break Err(e),
                }
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    last = describe(&e);
                    continue;
                }
            };
            let challenge = match resp.status() {
                s if s.is_success() => None,
                StatusCode::UNAUTHORIZED => challenge_of(resp.headers()),
                status => {
                    return Err(RegistryError::NotARegistry {
                        registry: registry.to_string(),
                        status,
                    });
                }
            };
            let ep = Endpoint {
                base,
                scheme,
                challenge,
            };
            if let Ok(mut m) = self.inner.endpoints.lock() {
                m.insert(registry.to_string(), ep.clone());
            }
            return Ok(ep);
        }
        Err(RegistryError::Unreachable {
            registry: registry.to_string(),
            reason: last,
        })
    }

    /// Checks `user`/`password` against `registry` (`/v2/` with basic auth, or a token request); on success the
    /// client uses them from now on. Saving them is [`Credentials::save`]'s job.
    pub async fn login(&self, registry: &str, user: &str, password: &str) -> Result<(), RegistryError> {
        let ep = self.probe(registry).await?;
        match &ep.challenge {
            None => {}
            Some(Challenge::Basic { .. }) => {
                let resp = self
                    .http(ep.scheme)?
                    .get(format!("{}/v2/", ep.base))
                    .header(header::USER_AGENT, &self.inner.user_agent)
                    .basic_auth(user, Some(password))
                    .send()
                    .await
                    .map_err(|e| unreachable(registry, &e))?;
                match resp.status() {
                    s if s.is_success() => {}
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(wrong_password(registry)),
                    status => return Err(status_error(registry, "GET /v2/", resp, status).await),
                }
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                self.request_token(
                    registry,
                    realm,
                    service.as_deref(),
                    &Scope::none(),
                    Some((user, password)),
                )
                .await?;
            }
        }
        self.set_credentials(registry, user, password);
        Ok(())
    }

    async fn request_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        credential: Option<(&str, &str)>,
    ) -> Result<(String, Duration), RegistryError> {
        let token_err = |reason: String| RegistryError::Token {
            registry: registry.to_string(),
            realm: realm.to_string(),
            reason,
        };
        let url =
            reqwest::Url::parse(realm).map_err(|e| token_err(format!("the realm is not a URL: {e}")))?;
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(token_err("the realm has no host".to_string())),
        };
        let scheme = if url.scheme() == "https" && !self.inner.policy.is_insecure(&realm_host) {
            Scheme::Https
        } else {
            Scheme::HttpsUnverified
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scope.entries() {
            query.push(("scope", s));
        }
        if let Some((user, _)) = credential {
            query.push(("account", user));
        }
        let mut url = url;
        url.query_pairs_mut().extend_pairs(query);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http(scheme)?
                .get(url.clone())
                .header(header::USER_AGENT, &self.inner.user_agent);
            if let Some((user, password)) = credential {
                req = req.basic_auth(user, Some(password));
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if is_transient(&e) && self.inner.retry.may_retry(attempt, started) => {
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(token_err(describe(&e))),
            };
            let status = resp.status();
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && self.inner.retry.may_retry(attempt, started)
            {
                tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(if credential.is_some() {
                    wrong_password(registry)
                } else {
                    auth_required(registry)
                });
            }
            if !status.is_success() {
                return Err(token_err(format!("the token endpoint answered {status}")));
            }
            let body = resp.bytes().await.map_err(|e| token_err(describe(&e)))?;
            let parsed: auth::TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| token_err(format!("the answer is not a token: {e}")))?;
            return parsed
                .into_token()
                .ok_or_else(|| token_err("the answer has no token".to_string()));
        }
    }

    /// The `Authorization` header for a request to `registry` with `scope`, fetching a token if needed.
    async fn authorization(
        &self,
        registry: &str,
        ep: &Endpoint,
        scope: &Scope,
    ) -> Result<Option<String>, RegistryError> {
        match &ep.challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(self.credential(registry).map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = (registry.to_string(), scope.clone());
                if let Some(t) = self.inner.tokens.lock().ok().and_then(|m| {
                    m.get(&key)
                        .filter(|t| t.valid_until > Instant::now())
                        .map(|t| t.token.clone())
                }) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let cred = self.credential(registry);
                let (token, lifetime) = self
                    .request_token(
                        registry,
                        realm,
                        service.as_deref(),
                        scope,
                        cred.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                    )
                    .await?;
                if let Ok(mut m) = self.inner.tokens.lock() {
                    m.insert(
                        key,
                        CachedToken {
                            token: token.clone(),
                            valid_until: Instant::now() + lifetime,
                        },
                    );
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Sends a request built by `build(client, base_url)` with authorization, answering a 401 once with fresh
    /// credentials, and retrying transient failures when `call.retry`. Redirects are returned, not followed.
    async fn send(
        &self,
        call: Call<'_>,
        build: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let registry = call.registry;
        let mut ep = self.endpoint(registry).await?;
        let mut refreshed = false;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req =
                build(self.http(ep.scheme)?, &ep.base).header(header::USER_AGENT, &self.inner.user_agent);
            if let Some(a) = self.authorization(registry, &ep, call.scope).await? {
                req = req.header(header::AUTHORIZATION, a);
            }
            let retry_ok = call.retry && self.inner.retry.may_retry(attempt, started);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if retry_ok && is_transient(&e) => {
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(unreachable(registry, &e)),
            };
            match resp.status() {
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    if let Some(c) = challenge_of(resp.headers()) {
                        ep.challenge = Some(c);
                        if let Ok(mut m) = self.inner.endpoints.lock() {
                            m.insert(registry.to_string(), ep.clone());
                        }
                    }
                    if let Ok(mut t) = self.inner.tokens.lock() {
                        t.remove(&(registry.to_string(), call.scope.clone()));
                    }
                    if ep.challenge.is_none() {
                        return Err(auth_required(registry));
                    }
                    if !call.retry {
                        // The body of a streamed request is gone; the caller's earlier requests of the same
                        // scope should have made the credentials fresh.
                        return Err(auth_required(registry));
                    }
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(if self.credential(registry).is_some() {
                        wrong_password(registry)
                    } else {
                        auth_required(registry)
                    });
                }
                s if retry_ok && (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) => {
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                }
                _ => return Ok(resp),
            }
        }
    }

    /// Fetches a manifest document by tag or digest: bytes, content type and `Docker-Content-Digest`.
    async fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Bytes, Option<String>, Option<Digest>), RegistryError> {
        let registry = r.registry();
        let scope = Scope::pull(r.repository());
        let path = format!("/v2/{}/manifests/{reference}", r.repository());
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .send(
                    Call {
                        registry,
                        scope: &scope,
                        retry: true,
                    },
                    &|c, base| {
                        c.get(format!("{base}{path}"))
                            .header(header::ACCEPT, manifest::MANIFEST_ACCEPT)
                    },
                )
                .await?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => return Err(RegistryError::ManifestUnknown(r.familiar())),
                StatusCode::FORBIDDEN => return Err(denied(r)),
                status => return Err(status_error(registry, &format!("GET {path}"), resp, status).await),
            }
            let content_type = header_str(resp.headers(), header::CONTENT_TYPE.as_str());
            let header_digest = match header_str(resp.headers(), "docker-content-digest") {
                Some(d) => Some(Digest::parse(&d).map_err(|source| RegistryError::InvalidDigest {
                    registry: registry.to_string(),
                    source,
                })?),
                None => None,
            };
            match read_limited(resp, MAX_MANIFEST_SIZE).await {
                Ok(Some(bytes)) => return Ok((bytes, content_type, header_digest)),
                Ok(None) => {
                    return Err(RegistryError::ManifestTooLarge {
                        reference: r.familiar(),
                    });
                }
                Err(e) if is_transient(&e) && self.inner.retry.may_retry(attempt, started) => {
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                }
                Err(e) => return Err(unreachable(registry, &e)),
            }
        }
    }

    /// Resolves `r` to the image manifest for `platform`: fetches the manifest, verifies its digest (the
    /// requested one when `r` has a digest, and the registry's `Docker-Content-Digest`), and if it is an index,
    /// picks the entry for `platform` and fetches and verifies that manifest too.
    pub async fn resolve(&self, r: &Reference, platform: &Platform) -> Result<Resolved, RegistryError> {
        let (bytes, content_type, header_digest) = self.get_manifest(r, &r.manifest_reference()).await?;
        let digest = verify_manifest(r, &bytes, r.digest(), header_digest.as_ref())?;
        let invalid = |source| RegistryError::InvalidManifest {
            reference: r.familiar(),
            source,
        };
        let (kind, media_type) = manifest::detect(content_type.as_deref(), &bytes).map_err(invalid)?;
        match kind {
            ManifestKind::Manifest => Ok(Resolved {
                manifest_digest: digest,
                manifest: manifest::parse_manifest(&bytes).map_err(invalid)?,
                manifest_bytes: bytes,
                media_type,
                index_digest: None,
                index_bytes: None,
                platform: None,
            }),
            ManifestKind::Index => {
                let index = manifest::parse_index(&bytes).map_err(invalid)?;
                let (desc, chosen) = select_platform(r, &index, platform)?;
                let child_digest =
                    Digest::try_from(desc.digest()).map_err(|source| RegistryError::InvalidDigest {
                        registry: r.registry().to_string(),
                        source,
                    })?;
                let child_ref = r.with_digest(child_digest.clone());
                let (child, child_type, child_header) =
                    self.get_manifest(&child_ref, &child_digest.to_string()).await?;
                let child_digest =
                    verify_manifest(&child_ref, &child, Some(&child_digest), child_header.as_ref())?;
                if child.len() as u64 != desc.size() {
                    return Err(RegistryError::ManifestDigestMismatch {
                        reference: child_ref.familiar(),
                        actual: Digest::sha256(&child),
                        expected: child_digest,
                    });
                }
                let child_invalid = |source| RegistryError::InvalidManifest {
                    reference: child_ref.familiar(),
                    source,
                };
                let (child_kind, child_media_type) =
                    manifest::detect(child_type.as_deref(), &child).map_err(child_invalid)?;
                if child_kind != ManifestKind::Manifest {
                    return Err(RegistryError::UnsupportedManifest {
                        reference: child_ref.familiar(),
                        media_type: child_media_type,
                    });
                }
                Ok(Resolved {
                    manifest_digest: child_digest,
                    manifest: manifest::parse_manifest(&child).map_err(child_invalid)?,
                    manifest_bytes: child,
                    media_type: child_media_type,
                    index_digest: Some(digest),
                    index_bytes: Some(bytes),
                    platform: Some(chosen),
                })
            }
            ManifestKind::Schema1 | ManifestKind::Unknown => Err(RegistryError::UnsupportedManifest {
                reference: r.familiar(),
                media_type,
            }),
        }
    }

    /// Fetches the raw manifest document `r` names (an index stays an index), verified like in `resolve`.
    /// Returns the bytes, the media type and the digest.
    pub async fn fetch_manifest(&self, r: &Reference) -> Result<(Bytes, String, Digest), RegistryError> {
        let (bytes, content_type, header_digest) = self.get_manifest(r, &r.manifest_reference()).await?;
        let digest = verify_manifest(r, &bytes, r.digest(), header_digest.as_ref())?;
        let (_, media_type) = manifest::detect(content_type.as_deref(), &bytes).map_err(|source| {
            RegistryError::InvalidManifest {
                reference: r.familiar(),
                source,
            }
        })?;
        Ok((bytes, media_type, digest))
    }
}

/// Checks manifest bytes against the digest asked for and the one the registry announced; returns the digest.
fn verify_manifest(
    r: &Reference,
    bytes: &[u8],
    requested: Option<&Digest>,
    announced: Option<&Digest>,
) -> Result<Digest, RegistryError> {
    for expected in [requested, announced].into_iter().flatten() {
        let actual = Digest::of(expected.algorithm(), bytes);
        if &actual != expected {
            return Err(RegistryError::ManifestDigestMismatch {
                reference: r.familiar(),
                actual,
                expected: expected.clone(),
            });
        }
    }
    Ok(requested.cloned().unwrap_or_else(|| Digest::sha256(bytes)))
}

/// Picks the best entry of `index` for `platform`.
fn select_platform<'a>(
    r: &Reference,
    index: &'a oci_spec::image::ImageIndex,
    platform: &Platform,
) -> Result<(&'a oci_spec::image::Descriptor, Platform), RegistryError> {
    let mut best: Option<(u8, &oci_spec::image::Descriptor, Platform)> = None;
    let mut available = Vec::new();
    for desc in index.manifests() {
        let Some(p) = desc.platform().as_ref().map(Platform::from_oci) else {
            continue;
        };
        // Attestations and other non-images are listed as unknown/unknown.
        if p.os == "unknown" {
            continue;
        }
        available.push(p.to_string());
        if let Some(rank) = platform.match_rank(&p)
            && best.as_ref().is_none_or(|(b, _, _)| rank < *b)
        {
            best = Some((rank, desc, p));
        }
    }
    match best {
        Some((_, d, p)) => Ok((d, p)),
        None => Err(RegistryError::NoMatchingPlatform {
            reference: r.familiar(),
            platform: platform.to_string(),
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        }),
    }
}

fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::parse_challenge)
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn wrong_password(registry: &str) -> RegistryError {
    RegistryError::Unauthorized {
        registry: registry.to_string(),
        reason: "wrong user name or password",
    }
}

fn auth_required(registry: &str) -> RegistryError {
    RegistryError::Unauthorized {
        registry: registry.to_string(),
        reason: "authentication required",
    }
}

fn denied(r: &Reference) -> RegistryError {
    RegistryError::Denied {
        registry: r.registry().to_string(),
        repository: r.repository().to_string(),
    }
}

fn unreachable(registry: &str, e: &reqwest::Error) -> RegistryError {
    RegistryError::Unreachable {
        registry: registry.to_string(),
        reason: describe(e),
    }
}

/// Reads a body up to `limit` bytes; `None` when it is longer.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Option<Bytes>, reqwest::Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// An error answer: the registry's `{"errors":[{"code","message"}]}` if it sent one.
async fn status_error(
    registry: &str,
    what: &str,
    resp: reqwest::Response,
    status: StatusCode,
) -> RegistryError {
    let body = read_limited(resp, 64 << 10)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    RegistryError::Status {
        registry: registry.to_string(),
        what: what.to_string(),
        status,
        message: error_message(&body),
    }
}

/// The first error of a registry error body, as `code: message`, or the body's text.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && let Some(first) = e.errors.first()
    {
        return format!(
            "{}: {}",
            first.code.to_lowercase().replace('_', " "),
            first.message
        );
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "no details".to_string()
    } else {
        text.chars().take(200).collect()
    }
}

/// Whether a transport error may go away on retry: timeouts, resets, a connection closed mid-answer.
/// A refused connection is not: the registry is down, and the caller should hear so at once.
fn is_transient(e: &reqwest::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    if let Some(io) = find_io_error(e) {
        return matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted
        );
    }
    // hyper reports a connection closed before the answer was complete without an io::Error.
    e.is_body() || e.is_decode() || (e.is_request() && !e.is_connect())
}

fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// A short reason for a transport error: `connection refused`, `timed out`, or the innermost message.
fn describe(e: &reqwest::Error) -> String {
    if let Some(io) = find_io_error(e) {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
            std::io::ErrorKind::TimedOut => "timed out".to_string(),
            _ => io.to_string(),
        };
    }
    if e.is_timeout() {
        return "timed out".to_string();
    }
    error_chain(e)
}

/// The innermost message of an error chain (reqwest's outer messages only repeat the URL).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(error_message(body), "manifest unknown: manifest unknown");
        assert_eq!(error_message(b"  oops \n"), "oops");
        assert_eq!(error_message(b""), "no details");
    }

    #[test]
    fn retry_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(10), Duration::from_secs(3));
        let now = Instant::now();
        assert!(p.may_retry(1, now));
        assert!(!p.may_retry(5, now));
    }

    #[test]
    fn scheme_policy_of_a_client() {
        let c = RegistryClient::new(ClientConfig {
            insecure_registries: vec!["reg.internal:5000".into()],
            ..ClientConfig::default()
        });
        assert_eq!(c.schemes("registry.example.com:5000"), &[Scheme::Https]);
        assert_eq!(
            c.schemes("reg.internal:5000"),
            &[Scheme::HttpsUnverified, Scheme::Http]
        );
        assert_eq!(
            c.schemes("127.0.0.1:5000"),
            &[Scheme::HttpsUnverified, Scheme::Http]
        );
        assert_eq!(RegistryClient::api_host("docker.io"), "registry-1.docker.io");
    }
}
