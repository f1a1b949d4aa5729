//! Images: the records (config, history, layer chain) and the [`ImageStore`] that ties the content store and
//! the layer store together.
//!
//! On disk, under the store's root (e.g. `/var/lib/berth`):
//!
//! ```text
//! blobs/sha256/<hex>        configs, manifests and indexes (see `store`)
//! overlay2/...              layers by chain id (see `layers`)
//! image/<config hex>.json   one record per image, written last (temp file, fsync, rename)
//! ```
//!
//! Tags are the engine's business; the store knows images by id (the config digest). Which blobs and layers are
//! still needed is computed by reachability from the records ([`ImageStore::gc`]); blobs and layers used by a pull
//! or load in progress are pinned and never collected.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layers::{LayerError, LayerStore};
use crate::store::{ContentStore, StoreError};
use crate::unpack::Limits;

/// An image id: the digest of its config.
pub type ImageId = Digest;

/// Errors of image operations.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not in the store.
    #[error("no such image: {0}")]
    NotFound(ImageId),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layer store failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A record or config is unreadable.
    #[error("the image record {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// A compressed layer blob as a registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer's chain id (its id in the layer store).
    pub chain_id: Digest,
    /// The digest of its uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Bytes of file data in the layer.
    pub size: u64,
    /// The compressed blob it was pulled or loaded from, if any (reused for push when the registry has it).
    pub blob: Option<BlobRef>,
}

/// The manifest an image was pulled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    /// Its digest.
    pub digest: Digest,
    /// Its media type (Docker schema2 or OCI).
    pub media_type: String,
    /// Its size.
    pub size: u64,
}

/// What the store knows about one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id (config digest).
    pub id: ImageId,
    /// `registry/repository@digest` of the manifests (or indexes) it was pulled by.
    pub repo_digests: Vec<String>,
    /// `registry/repository` it was pulled from (for cross-repository mounts on push).
    pub sources: Vec<String>,
    /// The config's `created` time (RFC 3339), if any.
    pub created: Option<String>,
    /// Bytes of file data in all its layers.
    pub size: u64,
    /// Same as `size` (docker reports both).
    pub virtual_size: u64,
    /// The config's size in bytes.
    pub config_size: u64,
    /// The image config (incl. history and rootfs).
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The manifest it was pulled or loaded with, if any.
    pub manifest: Option<ManifestRef>,
}

impl ImageRecord {
    /// The top layer's chain id (`None` for an image without layers).
    pub fn top_layer(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// Space used by the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Number of images.
    pub images: usize,
    /// Number of layers.
    pub layers: usize,
    /// Bytes of file data in all layers (each shared layer counted once).
    pub layers_size: u64,
    /// Bytes of blobs in the content store.
    pub blobs_size: u64,
    /// Per image: (id, size of its layers, size of layers it shares with other images).
    pub per_image: Vec<(ImageId, u64, u64)>,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: Vec<Digest>,
    /// Layers removed (chain ids).
    pub layers_removed: Vec<Digest>,
    /// Bytes reclaimed (blob sizes plus layer file data).
    pub bytes_reclaimed: u64,
}

/// Options of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Limits applied to every layer unpacked.
    pub limits: Limits,
    /// Layers downloaded at once by a pull.
    pub max_concurrent_downloads: usize,
    /// fsync blobs and image records before they become visible.
    pub sync: bool,
    /// Flush a layer's files to disk (syncfs) before it is renamed into place. Off by default, like docker: the
    /// rename already makes a killed daemon leave no half-written layer visible; this adds safety against power
    /// loss (data of a renamed layer not yet on disk) for about the time of writing the layer out.
    pub sync_layers: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            limits: Limits::default(),
            max_concurrent_downloads: 3,
            sync: true,
            sync_layers: false,
        }
    }
}

/// Blobs and layers held by operations in progress (never collected).
#[derive(Debug, Default)]
pub(crate) struct Pins {
    counts: HashMap<Digest, usize>,
}

/// Releases pins when dropped.
pub(crate) struct PinGuard {
    pins: Arc<Mutex<Pins>>,
    held: Vec<Digest>,
}

