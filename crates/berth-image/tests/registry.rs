//! The registry client against Debian's `docker-registry` on 127.0.0.1 (and small fake servers on 127.0.0.1 for
//! token auth, redirects and broken connections).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::credentials::Credentials;
use berth_image::digest::{Digest, Verifier};
use berth_image::reference::Reference;
use berth_image::registry::{ClientConfig, Platform, RegistryClient, RegistryError};
use berth_test_support::registry::{
    DOCKER_MANIFEST, PushedImage, Registry, busybox_image, debian_image, multi_platform_image, sha256,
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default())
}

fn client_with(registry: &str, user: &str, password: &str) -> RegistryClient {
    let mut credentials = Credentials::empty();
    credentials.insert(registry, user, password);
    RegistryClient::new(ClientConfig {
        credentials,
        ..ClientConfig::default()
    })
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

/// Streams a blob and verifies it with a `Verifier`, as the puller does.
async fn fetch_and_verify(c: &RegistryClient, r: &Reference, d: &Digest, size: u64) -> Result<u64, String> {
    let mut stream = c.fetch_blob(r, d, size, 0).await.map_err(|e| e.to_string())?;
    let mut v = Verifier::with_size(d, size);
    let mut chunks = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        chunks += 1;
        v.update(&chunk);
    }
    v.verify().map_err(|e| e.to_string())?;
    Ok(chunks)
}

