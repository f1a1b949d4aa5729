//! Unpacking a layer's tar stream (gzip, zstd or uncompressed) into a layer directory, safely.
//!
//! Why not `tar::Archive::unpack`: it resolves paths with ordinary path-based syscalls, so a symlink planted by an
//! earlier entry (or a directory replaced by a symlink) can redirect later writes outside the destination, and it
//! reads GNU long names and pax headers into memory without a size limit. Here the `tar` crate only decodes the
//! fields of each 512-byte header; the stream, the extension headers (bounded) and every filesystem write are ours:
//!
//! - every entry path is cleaned lexically; a path whose `..` components climb above the root is refused;
//! - the parent directory of every entry is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   relative to the layer's root fd, so symlinks inside the layer (absolute or relative, planted by earlier
//!   entries) resolve as if the layer were `/` and can never lead outside it;
//! - the final component is created with `*at` calls that never follow a symlink (`O_NOFOLLOW`, `O_EXCL`,
//!   `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`);
//! - hard link targets are resolved the same way, so they can only name files already inside the layer;
//! - the uncompressed stream size and the number of entries are capped ([`Limits`]), which stops decompression
//!   bombs; extension headers (pax, GNU long names) are capped at [`Limits::max_header_bytes`].
//!
//! Overlay conversion: a whiteout `.wh.<name>` becomes a 0/0 character device `<name>`, an opaque marker
//! `.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on its directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

/// Whiteout prefix of the AUFS/OCI layer format.
const WHITEOUT_PREFIX: &str = ".wh.";
/// Opaque directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of AUFS metadata entries other than the opaque marker (skipped).
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The overlayfs xattr that makes a directory opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const BLOCK: usize = 512;
const COPY_BUF: usize = 256 * 1024;

/// Limits that stop hostile or broken layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the uncompressed tar stream of one layer, in bytes.
    pub max_bytes: u64,
    /// Maximum number of entries in one layer.
    pub max_entries: u64,
    /// Maximum size of one extension header (pax record set, GNU long name or long link).
    pub max_header_bytes: u64,
    /// Apply the owners recorded in the tar (needs CAP_CHOWN); when false, files belong to the unpacking user.
    pub preserve_owners: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 2_000_000,
            max_header_bytes: 1 << 20,
            preserve_owners: rustix::process::geteuid().is_root(),
        }
    }
}

/// The compression of a layer blob, detected by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob (at least 4 bytes are needed to see zstd).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackStats {
    /// Entries processed (including whiteouts and directories).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub file_bytes: u64,
    /// Size of the uncompressed tar stream.
    pub tar_bytes: u64,
}

/// The result of [`unpack_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// Counters.
    pub stats: UnpackStats,
    /// The compression that was detected.
    pub compression: Compression,
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
}

