//! Layer directories owned by the remapped ids, two ways:
//!
//! - **idmapped mounts** ([`attach`]): a bind mount of each layer directory whose ids are seen through a user
//!   namespace ([`UserNs`]), so a file owned by 0 on disk appears owned by the mapped root (165536). Nothing is
//!   written to the layers and the cost does not depend on their size. An overlay whose lower layers are such
//!   mounts shows the mapped ids; an overlay mount itself cannot be idmapped.
//! - **shifting** ([`shift_tree`]): chowning every file of a layer once, for filesystems or kernels without
//!   idmapped mounts.
//!
//! [`supported`] tells which one a directory allows.

use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, XattrFlags, chmodat, chownat, fchmod,
    fchown, fgetxattr, fsetxattr, fstat, open, openat, openat2, statat,
};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, unmount,
};
use rustix::process::{Gid, Pid, Signal, Uid, WaitId, WaitIdOptions, pidfd_send_signal, waitid};

use crate::userns::IdRange;

/// The extended attribute that holds a file's capabilities; chown removes it.
const CAPS_XATTR: &CStr = c"security.capability";

/// The kernel accepts at most this many lines in `uid_map` and `gid_map`.
const MAX_MAP_LINES: usize = 340;

/// Errors of idmapped mounts and shifting.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    /// The id mapping cannot be used.
    #[error("the {kind} mapping {ranges} is invalid: {reason}")]
    Mapping {
        /// `uid` or `gid`.
        kind: &'static str,
        /// The ranges, as `container:host:size` items.
        ranges: String,
        /// Why.
        reason: &'static str,
    },
    /// Making the user namespace failed.
    #[error("cannot create a user namespace for the id mapping ({step}): {source}")]
    UserNs {
        /// The step that failed.
        step: String,
        /// The cause.
        source: io::Error,
    },
    /// Making an idmapped mount failed.
    #[error("cannot make an idmapped mount of {path} ({step}): {source}")]
    Mount {
        /// The directory.
        path: PathBuf,
        /// The step of the mount API that failed.
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The directory where idmapped mounts go already holds something.
    #[error("cannot attach idmapped layers at {0}: the directory is not empty (detach it first)")]
    NotEmpty(PathBuf),
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file's owner or group is outside the mapping.
    #[error("cannot shift the owner of {path}: its {kind} {id} is outside the id mapping")]
    Unmapped {
        /// The file.
        path: PathBuf,
        /// `uid` or `gid`.
        kind: &'static str,
        /// The id on disk.
        id: u32,
    },
    /// The tree to shift has a mount point in it.
    #[error(
        "cannot shift the owners under {0}: it is a mount point, and shifting does not cross into mounts"
    )]
    CrossesMount(PathBuf),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> IdmapError + 'a {
    move |e| IdmapError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn std_io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IdmapError + 'a {
    move |source| IdmapError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `ranges` as `container:host:size,...` for messages.
fn show(ranges: &[IdRange]) -> String {
    if ranges.is_empty() {
        return "(empty)".to_string();
    }
    ranges
        .iter()
        .map(|r| format!("{}:{}:{}", r.container, r.host, r.size))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks what the kernel would refuse with a bare EINVAL, so that the error can say why.
fn validate(kind: &'static str, ranges: &[IdRange]) -> Result<(), IdmapError> {
    let bad = |reason| IdmapError::Mapping {
        kind,
        ranges: show(ranges),
        reason,
    };
    if ranges.is_empty() {
        return Err(bad("it has no ranges"));
    }
    if ranges.len() > MAX_MAP_LINES {
        return Err(bad("the kernel accepts at most 340 ranges"));
    }
    // u32::MAX is the invalid id (-1): the last id of a range must be below it.
    let fits = |start: u32, size: u32| u64::from(start) + u64::from(size) <= u64::from(u32::MAX);
    for r in ranges {
        if r.size == 0 {
            return Err(bad("a range has size 0"));
        }
        if !fits(r.container, r.size) || !fits(r.host, r.size) {
            return Err(bad("a range goes past the largest id 4294967294"));
        }
    }
    Ok(())
}

/// The id `id` of the container side mapped to the host side, if a range holds it.
fn map_id(id: u32, ranges: &[IdRange]) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.container)?;
        (off < r.size).then(|| r.host.checked_add(off)).flatten()
    })
}

/// A user namespace with the mapping, held open by fd (made by a short-lived child created in a new user
/// namespace; the parent writes the maps and opens `/proc/<pid>/ns/user`, then the child is killed and reaped).
///
/// The namespace has no process in it; it exists for idmapped mounts, which keep their own reference to it, so
/// a `UserNs` may be dropped once the mounts are made.
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    uids: Vec<IdRange>,
    gids: Vec<IdRange>,
}

