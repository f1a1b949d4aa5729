//! Paths inside the rootfs, resolved relative to an fd of the rootfs with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so that a symlink in the rootfs (absolute, or `../../..`) resolves inside the
//! rootfs, never on the host. Missing components are created one at a time relative to fds, never by path.
//! A mount is then made onto `/proc/self/fd/<N>` of the resolved fd (the host's `/proc` is still visible
//! before pivot_root).

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::CStr;
use std::mem::MaybeUninit;

/// How many symlinks one resolution may expand while creating missing components.
const MAX_SYMLINKS: usize = 40;

/// `/proc/self/fd/<N>` as a C string, built on the stack.
pub(crate) struct ProcFd {
    buf: [u8; 32],
}

impl ProcFd {
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Self {
        use std::os::fd::AsRawFd;
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut n = fd.as_raw_fd().unsigned_abs();
        let mut digits = [0u8; 10];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            buf[PREFIX.len() + i] = *d;
        }
        // buf[PREFIX.len() + len] is already 0: 14 + 10 + 1 <= 32.
        ProcFd { buf }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (see `new`), so this cannot fail; fall back to
        // an empty string rather than panicking.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// Cleans an absolute container path lexically (`.`, `..`, repeated slashes) and returns it without the
/// leading slash; `""` is the root itself. `..` cannot climb above the root.
pub(crate) fn clean(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    out
}

/// What to create when the target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

fn in_root_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// `openat2(root, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, retried on EAGAIN (a concurrent
/// rename while resolving `..`).
pub(crate) fn open_in_root(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            in_root_flags(),
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// Reads the path the kernel has for `fd` (`readlink /proc/self/fd/N`) into `buf`.
pub(crate) fn fd_path<'b>(
    fd: BorrowedFd<'_>,
    buf: &'b mut [MaybeUninit<u8>; 4096],
) -> Result<&'b [u8], Errno> {
    let link = ProcFd::new(fd);
    let (init, _) = rustix::fs::readlinkat_raw(rustix::fs::CWD, link.as_cstr(), buf)?;
    Ok(init)
}

/// The container path of `fd` (with a leading slash), given the rootfs's host path `root_path`.
/// `None` when `fd` is outside the rootfs.
pub(crate) fn container_path(fd: BorrowedFd<'_>, root_path: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
    let mut buf = [MaybeUninit::uninit(); 4096];
    let full = fd_path(fd, &mut buf)?;
    Ok(strip_root(full, root_path).map(<[u8]>::to_vec))
}

/// `full` relative to `root_path` with a leading slash, or `None` when `full` is not below `root_path`.
pub(crate) fn strip_root<'a>(full: &'a [u8], root_path: &[u8]) -> Option<&'a [u8]> {
    if root_path == b"/" {
        return Some(full);
    }
    let rest = full.strip_prefix(root_path)?;
    if rest.is_empty() {
        Some(b"/")
    } else if rest.starts_with(b"/") {
        Some(rest)
    } else {
        None
    }
}

/// Opens `rel` (cleaned, relative to the rootfs) with `flags`, creating the missing components as
/// directories and the last one as `kind` (`O_PATH` fds unless a file had to be created). Returns the fd
/// and whether it existed before.
///
/// `root_path` is the host path of the rootfs, used only to expand dangling symlinks (a symlink to a path
/// that does not exist yet, such as `/etc/resolv.conf -> ../run/...`), which are followed inside the rootfs.
pub(crate) fn open_or_create(
    root: BorrowedFd<'_>,
    root_path: &[u8],
    rel: &[u8],
    flags: OFlags,
    kind: Kind,
) -> Result<(OwnedFd, bool), Errno> {
    match open_in_root(root, rel, flags) {
        Ok(fd) => return Ok((fd, true)),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let mut path = rel.to_vec();
    for _ in 0..MAX_SYMLINKS {
        match create_missing(root, root_path, &path, flags, kind)? {
            Step::Done(fd) => return Ok((fd, false)),
            Step::Restart(next) => path = next,
        }
    }
    Err(Errno::LOOP)
}

enum Step {
    Done(OwnedFd),
    Restart(Vec<u8>),
}

fn create_missing(
    root: BorrowedFd<'_>,
    root_path: &[u8],
    rel: &[u8],
    flags: OFlags,
    kind: Kind,
) -> Result<Step, Errno> {
    if rel.is_empty() {
        return open_in_root(root, rel, flags).map(Step::Done);
    }
    // Component boundaries: ends[i] is the end of component i in `rel`.
    let ends: Vec<usize> = rel
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(|(i, _)| i)
        .chain(std::iter::once(rel.len()))
        .collect();
    // Longest existing prefix, searched from the end (usually only the last component is missing).
    let mut existing = ends.len();
    let mut dir: Option<OwnedFd> = None;
    while existing > 0 {
        let prefix = &rel[..ends[existing - 1]];
        match open_in_root(root, prefix, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => {
                dir = Some(fd);
                break;
            }
            Err(Errno::NOENT) => existing -= 1,
            Err(e) => return Err(e),
        }
    }
    if existing == ends.len() {
        // Everything exists now (created concurrently): open it as asked.
        return open_in_root(root, rel, flags).map(Step::Done);
    }
    let start = if existing == 0 { 0 } else { ends[existing - 1] + 1 };
    let remaining = &rel[start..];
    let n_remaining = ends.len() - existing;
    for (i, comp) in remaining.split(|&b| b == b'/').enumerate() {
        let parent = dir.as_ref().map_or(root, AsFd::as_fd);
        let last = i + 1 == n_remaining;
        let result = if last && kind == Kind::File {
            create_file(parent, comp)
        } else {
            create_dir(parent, comp, if last { flags } else { OFlags::PATH })
        };
        match result {
            Ok(fd) => dir = Some(fd),
            Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::EXIST) => {
                // An existing symlink (dangling when we got here): expand it inside the rootfs.
                let Some(next) = expand_symlink(parent, comp, root_path, &remaining_after(remaining, i))?
                else {
                    return Err(Errno::NOTDIR);
                };
                return Ok(Step::Restart(next));
            }
            Err(e) => return Err(e),
        }
    }
    match dir {
        Some(fd) => Ok(Step::Done(fd)),
        None => Err(Errno::NOENT),
    }
}

