//! The entries of `mounts`, made inside the rootfs before pivot_root.

use super::RootfsError;
use super::options::{
    self, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_SHARED, MS_SLAVE, MountOptions, Propagation,
};
use super::resolve::{self, Kind, ProcFd};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(crate) const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Files inside `/proc` that may be mounted over (lxcfs emulates them), as in runc.
const PROC_ALLOWED: &[&[u8]] = &[
    b"/proc/cpuinfo",
    b"/proc/diskstats",
    b"/proc/meminfo",
    b"/proc/stat",
    b"/proc/swaps",
    b"/proc/uptime",
    b"/proc/loadavg",
    b"/proc/slabinfo",
    b"/proc/sys/kernel/ns_last_pid",
    b"/proc/sys/crypto/fips_enabled",
];

pub(crate) fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn flags(bits: u32) -> MountFlags {
    MountFlags::from_bits_retain(bits)
}

/// Changes the propagation of `target` (a path or a `/proc/self/fd/N`).
pub(crate) fn change_propagation<P: rustix::path::Arg>(target: P, p: u32) -> Result<(), Errno> {
    rustix::mount::mount_change(target, MountPropagationFlags::from_bits_retain(p))
}

/// Step 1 and 2 of the setup: the propagation of `/`, the mount holding the rootfs made unshared when `/`
/// still has shared mounts, and the rootfs bind-mounted onto itself.
pub(crate) fn prepare_root(rootfs: &Path, propagation: Option<Propagation>) -> Result<(), RootfsError> {
    let p = propagation.unwrap_or(Propagation {
        flags: MS_SLAVE | MS_REC,
        name: "rslave",
    });
    change_propagation("/", p.flags).map_err(|source| RootfsError::Propagation {
        path: PathBuf::from("/"),
        mode: p.name,
        source,
    })?;
    // After a recursive slave/private/unbindable change nothing is shared any more; otherwise make the mount
    // holding the rootfs unshared, or pivot_root fails and the rootfs mounts would propagate to the host.
    if p.flags & MS_SHARED != 0 || p.flags & MS_REC == 0 {
        let (bits, mode) = if p.flags & MS_SLAVE != 0 {
            (MS_SLAVE, "slave")
        } else {
            (MS_PRIVATE, "private")
        };
        let mut path = rootfs;
        loop {
            match change_propagation(path, bits) {
                Ok(()) => break,
                Err(Errno::INVAL) if path.parent().is_some() => {
                    path = path.parent().unwrap_or(Path::new("/"));
                }
                Err(source) => {
                    return Err(RootfsError::Propagation {
                        path: path.to_owned(),
                        mode,
                        source,
                    });
                }
            }
        }
    }
    rustix::mount::mount_bind_recursive(rootfs, rootfs).map_err(|source| RootfsError::BindRootfs {
        path: rootfs.to_owned(),
        source,
    })
}

/// What `setup` needs to know about a mount it made.
pub(crate) struct Done<'a> {
    /// The cleaned destination, relative to the rootfs.
    pub rel: Vec<u8>,
    pub typ: &'a str,
    pub bind: bool,
}

/// The rootfs, opened once after its self-bind.
pub(crate) struct Ctx {
    root: OwnedFd,
    /// The rootfs's path as the kernel reports it (symlinks resolved), to map fds back to container paths.
    root_path: Vec<u8>,
    cgroup_ns: bool,
}

impl Ctx {
    pub(crate) fn open(spec: &Spec, rootfs: &Path) -> Result<Self, RootfsError> {
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| RootfsError::OpenRootfs {
            path: rootfs.to_owned(),
            source,
        })?;
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let root_path = resolve::fd_path(root.as_fd(), &mut buf)
            .map_err(|source| RootfsError::OpenRootfs {
                path: rootfs.to_owned(),
                source,
            })?
            .to_vec();
        let cgroup_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        Ok(Ctx {
            root,
            root_path,
            cgroup_ns,
        })
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    pub(crate) fn root_path(&self) -> &[u8] {
        &self.root_path
    }

    pub(crate) fn cgroup_ns(&self) -> bool {
        self.cgroup_ns
    }

