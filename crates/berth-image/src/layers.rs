//! The layer store in docker's overlay2 layout, under `<root>/overlay2/`:
//!
//! ```text
//! overlay2/<id>/diff/        the layer's files (whiteouts as 0/0 char devices, opaque dirs as an xattr)
//! overlay2/<id>/link         the layer's short name (26 characters)
//! overlay2/<id>/lower        the parents, top first: "l/<short>:l/<short>..." (absent for a base layer)
//! overlay2/<id>/work/        overlay's work directory
//! overlay2/<id>/layer.json   berth's metadata: chain id, diff id, parent, sizes
//! overlay2/l/<short>         symlink to ../<id>/diff (keeps overlay mount options short)
//! ```
//!
//! `<id>` is the hex of the layer's chain id, so a layer is shared by every image whose stack of diff ids up to it
//! is the same. A layer is built in `overlay2/tmp-<random>/` and renamed into place, so a crash never leaves a
//! half-written layer under its id; the `l/` symlink is made before the rename and a dangling one is removed on
//! open. Removal renames the layer to a temporary name first. Which layers are still needed is decided by the
//! image store (reachability from image records), not here.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Prefix of temporary directories (building or removing a layer).
const TMP_PREFIX: &str = "tmp-";

/// Errors of the layer store.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The layer does not exist.
    #[error("the layer {0} does not exist in the layer store")]
    NotFound(Digest),
    /// The parent of a layer being committed does not exist.
    #[error("the parent layer {parent} of layer {chain_id} does not exist")]
    MissingParent {
        /// The layer.
        chain_id: Digest,
        /// Its parent.
        parent: Digest,
    },
    /// The metadata file is unreadable.
    #[error("the metadata of layer {path} is corrupt")]
    Corrupt {
        /// The metadata file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Computes the chain ids of a stack of diff ids: `chain(0) = diff(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Berth's metadata of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// The chain id (identity of the layer with all its parents).
    pub chain_id: Digest,
    /// The digest of this layer's uncompressed tar.
    pub diff_id: Digest,
    /// The parent's chain id.
    pub parent: Option<Digest>,
    /// Bytes of file data in `diff/` (docker's layer "size").
    pub size: u64,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// The short name under `l/`.
    pub link: String,
}

/// The overlay2 layer store.
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
    sync: bool,
}

