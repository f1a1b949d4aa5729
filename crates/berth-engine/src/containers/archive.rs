//! Files of a container as `docker cp`, `docker export` and `docker diff` see them, read and written from the
//! host without entering the container:
//!
//! - [`ContainerFs`]: the container's root directory (the mounted overlay) plus its mount table (destination →
//!   host source, for binds and volumes). Paths are resolved one component at a time with `O_PATH | O_NOFOLLOW`
//!   opens relative to the previous directory; symlinks are read and followed by this code inside the container's
//!   view (an absolute target restarts at the container's root, `..` never climbs above it), and a component that
//!   is a mount destination continues in the mount's source. Nothing can name a host file outside the root and
//!   the mount sources, whatever the container has put in its file system, and nothing is opened by a path the
//!   container could change between check and use.
//! - [`ContainerFs::stat`] (`HEAD /containers/{id}/archive`, `X-Docker-Container-Path-Stat`),
//!   [`ContainerFs::archive`] (`GET .../archive`), [`ContainerFs::extract`] (`PUT .../archive`).
//! - [`export`]: the whole root as a tar (without mounts, as dockerd's export).
//! - [`changes`]: `docker diff` from an overlay upper directory and its lower directories.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bollard_stubs::models::{ChangeType, FilesystemChange};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::errdefs::{ErrorKind, HasKind};

/// How many symlinks one resolution may follow (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// An archive operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The path does not exist in the container.
    #[error("Could not find the file {path} in container {container}")]
    NotFound {
        /// The path asked for.
        path: String,
        /// The container as named in the request.
        container: String,
    },
    /// The request cannot be done (read-only target, not a directory, a tar that climbs out, ...).
    #[error("{0}")]
    Invalid(String),
    /// A file operation failed.
    #[error("cannot {action} {path} in the container: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The container path.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The tar stream is malformed.
    #[error("the archive is malformed: {0}")]
    Tar(io::Error),
    /// Writing the archive to the client failed (it went away).
    #[error("cannot write the archive: {0}")]
    Write(io::Error),
}

impl HasKind for ArchiveError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Invalid(_) | Self::Tar(_) => ErrorKind::InvalidParameter,
            Self::Io { .. } | Self::Write(_) => ErrorKind::System,
        }
    }
}

/// `X-Docker-Container-Path-Stat`: docker's `PathStat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// The base name of the path as asked for.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go's `os.FileMode`: permission bits plus type bits (dir `1<<31`, symlink `1<<27`, ...).
    pub mode: u32,
    /// Modification time, RFC 3339 with nanoseconds.
    pub mtime: String,
    /// For a symlink, its target fully resolved inside the container (as far as it exists).
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    /// The header value: base64 of the JSON.
    pub fn header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & GO_MODE_DIR != 0
    }
}

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// A unix `st_mode` as Go's `os.FileMode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => GO_MODE_DIR,
        FileType::Symlink => GO_MODE_SYMLINK,
        FileType::BlockDevice => GO_MODE_DEVICE,
        FileType::CharacterDevice => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        FileType::Fifo => GO_MODE_NAMED_PIPE,
        FileType::Socket => GO_MODE_SOCKET,
        FileType::RegularFile | FileType::Unknown => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= GO_MODE_SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= GO_MODE_SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= GO_MODE_STICKY;
    }
    m
}