/// The components of `remaining` after component `i`, joined by slashes.
fn remaining_after(remaining: &[u8], i: usize) -> Vec<u8> {
    remaining
        .split(|&b| b == b'/')
        .skip(i + 1)
        .collect::<Vec<_>>()
        .join(&b'/')
}

fn create_dir(parent: BorrowedFd<'_>, name: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    rustix::fs::openat(
        parent,
        name,
        flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn create_file(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    match rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Err(Errno::EXIST) => {
            // Exists: fine if it is not a symlink (created concurrently); a symlink is expanded by the
            // caller.
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
                Err(Errno::EXIST)
            } else {
                Ok(fd)
            }
        }
        other => other,
    }
}

/// If `parent/name` is a symlink, the cleaned rootfs-relative path of its target joined with `rest`.
fn expand_symlink(
    parent: BorrowedFd<'_>,
    name: &[u8],
    root_path: &[u8],
    rest: &[u8],
) -> Result<Option<Vec<u8>>, Errno> {
    let mut link = [MaybeUninit::uninit(); 4096];
    let target = match rustix::fs::readlinkat_raw(parent, name, &mut link) {
        Ok((t, _)) => t,
        Err(Errno::INVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut joined: Vec<u8> = Vec::with_capacity(256);
    if !target.starts_with(b"/") {
        let mut buf = [MaybeUninit::uninit(); 4096];
        let full = fd_path(parent, &mut buf)?;
        let Some(parent_in_root) = strip_root(full, root_path) else {
            return Err(Errno::XDEV);
        };
        joined.extend_from_slice(parent_in_root);
        joined.push(b'/');
    }
    joined.extend_from_slice(target);
    if !rest.is_empty() {
        joined.push(b'/');
        joined.extend_from_slice(rest);
    }
    Ok(Some(clean(&joined)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean(b"/"), b"");
        assert_eq!(clean(b"/proc"), b"proc");
        assert_eq!(clean(b"//dev///pts/"), b"dev/pts");
        assert_eq!(clean(b"/a/./b/../c"), b"a/c");
        assert_eq!(clean(b"/../../etc/passwd"), b"etc/passwd");
        assert_eq!(clean(b"relative/x"), b"relative/x");
        assert_eq!(clean(b"/a/.."), b"");
    }

    #[test]
    fn strip_root_prefix() {
        assert_eq!(strip_root(b"/r/fs/etc", b"/r/fs"), Some(&b"/etc"[..]));
        assert_eq!(strip_root(b"/r/fs", b"/r/fs"), Some(&b"/"[..]));
        assert_eq!(strip_root(b"/r/fsx/etc", b"/r/fs"), None);
        assert_eq!(strip_root(b"/etc", b"/r/fs"), None);
        assert_eq!(strip_root(b"/etc", b"/"), Some(&b"/etc"[..]));
    }

    #[test]
    fn proc_fd_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fd = rustix::fs::open(dir.path(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .unwrap_or_else(|e| panic!("open: {e}"));
        let p = ProcFd::new(fd.as_fd());
        use std::os::fd::AsRawFd;
        assert_eq!(
            p.as_cstr().to_str().ok(),
            Some(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str())
        );
    }

    #[test]
    fn remaining_components() {
        assert_eq!(remaining_after(b"a/b/c", 0), b"b/c");
        assert_eq!(remaining_after(b"a/b/c", 2), b"");
    }

    /// Unprivileged: a symlink in the "rootfs" pointing to an absolute host path or climbing with `..`
    /// resolves (and creates) inside the rootfs.
    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&outside).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/run/dangling/file", root.join("dangling"))
            .unwrap_or_else(|e| panic!("{e}"));
        let rootfd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let root_path = {
            let mut buf = [MaybeUninit::uninit(); 4096];
            fd_path(rootfd.as_fd(), &mut buf)
                .unwrap_or_else(|e| panic!("{e}"))
                .to_vec()
        };
        for (rel, kind) in [
            (&b"abs/x/y"[..], Kind::Dir),
            (&b"rel/z"[..], Kind::File),
            (&b"dangling"[..], Kind::File),
        ] {
            let (fd, existed) = open_or_create(rootfd.as_fd(), &root_path, rel, OFlags::PATH, kind)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(rel)));
            assert!(!existed);
            let inside = container_path(fd.as_fd(), &root_path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                inside.is_some(),
                "{} escaped the root",
                String::from_utf8_lossy(rel)
            );
        }
        let abs_inside = root.join(outside.strip_prefix("/").unwrap_or(&outside));
        assert!(abs_inside.join("x/y").is_dir());
        assert!(root.join("outside/z").is_file());
        assert!(root.join("run/dangling/file").is_file());
        assert_eq!(
            std::fs::read_dir(&outside).map(|d| d.count()).ok(),
            Some(0),
            "nothing created outside"
        );
    }
}