/// Errors while unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the (compressed) input failed.
    #[error("cannot read the layer stream")]
    Read(#[source] io::Error),
    /// The decompressor rejected the stream.
    #[error("cannot decompress the {compression:?} layer stream")]
    Decompress {
        /// The detected compression.
        compression: Compression,
        /// The decompressor's error.
        #[source]
        source: io::Error,
    },
    /// The tar stream does not follow the format.
    #[error("the layer's tar stream is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// An entry's path leaves the layer directory.
    #[error("the layer entry {path:?} points outside the layer directory (or its name is not UTF-8)")]
    Escapes {
        /// The path as written in the tar.
        path: String,
    },
    /// A hard link names a file that is not inside the layer.
    #[error("the hard link {path:?} points to {target:?}, which does not exist inside the layer")]
    HardLinkTarget {
        /// The link's path.
        path: String,
        /// The target as written in the tar.
        target: String,
        /// Why resolving or linking failed.
        #[source]
        source: io::Error,
    },
    /// The uncompressed stream is larger than allowed.
    #[error("the layer's uncompressed size exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The stream has more entries than allowed.
    #[error("the layer has more than the limit of {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// An extension header is larger than allowed.
    #[error("the {kind} header before entry {index} is {size} bytes, more than the limit of {limit} bytes")]
    HeaderTooLarge {
        /// pax or GNU long name/link.
        kind: &'static str,
        /// The index of the entry it belongs to.
        index: u64,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An entry type this unpacker does not handle.
    #[error("the layer entry {path:?} has the unsupported tar type {kind:?}")]
    Unsupported {
        /// The entry path.
        path: String,
        /// The type byte.
        kind: char,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path:?} in the layer directory {dir}")]
    Fs {
        /// The operation.
        op: &'static str,
        /// The entry path (relative to the layer).
        path: String,
        /// The layer directory.
        dir: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The digest of the uncompressed stream is not the expected diff id.
    #[error("the layer's uncompressed content has digest {actual}, but the image config expects {expected}")]
    DiffIdMismatch {
        /// From the image config.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The unpacking thread panicked.
    #[error("the layer unpacking thread panicked")]
    ThreadPanicked,
}

/// Formats a sha256 state as `sha256:<hex>`.
pub(crate) fn sha256_string(hasher: Sha256) -> String {
    let out = hasher.finalize();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in out.iter() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// A `Read` over chunks sent through a channel by another thread.
pub struct ChunkReader<T: AsRef<[u8]>> {
    rx: mpsc::Receiver<T>,
    current: Option<T>,
    pos: usize,
}

impl<T: AsRef<[u8]>> ChunkReader<T> {
    /// Reads the chunks received on `rx`; end of file when every sender is gone.
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        ChunkReader {
            rx,
            current: None,
            pos: 0,
        }
    }
}

impl<T: AsRef<[u8]>> Read for ChunkReader<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let data = chunk.as_ref();
                if self.pos < data.len() {
                    let n = buf.len().min(data.len() - self.pos);
                    buf[..n].copy_from_slice(&data[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Unpacks a possibly compressed layer blob read from `input` into the directory `dir`, computing the diff id.
///
/// Decompression and hashing run on a second thread so that they overlap with the filesystem writes. The whole
/// uncompressed stream is hashed, including what follows the tar's end-of-archive marker. When `expected_diff_id`
/// is given, a mismatch is an error (the caller discards `dir`).
///
/// With `tar_split`, the tar's headers and padding are recorded in that file (zstd-compressed) with references
/// to the file data, so that [`assemble_tar`] can later rebuild the identical stream from the layer (for push and
/// save, whose layer tars must hash to the diff id).
pub fn unpack_layer<R: Read + Send>(
    input: R,
    dir: &Path,
    limits: &Limits,
    expected_diff_id: Option<&str>,
    tar_split: Option<&Path>,
) -> Result<UnpackedLayer, UnpackError> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    let abort = Arc::new(AtomicBool::new(false));
    let abort2 = Arc::clone(&abort);
    let max_bytes = limits.max_bytes;
    let (decoded, unpacked) = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decompress_and_hash(input, tx, &abort2, max_bytes));
        let unpacked = unpack_tar(ChunkReader::new(rx), dir, limits, tar_split);
        if unpacked.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let decoded = decoder.join().map_err(|_| UnpackError::ThreadPanicked);
        (decoded, unpacked)
    });
    // The decompressor's error explains a tar error (a truncated stream looks like a malformed tar).
    let (compression, diff_id, tar_bytes) = decoded??;
    let mut stats = unpacked?;
    stats.tar_bytes = tar_bytes;
    if let Some(expected) = expected_diff_id
        && expected != diff_id
    {
        return Err(UnpackError::DiffIdMismatch {
            expected: expected.to_owned(),
            actual: diff_id,
        });
    }
    Ok(UnpackedLayer {
        stats,
        compression,
        diff_id,
    })
}

/// Reads `input`, decompresses it, hashes the result and sends it in chunks; keeps hashing after the receiver
/// stops (the tar end marker may be followed by padding that is part of the diff id).
fn decompress_and_hash<R: Read>(
    input: R,
    tx: mpsc::SyncSender<Vec<u8>>,
    abort: &AtomicBool,
    max_bytes: u64,
) -> Result<(Compression, String, u64), UnpackError> {
    let mut input = input;
    // The first four bytes tell the compression; they are put back in front of the stream.
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UnpackError::Read(e)),
        }
    }
    let compression = Compression::detect(&head[..got]);
    let chained = io::BufReader::with_capacity(COPY_BUF, io::Cursor::new(head[..got].to_vec()).chain(input));
    let mut reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(chained),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(chained)
                .map_err(|source| UnpackError::Decompress { compression, source })?,
        ),
    };
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut receiver_alive = true;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Ok((compression, String::new(), total));
        }
        let mut chunk = vec![0u8; COPY_BUF];
        let mut filled = 0;
        // Fill the chunk as far as the decoder gives data, to keep the channel traffic low.
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(match compression {
                        Compression::None => UnpackError::Read(source),
                        _ => UnpackError::Decompress { compression, source },
                    });
                }
            }
        }
        if filled == 0 {
            break;
        }
        total += filled as u64;
        if total > max_bytes {
            return Err(UnpackError::TooLarge { limit: max_bytes });
        }
        chunk.truncate(filled);
        hasher.update(&chunk);
        if receiver_alive && tx.send(chunk).is_err() {
            receiver_alive = false;
        }
    }
    Ok((compression, sha256_string(hasher), total))
}

/// Unpacks an uncompressed tar stream into `dir` (which must exist). See the module documentation for the rules.
pub fn unpack_tar<R: Read>(
    input: R,
    dir: &Path,
    limits: &Limits,
    tar_split: Option<&Path>,
) -> Result<UnpackStats, UnpackError> {
    let recorder = match tar_split {
        None => None,
        Some(p) => Some(Recorder::create(p).map_err(|e| fs_err("create the tar index", "", p, e))?),
    };
    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_err("open", "", dir, e))?;
    let mut u = Unpacker {
        input,
        root,
        dir: dir.to_owned(),
        limits: *limits,
        consumed: 0,
        stats: UnpackStats::default(),
        cached_parent: None,
        dir_times: Vec::new(),
        buf: vec![0u8; COPY_BUF],
        recorder,
        in_data: false,
        umask: read_umask(),
        euid: u64::from(rustix::process::geteuid().as_raw()),
        egid: u64::from(rustix::process::getegid().as_raw()),
    };
    u.run()?;
    if let Some(r) = u.recorder.take() {
        let path = tar_split.unwrap_or(Path::new(""));
        r.finish()
            .map_err(|e| fs_err("write the tar index", "", path, e))?;
    }
    Ok(u.stats)
}