/// A bind or volume of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// The path in the container (absolute).
    pub destination: String,
    /// The host file or directory mounted there.
    pub source: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Options of [`ContainerFs::extract`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Refuse to replace a directory by a non-directory and the reverse (`noOverwriteDirNonDir`, the default of
    /// `docker cp`).
    pub no_overwrite_dir_non_dir: bool,
    /// Give every extracted file this owner (`copyUIDGID` with the container's user resolved by the caller);
    /// `None` keeps the owners recorded in the tar.
    pub chown: Option<(u32, u32)>,
}

/// Splits a container path into its components (empty ones and `.` dropped, `..` kept for the resolver).
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

fn display(comps: &[String]) -> String {
    format!("/{}", comps.join("/"))
}

/// A resolved path.
struct Resolved {
    /// `O_PATH` descriptor of the object.
    fd: OwnedFd,
    /// Its container path, without symlinks.
    path: Vec<String>,
    /// The object's status (not following a final symlink unless asked).
    st: Stat,
}

/// How a resolution ended when a component is missing.
enum Missing {
    /// Fail with not found.
    Fail,
    /// Create missing directories (mode 0755) on the way, owned by `chown` if given.
    Create(Option<(u32, u32)>),
    /// Stop and report the path resolved so far plus the rest, lexically ([`ContainerFs::link_target`]).
    Lexical,
}

/// The container path a [`Missing::Lexical`] resolution reached.
struct LexicalPath(Vec<String>);

/// A container's file system seen from the host.
#[derive(Debug, Clone)]
pub struct ContainerFs {
    container: String,
    root: PathBuf,
    mounts: Vec<(Vec<String>, MountPoint)>,
    read_only_root: bool,
}

impl ContainerFs {
    /// `container` is the name used in messages; `root` the mounted root file system; `mounts` its binds and
    /// volumes; `read_only_root` refuses extraction outside writable mounts.
    pub fn new(container: &str, root: &Path, mounts: &[MountPoint], read_only_root: bool) -> Self {
        let mut mounts: Vec<(Vec<String>, MountPoint)> = mounts
            .iter()
            .map(|m| (clean(&m.destination), m.clone()))
            .filter(|(d, _)| !d.is_empty())
            .collect();
        // Later mounts over the same destination hide earlier ones, as in the kernel.
        mounts.reverse();
        Self {
            container: container.to_string(),
            root: root.to_owned(),
            mounts,
            read_only_root,
        }
    }

    fn io(&self, action: &'static str, path: &[String]) -> impl FnOnce(Errno) -> ArchiveError {
        let path = display(path);
        move |e| ArchiveError::Io {
            action,
            path,
            source: e.into(),
        }
    }

    fn not_found(&self, path: &str) -> ArchiveError {
        ArchiveError::NotFound {
            path: path.to_string(),
            container: self.container.clone(),
        }
    }

    fn mount_at(&self, path: &[String]) -> Option<&MountPoint> {
        self.mounts.iter().find(|(d, _)| d == path).map(|(_, m)| m)
    }

    /// The innermost mount that holds `path` (`None`: the root file system).
    fn mount_holding(&self, path: &[String]) -> Option<&MountPoint> {
        self.mounts
            .iter()
            .filter(|(d, _)| path.starts_with(d))
            .max_by_key(|(d, _)| d.len())
            .map(|(_, m)| m)
    }

    fn open_root(&self) -> Result<OwnedFd, ArchiveError> {
        rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.io("open the root of", &[]))
    }

    fn open_mount_source(&self, m: &MountPoint, path: &[String]) -> Result<OwnedFd, ArchiveError> {
        rustix::fs::open(&m.source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(self.io("open the mount source of", path))
    }

    /// Resolves `path` inside the container. `follow_last` follows a final symlink.
    fn resolve(&self, path: &str, follow_last: bool, missing: Missing) -> Result<Resolved, ArchiveError> {
        match self.resolve_inner(path, follow_last, missing)? {
            Ok(r) => Ok(r),
            Err(LexicalPath(_)) => Err(self.not_found(path)),
        }
    }

    fn resolve_inner(
        &self,
        path: &str,
        follow_last: bool,
        missing: Missing,
    ) -> Result<Result<Resolved, LexicalPath>, ArchiveError> {
        let root = self.open_root()?;
        let mut todo: std::collections::VecDeque<String> = components(path).into();
        let mut stack: Vec<(String, OwnedFd)> = Vec::new();
        let mut links = 0;
        let cur_path = |stack: &Vec<(String, OwnedFd)>| -> Vec<String> {
            stack.iter().map(|(c, _)| c.clone()).collect()
        };
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                stack.pop();
                continue;
            }
            let mut cand = cur_path(&stack);
            cand.push(c.clone());
            let fd = if let Some(m) = self.mount_at(&cand) {
                self.open_mount_source(m, &cand)?
            } else {
                let parent = stack.last().map_or(root.as_fd(), |(_, fd)| fd.as_fd());
                match rustix::fs::openat(
                    parent,
                    c.as_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => match missing {
                        Missing::Lexical => {
                            let mut p = cand;
                            for t in todo {
                                if t == ".." {
                                    p.pop();
                                } else {
                                    p.push(t);
                                }
                            }
                            return Ok(Err(LexicalPath(p)));
                        }
                        Missing::Create(owner) => {
                            let dir = reopen_dir(parent).map_err(self.io("open", &cand))?;
                            match rustix::fs::mkdirat(&dir, c.as_str(), Mode::from_raw_mode(0o755)) {
                                Ok(()) | Err(Errno::EXIST) => {}
                                Err(e) => return Err(self.io("create the directory", &cand)(e)),
                            }
                            if let Some((u, g)) = owner {
                                rustix::fs::chownat(
                                    &dir,
                                    c.as_str(),
                                    Some(rustix::fs::Uid::from_raw(u)),
                                    Some(rustix::fs::Gid::from_raw(g)),
                                    AtFlags::SYMLINK_NOFOLLOW,
                                )
                                .map_err(self.io("chown", &cand))?;
                            }
                            todo.push_front(c);
                            continue;
                        }
                        _ => return Err(self.not_found(path)),
                    },
                    Err(Errno::NOTDIR) => {
                        return Err(ArchiveError::Invalid(format!(
                            "{} is not a directory",
                            display(&cur_path(&stack))
                        )));
                    }
                    Err(e) => return Err(self.io("open", &cand)(e)),
                }
            };
            let st = rustix::fs::fstat(&fd).map_err(self.io("stat", &cand))?;
            let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
            if is_link && (!todo.is_empty() || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ArchiveError::Invalid(format!(
                        "too many levels of symbolic links resolving {path}"
                    )));
                }
                let target =
                    rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(self.io("read the link", &cand))?;
                let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
                if target.starts_with('/') {
                    stack.clear();
                }
                for t in components(&target).into_iter().rev() {
                    todo.push_front(t);
                }
                continue;
            }
            if !todo.is_empty() && FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Err(ArchiveError::Invalid(format!(
                    "{} is not a directory",
                    display(&cand)
                )));
            }
            stack.push((c, fd));
        }
        let path = cur_path(&stack);
        let fd = match stack.pop() {
            Some((_, fd)) => fd,
            None => match self.mount_at(&[]) {
                Some(m) => self.open_mount_source(m, &[])?,
                None => root,
            },
        };
        let st = rustix::fs::fstat(&fd).map_err(self.io("stat", &path))?;
        Ok(Ok(Resolved { fd, path, st }))
    }

    /// Resolves a symlink's target as far as it exists (docker's `FollowSymlinkInScope`), as a container path.
    fn link_target(&self, path: &str) -> Result<String, ArchiveError> {
        Ok(match self.resolve_inner(path, true, Missing::Lexical)? {
            Ok(r) => display(&r.path),
            Err(LexicalPath(p)) => display(&p),
        })
    }

    /// `HEAD /containers/{id}/archive?path=`: the status of `path` (a final symlink is not followed; a trailing
    /// `/` or `/.` asks for a directory).
    pub fn stat(&self, path: &str) -> Result<PathStat, ArchiveError> {
        let wants_dir = path.ends_with('/') || path.ends_with("/.");
        let r = self.resolve(path, wants_dir, Missing::Fail)?;
        let ft = FileType::from_raw_mode(r.st.st_mode);
        if wants_dir && ft != FileType::Directory {
            return Err(ArchiveError::Invalid(format!("{path}: not a directory")));
        }
        let link_target = if ft == FileType::Symlink {
            self.link_target(path)?
        } else {
            String::new()
        };
        Ok(PathStat {
            name: base_name(path),
            size: r.st.st_size,
            mode: go_file_mode(r.st.st_mode),
            mtime: crate::time::rfc3339_nanos(
                r.st.st_mtime
                    .saturating_mul(1_000_000_000)
                    .saturating_add(r.st.st_mtime_nsec as i64),
            ),
            link_target,
        })
    }

    /// `GET /containers/{id}/archive?path=`: writes a tar of `path` to `out` and returns its stat (call
    /// [`Self::stat`] first to answer errors before streaming). A directory is archived with its content under
    /// its base name (`etc/...`; `./...` for a path ending in `/.`), anything else as one entry. Mounts inside
    /// the tree are archived with their content.
    pub fn archive(&self, path: &str, out: impl Write) -> Result<PathStat, ArchiveError> {
        let stat = self.stat(path)?;
        let wants_dir = path.ends_with('/') || path.ends_with("/.");
        let r = self.resolve(path, wants_dir, Missing::Fail)?;
        let mut w = TarWriter::new(out);
        let name = if path.ends_with("/.") {
            ".".to_string()
        } else if r.path.is_empty() {
            String::new()
        } else {
            stat.name.clone()
        };
        if FileType::from_raw_mode(r.st.st_mode) == FileType::Directory {
            let dir = reopen_dir(r.fd.as_fd()).map_err(self.io("open", &r.path))?;
            if !name.is_empty() {
                w.entry(
                    &self.io_ctx(&r.path),
                    dir.as_fd(),
                    None,
                    &format!("{name}/"),
                    &r.st,
                )?;
            }
            self.walk(&mut w, dir.as_fd(), &r.path, &name)?;
        } else {
            // A single entry: open it from its parent so that the data can be read.
            let parent_path = &r.path[..r.path.len().saturating_sub(1)];
            let base = r.path.last().cloned().unwrap_or_default();
            if let Some(m) = self.mount_at(&r.path) {
                let f = rustix::fs::open(&m.source, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(self.io("open", &r.path))?;
                w.file_from_fd(&self.io_ctx(&r.path), &f, &name, &r.st)?;
            } else {
                let parent = self.resolve(&display(parent_path), true, Missing::Fail)?;
                let pdir = reopen_dir(parent.fd.as_fd()).map_err(self.io("open", parent_path))?;
                w.entry(
                    &self.io_ctx(&r.path),
                    pdir.as_fd(),
                    Some(OsStr::new(&base)),
                    &name,
                    &r.st,
                )?;
            }
        }
        w.finish()?;
        Ok(stat)
    }

    fn io_ctx(&self, path: &[String]) -> String {
        display(path)
    }

    /// Archives the children of `dir` (container path `path`) under `prefix`.
    fn walk<W: Write>(
        &self,
        w: &mut TarWriter<W>,
        dir: BorrowedFd<'_>,
        path: &[String],
        prefix: &str,
    ) -> Result<(), ArchiveError> {
        for name in read_names(dir).map_err(self.io("read the directory", path))? {
            let Some(n) = name.to_str() else {
                tracing::warn!(dir = %self::display(path), "skipping a file name that is not UTF-8");
                continue;
            };
            let mut child = path.to_vec();
            child.push(n.to_string());
            let shown = if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}/{n}")
            };
            if let Some(m) = self.mount_at(&child) {
                let fd = self.open_mount_source(m, &child)?;
                let st = rustix::fs::fstat(&fd).map_err(self.io("stat", &child))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let d = reopen_dir(fd.as_fd()).map_err(self.io("open", &child))?;
                    w.entry(&display(&child), d.as_fd(), None, &format!("{shown}/"), &st)?;
                    self.walk(w, d.as_fd(), &child, &shown)?;
                } else {
                    let f = rustix::fs::open(&m.source, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(self.io("open", &child))?;
                    w.file_from_fd(&display(&child), &f, &shown, &st)?;
                }
                continue;
            }
            let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.io("stat", &child)(e)),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let d = match rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(d) => d,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(self.io("open", &child)(e)),
                };
                w.entry(&display(&child), d.as_fd(), None, &format!("{shown}/"), &st)?;
                self.walk(w, d.as_fd(), &child, &shown)?;
            } else {
                w.entry(&display(&child), dir, Some(&name), &shown, &st)?;
            }
        }
        Ok(())
    }

    /// `PUT /containers/{id}/archive?path=`: extracts a tar (plain, gzip or zstd) into the directory `path`.
    /// Refused when the target is under a read-only mount or the read-only root. Entries never leave the
    /// container: their parents are resolved like any container path, and entries that climb above the
    /// extraction point are refused.
    pub fn extract(&self, path: &str, input: impl Read, opts: ExtractOptions) -> Result<(), ArchiveError> {
        let target = self.resolve(path, true, Missing::Fail)?;
        if FileType::from_raw_mode(target.st.st_mode) != FileType::Directory {
            return Err(ArchiveError::Invalid(
                "extraction point is not a directory".to_string(),
            ));
        }
        self.check_writable(&target.path)?;
        let input = decompress(input)?;
        let mut ar = tar::Archive::new(input);
        let mut dir_times: Vec<(Vec<String>, String, rustix::fs::Timestamps)> = Vec::new();
        let entries = ar.entries().map_err(ArchiveError::Tar)?;
        for entry in entries {
            let mut entry = entry.map_err(ArchiveError::Tar)?;
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = berth_image::unpack::clean_path(&raw) else {
                return Err(ArchiveError::Invalid(format!(
                    "{:?} is outside of {}",
                    String::from_utf8_lossy(&raw),
                    display(&target.path)
                )));
            };
            let Some((name, parent_rel)) = rel.split_last() else {
                continue;
            };
            let mut parent_path = target.path.clone();
            parent_path.extend(parent_rel.iter().cloned());
            let parent = self.resolve(&display(&parent_path), true, Missing::Create(opts.chown))?;
            if FileType::from_raw_mode(parent.st.st_mode) != FileType::Directory {
                return Err(ArchiveError::Invalid(format!(
                    "{} is not a directory",
                    display(&parent.path)
                )));
            }
            self.check_writable(&parent.path)?;
            let mut full = parent.path.clone();
            full.push(name.clone());
            let shown = display(&full);
            let kind = entry.header().entry_type();
            let pdir = reopen_dir(parent.fd.as_fd()).map_err(self.io("open", &parent.path))?;
            if let Some(m) = self.mount_at(&full) {
                // The destination of a bind or volume: a directory merges, a file replaces the source's content.
                if kind.is_dir() {
                    continue;
                }
                if !kind.is_file() {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot replace the mount point {shown}"
                    )));
                }
                let f = rustix::fs::open(
                    &m.source,
                    OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(self.io("open", &full))?;
                io::copy(&mut entry, &mut std::fs::File::from(f)).map_err(|source| ArchiveError::Io {
                    action: "write",
                    path: shown.clone(),
                    source,
                })?;
                continue;
            }
            let existing = match rustix::fs::statat(&pdir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(self.io("stat", &full)(e)),
            };
            if let Some(ex) = &existing {
                let ex_dir = FileType::from_raw_mode(ex.st_mode) == FileType::Directory;
                if opts.no_overwrite_dir_non_dir && ex_dir && !kind.is_dir() {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite directory {shown:?} with non-directory {:?}",
                        String::from_utf8_lossy(&raw)
                    )));
                }
                if opts.no_overwrite_dir_non_dir && !ex_dir && kind.is_dir() {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite non-directory {shown:?} with directory {:?}",
                        String::from_utf8_lossy(&raw)
                    )));
                }
                if !(ex_dir && kind.is_dir()) {
                    remove_at(pdir.as_fd(), OsStr::new(name)).map_err(|source| ArchiveError::Io {
                        action: "replace",
                        path: shown.clone(),
                        source,
                    })?;
                }
            }
            let h = entry.header();
            let mode = Mode::from_raw_mode(h.mode().map_err(ArchiveError::Tar)? & 0o7777);
            let (uid, gid) = match opts.chown {
                Some(o) => o,
                None => (
                    u32::try_from(h.uid().map_err(ArchiveError::Tar)?).unwrap_or(0),
                    u32::try_from(h.gid().map_err(ArchiveError::Tar)?).unwrap_or(0),
                ),
            };
            let mtime = h.mtime().unwrap_or(0);
            let n = name.as_str();
            let io_err = |action: &'static str| {
                let shown = shown.clone();
                move |e: Errno| ArchiveError::Io {
                    action,
                    path: shown,
                    source: e.into(),
                }
            };
            match kind {
                tar::EntryType::Directory => {
                    if existing.is_none() {
                        rustix::fs::mkdirat(&pdir, n, Mode::from_raw_mode(0o700))
                            .map_err(io_err("create"))?;
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                    let f = rustix::fs::openat(
                        &pdir,
                        n,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(io_err("create"))?;
                    io::copy(&mut entry, &mut std::fs::File::from(f)).map_err(|source| ArchiveError::Io {
                        action: "write",
                        path: shown.clone(),
                        source,
                    })?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| ArchiveError::Invalid(format!("the symlink {shown} has no target")))?;
                    rustix::fs::symlinkat(OsStr::from_bytes(&target), &pdir, n).map_err(io_err("create"))?;
                }
                tar::EntryType::Link => {
                    let link = entry.link_name_bytes().ok_or_else(|| {
                        ArchiveError::Invalid(format!("the hard link {shown} has no target"))
                    })?;
                    let trel = berth_image::unpack::clean_path(&link).ok_or_else(|| {
                        ArchiveError::Invalid(format!(
                            "the hard link {shown} points outside of {}",
                            display(&target.path)
                        ))
                    })?;
                    let Some((tname, tparent)) = trel.split_last() else {
                        return Err(ArchiveError::Invalid(format!(
                            "the hard link {shown} points at the root"
                        )));
                    };
                    let mut tp = target.path.clone();
                    tp.extend(tparent.iter().cloned());
                    let tdir = self.resolve(&display(&tp), true, Missing::Fail)?;
                    let tdir = reopen_dir(tdir.fd.as_fd()).map_err(self.io("open", &tp))?;
                    rustix::fs::linkat(&tdir, tname.as_str(), &pdir, n, AtFlags::empty())
                        .map_err(io_err("link"))?;
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let ft = match kind {
                        tar::EntryType::Char => FileType::CharacterDevice,
                        tar::EntryType::Block => FileType::BlockDevice,
                        _ => FileType::Fifo,
                    };
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    rustix::fs::mknodat(&pdir, n, ft, mode, rustix::fs::makedev(major, minor))
                        .map_err(io_err("create"))?;
                }
                // PAX and GNU headers are consumed by the tar reader; other types are skipped as dockerd does.
                _ => continue,
            }
            rustix::fs::chownat(
                &pdir,
                n,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io_err("chown"))?;
            if kind != tar::EntryType::Symlink {
                rustix::fs::chmodat(&pdir, n, mode, AtFlags::empty()).map_err(io_err("chmod"))?;
            }
            let ts = rustix::fs::Timespec {
                tv_sec: i64::try_from(mtime).unwrap_or(0),
                tv_nsec: 0,
            };
            let times = rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            };
            if kind.is_dir() {
                // Set once the directory's content is written.
                dir_times.push((parent.path.clone(), n.to_string(), times));
            } else {
                rustix::fs::utimensat(&pdir, n, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err("set the times of"))?;
            }
        }
        for (parent, name, times) in dir_times.into_iter().rev() {
            if let Ok(p) = self.resolve(&display(&parent), true, Missing::Fail)
                && let Ok(d) = reopen_dir(p.fd.as_fd())
            {
                let _ = rustix::fs::utimensat(&d, name.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW);
            }
        }
        Ok(())
    }

    fn check_writable(&self, path: &[String]) -> Result<(), ArchiveError> {
        match self.mount_holding(path) {
            Some(m) if m.read_only => Err(ArchiveError::Invalid(
                "mounted volume is marked read-only".to_string(),
            )),
            Some(_) => Ok(()),
            None if self.read_only_root => Err(ArchiveError::Invalid(
                "container rootfs is marked read-only".to_string(),
            )),
            None => Ok(()),
        }
    }
}

