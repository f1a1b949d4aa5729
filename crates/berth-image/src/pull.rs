//! Pull (and push): registry ↔ store, with docker's JSON progress messages.
//!
//! A pull resolves the reference, fetches and verifies the config, then for each layer that is not present (by
//! chain id) runs ONE pipeline: the download (resumed with `Range` by the registry client after a broken
//! connection) is hashed against the blob digest on the async side and handed over a bounded channel to a
//! blocking thread that decompresses and hashes the diff id, which hands the tar stream to the thread that writes
//! the files (see [`crate::unpack::unpack_layer`]). Several layers run at once (bounded). Layers land in
//! temporary directories; only when all are verified are they committed (renamed into place) bottom first, then
//! the config and manifest blobs are stored and the image record written last. A failed pull removes what it
//! created and leaves the store as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt as _;
use oci_spec::image::{Descriptor, ImageConfiguration};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::digest::{Digest, DigestError, Verifier};
use crate::image::{BlobRef, ImageError, ImageId, ImageRecord, ImageStore, LayerRef, ManifestRef};
use crate::layers::{LayerError, PendingLayer, chain_ids};
use crate::reference::Reference;
use crate::registry::{Platform, RegistryClient, RegistryError};
use crate::store::StoreError;
use crate::unpack::{UnpackError, UnpackedLayer, unpack_layer};

/// One of docker's JSON progress messages (`JSONMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The text ("Downloading", "Pull complete", "Digest: sha256:…", …).
    pub status: String,
    /// The layer (12 hex digits of its blob digest) or the tag the message is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes done and total, for "Downloading", "Extracting" and "Pushing".
    #[serde(rename = "progressDetail")]
    pub progress_detail: ProgressDetail,
    /// A rendered bar, as docker sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// Counters of a progress message (`{}` when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl Progress {
    fn status(status: impl Into<String>, id: Option<&str>) -> Progress {
        Progress {
            status: status.into(),
            id: id.map(str::to_owned),
            progress_detail: ProgressDetail::default(),
            progress: None,
        }
    }

    fn bytes(status: &str, id: &str, current: u64, total: u64) -> Progress {
        Progress {
            status: status.to_owned(),
            id: Some(id.to_owned()),
            progress_detail: ProgressDetail {
                current: Some(current),
                total: Some(total),
            },
            progress: Some(bar(current, total)),
        }
    }
}

/// docker's bar: `[=====>      ]  12.3MB/45.6MB`.
fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let mut s = String::with_capacity(80);
    s.push('[');
    for i in 0..WIDTH {
        s.push(if i < filled {
            '='
        } else if i == filled {
            '>'
        } else {
            ' '
        });
    }
    s.push_str("] ");
    s.push_str(&format!("{:>8}/{}", human(current), human(total)));
    s
}

/// Sizes as docker prints them (decimal units).
pub fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry failed (unknown image, down, unauthorised, …).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The config is not an image config.
    #[error("the config {digest} of {reference} is not a valid image config")]
    Config {
        /// The image.
        reference: String,
        /// The config digest.
        digest: Digest,
        /// The parse error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The manifest and config disagree.
    #[error("the image {reference} is inconsistent: {reason}")]
    Inconsistent {
        /// The image.
        reference: String,
        /// What disagrees.
        reason: String,
    },
    /// A downloaded layer does not match its digest.
    #[error("the layer {digest} of {reference} is corrupt")]
    LayerDigest {
        /// The image.
        reference: String,
        /// The layer blob.
        digest: Digest,
        /// The mismatch.
        #[source]
        source: DigestError,
    },
    /// A layer could not be unpacked.
    #[error("cannot unpack the layer {digest} of {reference}")]
    Unpack {
        /// The image.
        reference: String,
        /// The layer blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<UnpackError>,
    },
    /// The layer store failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image records failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A worker thread failed.
    #[error("a pull worker stopped unexpectedly: {0}")]
    Worker(String),
}