impl UserNs {
    /// Makes a user namespace whose uid and gid maps are `uids` and `gids` (container id → host id). Needs
    /// CAP_SETUID and CAP_SETGID (root): several ranges, or ranges of ids other than the caller's own, are
    /// written by a privileged process only. `setgroups` is left at `allow`, which the kernel permits because
    /// the writer has CAP_SETGID over the parent namespace.
    pub fn new(uids: &[IdRange], gids: &[IdRange]) -> Result<Self, IdmapError> {
        validate("uid", uids)?;
        validate("gid", gids)?;
        let holder = Holder::spawn()?;
        let fail = |step: &str| {
            let step = step.to_string();
            move |e: Errno| IdmapError::UserNs {
                step,
                source: e.into(),
            }
        };
        let proc_dir = open(
            format!("/proc/{}", holder.pid.as_raw_nonzero()),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("open /proc/<pid>"))?;
        // The child is ours and not reaped, so its pid cannot have been reused: /proc/<pid> is the child.
        if !holder.alive() {
            return Err(IdmapError::UserNs {
                step: "the holding child process exited early".to_string(),
                source: io::Error::from(io::ErrorKind::UnexpectedEof),
            });
        }
        write_map(&proc_dir, "uid_map", uids)?;
        write_map(&proc_dir, "gid_map", gids)?;
        let fd = openat(
            &proc_dir,
            "ns/user",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("open /proc/<pid>/ns/user"))?;
        drop(holder);
        Ok(Self {
            fd,
            uids: uids.to_vec(),
            gids: gids.to_vec(),
        })
    }
}

