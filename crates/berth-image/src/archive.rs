//! Image archives: `save` (docker-archive and OCI layout), `load` (both) and `import` of a rootfs tarball.
//!
//! `save` writes what docker 25+ writes: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…` with
//! uncompressed layer tars, configs and OCI manifests) and, for the docker format, also `manifest.json` and
//! `repositories`, so that both old and new loaders read it. Layer tars are rebuilt byte for byte from the
//! layers' tar indexes and checked against the diff ids while they stream out.
//!
//! `load` reads either kind (also docker's legacy `<id>/layer.tar` layout, with its symlinked duplicate layers,
//! and compressed layers of OCI layouts): the entries are spooled into a private temporary directory (names are
//! checked, nothing else is extracted), then each image's layers are unpacked like pulled ones (safe unpack,
//! diff ids verified) and committed, the config stored and the record written last.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_spec::image::ImageConfiguration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::image::{ImageError, ImageId, ImageRecord, ImageStore, LayerRef};
use crate::layers::{LayerError, chain_ids};
use crate::pull::TokioChunkReader;
use crate::reference::Reference;
use crate::store::StoreError;
use crate::unpack::{AssembleError, UnpackError, unpack_layer};

/// Errors of save, load and import.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layer store failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Reading the input or writing the output failed.
    #[error("cannot {op} the archive")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive is not a docker-archive or OCI layout, or is inconsistent.
    #[error("the archive is invalid: {0}")]
    Invalid(String),
    /// A layer of the archive could not be unpacked.
    #[error("cannot unpack the layer {name} of the archive")]
    Unpack {
        /// The layer's name in the archive.
        name: String,
        /// The cause.
        #[source]
        source: UnpackError,
    },
    /// A layer's tar could not be rebuilt for saving.
    #[error("cannot rebuild the tar of layer {chain_id}")]
    Assemble {
        /// The layer.
        chain_id: Digest,
        /// The cause.
        #[source]
        source: AssembleError,
    },
    /// A worker thread failed.
    #[error("an archive worker stopped unexpectedly: {0}")]
    Worker(String),
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ArchiveError {
    move |source| ArchiveError::Io { op, source }
}

fn invalid(msg: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(msg.into())
}

/// The format written by [`ImageStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// docker-archive (`manifest.json`, `repositories`) together with an OCI layout, as docker 25+ writes.
    Docker,
    /// An OCI image layout only.
    Oci,
}

/// Options of [`ImageStore::import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The history comment (`docker import -m`).
    pub message: Option<String>,
    /// The container config (`config` of the image config, from `--change`); empty when `None`.
    pub config: Option<serde_json::Value>,
    /// The platform recorded in the config; the host's when `None`.
    pub platform: Option<crate::registry::Platform>,
}

/// A `Write` that sends chunks to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(256 * 1024)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Counts and hashes what passes.
struct HashCount<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one ustar header for a regular file or directory.
fn tar_header<W: Write>(w: &mut W, name: &str, size: u64, dir: bool) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mtime(0);
    h.set_cksum();
    w.write_all(h.as_bytes())
}

fn tar_pad<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let pad = (512 - (size % 512) as usize) % 512;
    w.write_all(&[0u8; 512][..pad])
}

fn tar_file<W: Write>(w: &mut W, name: &str, data: &[u8]) -> io::Result<()> {
    tar_header(w, name, data.len() as u64, false)?;
    w.write_all(data)?;
    tar_pad(w, data.len() as u64)
}