/// `GET /containers/{id}/export`: the whole root file system as a tar (names relative, no entry for the root),
/// without the content of binds and volumes, as dockerd exports it.
pub fn export(root: &Path, out: impl Write) -> Result<(), ArchiveError> {
    let fs = ContainerFs::new("", root, &[], false);
    let r = fs.resolve("/", true, Missing::Fail)?;
    let dir = reopen_dir(r.fd.as_fd()).map_err(fs.io("open", &[]))?;
    let mut w = TarWriter::new(out);
    fs.walk(&mut w, dir.as_fd(), &[], "")?;
    w.finish()
}

/// Base name as Go's `filepath.Base` of the path as given (`/` for the root, `.` for `/x/.`).
fn base_name(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return "/".to_string();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Cleans a container path lexically into components.
fn clean(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in components(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens a readable directory descriptor from an `O_PATH` one.
fn reopen_dir(fd: BorrowedFd<'_>) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn read_names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    for e in d.by_ref() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

/// Removes `name` in `dir`, a directory with its content.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for n in read_names(sub.as_fd())? {
                remove_at(sub.as_fd(), &n)?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Peeks at the first bytes and undoes gzip or zstd.
fn decompress<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut input = io::BufReader::new(input);
    let head = io::BufRead::fill_buf(&mut input)
        .map_err(ArchiveError::Tar)?
        .to_vec();
    if head.starts_with(b"BZh") {
        return Err(ArchiveError::Invalid(
            "bzip2-compressed archives are not supported: send a plain, gzip or zstd tar".to_string(),
        ));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(ArchiveError::Invalid(
            "xz-compressed archives are not supported: send a plain, gzip or zstd tar".to_string(),
        ));
    }
    Ok(match berth_image::unpack::Compression::detect(&head) {
        berth_image::unpack::Compression::None => Box::new(input),
        berth_image::unpack::Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        berth_image::unpack::Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(ArchiveError::Tar)?)
        }
    })
}

/// A tar writer that remembers hard links.
struct TarWriter<W: Write> {
    b: tar::Builder<W>,
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        Self {
            b,
            links: HashMap::new(),
        }
    }

    fn header(st: &Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    /// Writes the entry for `name` in `dir` (or `dir` itself when `name` is `None`, a directory).
    fn entry(
        &mut self,
        shown: &str,
        dir: BorrowedFd<'_>,
        name: Option<&OsStr>,
        tar_name: &str,
        st: &Stat,
    ) -> Result<(), ArchiveError> {
        let io_err = |source: io::Error| ArchiveError::Io {
            action: "archive",
            path: shown.to_string(),
            source,
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let Some(name) = name else {
            let mut h = Self::header(st, tar::EntryType::Directory);
            return self
                .b
                .append_data(&mut h, tar_name, io::empty())
                .map_err(ArchiveError::Write);
        };
        if ft != FileType::Directory && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let mut h = Self::header(st, tar::EntryType::Link);
                return self
                    .b
                    .append_link(&mut h, tar_name, first)
                    .map_err(ArchiveError::Write);
            }
            self.links.insert(key, tar_name.to_string());
        }
        match ft {
            FileType::Directory => {
                let mut h = Self::header(st, tar::EntryType::Directory);
                self.b
                    .append_data(&mut h, tar_name, io::empty())
                    .map_err(ArchiveError::Write)
            }
            FileType::RegularFile => {
                let f = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(e.into()))?;
                self.file_from_fd(shown, &f, tar_name, st)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io_err(e.into()))?;
                let mut h = Self::header(st, tar::EntryType::Symlink);
                self.b
                    .append_link(&mut h, tar_name, OsStr::from_bytes(target.as_bytes()))
                    .map_err(ArchiveError::Write)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(st, kind);
                if kind != tar::EntryType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(ArchiveError::Write)?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(ArchiveError::Write)?;
                }
                self.b
                    .append_data(&mut h, tar_name, io::empty())
                    .map_err(ArchiveError::Write)
            }
            // Sockets are not archived (as in docker).
            FileType::Socket | FileType::Unknown => Ok(()),
        }
    }

    /// A regular file from an open descriptor: exactly `st.st_size` bytes (zero-padded if it shrank).
    fn file_from_fd(
        &mut self,
        shown: &str,
        f: &OwnedFd,
        tar_name: &str,
        st: &Stat,
    ) -> Result<(), ArchiveError> {
        let _ = shown;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut h = Self::header(st, tar::EntryType::Regular);
        h.set_size(size);
        let file = std::fs::File::from(f.try_clone().map_err(|source| ArchiveError::Io {
            action: "archive",
            path: shown.to_string(),
            source,
        })?);
        let data = Exact {
            inner: file.take(size),
            left: size,
        };
        self.b
            .append_data(&mut h, tar_name, data)
            .map_err(ArchiveError::Write)
    }

    fn finish(mut self) -> Result<(), ArchiveError> {
        self.b.finish().map_err(ArchiveError::Write)?;
        let mut out = self.b.into_inner().map_err(ArchiveError::Write)?;
        out.flush().map_err(ArchiveError::Write)
    }
}