impl AsFd for UserNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Writes `ranges` to `/proc/<pid>/<file>` in one `write`, as the kernel requires.
fn write_map(proc_dir: &OwnedFd, file: &'static str, ranges: &[IdRange]) -> Result<(), IdmapError> {
    let text: String = ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect();
    let fail = |e: Errno| IdmapError::UserNs {
        step: format!("write {file} {:?}", text.trim_end()),
        source: e.into(),
    };
    let fd = openat(proc_dir, file, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(fail)?;
    let n = rustix::io::write(&fd, text.as_bytes()).map_err(fail)?;
    if n != text.len() {
        return Err(IdmapError::UserNs {
            step: format!("write {file}: the kernel took {n} of {} bytes", text.len()),
            source: io::Error::from(io::ErrorKind::WriteZero),
        });
    }
    Ok(())
}

/// The child that keeps the new user namespace alive until its maps are written and its fd is open. Dropping
/// it kills and reaps the child.
struct Holder {
    pid: Pid,
    pidfd: OwnedFd,
    /// The write end of the pipe the child blocks on: if this process dies, the child reads EOF and exits.
    _release: OwnedFd,
}

impl Holder {
    /// Creates the child with `clone3(CLONE_NEWUSER | CLONE_PIDFD)`.
    ///
    /// Why clone3 and not fork + unshare or a helper binary: the daemon is a multi-threaded tokio process, so
    /// after the clone the child may only make async-signal-safe calls (another thread may hold the allocator's
    /// lock). With `CLONE_NEWUSER` the child is born in the new namespace, so it has nothing to do but block in
    /// `read` on a pipe and `_exit`: three raw syscalls, no allocation, no lock, no handshake. `unshare` in a
    /// forked child would need a second pipe to report that it has unshared. A helper binary would need a
    /// program on disk. `CLONE_PIDFD` gives a pidfd to kill and reap exactly this child, race-free.
    fn spawn() -> Result<Self, IdmapError> {
        let fail = |step: &'static str| {
            move |e: Errno| IdmapError::UserNs {
                step: step.to_string(),
                source: e.into(),
            }
        };
        let (read_end, write_end) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fail("pipe"))?;
        let mut pidfd: libc::c_int = -1;
        let mut args = libc::clone_args {
            flags: (libc::CLONE_NEWUSER | libc::CLONE_PIDFD) as u64,
            pidfd: std::ptr::from_mut(&mut pidfd) as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: 0,
        };
        let (raw_read, raw_write) = (read_end.as_raw_fd(), write_end.as_raw_fd());
        // SAFETY: `args` is a valid, fully initialised clone_args of the size passed; without CLONE_VM the child
        // gets a copy of this address space and runs on (its copy of) this stack, like fork. The child branch
        // below only calls `hold`, which never returns and makes only async-signal-safe raw syscalls.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                std::ptr::from_mut(&mut args),
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        if ret == 0 {
            // SAFETY: we are the new child; both fds are open (inherited copies).
            unsafe { hold(raw_read, raw_write) }
        }
        if ret < 0 {
            return Err(IdmapError::UserNs {
                step: "clone3 CLONE_NEWUSER".to_string(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd for the child in `pidfd`; nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop(read_end);
        let pid = i32::try_from(ret)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| IdmapError::UserNs {
                step: format!("clone3 returned the invalid pid {ret}"),
                source: io::Error::from(io::ErrorKind::InvalidData),
            })?;
        Ok(Self {
            pid,
            pidfd,
            _release: write_end,
        })
    }

    /// Whether the child has not exited (and so was not reaped by anyone).
    fn alive(&self) -> bool {
        matches!(
            waitid(
                WaitId::PidFd(self.pidfd.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
            ),
            Ok(None)
        )
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Killing does not wait for the pipe's EOF, which a thread that forks at the same moment could delay.
        let _ = pidfd_send_signal(&self.pidfd, Signal::KILL);
        // Retried on EINTR only: reaped, or (ECHILD) reaped by someone else, it is gone either way.
        while let Err(Errno::INTR) = waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED) {}
    }
}

/// The child's whole life: close its copy of the pipe's write end, block until the parent kills it or the pipe
/// reaches EOF (the parent died), exit.
///
/// # Safety
/// Must be called only in the child right after `clone3`, with the pipe's ends.
unsafe fn hold(read_end: RawFd, write_end: RawFd) -> ! {
    // SAFETY: `write_end` is this process's copy of the pipe's write end, owned by nothing in this branch
    // (nothing of the parent's Rust state is dropped here: we never return).
    unsafe { rustix::io::close(write_end) };
    // SAFETY: `read_end` is open for as long as this process lives.
    let fd = unsafe { BorrowedFd::borrow_raw(read_end) };
    let mut byte = [0u8; 1];
    while let Err(Errno::INTR) = rustix::io::read(fd, &mut byte) {}
    // SAFETY: _exit ends the process without running atexit handlers or destructors, async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Whether this kernel and the filesystem of `dir` can idmap a directory under `dir` and use it as an overlay
/// lower layer. Tries it once on a temporary subdirectory (removed again): an idmapped bind mount of a directory
/// holding a file owned by the first container ids must show the file owned by the first host ids, directly and
/// through a read-only overlay over it.
pub fn supported(dir: &Path, ns: &UserNs) -> bool {
    match probe(dir, ns) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("idmapped layers are not supported under {}: {e}", dir.display());
            false
        }
    }
}

/// Removes the probe's directory, unmounting first; leaves it if the mount cannot be removed.
struct ProbeDir(PathBuf);

impl Drop for ProbeDir {
    fn drop(&mut self) {
        if unmount_all(&self.0.join("mnt")).is_ok() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn probe(dir: &Path, ns: &UserNs) -> Result<(), IdmapError> {
    let (Some(u), Some(g)) = (ns.uids.first(), ns.gids.first()) else {
        return Err(IdmapError::Mapping {
            kind: "uid",
            ranges: show(&ns.uids),
            reason: "it has no ranges",
        });
    };
    let name = format!(".idmap-probe-{}-{:016x}", std::process::id(), fastrand::u64(..));
    let top = dir.join(name);
    std::fs::create_dir(&top).map_err(std_io_err("create", &top))?;
    let guard = ProbeDir(top);
    let top = &guard.0;
    let (lower, empty, mnt) = (top.join("lower"), top.join("empty"), top.join("mnt"));
    for d in [&lower, &empty, &mnt] {
        std::fs::create_dir(d).map_err(std_io_err("create", d))?;
    }
    let file = lower.join("f");
    std::fs::write(&file, b"").map_err(std_io_err("create", &file))?;
    chownat(
        CWD,
        &file,
        Some(Uid::from_raw(u.container)),
        Some(Gid::from_raw(g.container)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err("chown", &file))?;
    let expect = |st: &Stat, what: &Path| {
        if st.st_uid == u.host && st.st_gid == g.host {
            Ok(())
        } else {
            Err(IdmapError::Mount {
                path: what.to_path_buf(),
                step: "check the mapped owner",
                source: io::Error::other(format!(
                    "a file owned by {}:{} shows {}:{}, not {}:{}",
                    u.container, g.container, st.st_uid, st.st_gid, u.host, g.host
                )),
            })
        }
    };

    attach_one(&lower, ns, &mnt)?;
    let seen = statat(CWD, mnt.join("f"), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err("stat", &mnt))?;
    expect(&seen, &mnt)?;

    let fail = |step: &'static str| {
        let mnt = mnt.clone();
        move |e: Errno| IdmapError::Mount {
            path: mnt,
            step,
            source: e.into(),
        }
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen overlay"))?;
    fsconfig_set_string(&fs, "lowerdir+", &mnt).map_err(fail("overlay lowerdir+ on the idmapped mount"))?;
    fsconfig_set_string(&fs, "lowerdir+", &empty).map_err(fail("overlay lowerdir+"))?;
    fsconfig_create(&fs).map_err(fail("overlay over the idmapped mount"))?;
    let overlay = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(fail("fsmount overlay"))?;
    let seen = statat(&overlay, "f", AtFlags::SYMLINK_NOFOLLOW).map_err(fail("stat through the overlay"))?;
    expect(&seen, &mnt)?;
    Ok(())
}

/// Idmapped bind mounts of `dirs` attached under `at` (`at/0`, `at/1`, ...): `open_tree(OPEN_TREE_CLONE)` +
/// `mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, userns fd)` + `move_mount`; returns the attached paths,
/// in order. The mounts are read-only (they are meant as overlay lower layers) and do not include mounts below
/// the directories. `at` is created if missing and must be empty. On failure nothing is left attached and `at`
/// is removed.
pub fn attach(dirs: &[PathBuf], ns: &UserNs, at: &Path) -> Result<Vec<PathBuf>, IdmapError> {
    std::fs::create_dir_all(at).map_err(std_io_err("create", at))?;
    let mut entries = std::fs::read_dir(at).map_err(std_io_err("read", at))?;
    if entries.next().is_some() {
        return Err(IdmapError::NotEmpty(at.to_path_buf()));
    }
    let mut attached = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.iter().enumerate() {
        let target = at.join(i.to_string());
        let made = std::fs::create_dir(&target)
            .map_err(std_io_err("create", &target))
            .and_then(|()| attach_one(dir, ns, &target));
        if let Err(e) = made {
            let _ = detach(at);
            return Err(e);
        }
        attached.push(target);
    }
    Ok(attached)
}

/// An idmapped, read-only clone of the mount at `src`, attached at the existing directory `target`.
fn attach_one(src: &Path, ns: &UserNs, target: &Path) -> Result<(), IdmapError> {
    let fail = |step: &'static str| {
        move |e: Errno| IdmapError::Mount {
            path: src.to_path_buf(),
            step,
            source: e.into(),
        }
    };
    let tree = open_tree(
        CWD,
        src,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(fail("open_tree"))?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.fd.as_raw_fd() as u64,
    };
    // SAFETY: rustix has no mount_setattr. The arguments are a valid detached mount fd, an empty NUL-terminated
    // path with AT_EMPTY_PATH (so the fd itself is changed), and a pointer to an initialised mount_attr of the
    // size passed, which the kernel only reads during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret != 0 {
        return Err(IdmapError::Mount {
            path: src.to_path_buf(),
            step: "mount_setattr MOUNT_ATTR_IDMAP",
            source: io::Error::last_os_error(),
        });
    }
    move_mount(&tree, "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).map_err(|e| {
        IdmapError::Mount {
            path: src.to_path_buf(),
            step: "move_mount",
            source: io::Error::from(e),
        }
    })
}

/// Lazily unmounts whatever is mounted at `path` (stacked mounts too); not a mount point is fine.
fn unmount_all(path: &Path) -> Result<(), IdmapError> {
    loop {
        match unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::INVAL | Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_err("unmount", path)(e)),
        }
    }
}