fn fs_err(op: &'static str, path: &str, dir: &Path, e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Fs {
        op,
        path: path.to_owned(),
        dir: dir.to_owned(),
        source: e.into(),
    }
}

/// Extended attributes of one entry.
#[derive(Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Unpacker<R: Read> {
    input: R,
    root: OwnedFd,
    dir: PathBuf,
    limits: Limits,
    consumed: u64,
    stats: UnpackStats,
    /// The last parent directory opened: its cleaned path and fd (invalidated when a directory is removed).
    cached_parent: Option<(String, Rc<OwnedFd>, bool)>,
    /// The process umask (files are created with their final mode when it does not interfere).
    umask: u32,
    /// The effective uid and gid (files created by them need no chown to the same ids).
    euid: u64,
    egid: u64,
    /// Directories whose times are set at the end (writing children changes them).
    dir_times: Vec<(String, Timespec)>,
    buf: Vec<u8>,
    /// Records everything but file data (for [`assemble_tar`]).
    recorder: Option<Recorder>,
    /// Whether `read_exact` is reading file data (not recorded as raw bytes).
    in_data: bool,
}

/// What to create for one entry.
enum Kind {
    File { size: u64 },
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

impl<R: Read> Unpacker<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<bool, UnpackError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(UnpackError::Malformed {
                        reason: "the stream ends in the middle of a block".into(),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UnpackError::Read(e)),
            }
        }
        self.consumed += buf.len() as u64;
        if self.consumed > self.limits.max_bytes {
            return Err(UnpackError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        if !self.in_data
            && let Some(r) = self.recorder.as_mut()
        {
            r.raw(buf)
                .map_err(|e| fs_err("write the tar index", "", &self.dir, e))?;
        }
        Ok(true)
    }

    /// Reads `size` bytes of entry data plus padding into memory (extension headers; size already checked).
    fn read_data(&mut self, size: u64) -> Result<Vec<u8>, UnpackError> {
        let padded = padded(size);
        let mut v = vec![0u8; padded as usize];
        if !self.read_exact(&mut v)? {
            return Err(truncated());
        }
        v.truncate(size as usize);
        Ok(v)
    }

    /// Skips `size` bytes of entry data plus padding.
    fn skip_data(&mut self, size: u64) -> Result<(), UnpackError> {
        let mut left = padded(size);
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if !self.read_exact(&mut buf[..n])? {
                    return Err(truncated());
                }
                left -= n as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        result
    }

    fn run(&mut self) -> Result<(), UnpackError> {
        let mut block = [0u8; BLOCK];
        let mut ext = Extensions::default();
        let mut index: u64 = 0;
        loop {
            if !self.read_exact(&mut block)? {
                // A stream without an end marker: accepted like GNU tar does.
                break;
            }
            if block.iter().all(|&b| b == 0) {
                // Record what follows the end marker too: it is part of the stream the diff id covers.
                if self.recorder.is_some() {
                    let mut rest = std::mem::take(&mut self.buf);
                    let result = (|| {
                        loop {
                            let n = self.input.read(&mut rest).map_err(UnpackError::Read)?;
                            if n == 0 {
                                return Ok(());
                            }
                            self.consumed += n as u64;
                            if self.consumed > self.limits.max_bytes {
                                return Err(UnpackError::TooLarge {
                                    limit: self.limits.max_bytes,
                                });
                            }
                            if let Some(r) = self.recorder.as_mut() {
                                r.raw(&rest[..n])
                                    .map_err(|e| fs_err("write the tar index", "", &self.dir, e))?;
                            }
                        }
                    })();
                    self.buf = rest;
                    result?;
                }
                break;
            }
            let header = tar::Header::from_byte_slice(&block);
            check_checksum(header)?;
            let size = numeric(header, 124..136, header.entry_size(), "size", "")?;
            let kind_byte = header.entry_type().as_byte();
            match kind_byte {
                b'x' | b'L' | b'K' | b'g' => {
                    let kind = match kind_byte {
                        b'x' => "pax",
                        b'g' => "pax global",
                        b'L' => "GNU long name",
                        _ => "GNU long link",
                    };
                    if size > self.limits.max_header_bytes {
                        return Err(UnpackError::HeaderTooLarge {
                            kind,
                            index,
                            size,
                            limit: self.limits.max_header_bytes,
                        });
                    }
                    let data = self.read_data(size)?;
                    match kind_byte {
                        b'x' => parse_pax(&data, &mut ext)?,
                        b'L' => ext.path = Some(trim_nul(data)),
                        b'K' => ext.link = Some(trim_nul(data)),
                        _ => {} // global pax headers carry nothing docker or containerd honour
                    }
                    continue;
                }
                _ => {}
            }
            index += 1;
            self.stats.entries += 1;
            if self.stats.entries > self.limits.max_entries {
                return Err(UnpackError::TooManyEntries {
                    limit: self.limits.max_entries,
                });
            }
            let ext = std::mem::take(&mut ext);
            self.entry(header, ext, size)?;
        }
        // Directory times last, deepest first, so that creating children does not change them again.
        let times = std::mem::take(&mut self.dir_times);
        for (path, mtime) in times.iter().rev() {
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (p, n),
                None => ("", path.as_str()),
            };
            if name.is_empty() {
                let ts = Timestamps {
                    last_access: *mtime,
                    last_modification: *mtime,
                };
                rustix::fs::utimensat(&self.root, ".", &ts, AtFlags::empty())
                    .map_err(|e| fs_err("set the times of", "/", &self.dir, e))?;
                continue;
            }
            let Ok(pfd) = self.open_parent_existing(parent) else {
                continue;
            };
            let ts = Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            // The directory may have been replaced by a later entry; then its times do not matter.
            let _ = rustix::fs::utimensat(&pfd, name, &ts, AtFlags::SYMLINK_NOFOLLOW);
        }
        Ok(())
    }

    fn entry(&mut self, header: &tar::Header, ext: Extensions, header_size: u64) -> Result<(), UnpackError> {
        let raw_path = ext
            .path
            .clone()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let path_str = String::from_utf8_lossy(&raw_path).into_owned();
        let size = ext.size.unwrap_or(header_size);
        let kind_byte = header.entry_type().as_byte();
        let link = || -> Vec<u8> {
            ext.link.clone().unwrap_or_else(|| {
                header
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default()
            })
        };
        let dev = |h: &tar::Header| -> Result<(u32, u32), UnpackError> {
            let major = numeric(
                h,
                329..337,
                h.device_major().map(|v| u64::from(v.unwrap_or(0))),
                "device major",
                &path_str,
            )?;
            let minor = numeric(
                h,
                337..345,
                h.device_minor().map(|v| u64::from(v.unwrap_or(0))),
                "device minor",
                &path_str,
            )?;
            Ok((
                u32::try_from(major).unwrap_or(u32::MAX),
                u32::try_from(minor).unwrap_or(u32::MAX),
            ))
        };
        let kind = match kind_byte {
            b'0' | b'\0' | b'7' => Kind::File { size },
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink(link()),
            b'1' => Kind::HardLink(link()),
            b'3' => {
                let (a, b) = dev(header)?;
                Kind::Char(a, b)
            }
            b'4' => {
                let (a, b) = dev(header)?;
                Kind::Block(a, b)
            }
            b'6' => Kind::Fifo,
            other => {
                return Err(UnpackError::Unsupported {
                    path: path_str,
                    kind: char::from(other),
                });
            }
        };
        // Entries other than regular files carry no data in the layer (but may declare a size: skip it).
        let data_size = match kind {
            Kind::File { size } => size,
            Kind::HardLink(_) | Kind::Symlink(_) | Kind::Char(..) | Kind::Block(..) | Kind::Fifo => size,
            Kind::Dir => size,
        };
        let components = clean_path(&raw_path).ok_or_else(|| UnpackError::Escapes {
            path: path_str.clone(),
        })?;
        let meta = Meta {
            mode: numeric(header, 100..108, header.mode().map(u64::from), "mode", &path_str)? as u32 & 0o7777,
            uid: match ext.uid {
                Some(u) => u,
                None => numeric(header, 108..116, header.uid(), "uid", &path_str)?,
            },
            gid: match ext.gid {
                Some(g) => g,
                None => numeric(header, 116..124, header.gid(), "gid", &path_str)?,
            },
            mtime: match ext.mtime {
                Some((s, ns)) => Timespec {
                    tv_sec: s,
                    tv_nsec: ns.into(),
                },
                None => Timespec {
                    tv_sec: i64::try_from(numeric(header, 136..148, header.mtime(), "mtime", &path_str)?)
                        .unwrap_or(i64::MAX),
                    tv_nsec: 0,
                },
            },
            xattrs: ext.xattrs,
        };
        let Some((name, parents)) = components.split_last() else {
            // The root itself ("./"): apply its metadata.
            if let Kind::Dir = kind {
                let fd = rustix::fs::openat(
                    &self.root,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_err("open", "/", &self.dir, e))?;
                self.apply_meta_fd(&fd, &meta, "/")?;
                self.dir_times.push((String::new(), meta.mtime));
            }
            return self.skip_data(data_size);
        };
        let parent_path = parents.join("/");
        let full_path = components.join("/");

        // Overlay conversions.
        if name.starts_with(WHITEOUT_PREFIX) {
            if name == OPAQUE_MARKER {
                let (pfd, _) = self.open_parent(&parent_path, &full_path)?;
                let dfd = rustix::fs::openat(
                    &pfd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_err("open", &parent_path, &self.dir, e))?;
                rustix::fs::fsetxattr(&dfd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| fs_err("mark as opaque", &parent_path, &self.dir, e))?;
                return self.skip_data(data_size);
            }
            if name.starts_with(WHITEOUT_META_PREFIX) {
                return self.skip_data(data_size);
            }
            let target = name.strip_prefix(WHITEOUT_PREFIX).unwrap_or_default();
            if target.is_empty() || target == "." || target == ".." {
                return Err(UnpackError::Escapes { path: path_str });
            }
            let (pfd, _) = self.open_parent(&parent_path, &full_path)?;
            let wpath = if parent_path.is_empty() {
                target.to_owned()
            } else {
                format!("{parent_path}/{target}")
            };
            self.clear(&pfd, target, &wpath, false)?;
            rustix::fs::mknodat(&pfd, target, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| fs_err("create the whiteout", &wpath, &self.dir, e))?;
            let wmeta = Meta {
                mode: 0,
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.mtime,
                xattrs: Vec::new(),
            };
            self.apply_meta_at(&pfd, target, &wmeta, &wpath, false)?;
            return self.skip_data(data_size);
        }

        let (pfd, parent_setgid) = self.open_parent(&parent_path, &full_path)?;
        match kind {
            Kind::File { size } => {
                let create = |pfd: &OwnedFd| {
                    rustix::fs::openat(
                        pfd,
                        name.as_str(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(meta.mode & 0o777),
                    )
                };
                let file = match create(&pfd) {
                    Ok(f) => f,
                    Err(Errno::EXIST) => {
                        self.clear(&pfd, name, &full_path, false)?;
                        create(&pfd).map_err(|e| fs_err("create", &full_path, &self.dir, e))?
                    }
                    Err(e) => return Err(fs_err("create", &full_path, &self.dir, e)),
                };
                let mut file = std::fs::File::from(file);
                self.copy_data(&mut file, size, &full_path)?;
                // A new file already has our ids (unless the directory is setgid) and, when the umask took
                // nothing away and there are no special bits, its mode.
                let need_chown = meta.uid != self.euid || meta.gid != self.egid || parent_setgid;
                let need_chmod = meta.mode & 0o7000 != 0 || meta.mode & self.umask != 0;
                self.apply_meta(&file, &meta, &full_path, need_chown, need_chmod)?;
                let ts = Timestamps {
                    last_access: meta.mtime,
                    last_modification: meta.mtime,
                };
                rustix::fs::futimens(&file, &ts)
                    .map_err(|e| fs_err("set the times of", &full_path, &self.dir, e))?;
                return Ok(());
            }
            Kind::Dir => {
                match rustix::fs::mkdirat(&pfd, name.as_str(), Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(&pfd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|e| fs_err("inspect", &full_path, &self.dir, e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.clear(&pfd, name, &full_path, false)?;
                            rustix::fs::mkdirat(&pfd, name.as_str(), Mode::from_raw_mode(0o700))
                                .map_err(|e| fs_err("create the directory", &full_path, &self.dir, e))?;
                        }
                    }
                    Err(e) => return Err(fs_err("create the directory", &full_path, &self.dir, e)),
                }
                let dfd = rustix::fs::openat(
                    &pfd,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fs_err("open", &full_path, &self.dir, e))?;
                self.apply_meta_fd(&dfd, &meta, &full_path)?;
                self.dir_times.push((full_path, meta.mtime));
            }
            Kind::Symlink(target) => {
                self.clear(&pfd, name, &full_path, false)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &pfd, name.as_str())
                    .map_err(|e| fs_err("create the symlink", &full_path, &self.dir, e))?;
                self.apply_meta_at(&pfd, name, &meta, &full_path, true)?;
            }
            Kind::HardLink(target) => {
                let target_str = String::from_utf8_lossy(&target).into_owned();
                let hard_err = |source: io::Error| UnpackError::HardLinkTarget {
                    path: full_path.clone(),
                    target: target_str.clone(),
                    source,
                };
                let tcomp = clean_path(&target)
                    .ok_or_else(|| hard_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
                let Some((tname, tparents)) = tcomp.split_last() else {
                    return Err(hard_err(io::Error::from(io::ErrorKind::InvalidInput)));
                };
                let tparent_path = tparents.join("/");
                let tpfd = self
                    .open_parent_existing(&tparent_path)
                    .map_err(|e| hard_err(e.into()))?;
                let st = rustix::fs::statat(&tpfd, tname.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| hard_err(e.into()))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(hard_err(io::Error::from(io::ErrorKind::IsADirectory)));
                }
                if tcomp != components {
                    self.clear(&pfd, name, &full_path, false)?;
                    rustix::fs::linkat(&tpfd, tname.as_str(), &pfd, name.as_str(), AtFlags::empty())
                        .map_err(|e| hard_err(e.into()))?;
                }
            }
            Kind::Char(major, minor) | Kind::Block(major, minor) => {
                let ft = if matches!(kind, Kind::Char(..)) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                self.clear(&pfd, name, &full_path, false)?;
                rustix::fs::mknodat(
                    &pfd,
                    name.as_str(),
                    ft,
                    Mode::from_raw_mode(meta.mode & 0o777),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| fs_err("create the device node", &full_path, &self.dir, e))?;
                self.apply_meta_at(&pfd, name, &meta, &full_path, false)?;
            }
            Kind::Fifo => {
                self.clear(&pfd, name, &full_path, false)?;
                rustix::fs::mknodat(
                    &pfd,
                    name.as_str(),
                    FileType::Fifo,
                    Mode::from_raw_mode(meta.mode & 0o777),
                    0,
                )
                .map_err(|e| fs_err("create the fifo", &full_path, &self.dir, e))?;
                self.apply_meta_at(&pfd, name, &meta, &full_path, false)?;
            }
        }
        self.skip_data(data_size)
    }

    fn copy_data(&mut self, file: &mut std::fs::File, size: u64, path: &str) -> Result<(), UnpackError> {
        let mut left = size;
        if let Some(r) = self.recorder.as_mut() {
            r.file(path, size)
                .map_err(|e| fs_err("write the tar index", "", &self.dir, e))?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            self.in_data = true;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if !self.read_exact(&mut buf[..n])? {
                    return Err(truncated());
                }
                file.write_all(&buf[..n])
                    .map_err(|e| fs_err("write", path, &self.dir, e))?;
                left -= n as u64;
            }
            self.in_data = false;
            let pad = (padded(size) - size) as usize;
            if pad > 0 && !self.read_exact(&mut buf[..pad])? {
                return Err(truncated());
            }
            Ok(())
        })();
        self.buf = buf;
        self.stats.file_bytes += size;
        result
    }

    /// Opens the parent directory `parent` (cleaned, relative), creating missing directories. Returns the fd and
    /// whether the directory is setgid (then new files take its group and need an explicit chown).
    fn open_parent(&mut self, parent: &str, entry: &str) -> Result<(Rc<OwnedFd>, bool), UnpackError> {
        if let Some((p, fd, setgid)) = &self.cached_parent
            && p == parent
        {
            return Ok((Rc::clone(fd), *setgid));
        }
        let fd = match self.open_parent_existing(parent) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_parents(parent, entry)?,
            Err(e) => return Err(fs_err("open the parent directory of", entry, &self.dir, e)),
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| fs_err("inspect the parent directory of", entry, &self.dir, e))?;
        let setgid = st.st_mode & 0o2000 != 0;
        let fd = Rc::new(fd);
        self.cached_parent = Some((parent.to_owned(), Rc::clone(&fd), setgid));
        Ok((fd, setgid))
    }

    /// Resolves an existing directory inside the layer root; symlinks resolve as if the root were `/`.
    fn open_parent_existing(&self, parent: &str) -> Result<OwnedFd, Errno> {
        let path = if parent.is_empty() { "." } else { parent };
        rustix::fs::openat2(
            &self.root,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Creates the missing directories of `parent`, each resolved inside the root.
    fn create_parents(&mut self, parent: &str, entry: &str) -> Result<OwnedFd, UnpackError> {
        let mut prefix = String::new();
        let mut fd = self
            .open_parent_existing("")
            .map_err(|e| fs_err("open", "/", &self.dir, e))?;
        for comp in parent.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            match self.open_parent_existing(&prefix) {
                Ok(next) => fd = next,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(fs_err("create the directory", &prefix, &self.dir, e)),
                    }
                    fd = self
                        .open_parent_existing(&prefix)
                        .map_err(|e| fs_err("open the parent directory of", entry, &self.dir, e))?;
                }
                Err(e) => return Err(fs_err("open the parent directory of", entry, &self.dir, e)),
            }
        }
        Ok(fd)
    }

    /// Removes whatever exists at `name` in `pfd` (a directory only if `keep_dir` is false), never following links.
    fn clear(&mut self, pfd: &OwnedFd, name: &str, path: &str, keep_dir: bool) -> Result<(), UnpackError> {
        match rustix::fs::unlinkat(pfd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) if !keep_dir => {
                // A directory (EISDIR on Linux; EPERM elsewhere): remove the tree without following links.
                self.cached_parent = None;
                remove_tree_at(pfd.as_fd(), OsStr::new(name))
                    .map_err(|e| fs_err("remove", path, &self.dir, e))
            }
            Err(e) => Err(fs_err("replace", path, &self.dir, e)),
        }
    }

    fn apply_meta_fd<Fd: AsFd>(&self, fd: Fd, meta: &Meta, path: &str) -> Result<(), UnpackError> {
        self.apply_meta(fd, meta, path, true, true)
    }

    /// Owner (when asked and preserved), mode (when asked) and xattrs of an open entry. The owner goes first:
    /// chown clears setuid bits and file capabilities.
    fn apply_meta<Fd: AsFd>(
        &self,
        fd: Fd,
        meta: &Meta,
        path: &str,
        chown: bool,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        if self.limits.preserve_owners && chown {
            rustix::fs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| fs_err("change the owner of", path, &self.dir, e))?;
        }
        if chmod {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .map_err(|e| fs_err("change the mode of", path, &self.dir, e))?;
        }
        for (k, v) in &meta.xattrs {
            rustix::fs::fsetxattr(&fd, OsStr::from_bytes(k), v, XattrFlags::empty())
                .map_err(|e| fs_err("set an extended attribute on", path, &self.dir, e))?;
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks), xattrs and times of a non-regular entry, by name without following it.
    fn apply_meta_at(
        &self,
        pfd: &OwnedFd,
        name: &str,
        meta: &Meta,
        path: &str,
        symlink: bool,
    ) -> Result<(), UnpackError> {
        if self.limits.preserve_owners {
            rustix::fs::chownat(
                pfd,
                name,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fs_err("change the owner of", path, &self.dir, e))?;
        }
        if !symlink {
            // Device nodes and fifos: mknod's mode went through the umask and lacks setuid bits.
            let fd = rustix::fs::openat(
                pfd,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fs_err("open", path, &self.dir, e))?;
            // fchmod on an O_PATH fd is refused; go through the fd's magic link, which names exactly this inode.
            rustix::fs::chmodat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| fs_err("change the mode of", path, &self.dir, e))?;
        }
        if !meta.xattrs.is_empty() {
            let proc_path = format!("/proc/self/fd/{}/{}", std::os::fd::AsRawFd::as_raw_fd(pfd), name);
            for (k, v) in &meta.xattrs {
                rustix::fs::lsetxattr(&proc_path, OsStr::from_bytes(k), v, XattrFlags::empty())
                    .map_err(|e| fs_err("set an extended attribute on", path, &self.dir, e))?;
            }
        }
        let ts = Timestamps {
            last_access: meta.mtime,
            last_modification: meta.mtime,
        };
        rustix::fs::utimensat(pfd, name, &ts, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fs_err("set the times of", path, &self.dir, e))?;
        Ok(())
    }
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn uid(u: u64) -> Uid {
    Uid::from_raw(u32::try_from(u).unwrap_or(u32::MAX - 1))
}