    /// Opens `rel` inside the rootfs, creating it as `kind` when missing.
    pub(crate) fn open_or_create(
        &self,
        rel: &[u8],
        flags: OFlags,
        kind: Kind,
    ) -> Result<(OwnedFd, bool), RootfsError> {
        resolve::open_or_create(self.root(), &self.root_path, rel, flags, kind).map_err(|source| {
            RootfsError::Create {
                path: path_of(rel),
                source,
            }
        })
    }

    /// Re-opens a container path after a mount on it, to reach the new mount (an fd taken before the mount
    /// refers to the directory below it).
    pub(crate) fn reopen(&self, container: &[u8]) -> Result<OwnedFd, RootfsError> {
        resolve::open_in_root(self.root(), &resolve::clean(container), OFlags::PATH).map_err(|source| {
            RootfsError::Resolve {
                path: path_of(container),
                source,
            }
        })
    }

    /// The container path `fd` resolved to, after runc's checks: not `/`, not inside `/proc` (except the
    /// lxcfs files), and `/proc` itself only for a procfs.
    fn check_destination(
        &self,
        fd: BorrowedFd<'_>,
        destination: &Path,
        typ: &str,
        bind_source: Option<&Path>,
    ) -> Result<Vec<u8>, RootfsError> {
        let resolved = resolve::container_path(fd, &self.root_path)
            .map_err(|source| RootfsError::Resolve {
                path: destination.to_owned(),
                source,
            })?
            .ok_or_else(|| outside_rootfs(fd, destination, &self.root_path))?;
        check_proc(&resolved, destination, typ, bind_source)?;
        Ok(resolved)
    }