/// Reads at most, and exactly, `left` bytes: zeros once the inner reader ends early.
struct Exact<R: Read> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = match self.inner.read(&mut buf[..max])? {
            0 => {
                buf[..max].fill(0);
                max
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------- changes

/// `GET /containers/{id}/changes`: what the container changed, from its overlay upper directory and the lower
/// directories (top first, the container's init layer included). Whiteouts are deletions; an opaque directory
/// deletes what the lowers had in it; every other entry of the upper directory is added (absent below) or
/// modified. Sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<FilesystemChange>, ArchiveError> {
    let mut out: BTreeMap<String, ChangeType> = BTreeMap::new();
    let up = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::Io {
        action: "open the upper directory",
        path: upper.display().to_string(),
        source: e.into(),
    })?;
    diff_dir(up.as_fd(), &mut Vec::new(), lowers, &mut out)?;
    Ok(out
        .into_iter()
        .map(|(path, kind)| FilesystemChange { path, kind })
        .collect())
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    for attr in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if let Ok(n) = rustix::fs::fgetxattr(dir, attr, &mut buf)
            && buf[..n] == *b"y"
        {
            return true;
        }
    }
    false
}

/// Whether `rel` is visible in the union of the lowers (top first): a whiteout or an opaque directory above
/// hides it.
fn in_lowers(lowers: &[PathBuf], rel: &[String]) -> bool {
    for lower in lowers {
        let p = lower.join(rel.join("/"));
        match rustix::fs::lstat(&p) {
            Ok(st) => return !is_whiteout(&st),
            Err(_) => {
                // An opaque ancestor in this layer hides the layers below.
                for i in (1..rel.len()).rev() {
                    let a = lower.join(rel[..i].join("/"));
                    if let Ok(d) = rustix::fs::open(
                        &a,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) && is_opaque(d.as_fd())
                    {
                        return false;
                    }
                }
            }
        }
    }
    false
}