fn gid(g: u64) -> Gid {
    Gid::from_raw(u32::try_from(g).unwrap_or(u32::MAX - 1))
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn truncated() -> UnpackError {
    UnpackError::Malformed {
        reason: "the stream ends in the middle of an entry".into(),
    }
}

/// A numeric header field; an empty field (all NUL or spaces, as some writers leave it) reads as 0.
fn numeric(
    header: &tar::Header,
    range: std::ops::Range<usize>,
    parsed: io::Result<u64>,
    what: &str,
    path: &str,
) -> Result<u64, UnpackError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => {
            if header.as_bytes()[range].iter().all(|&b| b == 0 || b == b' ') {
                Ok(0)
            } else {
                Err(malformed(format!("bad {what} field of {path:?}: {e}")))
            }
        }
    }
}

fn malformed(reason: String) -> UnpackError {
    UnpackError::Malformed { reason }
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn check_checksum(header: &tar::Header) -> Result<(), UnpackError> {
    let expected = header
        .cksum()
        .map_err(|e| malformed(format!("bad header checksum field: {e}")))?;
    let bytes = header.as_bytes();
    let sum: u32 = bytes[..148]
        .iter()
        .chain(&[b' '; 8])
        .chain(&bytes[156..])
        .map(|&b| u32::from(b))
        .sum();
    if sum != expected {
        return Err(malformed(format!(
            "header checksum {expected} does not match the computed {sum}"
        )));
    }
    Ok(())
}

fn parse_pax(data: &[u8], ext: &mut Extensions) -> Result<(), UnpackError> {
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| malformed(format!("bad pax record: {e}")))?;
        let key = record.key_bytes();
        let value = record.value_bytes();
        let num = |v: &[u8]| -> Result<u64, UnpackError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| malformed(format!("bad pax value {:?}", String::from_utf8_lossy(v))))
        };
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"linkpath" => ext.link = Some(value.to_vec()),
            b"size" => ext.size = Some(num(value)?),
            b"uid" => ext.uid = Some(num(value)?),
            b"gid" => ext.gid = Some(num(value)?),
            b"mtime" => ext.mtime = Some(parse_pax_time(value)?),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    ext.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