/// Lazily unmounts and removes what [`attach`] made: the numbered directories under `at` and `at` itself.
/// A missing `at` is fine; anything else left in `at` is an error (and `at` stays).
pub fn detach(at: &Path) -> Result<(), IdmapError> {
    let entries = match std::fs::read_dir(at) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(std_io_err("read", at)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(std_io_err("read", at))?;
        let name = entry.file_name();
        if name.is_empty() || !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let p = entry.path();
        unmount_all(&p)?;
        match std::fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(std_io_err("remove", &p)(e)),
        }
    }
    match std::fs::remove_dir(at) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(std_io_err("remove", at)(e)),
    }
}

/// The shifted alternative: chowns the tree at `dir` (itself included; no symlink is followed, no mount point is
/// crossed) by the mapping, so that a file owned by container uid `u` becomes owned by host uid `map(u)` (gids
/// likewise). Modes are kept: the setuid and setgid bits that chown clears are set again, and so are file
/// capabilities (`security.capability`, which chown removes). A file with several hard links is changed once.
/// Files already owned by their mapped ids are not touched.
///
/// An id outside the mapping is an error; the tree is then partly shifted, so the caller marks a tree as shifted
/// only after success.
pub fn shift_tree(dir: &Path, uids: &[IdRange], gids: &[IdRange]) -> Result<(), IdmapError> {
    validate("uid", uids)?;
    validate("gid", gids)?;
    let shifter = Shifter {
        uids,
        gids,
        seen: HashSet::new(),
    };
    shifter.run(dir)
}

struct Shifter<'a> {
    uids: &'a [IdRange],
    gids: &'a [IdRange],
    /// (device, inode) of files with several links already shifted.
    seen: HashSet<(u64, u64)>,
}

/// A directory being walked: the fd used for `*at` calls and the stream of its entries.
struct Frame {
    fd: OwnedFd,
    entries: Dir,
    path: PathBuf,
}

impl Frame {
    fn new(fd: OwnedFd, path: PathBuf) -> Result<Self, IdmapError> {
        let entries = Dir::read_from(&fd).map_err(io_err("read", &path))?;
        Ok(Self { fd, entries, path })
    }
}