fn layer_of(img: &PushedImage) -> (Digest, u64) {
    (digest(&img.layers[0].digest), img.layers[0].size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_by_tag_and_digest_then_fetch_blobs() {
    let reg = Registry::start().unwrap();
    let img = busybox_image(&reg, "library/busybox:latest").unwrap();
    let c = client();

    let r = Reference::parse(&img.reference).unwrap();
    let resolved = c.resolve(&r, &Platform::host()).await.unwrap();
    assert_eq!(resolved.manifest_digest.to_string(), img.manifest_digest);
    assert_eq!(resolved.media_type, DOCKER_MANIFEST);
    assert_eq!(resolved.manifest_bytes, img.manifest);
    assert_eq!(resolved.index_digest, None);
    assert_eq!(resolved.manifest.config().digest().to_string(), img.config_digest);

    // By digest, and by tag+digest (the digest wins).
    for text in [
        format!("{}/library/busybox@{}", reg.host(), img.manifest_digest),
        format!("{}/library/busybox:whatever@{}", reg.host(), img.manifest_digest),
    ] {
        let by_digest = c
            .resolve(&Reference::parse(&text).unwrap(), &amd64())
            .await
            .unwrap();
        assert_eq!(by_digest.manifest_digest, resolved.manifest_digest, "{text}");
    }

    let config = c
        .fetch_blob_verified(&r, &digest(&img.config_digest), img.config.len() as u64)
        .await
        .unwrap();
    assert_eq!(config, img.config);

    let (ld, size) = layer_of(&img);
    fetch_and_verify(&c, &r, &ld, size).await.unwrap();
    assert!(c.blob_exists(&r, &ld).await.unwrap());
    assert!(!c.blob_exists(&r, &Digest::sha256(b"nothing")).await.unwrap());

    // `localhost` resolves without NSS (static binaries), and is an insecure (plain-HTTP) registry.
    let port = reg.addr().port();
    let via_localhost = Reference::parse(&format!("localhost:{port}/library/busybox:latest")).unwrap();
    let again = c.resolve(&via_localhost, &amd64()).await.unwrap();
    assert_eq!(again.manifest_digest, resolved.manifest_digest);

    // Resuming at an offset against the real registry: the tail is the blob's tail.
    let blob = std::fs::read(reg.blob_data_path(&img.layers[0].digest)).unwrap();
    let offset = size / 3;
    let mut stream = c.fetch_blob(&r, &ld, size, offset).await.unwrap();
    assert_eq!(stream.offset(), offset);
    let mut tail = Vec::new();
    while let Some(chunk) = stream.next().await {
        tail.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(tail, &blob[offset as usize..]);

    // As an AsyncRead, verified.
    let mut reader = c
        .fetch_blob(&r, &ld, size, 0)
        .await
        .unwrap()
        .verified(r.repository(), &ld)
        .into_reader();
    let mut all = Vec::new();
    reader.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_and_blobs_are_clear_errors() {
    let reg = Registry::start().unwrap();
    busybox_image(&reg, "busybox:latest").unwrap();
    let c = client();
    let r = Reference::parse(&format!("{}/busybox:nosuchtag", reg.host())).unwrap();
    let err = c.resolve(&r, &amd64()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("manifest unknown: {}/busybox:nosuchtag", reg.host())
    );
    let r = Reference::parse(&format!("{}/nosuchrepo", reg.host())).unwrap();
    let err = c.resolve(&r, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::ManifestUnknown(_)), "{err}");
    let missing = Digest::sha256(b"missing");
    let err = c.fetch_blob(&r, &missing, 7, 0).await.unwrap_err();
    assert!(err.to_string().starts_with("blob unknown: sha256:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_selection_from_an_index() {
    let reg = Registry::start().unwrap();
    let multi = multi_platform_image(&reg, "multi:1").unwrap();
    let c = client();
    let r = Reference::parse(&multi.reference).unwrap();

    let host = c.resolve(&r, &Platform::host()).await.unwrap();
    assert_eq!(host.manifest_digest.to_string(), multi.amd64.manifest_digest);
    assert_eq!(
        host.index_digest.as_ref().map(ToString::to_string),
        Some(multi.index_digest.clone())
    );
    assert_eq!(host.repo_digest().to_string(), multi.index_digest);
    assert_eq!(
        host.platform.as_ref().map(ToString::to_string).as_deref(),
        Some("linux/amd64")
    );

    let arm = c
        .resolve(&r, &Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap();
    assert_eq!(arm.manifest_digest.to_string(), multi.arm64.manifest_digest);
    assert_eq!(
        arm.manifest.layers()[0].digest().to_string(),
        multi.arm64.layers[0].digest
    );
    let arm_v8 = c
        .resolve(&r, &Platform::parse("linux/arm64/v8").unwrap())
        .await
        .unwrap();
    assert_eq!(arm_v8.manifest_digest, arm.manifest_digest);

    let err = c
        .resolve(&r, &Platform::parse("linux/s390x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no matching manifest for linux/s390x in the manifest list entries of {} (available: linux/arm64/v8, linux/amd64)",
            multi.reference
        )
    );

    // By the index's digest.
    let by_digest = Reference::parse(&format!("{}/multi@{}", reg.host(), multi.index_digest)).unwrap();
    let again = c.resolve(&by_digest, &amd64()).await.unwrap();
    assert_eq!(again.manifest_digest, host.manifest_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_manifests_and_layers_are_detected() {
    let reg = Registry::start().unwrap();
    let img = busybox_image(&reg, "busybox:latest").unwrap();
    let c = client();
    let r = Reference::parse(&img.reference).unwrap();

    // A manifest whose stored bytes changed: the registry still announces the old digest.
    let mut tampered = img.manifest.clone();
    let pos = tampered.iter().position(|&b| b == b'\n').unwrap();
    tampered.insert(pos, b' ');
    reg.corrupt_blob(&img.manifest_digest, &tampered).unwrap();
    let err = c.resolve(&r, &amd64()).await.unwrap_err();
    let actual = sha256(&tampered);
    assert_eq!(
        err.to_string(),
        format!(
            "the manifest of {} has digest {actual}, expected {}",
            img.reference, img.manifest_digest
        )
    );
    let by_digest = Reference::parse(&format!("{}/busybox@{}", reg.host(), img.manifest_digest)).unwrap();
    let err = c.resolve(&by_digest, &amd64()).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestDigestMismatch { .. }),
        "{err}"
    );

    // A layer with one byte flipped: same size, other digest.
    let (ld, size) = layer_of(&img);
    let mut layer = std::fs::read(reg.blob_data_path(&img.layers[0].digest)).unwrap();
    let mid = layer.len() / 2;
    layer[mid] ^= 0xff;
    reg.corrupt_blob(&img.layers[0].digest, &layer).unwrap();
    let err = fetch_and_verify(&c, &r, &ld, size).await.unwrap_err();
    assert!(err.contains(&format!("expected {ld}")), "{err}");
    let err = c.fetch_blob_verified(&r, &ld, size).await.unwrap_err();
    assert!(matches!(err, RegistryError::BlobDigest { .. }), "{err}");
    // A layer that is longer than its descriptor says.
    layer.extend_from_slice(b"trailing");
    reg.corrupt_blob(&img.layers[0].digest, &layer).unwrap();
    let err = fetch_and_verify(&c, &r, &ld, size).await.unwrap_err();
    assert!(err.contains("longer than"), "{err}");
}

/// A proxy on 127.0.0.1 in front of `upstream`: it cuts the answer to the first blob GET after `cut` bytes
/// of body and records each request's head.
async fn cutting_proxy(
    upstream: std::net::SocketAddr,
    cut: usize,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        let mut cut_done = false;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            // One request per connection: read the head, forward with Connection: close.
            let head = read_head(&mut client).await;
            if head.is_empty() {
                continue;
            }
            seen.lock().unwrap().push(head.clone());
            let is_blob_get = head.starts_with("GET ") && head.contains("/blobs/sha256:");
            let cut_this = is_blob_get && !cut_done;
            cut_done |= cut_this;
            let mut up = TcpStream::connect(upstream).await.unwrap();
            let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
            up.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            up.read_to_end(&mut answer).await.unwrap();
            if cut_this {
                let body_start = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                answer.truncate(body_start + cut);
            }
            let _ = client.write_all(&answer).await;
            let _ = client.shutdown().await;
        }
    });
    (addr, heads)
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        if buf.is_empty() && byte[0] == 0x16 {
            // A TLS ClientHello: the client tries HTTPS first with insecure registries. Refuse it.
            return String::new();
        }
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_resumes_with_range() {
    let reg = Registry::start().unwrap();
    let img = busybox_image(&reg, "busybox:latest").unwrap();
    let (ld, size) = layer_of(&img);
    let cut = (size / 2) as usize;
    let (proxy, heads) = cutting_proxy(reg.addr(), cut).await;
    let c = client();
    let r = Reference::parse(&format!("{proxy}/busybox:latest")).unwrap();
    let chunks = fetch_and_verify(&c, &r, &ld, size).await.unwrap();
    assert!(chunks >= 2);
    let heads = heads.lock().unwrap().clone();
    let blob_gets: Vec<&String> = heads.iter().filter(|h| h.contains("/blobs/sha256:")).collect();
    assert_eq!(blob_gets.len(), 2, "one cut request, one resumed: {heads:?}");
    assert!(
        !blob_gets[0].to_lowercase().contains("range:"),
        "{}",
        blob_gets[0]
    );
    assert!(
        blob_gets[1]
            .to_lowercase()
            .contains(&format!("range: bytes={cut}-")),
        "the second request resumes at byte {cut}: {}",
        blob_gets[1]
    );
}

/// A fake token-auth registry on 127.0.0.1: `/v2/` wants a Bearer token from `/token`, which wants
/// `user:password` when `creds` is set (anonymous tokens otherwise). Blob GETs redirect to `blob_host`.
struct FakeRegistry {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

async fn fake_token_registry(
    creds: Option<(&str, &str)>,
    manifest: Bytes,
    blob_host: std::net::SocketAddr,
) -> FakeRegistry {
    use base64::Engine as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let expected_basic = creds.map(|(u, p)| {
        format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
        .to_lowercase()
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let head = read_head(&mut s).await;
            if head.is_empty() {
                continue;
            }
            seen.lock().unwrap().push(head.clone());
            let lower = head.to_lowercase();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let authorized = lower.contains("authorization: bearer tok-123");
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"fake-registry\",scope=\"repository:app:pull\"\r\n"
            );
            let answer = if path.starts_with("/token") {
                let ok = match &expected_basic {
                    Some(b) => lower.contains(&format!("authorization: {b}")),
                    None => !lower.contains("authorization:"),
                };
                if ok
                    && path.contains("service=fake-registry")
                    && (!path.contains("scope=") || path.contains("scope=repository%3Aapp%3Apull"))
                {
                    let body = r#"{"token":"tok-123","expires_in":300}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                        .into_bytes()
                } else {
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()
                }
            } else if !authorized {
                format!("HTTP/1.1 401 Unauthorized\r\n{challenge}Content-Length: 0\r\n\r\n").into_bytes()
            } else if path == "/v2/" {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()
            } else if path.starts_with("/v2/app/manifests/") {
                let mut a = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {DOCKER_MANIFEST}\r\nDocker-Content-Digest: {}\r\nContent-Length: {}\r\n\r\n",
                    Digest::sha256(&manifest),
                    manifest.len()
                )
                .into_bytes();
                a.extend_from_slice(&manifest);
                a
            } else if path.starts_with("/v2/app/blobs/") {
                format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{blob_host}/signed{path}?sig=x\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes()
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            };
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        }
    });
    FakeRegistry { addr, log }
}

/// A "CDN" on 127.0.0.1 serving `blob` for any path, recording request heads.
async fn blob_server(blob: Bytes) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let head = read_head(&mut s).await;
            if head.is_empty() {
                continue;
            }
            seen.lock().unwrap().push(head);
            let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len()).into_bytes();
            a.extend_from_slice(&blob);
            let _ = s.write_all(&a).await;
            let _ = s.shutdown().await;
        }
    });
    (addr, log)
}