impl PinGuard {
    pub(crate) fn add(&mut self, d: &Digest) {
        if let Ok(mut p) = self.pins.lock() {
            *p.counts.entry(d.clone()).or_insert(0) += 1;
            self.held.push(d.clone());
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pins.lock() {
            for d in self.held.drain(..) {
                if let Some(c) = p.counts.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        p.counts.remove(&d);
                    }
                }
            }
        }
    }
}

/// The image store: content store, layer store and image records under one root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) layers: LayerStore,
    pub(crate) options: StoreOptions,
    pins: Arc<Mutex<Pins>>,
    /// Serialises record writes and GC.
    records_lock: Arc<Mutex<()>>,
}

impl ImageStore {
    /// Opens (creating) a store at `root` with default options; removes what a crash left half-written.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens (creating) a store at `root`.
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<ImageStore, ImageError> {
        let mut content = ContentStore::open(root)?;
        content.set_sync(options.sync);
        let mut layers = LayerStore::open(root)?;
        layers.set_sync(options.sync_layers);
        let images = root.join("image");
        std::fs::create_dir_all(&images).map_err(|source| ImageError::Io {
            op: "create the directory",
            path: images.clone(),
            source,
        })?;
        for entry in std::fs::read_dir(&images).map_err(|source| ImageError::Io {
            op: "read the directory",
            path: images.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| ImageError::Io {
                op: "read the directory",
                path: images.clone(),
                source,
            })?;
            if entry.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ImageStore {
            root: root.to_owned(),
            content,
            layers,
            options,
            pins: Arc::default(),
            records_lock: Arc::default(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The layer store.
    pub fn layer_store(&self) -> &LayerStore {
        &self.layers
    }

    /// The options.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn pin(&self) -> PinGuard {
        PinGuard {
            pins: Arc::clone(&self.pins),
            held: Vec::new(),
        }
    }

    fn record_path(&self, id: &ImageId) -> PathBuf {
        self.root.join("image").join(format!("{}.json", id.hex()))
    }

    /// The record of an image.
    pub fn image(&self, id: &ImageId) -> Result<ImageRecord, ImageError> {
        let path = self.record_path(id);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ImageError::NotFound(id.clone())),
            Err(source) => {
                return Err(ImageError::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&data).map_err(|source| ImageError::Corrupt { path, source })
    }

    /// Whether the image is in the store.
    pub fn contains(&self, id: &ImageId) -> bool {
        self.record_path(id).is_file()
    }

    /// Finds images whose id starts with `prefix` (hex, with or without `sha256:`).
    pub fn find_by_prefix(&self, prefix: &str) -> Result<Vec<ImageId>, ImageError> {
        let p = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        Ok(self
            .images()?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| id.hex().starts_with(p))
            .collect())
    }

    /// Every image record.
    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("image");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|source| ImageError::Io {
            op: "read the directory",
            path: dir.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| ImageError::Io {
                op: "read the directory",
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(id) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            match self.image(&id) {
                Ok(r) => out.push(r),
                Err(ImageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Writes a record (temp file, fsync, rename). Call after its blobs and layers exist.
    pub fn put_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let _guard = self.records_lock.lock().map_err(|_| ImageError::Io {
            op: "lock the records of",
            path: self.root.clone(),
            source: io::Error::other("a thread panicked while holding the lock"),
        })?;
        self.write_record(record)
    }

    fn write_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let path = self.record_path(&record.id);
        let tmp = self
            .root
            .join("image")
            .join(format!(".tmp-{:016x}", fastrand::u64(..)));
        let data = serde_json::to_vec_pretty(record).map_err(|source| ImageError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let io = |op: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| ImageError::Io { op, path: p, source }
        };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&data).map_err(io("write", &tmp))?;
            if self.options.sync {
                f.sync_all().map_err(io("sync", &tmp))?;
            }
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("rename the record into place at", &path)(e)
        })?;
        Ok(())
    }

    /// Adds repo digests and sources to an existing record.
    pub(crate) fn add_origin(
        &self,
        id: &ImageId,
        repo_digest: Option<String>,
        source: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let _guard = self.records_lock.lock().map_err(|_| ImageError::Io {
            op: "lock the records of",
            path: self.root.clone(),
            source: io::Error::other("a thread panicked while holding the lock"),
        })?;
        let mut rec = self.image(id)?;
        let mut changed = false;
        if let Some(d) = repo_digest
            && !rec.repo_digests.contains(&d)
        {
            rec.repo_digests.push(d);
            changed = true;
        }
        if let Some(s) = source
            && !rec.sources.contains(&s)
        {
            rec.sources.push(s);
            changed = true;
        }
        if changed {
            self.write_record(&rec)?;
        }
        Ok(rec)
    }

    /// Removes an image's record (the engine checks containers and tags first). Its blobs and layers go at the
    /// next [`gc`](Self::gc).
    pub fn remove_image(&self, id: &ImageId) -> Result<(), ImageError> {
        let _guard = self.records_lock.lock().map_err(|_| ImageError::Io {
            op: "lock the records of",
            path: self.root.clone(),
            source: io::Error::other("a thread panicked while holding the lock"),
        })?;
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::NotFound(id.clone())),
            Err(source) => Err(ImageError::Io {
                op: "remove",
                path,
                source,
            }),
        }
    }

    /// The `diff/` directories of an image's layers, top first (overlay's `lowerdir` order).
    pub fn layer_dirs(&self, id: &ImageId) -> Result<Vec<PathBuf>, ImageError> {
        let rec = self.image(id)?;
        match rec.top_layer() {
            None => Ok(Vec::new()),
            Some(top) => Ok(self.layers.lower_dirs(top)?),
        }
    }

    /// Removes blobs and layers that no image record references and no operation in progress holds.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        let _guard = self.records_lock.lock().map_err(|_| ImageError::Io {
            op: "lock the records of",
            path: self.root.clone(),
            source: io::Error::other("a thread panicked while holding the lock"),
        })?;
        let pinned: HashSet<Digest> = match self.pins.lock() {
            Ok(p) => p.counts.keys().cloned().collect(),
            Err(_) => {
                return Err(ImageError::Io {
                    op: "lock the pins of",
                    path: self.root.clone(),
                    source: io::Error::other("a thread panicked while holding the lock"),
                });
            }
        };
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut layers: HashSet<Digest> = HashSet::new();
        for rec in self.images()? {
            blobs.insert(rec.id.clone());
            if let Some(m) = &rec.manifest {
                blobs.insert(m.digest.clone());
            }
            for l in &rec.layers {
                layers.insert(l.chain_id.clone());
                if let Some(b) = &l.blob {
                    blobs.insert(b.digest.clone());
                }
            }
        }
        let mut report = GcReport::default();
        for info in self.layers.list()? {
            if !layers.contains(&info.chain_id) && !pinned.contains(&info.chain_id) {
                self.layers.remove(&info.chain_id)?;
                report.bytes_reclaimed += info.size;
                report.layers_removed.push(info.chain_id);
            }
        }
        for (d, size) in self.content.list()? {
            if !blobs.contains(&d) && !pinned.contains(&d) {
                self.content.remove(&d)?;
                report.bytes_reclaimed += size;
                report.blobs_removed.push(d);
            }
        }
        Ok(report)
    }

    /// Space used by images, layers and blobs.
    pub fn disk_usage(&self) -> Result<DiskUsage, ImageError> {
        let images = self.images()?;
        let layer_list = self.layers.list()?;
        let mut users: HashMap<Digest, usize> = HashMap::new();
        for rec in &images {
            for l in &rec.layers {
                *users.entry(l.chain_id.clone()).or_insert(0) += 1;
            }
        }
        let per_image = images
            .iter()
            .map(|rec| {
                let shared = rec
                    .layers
                    .iter()
                    .filter(|l| users.get(&l.chain_id).copied().unwrap_or(0) > 1)
                    .map(|l| l.size)
                    .sum();
                (rec.id.clone(), rec.size, shared)
            })
            .collect();
        Ok(DiskUsage {
            images: images.len(),
            layers: layer_list.len(),
            layers_size: layer_list.iter().map(|l| l.size).sum(),
            blobs_size: self.content.list()?.iter().map(|(_, s)| s).sum(),
            per_image,
        })
    }

    /// The config of an image as stored (the exact bytes, whose digest is the id).
    pub fn config_bytes(&self, id: &ImageId) -> Result<Vec<u8>, ImageError> {
        Ok(self.content.read(id, None)?)
    }

    /// The tar index of a layer (see [`crate::unpack::assemble_tar`]), if it has one.
    pub fn tar_split_path(&self, chain_id: &Digest) -> PathBuf {
        self.layers.layer_dir(chain_id).join("tar-split.zst")
    }
}