impl Shifter<'_> {
    fn run(mut self, dir: &Path) -> Result<(), IdmapError> {
        let root = open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open", dir))?;
        self.shift_fd(&root, dir, false)?;
        let mut stack = vec![Frame::new(root, dir.to_path_buf())?];
        while let Some(top) = stack.last_mut() {
            let Some(entry) = top.entries.next() else {
                stack.pop();
                continue;
            };
            let entry = entry.map_err(io_err("read", &top.path))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let path = top.path.join(OsStr::from_bytes(name.to_bytes()));
            let mut ftype = entry.file_type();
            if ftype == FileType::Unknown {
                let st = statat(&top.fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err("stat", &path))?;
                ftype = FileType::from_raw_mode(st.st_mode);
            }
            match ftype {
                FileType::Directory => {
                    let fd = openat2(
                        &top.fd,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
                    )
                    .map_err(|e| match e {
                        Errno::XDEV => IdmapError::CrossesMount(path.clone()),
                        e => io_err("open", &path)(e),
                    })?;
                    self.shift_fd(&fd, &path, false)?;
                    stack.push(Frame::new(fd, path)?);
                }
                FileType::RegularFile => {
                    let fd = openat(
                        &top.fd,
                        name,
                        OFlags::RDONLY
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::NOCTTY
                            | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(io_err("open", &path))?;
                    self.shift_fd(&fd, &path, true)?;
                }
                _ => {
                    let fd = top.fd.as_fd();
                    self.shift_at(fd, name, &path, ftype == FileType::Symlink)?;
                }
            }
        }
        Ok(())
    }

    /// The host ids of a file owned by `st_uid`:`st_gid` in the container.
    fn mapped(&self, st: &Stat, path: &Path) -> Result<(u32, u32), IdmapError> {
        let uid = map_id(st.st_uid, self.uids).ok_or_else(|| IdmapError::Unmapped {
            path: path.to_path_buf(),
            kind: "uid",
            id: st.st_uid,
        })?;
        let gid = map_id(st.st_gid, self.gids).ok_or_else(|| IdmapError::Unmapped {
            path: path.to_path_buf(),
            kind: "gid",
            id: st.st_gid,
        })?;
        Ok((uid, gid))
    }

    /// Whether `st` is a second link to a file already handled (and records it otherwise).
    fn already_done(&mut self, st: &Stat) -> bool {
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        !is_dir && st.st_nlink > 1 && !self.seen.insert((st.st_dev, st.st_ino))
    }

    /// Shifts an open directory or regular file.
    fn shift_fd(&mut self, fd: &OwnedFd, path: &Path, regular: bool) -> Result<(), IdmapError> {
        let st = fstat(fd).map_err(io_err("stat", path))?;
        if self.already_done(&st) {
            return Ok(());
        }
        let (uid, gid) = self.mapped(&st, path)?;
        if (uid, gid) == (st.st_uid, st.st_gid) {
            return Ok(());
        }
        let caps = if regular { read_caps(fd, path)? } else { None };
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io_err("chown", path))?;
        if st.st_mode & 0o6000 != 0 {
            fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(io_err("chmod", path))?;
        }
        if let Some(caps) = caps {
            fsetxattr(fd, CAPS_XATTR, &caps, XattrFlags::empty())
                .map_err(io_err("restore the capabilities of", path))?;
        }
        Ok(())
    }

    /// Shifts a symlink, device, FIFO or socket by name (these are not opened).
    fn shift_at(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: &Path,
        symlink: bool,
    ) -> Result<(), IdmapError> {
        let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err("stat", path))?;
        if self.already_done(&st) {
            return Ok(());
        }
        let (uid, gid) = self.mapped(&st, path)?;
        if (uid, gid) == (st.st_uid, st.st_gid) {
            return Ok(());
        }
        chownat(
            dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err("chown", path))?;
        // A symlink has no mode of its own; the entry is not a symlink otherwise, so chmodat follows nothing.
        if !symlink && st.st_mode & 0o6000 != 0 {
            chmodat(
                dir,
                name,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(io_err("chmod", path))?;
        }
        Ok(())
    }
}