/// The names the lowers show in directory `rel`.
fn lower_children(lowers: &[PathBuf], rel: &[String]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for lower in lowers {
        if let Ok(d) = rustix::fs::open(
            lower.join(rel.join("/")),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) && let Ok(ns) = read_names(d.as_fd())
        {
            names.extend(ns.into_iter().filter_map(|n| n.into_string().ok()));
        }
    }
    names
        .into_iter()
        .filter(|n| {
            let mut c = rel.to_vec();
            c.push(n.clone());
            in_lowers(lowers, &c)
        })
        .collect()
}

fn diff_dir(
    dir: BorrowedFd<'_>,
    rel: &mut Vec<String>,
    lowers: &[PathBuf],
    out: &mut BTreeMap<String, ChangeType>,
) -> Result<(), ArchiveError> {
    let err = |rel: &[String]| {
        let path = display(rel);
        move |e: Errno| ArchiveError::Io {
            action: "compare",
            path,
            source: e.into(),
        }
    };
    let names = read_names(dir).map_err(err(rel))?;
    for name in names {
        let Ok(n) = name.into_string() else { continue };
        rel.push(n.clone());
        let st = rustix::fs::statat(dir, n.as_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(err(rel))?;
        let path = display(rel);
        if is_whiteout(&st) {
            out.insert(path, ChangeType::_2);
        } else {
            let below = in_lowers(lowers, rel);
            out.insert(path.clone(), if below { ChangeType::_0 } else { ChangeType::_1 });
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = rustix::fs::openat(
                    dir,
                    n.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(err(rel))?;
                if below && is_opaque(sub.as_fd()) {
                    let upper_names: std::collections::BTreeSet<String> = read_names(sub.as_fd())
                        .map_err(err(rel))?
                        .into_iter()
                        .filter_map(|n| n.into_string().ok())
                        .collect();
                    for gone in lower_children(lowers, rel) {
                        if !upper_names.contains(&gone) {
                            out.insert(format!("{path}/{gone}"), ChangeType::_2);
                        }
                    }
                }
                diff_dir(sub.as_fd(), rel, lowers, out)?;
            }
        }
        rel.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        vol: PathBuf,
        ro: PathBuf,
        host: PathBuf,
    }

    /// A root with files, links (one pointing at the host's /etc), a volume at /data and a read-only bind at /ro.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let vol = dir.path().join("vol");
        let ro = dir.path().join("ro");
        let host = dir.path().join("host-secret");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("ro")).unwrap();
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(&host, b"host only").unwrap();
        std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(root.join("etc/hosts"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(root.join("etc/sub/a"), b"a").unwrap();
        std::fs::hard_link(root.join("etc/sub/a"), root.join("etc/sub/b")).unwrap();
        symlink("/etc/hosts", root.join("link")).unwrap();
        symlink(&host, root.join("escape")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        std::fs::write(vol.join("in-volume"), b"v").unwrap();
        std::fs::write(ro.join("r"), b"r").unwrap();
        Fixture {
            root,
            vol: vol.clone(),
            ro: ro.clone(),
            host,
            _dir: dir,
        }
    }

    fn fs(f: &Fixture, ro_root: bool) -> ContainerFs {
        ContainerFs::new(
            "c1",
            &f.root,
            &[
                MountPoint {
                    destination: "/data".into(),
                    source: f.vol.clone(),
                    read_only: false,
                },
                MountPoint {
                    destination: "/ro/".into(),
                    source: f.ro.clone(),
                    read_only: true,
                },
            ],
            ro_root,
        )
    }

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, kind, data)
            })
            .collect()
    }

    #[test]
    fn stat_resolves_in_scope_and_through_mounts() {
        let f = fixture();
        let c = fs(&f, false);
        let s = c.stat("/etc/hosts").unwrap();
        assert_eq!(s.name, "hosts");
        assert_eq!(s.size, 20);
        assert_eq!(s.mode, 0o640);
        assert!(s.link_target.is_empty());
        let s = c.stat("/etc").unwrap();
        assert!(s.is_dir());
        assert_eq!(s.mode, GO_MODE_DIR | 0o755 & s.mode);
        let s = c.stat("/link").unwrap();
        assert_eq!(s.mode & GO_MODE_SYMLINK, GO_MODE_SYMLINK);
        assert_eq!(s.link_target, "/etc/hosts");
        // A link to a host path is a path in the container, which does not exist there.
        assert_eq!(
            c.stat("/escape").unwrap().link_target,
            f.host.display().to_string()
        );
        assert!(matches!(c.stat("/escape/"), Err(ArchiveError::NotFound { .. })));
        // `..` stops at the container's root.
        assert!(c.stat("/up/etc/hosts").is_ok());
        assert!(c.stat("/../../etc/hosts").is_ok());
        assert_eq!(c.stat("/data/in-volume").unwrap().size, 1);
        let e = c.stat("/nope").unwrap_err();
        assert_eq!(e.to_string(), "Could not find the file /nope in container c1");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(c.stat("/etc/hosts/").is_err());
        let header = s_header(&c.stat("/etc/hosts").unwrap());
        assert_eq!(header["name"], "hosts");
        assert_eq!(header["linkTarget"], "");
    }

    fn s_header(s: &PathStat) -> serde_json::Value {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.header_value())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn archives_files_directories_and_mounts() {
        let f = fixture();
        let c = fs(&f, false);
        let mut out = Vec::new();
        c.archive("/etc", &mut out).unwrap();
        let e = entries(&out);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["etc/", "etc/hosts", "etc/sub/", "etc/sub/a", "etc/sub/b"]
        );
        assert_eq!(e[1].2, b"127.0.0.1 localhost\n");
        assert_eq!(e[4].1, tar::EntryType::Link);

        let mut out = Vec::new();
        c.archive("/etc/.", &mut out).unwrap();
        assert_eq!(entries(&out)[0].0, "./");

        let mut out = Vec::new();
        c.archive("/link", &mut out).unwrap();
        let e = entries(&out);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].0.as_str(), e[0].1), ("link", tar::EntryType::Symlink));

        let mut out = Vec::new();
        c.archive("/", &mut out).unwrap();
        let e = entries(&out);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(names.contains(&"data/in-volume"), "{names:?}");
        assert!(names.contains(&"ro/r"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("host-secret")));

        // Through a symlinked directory that points at the volume.
        symlink("/data", f.root.join("dl")).unwrap();
        let mut out = Vec::new();
        c.archive("/dl/in-volume", &mut out).unwrap();
        assert_eq!(entries(&out)[0].2, b"v");

        let mut out = Vec::new();
        export(&f.root, &mut out).unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|(n, _, _)| n).collect();
        assert!(names.contains(&"etc/hosts".to_string()));
        assert!(
            !names.contains(&"data/in-volume".to_string()),
            "export leaves volumes out"
        );
    }

    fn tar_of(items: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in items {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_uid(1234);
            h.set_gid(5678);
            h.set_mtime(1_000_000);
            h.set_size(data.len() as u64);
            if link.is_empty() {
                // `set_path` refuses `..`; write the name bytes directly for hostile names.
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            } else {
                b.append_link(&mut h, name, link).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_inside_the_container_only() {
        let f = fixture();
        let c = fs(&f, false);
        let t = tar_of(&[
            ("new/", tar::EntryType::Directory, b"", ""),
            ("new/file", tar::EntryType::Regular, b"hi", ""),
            ("new/deep/er/x", tar::EntryType::Regular, b"x", ""),
            ("new/sl", tar::EntryType::Symlink, b"", "/etc/hosts"),
            ("new/hl", tar::EntryType::Link, b"", "new/file"),
        ]);
        c.extract("/", &t[..], ExtractOptions::default()).unwrap();
        assert_eq!(std::fs::read(f.root.join("new/file")).unwrap(), b"hi");
        assert_eq!(std::fs::read(f.root.join("new/deep/er/x")).unwrap(), b"x");
        let m = std::fs::metadata(f.root.join("new/file")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mtime()), (1234, 5678, 1_000_000));
        assert_eq!(m.ino(), std::fs::metadata(f.root.join("new/hl")).unwrap().ino());
        assert_eq!(std::fs::metadata(f.root.join("new")).unwrap().mtime(), 1_000_000);

        // Into a volume through its destination, with the owner forced.
        let t = tar_of(&[("v2", tar::EntryType::Regular, b"2", "")]);
        c.extract(
            "/data",
            &t[..],
            ExtractOptions {
                chown: Some((7, 8)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::metadata(f.vol.join("v2")).unwrap().uid(), 7);

        // A symlink in the container that points at a host path is followed inside the container.
        let t = tar_of(&[("x", tar::EntryType::Regular, b"pwned", "")]);
        let e = c
            .extract("/escape", &t[..], ExtractOptions::default())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(std::fs::read(&f.host).unwrap(), b"host only");
        // Entries through a symlink to `/..`: stay in the root.
        let t = tar_of(&[("up/planted", tar::EntryType::Regular, b"p", "")]);
        c.extract("/", &t[..], ExtractOptions::default()).unwrap();
        assert!(f.root.join("planted").exists());
        // Entries climbing out are refused.
        let t = tar_of(&[("../../outside", tar::EntryType::Regular, b"o", "")]);
        let e = c.extract("/etc", &t[..], ExtractOptions::default()).unwrap_err();
        assert!(e.to_string().contains("is outside of /etc"), "{e}");
        // Hard links to outside targets are refused.
        let t = tar_of(&[("hl2", tar::EntryType::Link, b"", "../../../x")]);
        assert!(c.extract("/etc", &t[..], ExtractOptions::default()).is_err());
        // Replacing a file by an entry that is a symlink does not write through the old symlink.
        let t = tar_of(&[("escape", tar::EntryType::Regular, b"replaced", "")]);
        c.extract("/", &t[..], ExtractOptions::default()).unwrap();
        assert_eq!(std::fs::read(f.root.join("escape")).unwrap(), b"replaced");
        assert_eq!(std::fs::read(&f.host).unwrap(), b"host only");
    }

    #[test]
    fn extract_refusals() {
        let f = fixture();
        let c = fs(&f, false);
        let t = tar_of(&[("f", tar::EntryType::Regular, b"x", "")]);
        let e = c.extract("/ro", &t[..], ExtractOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "mounted volume is marked read-only");
        let e = c
            .extract("/etc/hosts", &t[..], ExtractOptions::default())
            .unwrap_err();
        assert_eq!(e.to_string(), "extraction point is not a directory");
        let e = fs(&f, true)
            .extract("/etc", &t[..], ExtractOptions::default())
            .unwrap_err();
        assert_eq!(e.to_string(), "container rootfs is marked read-only");
        assert!(
            fs(&f, true)
                .extract("/data", &t[..], ExtractOptions::default())
                .is_ok()
        );
        let t = tar_of(&[("sub", tar::EntryType::Regular, b"x", "")]);
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            chown: None,
        };
        let e = c.extract("/etc", &t[..], opts).unwrap_err();
        assert!(e.to_string().starts_with("cannot overwrite directory"), "{e}");
        let t = tar_of(&[("hosts/", tar::EntryType::Directory, b"", "")]);
        assert!(c.extract("/etc", &t[..], opts).is_err());
        // Allowed without the option: the directory becomes a file.
        let t = tar_of(&[("sub", tar::EntryType::Regular, b"x", "")]);
        c.extract("/etc", &t[..], ExtractOptions::default()).unwrap();
        assert!(f.root.join("etc/sub").is_file());
        // gzip is undone.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_of(&[("gz", tar::EntryType::Regular, b"g", "")]))
            .unwrap();
        c.extract("/", &gz.finish().unwrap()[..], ExtractOptions::default())
            .unwrap();
        assert_eq!(std::fs::read(f.root.join("gz")).unwrap(), b"g");
    }

    #[test]
    fn changes_from_an_upper_directory() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        let init = dir.path().join("init");
        let upper = dir.path().join("upper");
        for d in ["etc", "var/lib/old", "opaque/x"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), b"root").unwrap();
        std::fs::write(lower.join("etc/gone"), b"g").unwrap();
        std::fs::create_dir_all(init.join("etc")).unwrap();
        std::fs::write(init.join("etc/hostname"), b"h").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("new/dir")).unwrap();
        std::fs::create_dir_all(upper.join("opaque")).unwrap();
        std::fs::write(upper.join("etc/passwd"), b"root2").unwrap();
        std::fs::write(upper.join("new/dir/f"), b"f").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/gone"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        rustix::fs::setxattr(
            upper.join("opaque"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let got: Vec<(String, ChangeType)> = changes(&upper, &[init, lower])
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        let want = vec![
            ("/etc", ChangeType::_0),
            ("/etc/gone", ChangeType::_2),
            ("/etc/passwd", ChangeType::_0),
            ("/new", ChangeType::_1),
            ("/new/dir", ChangeType::_1),
            ("/new/dir/f", ChangeType::_1),
            ("/opaque", ChangeType::_0),
            ("/opaque/x", ChangeType::_2),
        ];
        let want: Vec<(String, ChangeType)> = want.into_iter().map(|(p, k)| (p.to_string(), k)).collect();
        assert_eq!(got, want);
        assert_eq!(go_file_mode(0o120777), GO_MODE_SYMLINK | 0o777);
        assert_eq!(
            go_file_mode(0o020666),
            GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | 0o666
        );
        assert_eq!(go_file_mode(0o104755), GO_MODE_SETUID | 0o755);
    }
}