    /// Performs one entry of `mounts`.
    pub(crate) fn mount<'m>(&self, m: &'m Mount) -> Result<Done<'m>, RootfsError> {
        let destination = m.destination();
        let rel = resolve::clean(destination.as_os_str().as_bytes());
        let typ = m.typ().as_deref().unwrap_or("");
        let opts = options::parse(m.options().as_deref().unwrap_or(&[]), destination)?;
        let bind = typ == "bind" || opts.flags & MS_BIND != 0;
        if bind {
            self.bind(m, &rel, &opts)?;
        } else {
            match typ {
                "cgroup" => super::cgroup::mount(self, m, &rel, &opts)?,
                _ => self.filesystem(m, typ, &rel, &opts)?,
            }
        }
        Ok(Done { rel, typ, bind })
    }

    /// A bind mount (`bind`/`rbind`, or type `bind`).
    fn bind(&self, m: &Mount, rel: &[u8], opts: &MountOptions) -> Result<(), RootfsError> {
        let destination = m.destination();
        let Some(source) = m.source().as_deref() else {
            return Err(RootfsError::MissingSource {
                destination: destination.to_owned(),
            });
        };
        let target = match resolve::open_in_root(self.root(), rel, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let st = rustix::fs::stat(source).map_err(|e| RootfsError::BindSource {
                    path: source.to_owned(),
                    source: e,
                })?;
                let kind =
                    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                        Kind::Dir
                    } else {
                        Kind::File
                    };
                self.open_or_create(rel, OFlags::PATH, kind)?.0
            }
            Err(e) => {
                return Err(RootfsError::Resolve {
                    path: destination.to_owned(),
                    source: e,
                });
            }
        };
        let resolved = self.check_destination(target.as_fd(), destination, "bind", Some(source))?;
        let bind_flags = MS_BIND | (opts.flags & MS_REC);
        rustix::mount::mount(
            source,
            ProcFd::new(target.as_fd()).as_cstr(),
            c"",
            flags(bind_flags),
            None,
        )
        .map_err(|e| RootfsError::Mount {
            what: source.display().to_string(),
            destination: destination.to_owned(),
            source: e,
        })?;
        drop(target);
        if !(opts.needs_bind_remount() || !opts.propagation.is_empty() || !opts.rec_attr.is_empty()) {
            return Ok(());
        }
        let mounted = self.reopen(&resolved)?;
        if opts.needs_bind_remount() {
            bind_remount(mounted.as_fd(), opts, destination)?;
        }
        self.after_mount(mounted.as_fd(), opts, destination)
    }

    /// Any other filesystem: `mount(source, target, type, flags, data)`.
    fn filesystem(&self, m: &Mount, typ: &str, rel: &[u8], opts: &MountOptions) -> Result<(), RootfsError> {
        let destination = m.destination();
        let pseudo = typ == "proc" || typ == "sysfs";
        let (target, existed) = if pseudo {
            // proc and sysfs go on a real directory, not through a symlink.
            self.open_or_create(
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                Kind::Dir,
            )
            .map_err(|e| match e {
                RootfsError::Create {
                    source: Errno::NOTDIR | Errno::LOOP,
                    ..
                } => RootfsError::NotDirectory {
                    path: destination.to_owned(),
                    typ: typ.to_owned(),
                },
                other => other,
            })?
        } else {
            self.open_or_create(rel, OFlags::PATH, Kind::Dir)?
        };
        let resolved = self.check_destination(target.as_fd(), destination, typ, None)?;
        let mut bits = opts.flags;
        let mut mode_prefix = None;
        if typ == "tmpfs" || rel == b"dev" {
            // Made read-only in finalize, after the mounts and devices inside it exist.
            bits &= !MS_RDONLY;
        }
        if typ == "tmpfs" && existed {
            let st = rustix::fs::fstat(&target).map_err(|source| RootfsError::Resolve {
                path: destination.to_owned(),
                source,
            })?;
            mode_prefix = Some(st.st_mode & 0o7777);
        }
        let data = match mode_prefix {
            Some(mode) if opts.data.is_empty() => format!("mode={mode:04o}"),
            Some(mode) => format!("mode={mode:04o},{}", opts.data),
            None => opts.data.clone(),
        };
        let source: &Path = m.source().as_deref().unwrap_or(Path::new(typ));
        match self.mount_fs(source, target.as_fd(), typ, bits, &data, destination) {
            Ok(()) => {}
            Err(RootfsError::Mount {
                source: Errno::PERM, ..
            }) if typ == "sysfs" => {
                // A new user namespace that joined a network namespace it does not own (one the daemon made, as
                // with docker's userns-remap) may not mount sysfs: bind the host's /sys instead, as runc does,
                // with the mount's flags (read-only, nosuid, nodev, noexec) applied to it.
                rustix::mount::mount(
                    "/sys",
                    ProcFd::new(target.as_fd()).as_cstr(),
                    c"",
                    flags(MS_BIND | MS_REC),
                    None,
                )
                .map_err(|e| RootfsError::Mount {
                    what: "sysfs (bind of /sys)".into(),
                    destination: destination.to_owned(),
                    source: e,
                })?;
                drop(target);
                let mounted = self.reopen(&resolved)?;
                if opts.needs_bind_remount() {
                    bind_remount(mounted.as_fd(), opts, destination)?;
                }
                return self.after_mount(mounted.as_fd(), opts, destination);
            }
            Err(e) => return Err(e),
        }
        drop(target);
        if opts.propagation.is_empty() && opts.rec_attr.is_empty() {
            return Ok(());
        }
        let mounted = self.reopen(&resolved)?;
        self.after_mount(mounted.as_fd(), opts, destination)
    }

    /// `mount(source, /proc/self/fd/<target>, typ, bits, data)`.
    pub(crate) fn mount_fs(
        &self,
        source: &Path,
        target: BorrowedFd<'_>,
        typ: &str,
        bits: u32,
        data: &str,
        destination: &Path,
    ) -> Result<(), RootfsError> {
        let err = |source_err| RootfsError::Mount {
            what: format!("{typ} {}", source.display()),
            destination: destination.to_owned(),
            source: source_err,
        };
        let data_c = if data.is_empty() {
            None
        } else {
            Some(CString::new(data).map_err(|_| err(Errno::INVAL))?)
        };
        rustix::mount::mount(
            source,
            ProcFd::new(target).as_cstr(),
            typ,
            flags(bits),
            data_c.as_deref(),
        )
        .map_err(err)
    }

    /// Recursive attributes and propagation changes on a mount just made (`mounted` is its root).
    pub(crate) fn after_mount(
        &self,
        mounted: BorrowedFd<'_>,
        opts: &MountOptions,
        destination: &Path,
    ) -> Result<(), RootfsError> {
        if !opts.rec_attr.is_empty() {
            mount_setattr_recursive(mounted, opts.rec_attr.set, opts.rec_attr.clr).map_err(|source| {
                RootfsError::Remount {
                    destination: destination.to_owned(),
                    source,
                }
            })?;
        }
        let target = ProcFd::new(mounted);
        for p in &opts.propagation {
            change_propagation(target.as_cstr(), p.flags).map_err(|source| RootfsError::Propagation {
                path: destination.to_owned(),
                mode: p.name,
                source,
            })?;
        }
        Ok(())
    }
}