/// A `Read` over a tokio channel of chunks, for the blocking side of the pipeline.
pub(crate) struct TokioChunkReader {
    pub(crate) rx: mpsc::Receiver<Bytes>,
    pub(crate) current: Bytes,
}

impl std::io::Read for TokioChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

fn to_digest(d: &oci_spec::image::Digest, reference: &Reference) -> Result<Digest, PullError> {
    Digest::try_from(d).map_err(|e| PullError::Inconsistent {
        reference: reference.to_string(),
        reason: format!("the digest {d} is invalid: {e}"),
    })
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// Sends a message, ignoring a receiver that went away (the pull goes on).
async fn say(tx: &mpsc::Sender<Progress>, p: Progress) {
    let _ = tx.send(p).await;
}

/// A layer unpacked into a pending directory, or why not.
type LayerResult = Result<(PendingLayer, UnpackedLayer), PullError>;

struct LayerJob {
    index: usize,
    blob: BlobRef,
    diff_id: Digest,
}

impl ImageStore {
    /// Pulls `r` for `platform` into the store; returns the image id (config digest). Progress messages go to
    /// `progress` (docker's sequence: "Pulling from …", per layer "Pulling fs layer" / "Already exists",
    /// "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete", then "Digest: …"
    /// and "Status: …").
    pub async fn pull(
        &self,
        client: &RegistryClient,
        r: &Reference,
        platform: &Platform,
        progress: mpsc::Sender<Progress>,
    ) -> Result<ImageId, PullError> {
        let tag_id = r
            .tag()
            .map(str::to_owned)
            .or_else(|| r.digest().map(|d| d.to_string()));
        say(
            &progress,
            Progress::status(format!("Pulling from {}", r.repository()), tag_id.as_deref()),
        )
        .await;
        let resolved = client.resolve(r, platform).await?;
        let manifest = &resolved.manifest;
        let config_digest = to_digest(manifest.config().digest(), r)?;
        let repo_digest = format!("{}@{}", r.familiar_name(), resolved.repo_digest());
        let source = r.name();
        let mut pins = self.pin();
        pins.add(&config_digest);

        let config_bytes = client
            .fetch_blob_verified(r, &config_digest, manifest.config().size())
            .await?;
        let config =
            ImageConfiguration::from_reader(&config_bytes[..]).map_err(|source| PullError::Config {
                reference: r.to_string(),
                digest: config_digest.clone(),
                source,
            })?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|e| PullError::Inconsistent {
                    reference: r.to_string(),
                    reason: format!("the config lists the invalid diff id {d:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let descriptors: &Vec<Descriptor> = manifest.layers();
        if descriptors.len() != diff_ids.len() {
            return Err(PullError::Inconsistent {
                reference: r.to_string(),
                reason: format!(
                    "the manifest has {} layers but the config lists {} diff ids",
                    descriptors.len(),
                    diff_ids.len()
                ),
            });
        }
        let chains = chain_ids(&diff_ids);
        for c in &chains {
            pins.add(c);
        }
        let blobs: Vec<BlobRef> = descriptors
            .iter()
            .map(|d| {
                Ok(BlobRef {
                    digest: to_digest(d.digest(), r)?,
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                })
            })
            .collect::<Result<_, PullError>>()?;

        // Already complete: only record where it came from.
        if self.contains(&config_digest) && chains.iter().all(|c| self.layers.exists(c)) {
            self.add_origin(&config_digest, Some(repo_digest.clone()), Some(source))?;
            say(
                &progress,
                Progress::status(format!("Digest: {}", resolved.repo_digest()), None),
            )
            .await;
            say(
                &progress,
                Progress::status(format!("Status: Image is up to date for {}", r.familiar()), None),
            )
            .await;
            return Ok(config_digest);
        }

        let mut jobs = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            let id = short(&blob.digest);
            if self.layers.exists(&chains[i]) {
                say(&progress, Progress::status("Already exists", Some(&id))).await;
            } else {
                say(&progress, Progress::status("Pulling fs layer", Some(&id))).await;
                jobs.push(LayerJob {
                    index: i,
                    blob: blob.clone(),
                    diff_id: diff_ids[i].clone(),
                });
            }
        }

        // Download and unpack the missing layers, several at once; stop the others at the first failure.
        let failed = Arc::new(AtomicBool::new(false));
        let concurrency = self.options.max_concurrent_downloads.max(1);
        let results: Vec<(usize, LayerResult)> = futures_util::stream::iter(jobs.into_iter().map(|job| {
            let failed = Arc::clone(&failed);
            let progress = progress.clone();
            async move {
                let index = job.index;
                let res = self.fetch_layer(client, r, &job, &progress, &failed).await;
                if res.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (index, res)
            }
        }))
        .buffer_unordered(concurrency)
        .collect()
        .await;
        let mut pending: Vec<Option<(PendingLayer, UnpackedLayer)>> =
            (0..chains.len()).map(|_| None).collect();
        let mut first_error = None;
        for (index, res) in results {
            match res {
                Ok(p) => pending[index] = Some(p),
                Err(e) => {
                    // Prefer a root cause over the "stopped because another layer failed" errors.
                    if first_error.is_none() || !matches!(e, PullError::Worker(_)) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        // Commit bottom first, then the blobs, then the record; undo on failure.
        let store = self.clone();
        let chains2 = chains.clone();
        let diff_ids2 = diff_ids.clone();
        let committed =
            tokio::task::spawn_blocking(move || store.commit_layers(pending, &chains2, &diff_ids2))
                .await
                .map_err(|e| PullError::Worker(e.to_string()))??;
        for (i, blob) in blobs.iter().enumerate() {
            if committed.iter().any(|c| c == &chains[i]) {
                say(
                    &progress,
                    Progress::status("Pull complete", Some(&short(&blob.digest))),
                )
                .await;
            }
        }
        let record = (|| -> Result<ImageRecord, PullError> {
            self.content.write(&config_bytes, Some(&config_digest))?;
            self.content
                .write(&resolved.manifest_bytes, Some(&resolved.manifest_digest))?;
            if let (Some(d), Some(b)) = (&resolved.index_digest, &resolved.index_bytes) {
                self.content.write(b, Some(d))?;
            }
            let mut layers = Vec::with_capacity(chains.len());
            for (i, chain) in chains.iter().enumerate() {
                let info = self.layers.get(chain)?;
                layers.push(LayerRef {
                    chain_id: chain.clone(),
                    diff_id: diff_ids[i].clone(),
                    size: info.size,
                    blob: Some(blobs[i].clone()),
                });
            }
            let size = layers.iter().map(|l| l.size).sum();
            let mut record = ImageRecord {
                id: config_digest.clone(),
                repo_digests: vec![repo_digest.clone()],
                sources: vec![source.clone()],
                created: config.created().clone(),
                size,
                virtual_size: size,
                config_size: config_bytes.len() as u64,
                config: config.clone(),
                layers,
                manifest: Some(ManifestRef {
                    digest: resolved.manifest_digest.clone(),
                    media_type: resolved.media_type.clone(),
                    size: resolved.manifest_bytes.len() as u64,
                }),
            };
            // Another pull of the same image may have written the record meanwhile: keep its origins.
            if let Ok(existing) = self.image(&config_digest) {
                for d in existing.repo_digests {
                    if !record.repo_digests.contains(&d) {
                        record.repo_digests.push(d);
                    }
                }
                for s in existing.sources {
                    if !record.sources.contains(&s) {
                        record.sources.push(s);
                    }
                }
            }
            self.put_record(&record)?;
            Ok(record)
        })();
        if let Err(e) = record {
            for c in &committed {
                let _ = self.layers.remove(c);
            }
            return Err(e);
        }
        say(
            &progress,
            Progress::status(format!("Digest: {}", resolved.repo_digest()), None),
        )
        .await;
        say(
            &progress,
            Progress::status(
                format!("Status: Downloaded newer image for {}", r.familiar()),
                None,
            ),
        )
        .await;
        Ok(config_digest)
    }

    /// Commits the unpacked layers bottom first; returns the chain ids this call created. On failure, removes
    /// those again (the pending ones are dropped, which removes them).
    fn commit_layers(
        &self,
        pending: Vec<Option<(PendingLayer, UnpackedLayer)>>,
        chains: &[Digest],
        diff_ids: &[Digest],
    ) -> Result<Vec<Digest>, PullError> {
        let mut created = Vec::new();
        for (i, p) in pending.into_iter().enumerate() {
            let Some((layer, unpacked)) = p else { continue };
            let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
            let existed = self.layers.exists(&chains[i]);
            match layer.commit(
                &chains[i],
                &diff_ids[i],
                parent,
                unpacked.stats.file_bytes,
                unpacked.stats.tar_bytes,
            ) {
                Ok(_) => {
                    if !existed {
                        created.push(chains[i].clone());
                    }
                }
                Err(e) => {
                    for c in &created {
                        let _ = self.layers.remove(c);
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(created)
    }

    /// Downloads one layer and unpacks it into a pending layer, verifying the blob digest and the diff id.
    async fn fetch_layer(
        &self,
        client: &RegistryClient,
        r: &Reference,
        job: &LayerJob,
        progress: &mpsc::Sender<Progress>,
        failed: &AtomicBool,
    ) -> Result<(PendingLayer, UnpackedLayer), PullError> {
        let id = short(&job.blob.digest);
        let layer = self.layers.begin()?;
        let diff_dir = layer.diff_dir();
        let split = layer.path().join("tar-split.zst");
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let limits = self.options.limits;
        let expected = job.diff_id.to_string();
        // The pending layer lives in the worker, so it is removed only after the worker stopped writing to it
        // (even if this future is dropped).
        let worker = tokio::task::spawn_blocking(move || {
            let reader = TokioChunkReader {
                rx,
                current: Bytes::new(),
            };
            let res = unpack_layer(reader, &diff_dir, &limits, Some(&expected), Some(&split));
            (layer, res)
        });

        let download = async {
            let mut stream = client.fetch_blob(r, &job.blob.digest, job.blob.size, 0).await?;
            let mut verifier = Verifier::with_size(&job.blob.digest, job.blob.size);
            let total = job.blob.size;
            let mut done = 0u64;
            let mut last_report = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if failed.load(Ordering::Relaxed) {
                    return Err(PullError::Worker("stopped because another layer failed".into()));
                }
                verifier.update(&chunk);
                done += chunk.len() as u64;
                if done - last_report >= 512 * 1024 || done == total {
                    last_report = done;
                    let _ = progress.try_send(Progress::bytes("Downloading", &id, done, total));
                }
                if tx.send(chunk).await.is_err() {
                    // The unpacker stopped; its error is the one to report.
                    return Ok(());
                }
            }
            say(progress, Progress::status("Verifying Checksum", Some(&id))).await;
            verifier.verify().map_err(|source| PullError::LayerDigest {
                reference: r.to_string(),
                digest: job.blob.digest.clone(),
                source,
            })?;
            say(progress, Progress::status("Download complete", Some(&id))).await;
            Ok::<(), PullError>(())
        };
        let downloaded = download.await;
        drop(tx);
        let (layer, unpacked) = worker.await.map_err(|e| PullError::Worker(e.to_string()))?;
        downloaded?;
        let unpacked = unpacked.map_err(|source| PullError::Unpack {
            reference: r.to_string(),
            digest: job.blob.digest.clone(),
            source: Box::new(source),
        })?;
        say(
            progress,
            Progress::bytes("Extracting", &id, job.blob.size, job.blob.size),
        )
        .await;
        Ok((layer, unpacked))
    }
}

/// Errors of a push.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image is unknown or its record unreadable.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer's tar could not be rebuilt.
    #[error("cannot rebuild the tar of layer {chain_id}")]
    Assemble {
        /// The layer.
        chain_id: Digest,
        /// The cause.
        #[source]
        source: crate::unpack::AssembleError,
    },
    /// A rebuilt layer tar does not hash to the diff id in the config (the layer was modified on disk).
    #[error("the layer {chain_id} no longer matches its diff id {expected} (rebuilt: {actual})")]
    LayerChanged {
        /// The layer.
        chain_id: Digest,
        /// From the config.
        expected: Digest,
        /// Of the rebuilt tar.
        actual: Digest,
    },
    /// Compressing or reading a layer blob failed.
    #[error("cannot prepare the layer blob of {chain_id}")]
    Blob {
        /// The layer.
        chain_id: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread failed.
    #[error("a push worker stopped unexpectedly: {0}")]
    Worker(String),
}

/// Manifest and layer media types of the two formats.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Writes everything into a sha256 hasher (to check a rebuilt tar against the diff id).
struct HashTee<W: std::io::Write> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl ImageStore {
    /// Rebuilds a layer's original tar from its tar index, gzips it into the content store and returns the blob.
    /// The tar is checked against the diff id on the way.
    pub fn compress_layer(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
        media_type: &str,
    ) -> Result<BlobRef, PushError> {
        let blob_err = |source: std::io::Error| PushError::Blob {
            chain_id: chain_id.clone(),
            source,
        };
        let writer = self.content.writer(None, None)?;
        let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
        let mut tee = HashTee {
            inner: gz,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        };
        crate::unpack::assemble_tar(
            &self.tar_split_path(chain_id),
            &self.layers.diff_dir(chain_id),
            &mut tee,
        )
        .map_err(|source| PushError::Assemble {
            chain_id: chain_id.clone(),
            source,
        })?;
        let HashTee { inner, hasher } = tee;
        let writer = inner.finish().map_err(blob_err)?;
        let actual = Digest::parse(&crate::unpack::sha256_string(hasher))
            .map_err(|e| blob_err(std::io::Error::other(e)))?;
        if &actual != diff_id {
            return Err(PushError::LayerChanged {
                chain_id: chain_id.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        let size = writer.len();
        let digest = writer.commit()?;
        Ok(BlobRef {
            digest,
            size,
            media_type: media_type.to_owned(),
        })
    }

    /// Pushes an image as `r`: each layer is skipped when the repository has its blob, mounted from the
    /// repository it came from when that is on the same registry, else rebuilt, compressed and uploaded; then
    /// the config and the manifest (Docker schema2, or OCI when the image was pulled as OCI). Returns the
    /// manifest digest.
    pub async fn push(
        &self,
        client: &RegistryClient,
        image: &ImageId,
        r: &Reference,
        progress: mpsc::Sender<Progress>,
    ) -> Result<Digest, PushError> {
        let mut rec = self.image(image)?;
        let _pins = {
            let mut p = self.pin();
            p.add(image);
            p
        };
        say(
            &progress,
            Progress::status(format!("The push refers to repository [{}]", r.name()), None),
        )
        .await;
        let oci = rec
            .manifest
            .as_ref()
            .is_some_and(|m| m.media_type == OCI_MANIFEST);
        let (manifest_type, config_type, layer_type) = if oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
        };
        let mut descriptors = Vec::with_capacity(rec.layers.len());
        let mut changed = false;
        for layer in rec.layers.clone().iter().rev() {
            let id = short(layer.blob.as_ref().map_or(&layer.diff_id, |b| &b.digest));
            say(&progress, Progress::status("Preparing", Some(&id))).await;
        }
        for (i, layer) in rec.layers.clone().iter().enumerate() {
            let mut blob = layer.blob.clone();
            let mut done = false;
            if let Some(b) = &blob {
                let id = short(&b.digest);
                if client.blob_exists(r, &b.digest).await? {
                    say(&progress, Progress::status("Layer already exists", Some(&id))).await;
                    done = true;
                } else {
                    for source in &rec.sources {
                        let Some(repo) = source.strip_prefix(&format!("{}/", r.registry())) else {
                            continue;
                        };
                        if repo == r.repository() {
                            continue;
                        }
                        if client.mount_blob(r, &b.digest, repo).await? {
                            say(
                                &progress,
                                Progress::status(format!("Mounted from {repo}"), Some(&id)),
                            )
                            .await;
                            done = true;
                            break;
                        }
                    }
                }
                // Upload the stored blob itself when the content store still has it.
                if !done && self.content.contains(&b.digest, Some(b.size)) {
                    self.upload_blob(client, r, b, &progress).await?;
                    done = true;
                }
            }
            if !done {
                let store = self.clone();
                let chain = layer.chain_id.clone();
                let diff = layer.diff_id.clone();
                let lt = layer_type.to_owned();
                let b = tokio::task::spawn_blocking(move || store.compress_layer(&chain, &diff, &lt))
                    .await
                    .map_err(|e| PushError::Worker(e.to_string()))??;
                if client.blob_exists(r, &b.digest).await? {
                    say(
                        &progress,
                        Progress::status("Layer already exists", Some(&short(&b.digest))),
                    )
                    .await;
                } else {
                    self.upload_blob(client, r, &b, &progress).await?;
                }
                if layer.blob.as_ref() != Some(&b) {
                    rec.layers[i].blob = Some(b.clone());
                    changed = true;
                }
                blob = Some(b);
            }
            let Some(b) = blob else {
                return Err(PushError::Worker("a layer blob is missing after upload".into()));
            };
            descriptors.push(b);
        }

        // The config, then the manifest (the original bytes when nothing changed, so the digest stays).
        let config = self.config_bytes(image)?;
        client
            .push_blob_bytes(r, image, Bytes::from(config.clone()))
            .await?;
        let original = match (&rec.manifest, changed) {
            (Some(m), false) => self
                .content
                .read(&m.digest, Some(m.size))
                .ok()
                .map(|b| (b, m.media_type.clone())),
            _ => None,
        };
        let (manifest_bytes, media_type) = match original {
            Some(o) => o,
            None => {
                let manifest = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": manifest_type,
                    "config": { "mediaType": config_type, "size": config.len(), "digest": image.to_string() },
                    "layers": descriptors.iter().map(|b| serde_json::json!({
                        "mediaType": b.media_type, "size": b.size, "digest": b.digest.to_string(),
                    })).collect::<Vec<_>>(),
                });
                let bytes =
                    serde_json::to_vec_pretty(&manifest).map_err(|e| PushError::Worker(e.to_string()))?;
                (bytes, manifest_type.to_owned())
            }
        };
        let digest = client
            .push_manifest(r, &media_type, Bytes::from(manifest_bytes.clone()))
            .await?;
        self.content.write(&manifest_bytes, Some(&digest))?;
        if changed || rec.manifest.is_none() {
            rec.manifest = Some(ManifestRef {
                digest: digest.clone(),
                media_type,
                size: manifest_bytes.len() as u64,
            });
            self.put_record(&rec)?;
        }
        self.add_origin(
            image,
            Some(format!("{}@{digest}", r.familiar_name())),
            Some(r.name()),
        )?;
        let tag = r.tag().unwrap_or("latest");
        say(
            &progress,
            Progress::status(
                format!("{tag}: digest: {digest} size: {}", manifest_bytes.len()),
                None,
            ),
        )
        .await;
        Ok(digest)
    }

    async fn upload_blob(
        &self,
        client: &RegistryClient,
        r: &Reference,
        b: &BlobRef,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<(), PushError> {
        let id = short(&b.digest);
        let file = self.content.open_blob(&b.digest, Some(b.size))?;
        let total = b.size;
        let tx = progress.clone();
        let idc = id.clone();
        let mut sent = 0u64;
        let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024)
            .map(move |chunk| {
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                    let _ = tx.try_send(Progress::bytes("Pushing", &idc, sent, total));
                }
                chunk
            });
        client.push_blob(r, &b.digest, b.size, stream).await?;
        say(progress, Progress::status("Pushed", Some(&id))).await;
        Ok(())
    }
}