impl LayerStore {
    /// Opens (creating) `<root>/overlay2`, removing leftover temporaries and dangling `l/` links.
    pub fn open(root: &Path) -> Result<LayerStore, LayerError> {
        let root = root.join("overlay2");
        let l = root.join("l");
        std::fs::create_dir_all(&l).map_err(io_err("create the directory", &l))?;
        for entry in std::fs::read_dir(&root).map_err(io_err("read the directory", &root))? {
            let entry = entry.map_err(io_err("read the directory", &root))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TMP_PREFIX) {
                let p = entry.path();
                crate::unpack::remove_tree(&p).map_err(io_err("remove the leftover temporary layer", &p))?;
            }
        }
        for entry in std::fs::read_dir(&l).map_err(io_err("read the directory", &l))? {
            let entry = entry.map_err(io_err("read the directory", &l))?;
            let p = entry.path();
            // metadata() follows the link: an error means it dangles.
            if std::fs::metadata(&p).is_err() {
                std::fs::remove_file(&p).map_err(io_err("remove the dangling link", &p))?;
            }
        }
        let store = LayerStore { root, sync: true };
        // A layer renamed into place always has its link (made before the rename); re-create any lost one.
        for info in store.list()? {
            let link = store.root.join("l").join(&info.link);
            if std::fs::symlink_metadata(&link).is_err() {
                let target = format!("../{}/diff", info.chain_id.hex());
                std::os::unix::fs::symlink(&target, &link).map_err(io_err("create the link", &link))?;
            }
        }
        Ok(store)
    }

    /// Whether a new layer's files are flushed to disk (syncfs) before it is renamed into place (default true).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// `<root>/overlay2`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a layer.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// The `diff/` directory of a layer.
    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layer_dir(chain_id).join("diff")
    }

    /// Whether the layer exists (committed).
    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).join("layer.json").is_file()
    }

    /// The metadata of a layer.
    pub fn get(&self, chain_id: &Digest) -> Result<LayerInfo, LayerError> {
        let path = self.layer_dir(chain_id).join("layer.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayerError::NotFound(chain_id.clone()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| LayerError::Corrupt { path, source })
    }

    /// Every committed layer.
    pub fn list(&self) -> Result<Vec<LayerInfo>, LayerError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io_err("read the directory", &self.root))? {
            let entry = entry.map_err(io_err("read the directory", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 {
                continue;
            }
            let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            match self.get(&d) {
                Ok(info) => out.push(info),
                Err(LayerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The `diff/` directories of a layer and its parents, top first (overlay's `lowerdir` order).
    pub fn lower_dirs(&self, chain_id: &Digest) -> Result<Vec<PathBuf>, LayerError> {
        let mut out = Vec::new();
        let mut next = Some(chain_id.clone());
        while let Some(id) = next {
            let info = self.get(&id)?;
            out.push(self.diff_dir(&id));
            next = info.parent;
        }
        Ok(out)
    }

    /// Starts a new layer in a temporary directory; nothing is visible until [`PendingLayer::commit`].
    pub fn begin(&self) -> Result<PendingLayer, LayerError> {
        let dir = self.root.join(format!("{TMP_PREFIX}{:016x}", fastrand::u64(..)));
        std::fs::create_dir(&dir).map_err(io_err("create the directory", &dir))?;
        let pending = PendingLayer {
            store: self.clone(),
            dir,
            done: false,
        };
        for sub in ["diff", "work"] {
            let p = pending.dir.join(sub);
            std::fs::create_dir(&p).map_err(io_err("create the directory", &p))?;
        }
        Ok(pending)
    }

    /// Removes a layer (absent is fine). Children are not checked: the caller knows what is unreferenced.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), LayerError> {
        let dir = self.layer_dir(chain_id);
        let link = std::fs::read_to_string(dir.join("link")).ok();
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}del-{:016x}", fastrand::u64(..)));
        match std::fs::rename(&dir, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("move the layer away from", &dir)(e)),
        }
        if let Some(link) = link {
            let p = self.root.join("l").join(link.trim());
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove the link", &p)(e)),
            }
        }
        crate::unpack::remove_tree(&tmp).map_err(io_err("remove", &tmp))
    }

    /// The bytes used on disk by layers' files (sum of [`LayerInfo::size`]).
    pub fn total_size(&self) -> Result<u64, LayerError> {
        Ok(self.list()?.iter().map(|l| l.size).sum())
    }
}

/// A layer being built; dropped without commit, its temporary directory is removed.
#[derive(Debug)]
pub struct PendingLayer {
    store: LayerStore,
    dir: PathBuf,
    done: bool,
}

impl PendingLayer {
    /// The temporary layer directory (for files to commit with the layer, such as the tar index).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the layer's files go.
    pub fn diff_dir(&self) -> PathBuf {
        self.dir.join("diff")
    }

    /// Writes the metadata and renames the layer into place as `chain_id`. The parent must already be committed.
    /// If another writer committed the same layer meanwhile, this one is discarded and the existing one returned.
    pub fn commit(
        mut self,
        chain_id: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
        size: u64,
        tar_size: u64,
    ) -> Result<LayerInfo, LayerError> {
        let store = self.store.clone();
        if store.exists(chain_id) {
            return store.get(chain_id);
        }
        let lower = match parent {
            None => None,
            Some(p) => {
                let pdir = store.layer_dir(p);
                let plink =
                    std::fs::read_to_string(pdir.join("link")).map_err(|_| LayerError::MissingParent {
                        chain_id: chain_id.clone(),
                        parent: p.clone(),
                    })?;
                let mut lower = format!("l/{}", plink.trim());
                if let Ok(plower) = std::fs::read_to_string(pdir.join("lower")) {
                    lower.push(':');
                    lower.push_str(plower.trim());
                }
                Some(lower)
            }
        };
        let link = short_name();
        let info = LayerInfo {
            chain_id: chain_id.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            size,
            tar_size,
            link: link.clone(),
        };
        let write = |name: &str, data: &[u8]| -> Result<(), LayerError> {
            let p = self.dir.join(name);
            std::fs::write(&p, data).map_err(io_err("write", &p))
        };
        write("link", link.as_bytes())?;
        if let Some(lower) = &lower {
            write("lower", lower.as_bytes())?;
        }
        let json = serde_json::to_vec(&info).map_err(|source| LayerError::Corrupt {
            path: self.dir.clone(),
            source,
        })?;
        write("layer.json", &json)?;
        if store.sync {
            let fd = std::fs::File::open(&self.dir).map_err(io_err("open", &self.dir))?;
            rustix::fs::syncfs(fd.as_fd())
                .map_err(|e| io_err("sync the filesystem of", &self.dir)(e.into()))?;
        }
        let link_path = store.root.join("l").join(&link);
        let target = format!("../{}/diff", chain_id.hex());
        std::os::unix::fs::symlink(&target, &link_path).map_err(io_err("create the link", &link_path))?;
        let dest = store.layer_dir(chain_id);
        match std::fs::rename(&self.dir, &dest) {
            Ok(()) => {
                self.done = true;
                if store.sync {
                    let _ = std::fs::File::open(&store.root).and_then(|d| d.sync_all());
                }
                Ok(info)
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                // Someone else committed the same layer: use theirs.
                let _ = std::fs::remove_file(&link_path);
                store.get(chain_id)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&link_path);
                Err(io_err("rename the layer into place at", &dest)(e))
            }
        }
    }
}

impl Drop for PendingLayer {
    fn drop(&mut self) {
        if !self.done {
            let _ = crate::unpack::remove_tree(&self.dir);
        }
    }
}

/// A random 26-character name of uppercase letters and digits, like docker's.
fn short_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..26)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}