impl ImageStore {
    /// Writes `images` (each with the references to record as its tags) as one archive to `out`.
    pub async fn save<W: AsyncWrite + Unpin + Send>(
        &self,
        images: &[(ImageId, Vec<Reference>)],
        format: ArchiveFormat,
        mut out: W,
    ) -> Result<(), ArchiveError> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let store = self.clone();
        let images = images.to_vec();
        let worker = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(256 * 1024),
            };
            let res = store.write_archive(&images, format, &mut w);
            let flushed = w.flush().map_err(io_err("write"));
            res.and(flushed)
        });
        let mut write_err = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = out.write_all(&chunk).await {
                write_err = Some(e);
                break;
            }
        }
        drop(rx);
        let res = worker.await.map_err(|e| ArchiveError::Worker(e.to_string()))?;
        if let Some(e) = write_err {
            return Err(io_err("write")(e));
        }
        res?;
        out.flush().await.map_err(io_err("write"))?;
        Ok(())
    }

    fn write_archive<W: Write>(
        &self,
        images: &[(ImageId, Vec<Reference>)],
        format: ArchiveFormat,
        w: &mut W,
    ) -> Result<(), ArchiveError> {
        let wr = io_err("write");
        let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
        for d in ["blobs/", "blobs/sha256/"] {
            tar_header(w, d, 0, true).map_err(io_err("write"))?;
        }
        let mut docker_manifest = Vec::new();
        let mut repositories: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        let mut index_manifests = Vec::new();
        for (id, refs) in images {
            let rec = self.image(id)?;
            let config = self.config_bytes(id)?;
            let config_name = format!("blobs/sha256/{}", id.hex());
            if written.insert(config_name.clone()) {
                tar_file(w, &config_name, &config).map_err(io_err("write"))?;
            }
            let mut layer_names = Vec::new();
            let mut layer_descs = Vec::new();
            for l in &rec.layers {
                let name = format!("blobs/sha256/{}", l.diff_id.hex());
                let info = self.layers.get(&l.chain_id)?;
                if written.insert(name.clone()) {
                    tar_header(w, &name, info.tar_size, false).map_err(io_err("write"))?;
                    let mut hc = HashCount {
                        inner: &mut *w,
                        hasher: <sha2::Sha256 as sha2::Digest>::new(),
                        len: 0,
                    };
                    crate::unpack::assemble_tar(
                        &self.tar_split_path(&l.chain_id),
                        &self.layers.diff_dir(&l.chain_id),
                        &mut hc,
                    )
                    .map_err(|source| ArchiveError::Assemble {
                        chain_id: l.chain_id.clone(),
                        source,
                    })?;
                    let HashCount { hasher, len, .. } = hc;
                    let actual = crate::unpack::sha256_string(hasher);
                    if len != info.tar_size || actual != l.diff_id.to_string() {
                        return Err(ArchiveError::Invalid(format!(
                            "the layer {} no longer matches its diff id {} (rebuilt: {actual}, {len} bytes)",
                            l.chain_id, l.diff_id
                        )));
                    }
                    tar_pad(w, len).map_err(io_err("write"))?;
                }
                layer_names.push(name);
                layer_descs.push(serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "size": info.tar_size,
                    "digest": l.diff_id.to_string(),
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": id.to_string() },
                "layers": layer_descs,
            });
            let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
            let manifest_digest = Digest::sha256(&manifest_bytes);
            let mname = format!("blobs/sha256/{}", manifest_digest.hex());
            if written.insert(mname.clone()) {
                tar_file(w, &mname, &manifest_bytes).map_err(io_err("write"))?;
            }
            let tags: Vec<String> = refs
                .iter()
                .filter(|r| r.tag().is_some())
                .map(|r| r.familiar())
                .collect();
            if tags.is_empty() {
                index_manifests.push(serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": manifest_bytes.len(), "digest": manifest_digest.to_string(),
                }));
            }
            for r in refs.iter().filter(|r| r.tag().is_some()) {
                index_manifests.push(serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": manifest_bytes.len(), "digest": manifest_digest.to_string(),
                    "annotations": {
                        "io.containerd.image.name": r.to_string(),
                        "org.opencontainers.image.ref.name": r.tag().unwrap_or("latest"),
                    },
                }));
                if let Some(top) = rec.layers.last() {
                    let entry = repositories
                        .entry(r.familiar_name())
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(m) = entry.as_object_mut() {
                        m.insert(
                            r.tag().unwrap_or("latest").to_owned(),
                            serde_json::json!(top.diff_id.hex()),
                        );
                    }
                }
            }
            docker_manifest.push(serde_json::json!({
                "Config": config_name,
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(tags) },
                "Layers": layer_names,
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index_manifests,
        });
        tar_file(
            w,
            "index.json",
            &serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?,
        )
        .map_err(io_err("write"))?;
        tar_file(w, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("write"))?;
        if format == ArchiveFormat::Docker {
            tar_file(
                w,
                "manifest.json",
                &serde_json::to_vec(&docker_manifest).map_err(|e| invalid(e.to_string()))?,
            )
            .map_err(io_err("write"))?;
            if !repositories.is_empty() {
                tar_file(
                    w,
                    "repositories",
                    &serde_json::to_vec(&repositories).map_err(|e| invalid(e.to_string()))?,
                )
                .map_err(io_err("write"))?;
            }
        }
        w.write_all(&[0u8; 1024]).map_err(wr)?;
        Ok(())
    }

    /// Loads a docker-archive or OCI layout; returns each image with the tags the archive names for it.
    pub async fn load<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
    ) -> Result<Vec<(ImageId, Vec<String>)>, ArchiveError> {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let store = self.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let reader = TokioChunkReader {
                rx,
                current: Bytes::new(),
            };
            store.load_sync(reader)
        });
        let fed = feed(input, tx).await;
        let res = worker.await.map_err(|e| ArchiveError::Worker(e.to_string()))?;
        fed?;
        res
    }

    fn spool_dir(&self) -> Result<SpoolDir, ArchiveError> {
        let base = self.root.join("tmp");
        std::fs::create_dir_all(&base).map_err(io_err("create a temporary directory for"))?;
        // Leftovers of a crash.
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let age = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a.as_secs() > 24 * 3600) {
                    let _ = crate::unpack::remove_tree(&e.path());
                }
            }
        }
        let dir = base.join(format!("load-{:016x}", fastrand::u64(..)));
        std::fs::create_dir(&dir).map_err(io_err("create a temporary directory for"))?;
        Ok(SpoolDir(dir))
    }

    /// Spools the archive's files, then loads the images it describes.
    pub(crate) fn load_sync<R: Read>(&self, input: R) -> Result<Vec<(ImageId, Vec<String>)>, ArchiveError> {
        let spool = self.spool_dir()?;
        let files = spool_archive(input, &spool.0)?;
        let mut pins = self.pin();
        let mut out = Vec::new();
        if let Some(manifest) = files.get("manifest.json") {
            let data = std::fs::read(manifest).map_err(io_err("read"))?;
            let entries: Vec<serde_json::Value> =
                serde_json::from_slice(&data).map_err(|e| invalid(format!("manifest.json: {e}")))?;
            for e in entries {
                let config = e["Config"]
                    .as_str()
                    .ok_or_else(|| invalid("manifest.json: an entry has no Config"))?;
                let layers: Vec<String> = e["Layers"]
                    .as_array()
                    .ok_or_else(|| invalid("manifest.json: an entry has no Layers"))?
                    .iter()
                    .map(|l| {
                        l.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| invalid("manifest.json: a layer is not a string"))
                    })
                    .collect::<Result<_, _>>()?;
                let tags: Vec<String> = e["RepoTags"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let config_path = files
                    .get(config)
                    .ok_or_else(|| invalid(format!("the config {config} is missing")))?;
                let layer_paths = layers
                    .iter()
                    .map(|l| {
                        files
                            .get(l.as_str())
                            .cloned()
                            .ok_or_else(|| invalid(format!("the layer {l} is missing")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let id = self.load_image(config_path, &layers, &layer_paths, &mut pins)?;
                out.push((id, tags));
            }
        } else if let Some(index) = files.get("index.json") {
            let data = std::fs::read(index).map_err(io_err("read"))?;
            let index: serde_json::Value =
                serde_json::from_slice(&data).map_err(|e| invalid(format!("index.json: {e}")))?;
            let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
            let blob = |digest: &str| -> Result<PathBuf, ArchiveError> {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| invalid(format!("unsupported digest {digest}")))?;
                files
                    .get(format!("blobs/sha256/{hex}").as_str())
                    .cloned()
                    .ok_or_else(|| invalid(format!("the blob {digest} is missing")))
            };
            for m in manifests {
                let digest = m["digest"]
                    .as_str()
                    .ok_or_else(|| invalid("index.json: a manifest has no digest"))?;
                let path = blob(digest)?;
                let bytes = std::fs::read(&path).map_err(io_err("read"))?;
                let d = Digest::parse(digest).map_err(|e| invalid(e.to_string()))?;
                d.verify(&bytes)
                    .map_err(|e| invalid(format!("the manifest {digest}: {e}")))?;
                let manifest: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("the manifest {digest}: {e}")))?;
                if manifest["manifests"].is_array() {
                    return Err(invalid("nested indexes in an OCI layout are not supported"));
                }
                let config = manifest["config"]["digest"]
                    .as_str()
                    .ok_or_else(|| invalid("a manifest has no config"))?;
                let layers: Vec<String> = manifest["layers"]
                    .as_array()
                    .ok_or_else(|| invalid("a manifest has no layers"))?
                    .iter()
                    .map(|l| {
                        l["digest"]
                            .as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| invalid("a layer has no digest"))
                    })
                    .collect::<Result<_, _>>()?;
                let layer_paths = layers.iter().map(|l| blob(l)).collect::<Result<Vec<_>, _>>()?;
                let id = self.load_image(&blob(config)?, &layers, &layer_paths, &mut pins)?;
                let mut tags = Vec::new();
                if let Some(name) = m["annotations"]["io.containerd.image.name"].as_str() {
                    tags.push(name.to_owned());
                } else if let Some(tag) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() {
                    tags.push(tag.to_owned());
                }
                out.push((id, tags));
            }
        } else {
            return Err(invalid("neither manifest.json nor index.json is in it"));
        }
        Ok(out)
    }

    /// Loads one image from spooled files: unpacks missing layers (verified against the config's diff ids),
    /// stores the config, writes the record.
    fn load_image(
        &self,
        config_path: &Path,
        layer_names: &[String],
        layer_paths: &[PathBuf],
        pins: &mut crate::image::PinGuard,
    ) -> Result<ImageId, ArchiveError> {
        let config_bytes = std::fs::read(config_path).map_err(io_err("read"))?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| invalid(format!("the image config: {e}")))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d).map_err(|e| invalid(format!("the config's diff id {d}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != layer_paths.len() {
            return Err(invalid(format!(
                "{} layers, but the config lists {} diff ids",
                layer_paths.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(&diff_ids);
        for c in &chains {
            pins.add(c);
        }
        let mut created = Vec::new();
        let undo = |created: &Vec<Digest>| {
            for c in created {
                let _ = self.layers.remove(c);
            }
        };
        let mut layers = Vec::new();
        for (i, path) in layer_paths.iter().enumerate() {
            if !self.layers.exists(&chains[i]) {
                let pending = self.layers.begin()?;
                let file = std::fs::File::open(path).map_err(io_err("read"))?;
                let split = pending.path().join("tar-split.zst");
                let unpacked = match unpack_layer(
                    file,
                    &pending.diff_dir(),
                    &self.options.limits,
                    Some(&diff_ids[i].to_string()),
                    Some(&split),
                ) {
                    Ok(u) => u,
                    Err(source) => {
                        undo(&created);
                        return Err(ArchiveError::Unpack {
                            name: layer_names[i].clone(),
                            source,
                        });
                    }
                };
                let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
                match pending.commit(
                    &chains[i],
                    &diff_ids[i],
                    parent,
                    unpacked.stats.file_bytes,
                    unpacked.stats.tar_bytes,
                ) {
                    Ok(_) => created.push(chains[i].clone()),
                    Err(e) => {
                        undo(&created);
                        return Err(e.into());
                    }
                }
            }
            let info = self.layers.get(&chains[i])?;
            layers.push(LayerRef {
                chain_id: chains[i].clone(),
                diff_id: diff_ids[i].clone(),
                size: info.size,
                blob: None,
            });
        }
        let result = (|| {
            let id = self.content.write(&config_bytes, None)?;
            if self.contains(&id) {
                return Ok(id);
            }
            let size = layers.iter().map(|l| l.size).sum();
            let record = ImageRecord {
                id: id.clone(),
                repo_digests: Vec::new(),
                sources: Vec::new(),
                created: config.created().clone(),
                size,
                virtual_size: size,
                config_size: config_bytes.len() as u64,
                config: config.clone(),
                layers,
                manifest: None,
            };
            self.put_record(&record)?;
            Ok::<_, ArchiveError>(id)
        })();
        if result.is_err() {
            undo(&created);
        }
        result
    }

    /// Imports a rootfs tarball (plain, gzip or zstd) as a one-layer image.
    pub async fn import<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
        options: ImportOptions,
    ) -> Result<ImageId, ArchiveError> {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let store = self.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let reader = TokioChunkReader {
                rx,
                current: Bytes::new(),
            };
            store.import_sync(reader, options)
        });
        let fed = feed(input, tx).await;
        let res = worker.await.map_err(|e| ArchiveError::Worker(e.to_string()))?;
        fed?;
        res
    }

    fn import_sync<R: Read + Send>(&self, input: R, options: ImportOptions) -> Result<ImageId, ArchiveError> {
        let mut pins = self.pin();
        let pending = self.layers.begin()?;
        let split = pending.path().join("tar-split.zst");
        let unpacked = unpack_layer(
            input,
            &pending.diff_dir(),
            &self.options.limits,
            None,
            Some(&split),
        )
        .map_err(|source| ArchiveError::Unpack {
            name: "the imported tarball".into(),
            source,
        })?;
        let diff_id = Digest::parse(&unpacked.diff_id).map_err(|e| invalid(e.to_string()))?;
        pins.add(&diff_id);
        let existed = self.layers.exists(&diff_id);
        let info = pending.commit(
            &diff_id,
            &diff_id,
            None,
            unpacked.stats.file_bytes,
            unpacked.stats.tar_bytes,
        )?;
        let platform = options.platform.unwrap_or_else(crate::registry::Platform::host);
        let created = rfc3339_now();
        let mut config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "created": created,
            "config": options.config.unwrap_or_else(|| serde_json::json!({})),
            "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
            "history": [{ "created": created, "created_by": "berth import", "comment": options.message.clone().unwrap_or_default() }],
        });
        if let Some(v) = platform.variant {
            config["variant"] = serde_json::json!(v);
        }
        let result = (|| {
            let config_bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
            let parsed =
                ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| invalid(e.to_string()))?;
            let id = self.content.write(&config_bytes, None)?;
            let record = ImageRecord {
                id: id.clone(),
                repo_digests: Vec::new(),
                sources: Vec::new(),
                created: Some(created.clone()),
                size: info.size,
                virtual_size: info.size,
                config_size: config_bytes.len() as u64,
                config: parsed,
                layers: vec![LayerRef {
                    chain_id: diff_id.clone(),
                    diff_id: diff_id.clone(),
                    size: info.size,
                    blob: None,
                }],
                manifest: None,
            };
            self.put_record(&record)?;
            Ok::<_, ArchiveError>(id)
        })();
        if result.is_err() && !existed {
            let _ = self.layers.remove(&diff_id);
        }
        result
    }
}

