//! The content store: blobs by digest under `<root>/blobs/<algorithm>/<hex>`.
//!
//! A blob is written to a temporary file under `<root>/blobs/tmp/` while it is hashed, verified against the
//! expected digest (and size), fsynced and renamed into place, so a reader never sees a partial blob and two
//! writers of the same blob simply both rename identical content. Leftover temporaries are removed on open.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::{Algorithm, Digest, DigestError, Verifier};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The content does not match its digest or size.
    #[error("the blob does not match what was expected")]
    Verify(#[from] DigestError),
    /// The blob is not in the store.
    #[error("the blob {0} is not in the content store")]
    NotFound(Digest),
    /// The blob on disk has another size than its descriptor says.
    #[error("the stored blob {digest} is {actual} bytes long, but its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// From the descriptor.
        expected: u64,
        /// On disk.
        actual: u64,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Blobs by digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    sync: bool,
}

impl ContentStore {
    /// Opens (creating) the content store under `<root>/blobs` and removes leftover temporary files.
    pub fn open(root: &Path) -> Result<ContentStore, StoreError> {
        let blobs = root.join("blobs");
        for d in [blobs.join("sha256"), blobs.join("sha512"), blobs.join("tmp")] {
            std::fs::create_dir_all(&d).map_err(io_err("create the directory", &d))?;
        }
        let tmp = blobs.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(io_err("read the directory", &tmp))? {
            let entry = entry.map_err(io_err("read the directory", &tmp))?;
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io_err("remove the leftover temporary file", &p))?;
        }
        Ok(ContentStore { blobs, sync: true })
    }

    /// Whether committed blobs are fsynced (default true; tests may turn it off).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// The path of a blob (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// The size of a stored blob, or `None` when absent.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Whether a blob is present (with the given size, when known).
    pub fn contains(&self, digest: &Digest, size: Option<u64>) -> bool {
        match (self.size(digest), size) {
            (Some(actual), Some(expected)) => actual == expected,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Stores `data`, verifying it against `expected` when given; returns its digest.
    pub fn write(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let mut w = self.writer(expected.cloned(), Some(data.len() as u64))?;
        w.write_all(data).map_err(io_err("write", &w.tmp))?;
        w.commit()
    }

    /// A streaming writer for one blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self, expected: Option<Digest>, size: Option<u64>) -> Result<BlobWriter, StoreError> {
        let tmp = self.blobs.join("tmp").join(format!("{:016x}", fastrand::u64(..)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create the temporary file", &tmp))?;
        let hashing = match &expected {
            Some(d) => Hashing::Verify(match size {
                Some(s) => Verifier::with_size(d, s),
                None => Verifier::new(d),
            }),
            None => Hashing::Compute(Sha256::new()),
        };
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            hashing: Some(hashing),
            expected,
            len: 0,
            committed: false,
        })
    }

    /// Reads a whole blob; checks the size when given, and the digest (blobs read whole are small: configs,
    /// manifests).
    pub fn read(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(digest.clone()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if let Some(expected) = size
            && expected != data.len() as u64
        {
            return Err(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: data.len() as u64,
            });
        }
        digest.verify(&data)?;
        Ok(data)
    }

    /// Opens a blob for streaming, checking its size when given.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> Result<File, StoreError> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(digest.clone()));
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        if let Some(expected) = size {
            let actual = file.metadata().map_err(io_err("inspect", &path))?.len();
            if actual != expected {
                return Err(StoreError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual,
                });
            }
        }
        Ok(file)
    }

    /// Removes a blob (absent is fine).
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every stored blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.blobs.join(alg.as_str());
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read the directory", &dir)(e)),
            };
            for entry in rd {
                let entry = entry.map_err(io_err("read the directory", &dir))?;
                let name = entry.file_name();
                let Ok(d) = Digest::parse(&format!("{}:{}", alg.as_str(), name.to_string_lossy())) else {
                    continue;
                };
                let len = entry.metadata().map_err(io_err("inspect", &entry.path()))?.len();
                out.push((d, len));
            }
        }
        Ok(out)
    }
}

enum Hashing {
    Verify(Verifier),
    Compute(Sha256),
}

/// A blob being written; dropped without commit, its temporary file is removed.
pub struct BlobWriter {
    store: ContentStore,
    tmp: PathBuf,
    file: Option<io::BufWriter<File>>,
    hashing: Option<Hashing>,
    expected: Option<Digest>,
    len: u64,
    committed: bool,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies, syncs and renames the blob into place; returns its digest.
    pub fn commit(mut self) -> Result<Digest, StoreError> {
        let digest = match self.hashing.take() {
            Some(Hashing::Verify(v)) => {
                v.verify()?;
                self.expected.clone().ok_or_else(|| StoreError::Io {
                    op: "commit",
                    path: self.tmp.clone(),
                    source: io::Error::other("the expected digest is missing"),
                })?
            }
            Some(Hashing::Compute(h)) => {
                let s = crate::unpack::sha256_string(h);
                Digest::parse(&s)?
            }
            None => {
                return Err(StoreError::Io {
                    op: "commit",
                    path: self.tmp.clone(),
                    source: io::Error::other("the blob was already committed"),
                });
            }
        };
        let Some(buf) = self.file.take() else {
            return Err(StoreError::Io {
                op: "commit",
                path: self.tmp.clone(),
                source: io::Error::other("the blob was already committed"),
            });
        };
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.tmp)(e.into_error()))?;
        if self.store.sync {
            file.sync_all().map_err(io_err("sync", &self.tmp))?;
        }
        drop(file);
        let dest = self.store.path(&digest);
        std::fs::rename(&self.tmp, &dest).map_err(io_err("rename the blob into place at", &dest))?;
        self.committed = true;
        if self.store.sync
            && let Some(parent) = dest.parent()
            && let Ok(d) = File::open(parent)
        {
            let _ = d.sync_all();
        }
        Ok(digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the blob was already committed"));
        };
        let n = file.write(buf)?;
        match self.hashing.as_mut() {
            Some(Hashing::Verify(v)) => v.update(&buf[..n]),
            Some(Hashing::Compute(h)) => h.update(&buf[..n]),
            None => {}
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Computes the sha256 digest of a reader's content.
pub fn digest_reader<R: Read>(mut r: R) -> io::Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    let s = crate::unpack::sha256_string(h);
    Digest::parse(&s).map(|d| (d, len)).map_err(io::Error::other)
}