fn parse_pax_time(v: &[u8]) -> Result<(i64, u32), UnpackError> {
    let s = std::str::from_utf8(v).map_err(|_| malformed("bad pax mtime".into()))?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| malformed(format!("bad pax mtime {s:?}")))?;
    let mut nanos: u32 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c
            .to_digit(10)
            .ok_or_else(|| malformed(format!("bad pax mtime {s:?}")))?;
        nanos += d * 10u32.pow(8 - i as u32);
    }
    Ok((secs, nanos))
}

/// The process umask, from /proc (reading it with umask(2) would change it for other threads for a moment);
/// all bits when unknown, which makes every file get an explicit chmod.
fn read_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// Cleans a tar path lexically: leading `/` and `./` dropped, `.` and empty components removed, `..` applied.
/// Returns `None` when `..` climbs above the root or the name is not UTF-8 (such names are refused rather than
/// silently renamed). An empty result names the root itself.
pub fn clean_path(raw: &[u8]) -> Option<Vec<String>> {
    let s = std::str::from_utf8(raw).ok()?;
    let mut out: Vec<String> = Vec::new();
    for comp in s.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_owned()),
        }
    }
    if out.iter().any(|c| c.contains('\0')) {
        return None;
    }
    Some(out)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, never following symlinks.
pub(crate) fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    {
        let mut entries = rustix::fs::Dir::read_from(&sub)?;
        for entry in entries.by_ref() {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    for n in names {
        remove_tree_at(sub.as_fd(), &n)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        .or_else(|e| if e == Errno::NOENT { Ok(()) } else { Err(e) })?;
    Ok(())
}

/// Removes a directory tree by path without following symlinks inside it (absent is fine).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot remove {}", path.display()),
        ));
    };
    let pfd = match rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_tree_at(pfd.as_fd(), name)
}