fn small_manifest(layer: &[u8]) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": Digest::sha256(b"{}").to_string()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": Digest::sha256(layer).to_string()}],
        }))
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_and_redirects_without_credentials() {
    let blob = Bytes::from_static(b"layer bytes served by another host");
    let (cdn, cdn_log) = blob_server(blob.clone()).await;
    let manifest = small_manifest(&blob);

    // With basic credentials for the token endpoint.
    let fake = fake_token_registry(Some(("alice", "wonderland")), manifest.clone(), cdn).await;
    let host = fake.addr.to_string();
    let r = Reference::parse(&format!("{host}/app:1")).unwrap();
    let c = client_with(&host, "alice", "wonderland");
    let resolved = c.resolve(&r, &amd64()).await.unwrap();
    assert_eq!(resolved.manifest_bytes, manifest);
    let d = Digest::sha256(&blob);
    let got = c.fetch_blob_verified(&r, &d, blob.len() as u64).await.unwrap();
    assert_eq!(got, blob);
    let log = fake.log.lock().unwrap().clone();
    let token_requests = log.iter().filter(|h| h.starts_with("GET /token")).count();
    assert_eq!(token_requests, 1, "the token is cached for the scope: {log:?}");
    let cdn_heads = cdn_log.lock().unwrap().clone();
    assert_eq!(cdn_heads.len(), 1);
    assert!(
        !cdn_heads[0].to_lowercase().contains("authorization"),
        "credentials leaked: {}",
        cdn_heads[0]
    );

    // Wrong password: the token endpoint refuses.
    let c = client_with(&host, "alice", "wrong");
    let err = c.resolve(&r, &amd64()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unauthorized: wrong user name or password for {host}")
    );
    assert!(c.login(&host, "alice", "wrong").await.is_err());
    c.login(&host, "alice", "wonderland").await.unwrap();
    c.resolve(&r, &amd64()).await.unwrap();

    // Anonymous tokens.
    let anon = fake_token_registry(None, manifest.clone(), cdn).await;
    let r = Reference::parse(&format!("{}/app:1", anon.addr)).unwrap();
    client().resolve(&r, &amd64()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_htpasswd() {
    let reg = Registry::start_with_htpasswd("tester", "s3cret").unwrap();
    let img = busybox_image(&reg, "private/busybox:latest").unwrap();
    let host = reg.host();
    let r = Reference::parse(&img.reference).unwrap();

    let ok = client_with(&host, "tester", "s3cret");
    let resolved = ok.resolve(&r, &amd64()).await.unwrap();
    assert_eq!(resolved.manifest_digest.to_string(), img.manifest_digest);
    let (ld, size) = layer_of(&img);
    fetch_and_verify(&ok, &r, &ld, size).await.unwrap();

    let wrong = client_with(&host, "tester", "nope");
    let err = wrong.resolve(&r, &amd64()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unauthorized: wrong user name or password for {host}")
    );

    let anonymous = client();
    let err = anonymous.resolve(&r, &amd64()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unauthorized: authentication required for {host}")
    );

    let err = anonymous.login(&host, "tester", "nope").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    anonymous.login(&host, "tester", "s3cret").await.unwrap();
    anonymous.resolve(&r, &amd64()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_fails_fast() {
    let mut reg = Registry::start().unwrap();
    let host = reg.host();
    reg.stop();
    let c = client();
    let r = Reference::parse(&format!("{host}/busybox:latest")).unwrap();
    let started = Instant::now();
    let err = c.resolve(&r, &amd64()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        err.to_string(),
        format!("the registry {host} is not reachable: connection refused")
    );
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mount_manifest_and_pull_back() {
    let reg = Registry::start().unwrap();
    let c = client();
    let host = reg.host();
    let src = Reference::parse(&format!("{host}/pushed/src:v1")).unwrap();
    let dst = Reference::parse(&format!("{host}/pushed/dst:v2")).unwrap();

    // A layer streamed in one PUT, a config in PATCH chunks.
    let layer = berth_test_support::registry::gzip(
        &berth_test_support::registry::busybox_layer_tar("pushed").unwrap(),
    )
    .unwrap();
    let layer_digest = Digest::sha256(&layer);
    let chunks: Vec<Result<Bytes, std::io::Error>> = layer
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    c.push_blob(
        &src,
        &layer_digest,
        layer.len() as u64,
        futures_util::stream::iter(chunks),
    )
    .await
    .unwrap();
    assert!(c.blob_exists(&src, &layer_digest).await.unwrap());

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_digest = Digest::sha256(&config);
    let parts: Vec<Result<Bytes, std::io::Error>> =
        config.chunks(10).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    c.push_blob_chunked(&src, &config_digest, futures_util::stream::iter(parts), 16)
        .await
        .unwrap();
    let got = c
        .fetch_blob_verified(&src, &config_digest, config.len() as u64)
        .await
        .unwrap();
    assert_eq!(got, config);

    // A wrong digest is refused by the registry.
    let err = c
        .push_blob_bytes(&src, &Digest::sha256(b"other"), Bytes::from_static(b"content"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("digest invalid"), "{err}");

    // Cross-repository mounts.
    assert!(!c.blob_exists(&dst, &layer_digest).await.unwrap());
    assert!(c.mount_blob(&dst, &layer_digest, src.repository()).await.unwrap());
    assert!(
        c.mount_blob(&dst, &config_digest, src.repository())
            .await
            .unwrap()
    );
    assert!(c.blob_exists(&dst, &layer_digest).await.unwrap());
    assert!(
        !c.mount_blob(&dst, &Digest::sha256(b"absent"), src.repository())
            .await
            .unwrap()
    );

    let manifest = small_manifest(&layer);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut manifest = manifest;
    manifest["config"]["size"] = serde_json::json!(config.len());
    manifest["config"]["digest"] = serde_json::json!(config_digest.to_string());
    let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let md = c
        .push_manifest(&dst, DOCKER_MANIFEST, bytes.clone())
        .await
        .unwrap();
    assert_eq!(md, Digest::sha256(&bytes));

    // Pull it back by digest.
    let by_digest = dst.with_digest(md.clone());
    let back = c.resolve(&by_digest, &amd64()).await.unwrap();
    assert_eq!(back.manifest_bytes, bytes);
    let (ld, size) = (layer_digest.clone(), layer.len() as u64);
    fetch_and_verify(&c, &dst, &ld, size).await.unwrap();
    let (raw, media_type, d) = c.fetch_manifest(&dst).await.unwrap();
    assert_eq!((raw, media_type.as_str(), d), (bytes, DOCKER_MANIFEST, md));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_image_streams_and_verifies() {
    let reg = Registry::start().unwrap();
    let img = debian_image(&reg, "library/debian:bookworm").unwrap();
    let c = client();
    let r = Reference::parse(&img.reference).unwrap();
    let resolved = c.resolve(&r, &Platform::host()).await.unwrap();
    assert_eq!(resolved.manifest_digest.to_string(), img.manifest_digest);
    let (ld, size) = layer_of(&img);
    assert!(size > 10 << 20, "a real Debian layer: {size} bytes");
    let started = Instant::now();
    let chunks = fetch_and_verify(&c, &r, &ld, size).await.unwrap();
    eprintln!(
        "debian layer: {size} bytes in {chunks} chunks, {:?}",
        started.elapsed()
    );
    assert!(
        chunks > 10,
        "the layer arrives as a stream of chunks, not one buffer"
    );
}