/// The error for an fd that resolved outside the rootfs (should be impossible with `RESOLVE_IN_ROOT`).
pub(crate) fn outside_rootfs(fd: BorrowedFd<'_>, destination: &Path, root_path: &[u8]) -> RootfsError {
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let resolved = resolve::fd_path(fd, &mut buf)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    RootfsError::OutsideRootfs {
        path: destination.to_owned(),
        resolved,
        rootfs: String::from_utf8_lossy(root_path).into_owned(),
    }
}

/// runc's destination rules for `/proc` (on the resolved container path).
fn check_proc(
    resolved: &[u8],
    destination: &Path,
    typ: &str,
    bind_source: Option<&Path>,
) -> Result<(), RootfsError> {
    if resolved == b"/" {
        return Err(RootfsError::OnRoot {
            path: destination.to_owned(),
        });
    }
    if resolved == b"/proc" {
        let ok = match bind_source {
            Some(src) => rustix::fs::statfs(src).is_ok_and(|st| st.f_type == PROC_SUPER_MAGIC),
            None => typ == "proc",
        };
        return if ok {
            Ok(())
        } else {
            Err(RootfsError::NotProc {
                path: destination.to_owned(),
            })
        };
    }
    if resolved.starts_with(b"/proc/") && !PROC_ALLOWED.contains(&resolved) {
        return Err(RootfsError::InsideProc {
            path: destination.to_owned(),
            resolved: String::from_utf8_lossy(resolved).into_owned(),
        });
    }
    Ok(())
}

/// The bind-remount that applies per-mount flags to a new bind mount, keeping the source's locked flags
/// when the kernel insists (runc's behaviour).
pub(crate) fn bind_remount(
    mounted: BorrowedFd<'_>,
    opts: &MountOptions,
    destination: &Path,
) -> Result<(), RootfsError> {
    let target = ProcFd::new(mounted);
    let first = opts.flags | MS_BIND;
    match rustix::mount::mount_remount(target.as_cstr(), flags(first), c"") {
        Ok(()) => Ok(()),
        Err(Errno::PERM) => {
            let st = rustix::fs::fstatfs(mounted).map_err(|source| RootfsError::Remount {
                destination: destination.to_owned(),
                source,
            })?;
            let source_flags = options::statfs_to_mount_flags(st.f_flags as u64);
            let bits = opts
                .with_locked(source_flags)
                .map_err(|locked| RootfsError::LockedFlags {
                    destination: destination.to_owned(),
                    flags: locked,
                })?;
            rustix::mount::mount_remount(target.as_cstr(), flags(bits | MS_BIND), c"").map_err(|source| {
                RootfsError::Remount {
                    destination: destination.to_owned(),
                    source,
                }
            })
        }
        Err(source) => Err(RootfsError::Remount {
            destination: destination.to_owned(),
            source,
        }),
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {set, clr})`: neither rustix nor libc wraps it.
fn mount_setattr_recursive(fd: BorrowedFd<'_>, set: u64, clr: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let at_flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: the path is a valid NUL-terminated string, `attr` is a valid `struct mount_attr` that lives
    // across the call, and its size is passed; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            at_flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_rules() {
        let d = Path::new("/x");
        assert!(matches!(
            check_proc(b"/", d, "tmpfs", None),
            Err(RootfsError::OnRoot { .. })
        ));
        assert!(check_proc(b"/proc", d, "proc", None).is_ok());
        assert!(matches!(
            check_proc(b"/proc", d, "tmpfs", None),
            Err(RootfsError::NotProc { .. })
        ));
        assert!(matches!(
            check_proc(b"/proc", d, "bind", Some(Path::new("/etc"))),
            Err(RootfsError::NotProc { .. })
        ));
        assert!(check_proc(b"/proc/cpuinfo", d, "bind", Some(Path::new("/etc/hostname"))).is_ok());
        assert!(matches!(
            check_proc(b"/proc/self/attr", d, "bind", None),
            Err(RootfsError::InsideProc { .. })
        ));
        assert!(check_proc(b"/procfoo", d, "tmpfs", None).is_ok());
        assert!(check_proc(b"/sys", d, "sysfs", None).is_ok());
    }
}