/// Counts, per regular file inode, the bytes in a directory tree (hard links counted once). Used for layer sizes.
pub fn tree_size(path: &Path) -> io::Result<u64> {
    let mut seen: HashMap<(u64, u64), ()> = HashMap::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                use std::os::unix::fs::MetadataExt;
                if meta.nlink() > 1 && seen.insert((meta.dev(), meta.ino()), ()).is_some() {
                    continue;
                }
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Records a tar stream minus file data: `R <u32 len> <bytes>` for raw bytes, `F <u64 size> <u32 len> <path>`
/// for `size` bytes of data of the regular file `path` (relative to the layer's root). zstd-compressed.
struct Recorder {
    out: zstd::stream::write::Encoder<'static, io::BufWriter<std::fs::File>>,
    raw: Vec<u8>,
}

impl Recorder {
    fn create(path: &Path) -> io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        let out = zstd::stream::write::Encoder::new(io::BufWriter::new(file), 1)?;
        Ok(Recorder {
            out,
            raw: Vec::with_capacity(64 * 1024),
        })
    }

    fn raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.raw.extend_from_slice(data);
        if self.raw.len() >= 64 * 1024 {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(self.raw.len()).map_err(io::Error::other)?;
        self.out.write_all(b"R")?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.raw)?;
        self.raw.clear();
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64) -> io::Result<()> {
        self.flush_raw()?;
        let len = u32::try_from(path.len()).map_err(io::Error::other)?;
        self.out.write_all(b"F")?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(path.as_bytes())?;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush_raw()?;
        let file = self.out.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

/// Errors of [`assemble_tar`].
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The index file is unreadable or corrupt.
    #[error("the tar index {path} is unreadable or corrupt")]
    Index {
        /// The index file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file of the layer is missing or has changed size.
    #[error("the layer file {file:?} in {dir} is missing or no longer has its original content")]
    File {
        /// The file (relative to the layer).
        file: String,
        /// The layer's diff directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the layer tar")]
    Write(#[source] io::Error),
}

/// Rebuilds the original tar stream of a layer from its tar index and its `diff/` directory; returns the number
/// of bytes written. File data is read through `openat2(RESOLVE_IN_ROOT)` without following a final symlink.
pub fn assemble_tar<W: Write>(tar_split: &Path, diff_dir: &Path, mut out: W) -> Result<u64, AssembleError> {
    let index_err = |source: io::Error| AssembleError::Index {
        path: tar_split.to_owned(),
        source,
    };
    let file = std::fs::File::open(tar_split).map_err(index_err)?;
    let mut input = zstd::stream::read::Decoder::new(file).map_err(index_err)?;
    let root = rustix::fs::open(
        diff_dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| AssembleError::File {
        file: String::new(),
        dir: diff_dir.to_owned(),
        source: e.into(),
    })?;
    let mut total = 0u64;
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let mut tag = [0u8; 1];
        if input.read(&mut tag).map_err(index_err)? == 0 {
            break;
        }
        match tag[0] {
            b'R' => {
                let mut len = [0u8; 4];
                input.read_exact(&mut len).map_err(index_err)?;
                let len = u32::from_le_bytes(len) as usize;
                if len > buf.len() {
                    buf.resize(len, 0);
                }
                input.read_exact(&mut buf[..len]).map_err(index_err)?;
                out.write_all(&buf[..len]).map_err(AssembleError::Write)?;
                total += len as u64;
            }
            b'F' => {
                let mut size = [0u8; 8];
                input.read_exact(&mut size).map_err(index_err)?;
                let size = u64::from_le_bytes(size);
                let mut len = [0u8; 4];
                input.read_exact(&mut len).map_err(index_err)?;
                let len = u32::from_le_bytes(len) as usize;
                if len > 64 * 1024 {
                    return Err(index_err(io::Error::other("a path in the index is too long")));
                }
                let mut name = vec![0u8; len];
                input.read_exact(&mut name).map_err(index_err)?;
                let name = String::from_utf8_lossy(&name).into_owned();
                let file_err = |source: io::Error| AssembleError::File {
                    file: name.clone(),
                    dir: diff_dir.to_owned(),
                    source,
                };
                let fd = rustix::fs::openat2(
                    &root,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| file_err(e.into()))?;
                let mut f = std::fs::File::from(fd);
                let mut left = size;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    f.read_exact(&mut buf[..n]).map_err(file_err)?;
                    out.write_all(&buf[..n]).map_err(AssembleError::Write)?;
                    left -= n as u64;
                }
                total += size;
            }
            other => {
                return Err(index_err(io::Error::other(format!(
                    "unknown record type {other}"
                ))));
            }
        }
    }
    out.flush().map_err(AssembleError::Write)?;
    Ok(total)
}
