//! `/dev` of the container when it is not a bind mount of the host's: the default devices, `linux.devices`,
//! the standard symlinks and `/dev/ptmx`.

use super::RootfsError;
use super::mounts::Ctx;
use super::resolve::{Kind, ProcFd, clean};
use oci_spec::runtime::{Linux, LinuxDeviceType};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A device node to create.
struct Node<'a> {
    /// The container path, also the host path bind-mounted when mknod is not permitted.
    path: &'a Path,
    file_type: FileType,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// (name, major, minor) of the devices every container gets, 0666 root:root.
const DEFAULTS: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const SYMLINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

pub(crate) fn setup_dev(ctx: &Ctx, linux: Option<&Linux>, devpts: bool) -> Result<(), RootfsError> {
    let (dev, _) = ctx.open_or_create(b"dev", OFlags::PATH | OFlags::DIRECTORY, Kind::Dir)?;
    let spec_devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);

    // Exact modes without a chmod per node.
    let old_umask = rustix::process::umask(Mode::empty());
    let result = (|| {
        for d in spec_devices {
            let rel = clean(d.path().as_os_str().as_bytes());
            if devpts && rel == b"dev/ptmx" {
                // /dev/ptmx becomes a symlink to the devpts instance below.
                continue;
            }
            let file_type = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
                LinuxDeviceType::B => FileType::BlockDevice,
                LinuxDeviceType::P => FileType::Fifo,
                LinuxDeviceType::A => {
                    return Err(RootfsError::DeviceType {
                        path: d.path().clone(),
                        typ: "a".to_owned(),
                    });
                }
            };
            let number = |n: i64| {
                u32::try_from(n).map_err(|_| RootfsError::Device {
                    path: d.path().clone(),
                    source: Errno::INVAL,
                })
            };
            let node = Node {
                path: d.path(),
                file_type,
                major: number(d.major())?,
                minor: number(d.minor())?,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            };
            let Some(slash) = rel.iter().rposition(|&b| b == b'/') else {
                return Err(RootfsError::DevicePath {
                    path: d.path().clone(),
                });
            };
            let (parent_rel, name) = (&rel[..slash], &rel[slash + 1..]);
            if parent_rel == b"dev" {
                create(dev.as_fd(), name, &node)?;
            } else {
                let (parent, _) =
                    ctx.open_or_create(parent_rel, OFlags::PATH | OFlags::DIRECTORY, Kind::Dir)?;
                create(parent.as_fd(), name, &node)?;
            }
        }
        for (name, major, minor) in DEFAULTS {
            let taken = spec_devices.iter().any(|d| {
                let rel = clean(d.path().as_os_str().as_bytes());
                rel.strip_prefix(b"dev/") == Some(name.as_bytes())
            });
            if taken {
                continue;
            }
            let path = format!("/dev/{name}");
            let node = Node {
                path: Path::new(&path),
                file_type: FileType::CharacterDevice,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            };
            create(dev.as_fd(), name.as_bytes(), &node)?;
        }
        Ok(())
    })();
    rustix::process::umask(old_umask);
    result?;

    let kcore = rustix::fs::access("/proc/kcore", rustix::fs::Access::EXISTS).is_ok();
    let core = [("/proc/kcore", "core")];
    let extra: &[(&str, &str)] = if kcore { &core } else { &[] };
    for (target, name) in SYMLINKS.iter().chain(extra) {
        symlink(dev.as_fd(), target, name)?;
    }
    if devpts {
        match rustix::fs::unlinkat(dev.as_fd(), "ptmx", AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(source) => {
                return Err(RootfsError::Symlink {
                    path: "/dev/ptmx".into(),
                    source,
                });
            }
        }
        symlink(dev.as_fd(), "pts/ptmx", "ptmx")?;
    }
    Ok(())
}

fn symlink(dev: BorrowedFd<'_>, target: &str, name: &str) -> Result<(), RootfsError> {
    match rustix::fs::symlinkat(target, dev, name) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(source) => Err(RootfsError::Symlink {
            path: Path::new("/dev").join(name),
            source,
        }),
    }
}

/// mknod, or a bind mount of the host's node when mknod is not permitted. An existing node is kept.
fn create(parent: BorrowedFd<'_>, name: &[u8], node: &Node<'_>) -> Result<(), RootfsError> {
    let dev = rustix::fs::makedev(node.major, node.minor);
    let err = |source| RootfsError::Device {
        path: node.path.to_owned(),
        source,
    };
    match rustix::fs::mknodat(parent, name, node.file_type, Mode::from_raw_mode(node.mode), dev) {
        Ok(()) => {
            if node.uid != 0 || node.gid != 0 {
                rustix::fs::chownat(
                    parent,
                    name,
                    Some(rustix::fs::Uid::from_raw(node.uid)),
                    Some(rustix::fs::Gid::from_raw(node.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(err)?;
            }
            Ok(())
        }
        Err(Errno::EXIST) => Ok(()),
        Err(Errno::PERM) => bind_host_node(parent, name, node).map_err(err),
        Err(e) => Err(err(e)),
    }
}

fn bind_host_node(parent: BorrowedFd<'_>, name: &[u8], node: &Node<'_>) -> Result<(), Errno> {
    let file: OwnedFd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::mount::mount_bind(node.path, ProcFd::new(file.as_fd()).as_cstr())
}