/// Reads `input` and sends it in chunks; a closed receiver ends feeding quietly (the worker's error explains).
async fn feed<R: AsyncRead + Unpin>(mut input: R, tx: mpsc::Sender<Bytes>) -> Result<(), ArchiveError> {
    loop {
        let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
        let n = input.read_buf(&mut buf).await.map_err(io_err("read"))?;
        if n == 0 {
            return Ok(());
        }
        if tx.send(buf.freeze()).await.is_err() {
            return Ok(());
        }
    }
}

/// A temporary directory removed on drop.
struct SpoolDir(PathBuf);

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = crate::unpack::remove_tree(&self.0);
    }
}

/// Copies the archive's regular files into `dir` (flat, numbered), returning archive path → spooled file.
/// Symlinks (docker's legacy format links duplicate `layer.tar`s) become aliases of their target inside the
/// archive. Names are cleaned; a name that leaves the archive is refused. Nothing is extracted by name.
fn spool_archive<R: Read>(input: R, dir: &Path) -> Result<HashMap<String, PathBuf>, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut files: HashMap<String, PathBuf> = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let entries = archive.entries().map_err(io_err("read"))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(io_err("read"))?;
        let raw = entry.path_bytes().into_owned();
        let name = crate::unpack::clean_path(&raw)
            .ok_or_else(|| {
                invalid(format!(
                    "the entry {:?} leaves the archive",
                    String::from_utf8_lossy(&raw)
                ))
            })?
            .join("/");
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dest = dir.join(format!("{n:08}"));
                let mut f = std::fs::File::create(&dest).map_err(io_err("spool"))?;
                io::copy(&mut entry, &mut f).map_err(io_err("read"))?;
                files.insert(name, dest);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                    name.rsplit_once('/')
                        .map(|(p, _)| format!("{p}/"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let mut joined = base.into_bytes();
                joined.extend_from_slice(&target);
                let t = crate::unpack::clean_path(&joined)
                    .ok_or_else(|| invalid(format!("the link {name} points outside the archive")))?
                    .join("/");
                links.push((name, t));
            }
            _ => {}
        }
    }
    for (name, target) in links {
        if let Some(p) = files.get(&target).cloned() {
            files.insert(name, p);
        }
    }
    Ok(files)
}

/// The current time as RFC 3339 (UTC, seconds).
fn rfc3339_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
