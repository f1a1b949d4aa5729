//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, and images in it.
//!
//! - [`Registry::start`] runs `docker-registry serve <config.yml>` on a free port of 127.0.0.1 with filesystem
//!   storage in a temporary directory (deletes enabled) and waits until `/v2/` answers;
//!   [`Registry::start_with_htpasswd`] adds basic auth from an htpasswd file (bcrypt). Dropping the guard kills
//!   the registry and removes its directory, also when a test panics.
//! - [`busybox_image`], [`debian_image`], [`multi_platform_image`] push images built here (a gzip layer, a
//!   config, a manifest; an OCI index for the multi-platform one) with a small HTTP/1.1 client of this module,
//!   independent of the client under test. The Debian rootfs is built once with
//!   `debootstrap --variant=minbase bookworm` and cached as a tar (plus its gzip layer) under
//!   `${XDG_CACHE_HOME:-$HOME/.cache}/berth/`, guarded by a lock file so parallel tests build it once.
//! - [`Registry::blob_data_path`] and [`Registry::corrupt_blob`] reach into the storage, for tests of corrupt
//!   content.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Errors of the registry fixture.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The registry did not come up.
    #[error("docker-registry did not answer on {addr} within {secs} s; its log:\n{log}")]
    NotReady {
        addr: SocketAddr,
        secs: u64,
        log: String,
    },
    /// The registry answered an unexpected status.
    #[error("the test registry answered {status} to {what}: {body}")]
    Status { what: String, status: u16, body: String },
    /// A helper command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// The cached Debian image is unusable.
    #[error("the cached Debian image at {0} is unusable")]
    Cache(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FixtureError {
    let what = what.into();
    move |source| FixtureError::Io { what, source }
}

/// An HTTP answer: status, headers (lowercase names), body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A running `docker-registry`; killed and its storage removed on drop.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    auth: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry without auth.
    pub fn start() -> Result<Registry, FixtureError> {
        Self::launch(None)
    }

    /// Starts a registry that wants HTTP basic auth with `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> Result<Registry, FixtureError> {
        Self::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(auth: Option<(String, String)>) -> Result<Registry, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .map_err(io("cannot create a temp dir"))?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).map_err(io("cannot create the storage dir"))?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((user, password)) = &auth {
            let hash = bcrypt::hash(password, 5)
                .map_err(|e| io("cannot hash the password")(std::io::Error::other(e)))?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(io("cannot write htpasswd"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(io("cannot write config.yml"))?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(io("cannot create the log"))?;
        let log2 = log.try_clone().map_err(io("cannot dup the log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(format!(
                "cannot run {REGISTRY_BIN} (install the docker-registry package)"
            )))?;
        let mut reg = Registry {
            child: Some(child),
            dir,
            addr,
            auth,
        };
        reg.wait_ready(Duration::from_secs(15))?;
        Ok(reg)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), FixtureError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((status, _, _)) = self.request("GET", "/v2/", &[], &[]) {
                // 401 is an answer too (the htpasswd variant).
                if status == 200 || status == 401 {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                return Err(FixtureError::NotReady {
                    addr: self.addr,
                    secs: timeout.as_secs(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`, as written in references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The storage root (`rootdirectory`).
    pub fn storage_root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the content of `digest` (`sha256:<hex>`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage_root()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// Overwrites the stored content of `digest` with `content` (the digest stays as the registry's name for it).
    pub fn corrupt_blob(&self, digest: &str, content: &[u8]) -> Result<(), FixtureError> {
        let path = self.blob_data_path(digest);
        std::fs::write(&path, content).map_err(io(format!("cannot overwrite {}", path.display())))
    }

    /// Stops the registry now (a "registry is down" test); the directory stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One HTTP/1.1 request (`Connection: close`), with the fixture's basic credentials if it has some.
    /// Returns status, headers (lowercase names) and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, FixtureError> {
        self.request_with(method, path, headers, body.len() as u64, &mut &body[..])
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        len: u64,
        body: &mut dyn Read,
    ) -> Result<Answer, FixtureError> {
        let what = format!("{method} {path}");
        let mut s =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(io(what.clone()))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(io(what.clone()))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some((u, p)) = &self.auth {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" && method != "HEAD" || len > 0 {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(io(what.clone()))?;
        std::io::copy(&mut body.take(len), &mut s).map_err(io(what.clone()))?;
        let mut r = BufReader::new(s);
        let mut status_line = String::new();
        r.read_line(&mut status_line).map_err(io(what.clone()))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut hdrs = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(io(what.clone()))? == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                hdrs.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut out = Vec::new();
        if method != "HEAD" {
            r.read_to_end(&mut out).map_err(io(what.clone()))?;
            if hdrs
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
            {
                out = dechunk(&out);
            }
        }
        Ok((status, hdrs, out))
    }

    /// Uploads a blob (POST, then one PUT) unless it is there; returns its digest.
    pub fn push_blob(&self, repository: &str, data: &[u8]) -> Result<String, FixtureError> {
        self.push_blob_from(repository, &sha256(data), data.len() as u64, &mut &data[..])?;
        Ok(sha256(data))
    }

    fn push_blob_from(
        &self,
        repository: &str,
        digest: &str,
        len: u64,
        body: &mut dyn Read,
    ) -> Result<(), FixtureError> {
        let (status, _, _) = self.request("HEAD", &format!("/v2/{repository}/blobs/{digest}"), &[], &[])?;
        if status == 200 {
            return Ok(());
        }
        let what = format!("POST /v2/{repository}/blobs/uploads/");
        let (status, hdrs, b) =
            self.request("POST", &format!("/v2/{repository}/blobs/uploads/"), &[], &[])?;
        if status != 202 {
            return Err(FixtureError::Status {
                what,
                status,
                body: String::from_utf8_lossy(&b).into_owned(),
            });
        }
        let location = header(&hdrs, "location").unwrap_or_default();
        let path = match location.find("/v2/") {
            Some(i) => &location[i..],
            None => location.as_str(),
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={digest}");
        let (status, _, b) = self.request_with(
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            len,
            body,
        )?;
        if status != 201 {
            return Err(FixtureError::Status {
                what: format!("PUT blob {digest}"),
                status,
                body: String::from_utf8_lossy(&b).into_owned(),
            });
        }
        Ok(())
    }

    /// Uploads a manifest under `reference` (a tag or digest); returns its digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, FixtureError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let (status, _, b) = self.request("PUT", &path, &[("Content-Type", media_type)], bytes)?;
        if status != 201 {
            return Err(FixtureError::Status {
                what: format!("PUT {path}"),
                status,
                body: String::from_utf8_lossy(&b).into_owned(),
            });
        }
        Ok(sha256(bytes))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn header(h: &[(String, String)], name: &str) -> Option<String> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || data.len() < nl + 2 + size {
            break;
        }
        out.extend_from_slice(&data[nl + 2..nl + 2 + size]);
        data = &data[(nl + 4 + size).min(data.len())..];
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> Result<u16, FixtureError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("cannot bind 127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(io("cannot read the bound port"))?.port())
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A layer pushed into the registry.
#[derive(Debug, Clone)]
pub struct PushedLayer {
    /// The digest of the compressed blob.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The layer's media type.
    pub media_type: String,
}

/// An image pushed into the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `127.0.0.1:<port>/<repository>:<tag>`.
    pub reference: String,
    /// The repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub media_type: String,
    /// The config's digest.
    pub config_digest: String,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The layers, base first.
    pub layers: Vec<PushedLayer>,
}

/// A multi-platform image: an OCI index with an amd64 and an arm64 manifest.
#[derive(Debug, Clone)]
pub struct MultiPlatformImage {
    /// `127.0.0.1:<port>/<repository>:<tag>` (the index).
    pub reference: String,
    /// The index's digest.
    pub index_digest: String,
    /// The index's bytes.
    pub index: Vec<u8>,
    /// The linux/amd64 image.
    pub amd64: PushedImage,
    /// The linux/arm64/v8 image.
    pub arm64: PushedImage,
}

fn split_name(name: &str) -> (String, String) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (name[..slash + i].to_string(), name[slash + i + 1..].to_string()),
        None => (name.to_string(), "latest".to_string()),
    }
}

/// A tar of busybox: `bin/busybox` and its applets as symlinks, and a marker file `etc/berth-image` holding
/// `marker`. Deterministic (fixed times, owner 0).
pub fn busybox_layer_tar(marker: &str) -> Result<Vec<u8>, FixtureError> {
    let busybox =
        std::fs::read("/bin/busybox").map_err(io("cannot read /bin/busybox (install busybox-static)"))?;
    let out = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .map_err(io("cannot run busybox --list"))?;
    let applets = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut b = tar::Builder::new(Vec::new());
    let mtime = 1_700_000_000;
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty())
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)
    };
    let result = (|| -> std::io::Result<Vec<u8>> {
        for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
            dir(&mut b, d)?;
        }
        file(&mut b, "bin/busybox", 0o755, &busybox)?;
        file(&mut b, "etc/berth-image", 0o644, format!("{marker}\n").as_bytes())?;
        for applet in applets.split_whitespace().filter(|a| *a != "busybox") {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_mtime(mtime);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
        }
        b.into_inner()
    })();
    result.map_err(io("cannot build the busybox layer tar"))
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, FixtureError> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data)
        .and_then(|_| e.finish())
        .map_err(io("cannot gzip"))
}

fn config_json(architecture: &str, variant: Option<&str>, diff_ids: &[String], cmd: &str) -> Vec<u8> {
    let mut config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": [cmd],
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [{ "created": "2023-11-14T22:13:20Z", "created_by": "berth-test-support" }],
    });
    if let Some(v) = variant {
        config["variant"] = serde_json::json!(v);
    }
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Pushes config + layers + manifest.
fn push_image(
    registry: &Registry,
    name: &str,
    media_type: &str,
    config: Vec<u8>,
    layers: Vec<PushedLayer>,
) -> Result<PushedImage, FixtureError> {
    let (repository, tag) = split_name(name);
    let config_digest = registry.push_blob(&repository, &config)?;
    let (config_type, _) = media_types(media_type);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": { "mediaType": config_type, "size": config.len(), "digest": config_digest },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "size": l.size, "digest": l.digest,
        })).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let manifest_digest = registry.push_manifest(&repository, &tag, media_type, &manifest)?;
    Ok(PushedImage {
        reference: format!("{}/{repository}:{tag}", registry.host()),
        repository,
        tag,
        manifest_digest,
        manifest,
        media_type: media_type.to_string(),
        config_digest,
        config,
        layers,
    })
}

/// (config media type, gzip layer media type) for a manifest media type.
fn media_types(manifest_type: &str) -> (&'static str, &'static str) {
    if manifest_type == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    }
}

fn busybox_variant(
    registry: &Registry,
    name: &str,
    media_type: &str,
    architecture: &str,
    variant: Option<&str>,
) -> Result<PushedImage, FixtureError> {
    let (repository, _) = split_name(name);
    let tar = busybox_layer_tar(&format!("busybox {architecture}"))?;
    let gz = gzip(&tar)?;
    let digest = registry.push_blob(&repository, &gz)?;
    let layer = PushedLayer {
        digest,
        size: gz.len() as u64,
        diff_id: sha256(&tar),
        media_type: media_types(media_type).1.to_string(),
    };
    let config = config_json(architecture, variant, std::slice::from_ref(&layer.diff_id), "sh");
    push_image(registry, name, media_type, config, vec![layer])
}

/// Pushes a one-layer busybox image (Docker schema2) as `name` (`repo[:tag]`).
pub fn busybox_image(registry: &Registry, name: &str) -> Result<PushedImage, FixtureError> {
    busybox_variant(registry, name, DOCKER_MANIFEST, "amd64", None)
}

/// Pushes an OCI index `name` with a linux/amd64 and a linux/arm64/v8 image (busybox layers that differ in
/// `/etc/berth-image`), tagged `<tag>-amd64` and `<tag>-arm64` too.
pub fn multi_platform_image(registry: &Registry, name: &str) -> Result<MultiPlatformImage, FixtureError> {
    let (repository, tag) = split_name(name);
    let amd64 = busybox_variant(
        registry,
        &format!("{repository}:{tag}-amd64"),
        OCI_MANIFEST,
        "amd64",
        None,
    )?;
    let arm64 = busybox_variant(
        registry,
        &format!("{repository}:{tag}-arm64"),
        OCI_MANIFEST,
        "arm64",
        Some("v8"),
    )?;
    let entry = |img: &PushedImage, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({ "architecture": arch, "os": "linux" });
        if let Some(v) = variant {
            platform["variant"] = serde_json::json!(v);
        }
        serde_json::json!({
            "mediaType": OCI_MANIFEST, "size": img.manifest.len(), "digest": img.manifest_digest, "platform": platform,
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&arm64, "arm64", Some("v8")), entry(&amd64, "amd64", None)],
    });
    let index = serde_json::to_vec_pretty(&index).unwrap_or_default();
    let index_digest = registry.push_manifest(&repository, &tag, OCI_INDEX, &index)?;
    Ok(MultiPlatformImage {
        reference: format!("{}/{repository}:{tag}", registry.host()),
        index_digest,
        index,
        amd64,
        arm64,
    })
}

/// The cache directory: `${XDG_CACHE_HOME:-$HOME/.cache}/berth`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("berth")
}

/// The Debian bookworm minbase rootfs tar and its gzip layer, built once and cached.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DebianCache {
    /// The rootfs tar.
    pub tar: PathBuf,
    /// `sha256` of the tar (the diff id).
    pub diff_id: String,
    /// The gzip layer.
    pub layer: PathBuf,
    /// `sha256` of the layer.
    pub layer_digest: String,
    /// Size of the layer.
    pub layer_size: u64,
}

/// Builds (once, under a lock) or finds the cached Debian rootfs: `debootstrap --variant=minbase bookworm` from
/// the apt mirror this machine uses, tarred with numeric owners and xattrs, gzipped with `gzip -n`.
pub fn debian_cache() -> Result<DebianCache, FixtureError> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let lock_path = dir.join("debian-bookworm-minbase.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("cannot open {}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(format!("cannot lock {}", lock_path.display()))(e.into()))?;
    let meta_path = dir.join("debian-bookworm-minbase.json");
    let tar = dir.join("debian-bookworm-minbase.tar");
    let layer = dir.join("debian-bookworm-minbase.tar.gz");
    if let Ok(text) = std::fs::read(&meta_path)
        && let Ok(meta) = serde_json::from_slice::<DebianCache>(&text)
        && meta.tar == tar
        && meta.layer == layer
        && std::fs::metadata(&layer).map(|m| m.len()).ok() == Some(meta.layer_size)
        && tar.exists()
    {
        return Ok(meta);
    }
    if !tar.exists() {
        build_debian_tar(&dir, &tar)?;
    }
    run_sh(&format!(
        "gzip -1 -n -c '{}' > '{}.tmp' && mv '{}.tmp' '{}'",
        tar.display(),
        layer.display(),
        layer.display(),
        layer.display()
    ))?;
    let diff_id = sha256_file(&tar)?;
    let layer_digest = sha256_file(&layer)?;
    let layer_size = std::fs::metadata(&layer)
        .map_err(io("cannot stat the layer"))?
        .len();
    let meta = DebianCache {
        tar,
        diff_id,
        layer,
        layer_digest,
        layer_size,
    };
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap_or_default())
        .map_err(io(format!("cannot write {}", meta_path.display())))?;
    Ok(meta)
}

fn build_debian_tar(dir: &Path, tar: &Path) -> Result<(), FixtureError> {
    let root = dir.join(format!("debootstrap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mirror = apt_mirror();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(&mirror)
        .output()
        .map_err(io("cannot run debootstrap (install the debootstrap package)"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&root);
        return Err(FixtureError::Command {
            command: format!(
                "debootstrap --variant=minbase bookworm {} {mirror}",
                root.display()
            ),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
        });
    }
    // What docker's debian image leaves out too: downloaded packages and apt lists.
    let (r, t) = (root.display(), tar.display());
    let result = run_sh(&format!(
        "rm -rf '{r}'/var/cache/apt/archives/*.deb '{r}'/var/lib/apt/lists/* && \
         tar --numeric-owner --xattrs --xattrs-include='*' -C '{r}' -cf '{t}.tmp' . && mv '{t}.tmp' '{t}'"
    ));
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// The Debian mirror of this machine's apt sources (deb822 `URIs:` or a `deb` line), else deb.debian.org.
pub fn apt_mirror() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.push(PathBuf::from("/etc/apt/sources.list"));
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let url = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| w.starts_with("http"))
            } else {
                None
            };
            if let Some(u) = url
                && u.starts_with("http")
                && !u.contains("security")
            {
                return u.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn run_sh(script: &str) -> Result<(), FixtureError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .map_err(io(format!("cannot run sh -c {script}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FixtureError::Command {
            command: script.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn sha256_file(path: &Path) -> Result<String, FixtureError> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(io("cannot run sha256sum"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(h) if out.status.success() && h.len() == 64 => Ok(format!("sha256:{h}")),
        _ => Err(FixtureError::Cache(path.to_path_buf())),
    }
}

/// Pushes the cached Debian bookworm minbase image (one gzip layer, OCI manifest) as `name`.
pub fn debian_image(registry: &Registry, name: &str) -> Result<PushedImage, FixtureError> {
    let cache = debian_cache()?;
    let (repository, _) = split_name(name);
    let mut f =
        std::fs::File::open(&cache.layer).map_err(io(format!("cannot open {}", cache.layer.display())))?;
    registry.push_blob_from(&repository, &cache.layer_digest, cache.layer_size, &mut f)?;
    let layer = PushedLayer {
        digest: cache.layer_digest.clone(),
        size: cache.layer_size,
        diff_id: cache.diff_id.clone(),
        media_type: media_types(OCI_MANIFEST).1.to_string(),
    };
    let config = config_json("amd64", None, std::slice::from_ref(&layer.diff_id), "bash");
    push_image(registry, name, OCI_MANIFEST, config, vec![layer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_starts_serves_and_stops() {
        let reg = Registry::start().expect("start the registry");
        let img = busybox_image(&reg, "fixture/busybox:latest").expect("push busybox");
        let (status, hdrs, body) = reg
            .request(
                "GET",
                "/v2/fixture/busybox/manifests/latest",
                &[("Accept", DOCKER_MANIFEST)],
                &[],
            )
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, img.manifest);
        assert_eq!(
            header(&hdrs, "docker-content-digest").as_deref(),
            Some(img.manifest_digest.as_str())
        );
        assert!(reg.blob_data_path(&img.layers[0].digest).exists());
        let storage = reg.storage_root();
        drop(reg);
        assert!(!storage.exists(), "the storage is removed on drop");
    }

    #[test]
    fn htpasswd_registry_wants_credentials() {
        let reg = Registry::start_with_htpasswd("tester", "s3cret").expect("start the registry");
        let (status, _, _) = reg.request("GET", "/v2/", &[], &[]).unwrap();
        assert_eq!(status, 200, "the fixture sends its credentials");
        let mut raw = TcpStream::connect(reg.addr()).unwrap();
        raw.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(
            answer.to_lowercase().contains("www-authenticate: basic"),
            "{answer}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(split_name("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(split_name("a/b:1"), ("a/b".into(), "1".into()));
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