/// The file's `security.capability`, if it has one.
fn read_caps(fd: &OwnedFd, path: &Path) -> Result<Option<Vec<u8>>, IdmapError> {
    // vfs_cap_data is 20 bytes (v2) or 24 (v3).
    let mut buf = vec![0u8; 64];
    match fgetxattr(fd, CAPS_XATTR, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(io_err("read the capabilities of", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::os::unix::process::CommandExt as _;
    use std::process::Command;

    use berth_test_support::cleanup::{make_temp_dir, mounts_under, remove_tree};

    use super::*;

    const BASE: u32 = 165_536;

    fn is_root() -> bool {
        if rustix::process::geteuid().is_root() {
            true
        } else {
            eprintln!("skipped: idmapped mounts and chown need root");
            false
        }
    }

    fn default_map() -> Vec<IdRange> {
        vec![IdRange {
            container: 0,
            host: BASE,
            size: 65_536,
        }]
    }

    /// A temporary directory on the root filesystem, removed with everything mounted under it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            Self(
                make_temp_dir("berth-idmap-test-")
                    .unwrap()
                    .canonicalize()
                    .unwrap(),
            )
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Err(e) = remove_tree(&self.0) {
                eprintln!("cleanup of {} failed: {e}", self.0.display());
            }
        }
    }

    fn owner(p: &Path) -> (u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    }

    fn chown(p: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }

    /// Runs `sh -c script` in the user namespace `ns`, as its root when `as_root` (else with the host's ids,
    /// which the namespace does not map); returns stdout.
    fn in_ns(ns: &UserNs, as_root: bool, script: &str) -> String {
        let fd = ns.as_fd().as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        // SAFETY: the closure runs in the forked child before exec and makes only raw syscalls (setns, setresgid,
        // setgroups, setresuid), which are async-signal-safe; `fd` stays open in the child until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if as_root
                    && (libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                        || libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                        || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0)
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn no_mounts_under(dir: &Path) -> bool {
        mounts_under(dir).unwrap().is_empty()
    }

    #[test]
    fn the_namespace_has_the_maps_and_no_process_left() {
        if !is_root() {
            return;
        }
        let uids = vec![
            IdRange {
                container: 0,
                host: BASE,
                size: 1000,
            },
            IdRange {
                container: 1000,
                host: 300_000,
                size: 64_536,
            },
        ];
        let gids = default_map();
        let ns = UserNs::new(&uids, &gids).unwrap();
        let ino = fstat(&ns).unwrap().st_ino;
        // The holder child was killed and reaped: no process is in the namespace.
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if entry.file_name().as_bytes().iter().all(u8::is_ascii_digit)
                && let Ok(m) = std::fs::metadata(entry.path().join("ns/user"))
            {
                assert_ne!(
                    m.ino(),
                    ino,
                    "process {:?} is still in the namespace",
                    entry.file_name()
                );
            }
        }
        let maps = in_ns(
            &ns,
            false,
            "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
        );
        let maps: Vec<Vec<&str>> = maps.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            maps,
            vec![
                vec!["0", "165536", "1000"],
                vec!["1000", "300000", "64536"],
                vec!["0", "165536", "65536"],
                vec!["allow"],
            ]
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_a_reason() {
        let e = UserNs::new(&[], &default_map()).unwrap_err();
        assert!(matches!(e, IdmapError::Mapping { kind: "uid", .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "the uid mapping (empty) is invalid: it has no ranges"
        );
        let too_far = [IdRange {
            container: 0,
            host: u32::MAX - 10,
            size: 65_536,
        }];
        let e = UserNs::new(&default_map(), &too_far).unwrap_err();
        assert!(e.to_string().contains("goes past the largest id"), "{e}");
        if !is_root() {
            return;
        }
        // Overlapping container ranges: the kernel refuses the map.
        let overlap = [
            IdRange {
                container: 0,
                host: BASE,
                size: 65_536,
            },
            IdRange {
                container: 100,
                host: 400_000,
                size: 10,
            },
        ];
        let e = UserNs::new(&overlap, &default_map()).unwrap_err();
        assert!(matches!(e, IdmapError::UserNs { .. }), "{e}");
        assert!(e.to_string().contains("write uid_map"), "{e}");
    }

    #[test]
    fn an_idmapped_mount_shows_the_mapped_owner_and_detach_leaves_nothing() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let lower = s.0.join("lower");
        std::fs::create_dir(&lower).unwrap();
        std::fs::write(lower.join("root-file"), b"r").unwrap();
        std::fs::write(lower.join("user-file"), b"u").unwrap();
        chown(&lower.join("user-file"), 1000, 1001);
        let ns = UserNs::new(&default_map(), &default_map()).unwrap();
        let at = s.0.join("at");

        let paths = attach(std::slice::from_ref(&lower), &ns, &at).unwrap();
        assert_eq!(paths, vec![at.join("0")]);
        assert_eq!(owner(&paths[0].join("root-file")), (BASE, BASE));
        assert_eq!(owner(&paths[0].join("user-file")), (BASE + 1000, BASE + 1001));
        assert_eq!(
            owner(&paths[0]),
            (BASE, BASE),
            "the directory itself is mapped too"
        );
        assert_eq!(owner(&lower.join("root-file")), (0, 0), "the disk is unchanged");
        let err = std::fs::write(paths[0].join("new"), b"x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "the idmapped layer is read-only"
        );
        assert_eq!(mounts_under(&at).unwrap(), paths);

        // A second attach onto the same place is refused.
        let e = attach(std::slice::from_ref(&lower), &ns, &at).unwrap_err();
        assert!(matches!(e, IdmapError::NotEmpty(_)), "{e}");

        detach(&at).unwrap();
        assert!(no_mounts_under(&at));
        assert!(!at.exists());
        assert_eq!(std::fs::read(lower.join("root-file")).unwrap(), b"r");
        detach(&at).unwrap();
    }

    #[test]
    fn a_failed_attach_leaves_nothing() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let good = s.0.join("good");
        std::fs::create_dir(&good).unwrap();
        let missing = s.0.join("missing");
        let ns = UserNs::new(&default_map(), &default_map()).unwrap();
        let at = s.0.join("at");
        let e = attach(&[good, missing.clone()], &ns, &at).unwrap_err();
        assert!(
            matches!(&e, IdmapError::Mount { path, step: "open_tree", .. } if *path == missing),
            "{e}"
        );
        assert!(no_mounts_under(&s.0));
        assert!(!at.exists());
    }

    #[test]
    fn an_overlay_over_idmapped_lowers_shows_the_mapped_root() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let (l1, l2) = (s.0.join("l1"), s.0.join("l2"));
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::write(l1.join("etc/top"), b"1").unwrap();
        std::fs::create_dir(&l2).unwrap();
        std::fs::write(l2.join("bottom"), b"2").unwrap();
        std::fs::write(l2.join("nobody"), b"3").unwrap();
        chown(&l2.join("nobody"), 65_534, 65_534);
        // The container's writable layer: owned by the mapped root, as the engine makes it.
        let ovl = s.0.join("ovl");
        let (upper, work, merged) = (ovl.join("upper"), ovl.join("work"), s.0.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        chown(&upper, BASE, BASE);
        let ns = UserNs::new(&default_map(), &default_map()).unwrap();
        let lowers = attach(&[l1.clone(), l2.clone()], &ns, &s.0.join("at")).unwrap();

        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
        for l in &lowers {
            fsconfig_set_string(&fs, "lowerdir+", l).unwrap();
        }
        fsconfig_set_string(&fs, "upperdir", &upper).unwrap();
        fsconfig_set_string(&fs, "workdir", &work).unwrap();
        fsconfig_create(&fs).unwrap();
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).unwrap();
        move_mount(&mnt, "", CWD, &merged, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).unwrap();

        // From the host: root-owned lower files are owned by the mapped root.
        assert_eq!(owner(&merged.join("etc/top")), (BASE, BASE));
        assert_eq!(owner(&merged.join("etc")), (BASE, BASE));
        assert_eq!(owner(&merged.join("bottom")), (BASE, BASE));
        assert_eq!(owner(&merged.join("nobody")), (BASE + 65_534, BASE + 65_534));
        assert_eq!(owner(&merged), (BASE, BASE));

        // From inside the namespace, as its root: the files are root's, and root can write (copy-up of a
        // lower file and a new file), which land in the upper layer owned by the mapped root.
        let m = merged.display();
        let out = in_ns(
            &ns,
            true,
            &format!(
                "stat -c %u:%g {m}/etc/top {m}/bottom {m}/nobody && echo x >> {m}/etc/top && touch {m}/new && \
                 stat -c %u:%g {m}/etc/top {m}/new"
            ),
        );
        assert_eq!(out, "0:0\n0:0\n65534:65534\n0:0\n0:0\n");
        assert_eq!(owner(&upper.join("new")), (BASE, BASE));
        assert_eq!(owner(&upper.join("etc/top")), (BASE, BASE));
        assert_eq!(owner(&l1.join("etc/top")), (0, 0), "the lower layer is untouched");
        assert_eq!(std::fs::read(l1.join("etc/top")).unwrap(), b"1");

        unmount(&merged, UnmountFlags::DETACH).unwrap();
        detach(&s.0.join("at")).unwrap();
        assert!(no_mounts_under(&s.0));
    }

    #[test]
    fn supported_on_ext4_but_not_on_an_overlay_mount() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let ns = UserNs::new(&default_map(), &default_map()).unwrap();
        assert!(supported(&s.0, &ns), "ext4 allows idmapped mounts");
        let leftovers = |d: &Path| std::fs::read_dir(d).unwrap().count();
        assert_eq!(leftovers(&s.0), 0, "the probe removed its directory");

        let (lower, upper, work, merged) = (
            s.0.join("lower"),
            s.0.join("upper"),
            s.0.join("work"),
            s.0.join("merged"),
        );
        for d in [&lower, &upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).unwrap();
        fsconfig_set_string(&fs, "lowerdir+", &lower).unwrap();
        fsconfig_set_string(&fs, "upperdir", &upper).unwrap();
        fsconfig_set_string(&fs, "workdir", &work).unwrap();
        fsconfig_create(&fs).unwrap();
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).unwrap();
        move_mount(&mnt, "", CWD, &merged, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).unwrap();
        assert!(!supported(&merged, &ns), "an overlay mount cannot be idmapped");
        assert_eq!(leftovers(&merged), 0, "the probe removed its directory");
        assert_eq!(mounts_under(&s.0).unwrap(), vec![merged.clone()]);
    }

    /// A v2 `security.capability` value: cap_net_raw permitted and effective.
    fn net_raw_caps() -> Vec<u8> {
        let words: [u32; 5] = [0x0200_0000 | 1, 1 << 13, 0, 0, 0];
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn shift_tree_shifts_owners_and_keeps_modes_links_and_caps() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let t = s.0.join("tree");
        std::fs::create_dir_all(t.join("shared/deep/er")).unwrap();
        std::fs::set_permissions(t.join("shared"), std::fs::Permissions::from_mode(0o2775)).unwrap();
        std::fs::write(t.join("suid"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(t.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::write(t.join("sgid"), b"").unwrap();
        chown(&t.join("sgid"), 0, 42);
        std::fs::set_permissions(t.join("sgid"), std::fs::Permissions::from_mode(0o2711)).unwrap();
        std::fs::hard_link(t.join("suid"), t.join("shared/suid-link")).unwrap();
        std::fs::write(t.join("shared/deep/er/user"), b"").unwrap();
        chown(&t.join("shared/deep/er/user"), 1000, 1000);
        std::fs::write(t.join("ping"), b"").unwrap();
        std::fs::set_permissions(t.join("ping"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ping = open(t.join("ping"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        fsetxattr(&ping, CAPS_XATTR, &net_raw_caps(), XattrFlags::empty()).unwrap();
        drop(ping);
        // Symlinks are chowned themselves; their targets (here outside the tree) are not.
        let outside = s.0.join("outside");
        std::fs::write(&outside, b"").unwrap();
        std::os::unix::fs::symlink(&outside, t.join("out-link")).unwrap();
        std::os::unix::fs::symlink("suid", t.join("in-link")).unwrap();
        chown(&t.join("in-link"), 7, 8);
        let fifo = t.join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();

        let uids = vec![
            IdRange {
                container: 0,
                host: BASE,
                size: 1000,
            },
            IdRange {
                container: 1000,
                host: 300_000,
                size: 64_536,
            },
        ];
        shift_tree(&t, &uids, &default_map()).unwrap();

        assert_eq!(owner(&t), (BASE, BASE));
        assert_eq!(owner(&t.join("shared")), (BASE, BASE));
        assert_eq!(owner(&t.join("shared/deep/er")), (BASE, BASE));
        assert_eq!(owner(&t.join("shared/deep/er/user")), (300_000, BASE + 1000));
        assert_eq!(owner(&t.join("sgid")), (BASE, BASE + 42));
        // The hard link was shifted once (twice would have been outside the mapping, an error).
        assert_eq!(owner(&t.join("suid")), (BASE, BASE));
        assert_eq!(
            std::fs::metadata(t.join("suid")).unwrap().ino(),
            std::fs::metadata(t.join("shared/suid-link")).unwrap().ino()
        );
        assert_eq!(owner(&t.join("out-link")), (BASE, BASE));
        assert_eq!(owner(&outside), (0, 0), "the symlink was not followed");
        assert_eq!(owner(&t.join("in-link")), (BASE + 7, BASE + 8));
        assert_eq!(owner(&fifo), (BASE, BASE));
        let mode = |p: &str| std::fs::symlink_metadata(t.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("suid"), 0o4755);
        assert_eq!(mode("sgid"), 0o2711);
        assert_eq!(mode("shared"), 0o2775);
        assert_eq!(mode("ping"), 0o755);
        assert_eq!(mode("fifo"), 0o644);
        let ping = open(t.join("ping"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let mut buf = [0u8; 64];
        let n = fgetxattr(&ping, CAPS_XATTR, &mut buf[..]).unwrap();
        assert_eq!(
            &buf[..n],
            net_raw_caps().as_slice(),
            "the file capabilities are kept"
        );
    }

    #[test]
    fn shift_tree_refuses_ids_outside_the_mapping_and_mounts() {
        if !is_root() {
            return;
        }
        let s = Scratch::new();
        let t = s.0.join("tree");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("big"), b"").unwrap();
        chown(&t.join("big"), 70_000, 0);
        let e = shift_tree(&t, &default_map(), &default_map()).unwrap_err();
        assert!(
            matches!(&e, IdmapError::Unmapped { path, kind: "uid", id: 70_000 } if *path == t.join("big")),
            "{e}"
        );
        assert_eq!(owner(&t.join("big")), (70_000, 0));

        // A mount point inside the tree stops the walk before anything under it is touched.
        let t = s.0.join("tree2");
        std::fs::create_dir(&t).unwrap();
        let other = s.0.join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("f"), b"").unwrap();
        std::fs::create_dir(t.join("mnt")).unwrap();
        rustix::mount::mount_bind(&other, t.join("mnt")).unwrap();
        let e = shift_tree(&t, &default_map(), &default_map()).unwrap_err();
        assert!(
            matches!(&e, IdmapError::CrossesMount(p) if *p == t.join("mnt")),
            "{e}"
        );
        assert_eq!(owner(&other.join("f")), (0, 0));
    }
}
