//! After pivot_root: read-only tmpfs and `/dev`, the read-only root, read-only paths, masked paths and the
//! root's final propagation. All paths are container paths now.

use super::RootfsError;
use super::options::{
    self, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_SLAVE,
};
use super::resolve::{ProcFd, clean};
use oci_spec::runtime::Spec;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::MountFlags;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn flags(bits: u32) -> MountFlags {
    MountFlags::from_bits_retain(bits)
}

pub(crate) fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // Validate before changing anything.
    let propagation = options::root_propagation(linux.and_then(|l| l.rootfs_propagation().as_ref()))?;

    if let Some(mounts) = spec.mounts() {
        for m in mounts {
            let rel = clean(m.destination().as_os_str().as_bytes());
            if m.typ().as_deref() != Some("tmpfs") && rel != b"dev" {
                continue;
            }
            let bits = options::flags_only(m.options().as_deref().unwrap_or(&[]));
            if bits & MS_RDONLY == 0 {
                continue;
            }
            let mut path = Vec::with_capacity(rel.len() + 1);
            path.push(b'/');
            path.extend_from_slice(&rel);
            let path = Path::new(OsStr::from_bytes(&path));
            rustix::mount::mount_remount(path, flags(bits | MS_BIND | MS_RDONLY), c"").map_err(|source| {
                RootfsError::RemountReadonly {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
    }

    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_readonly(Path::new("/"), MS_BIND | MS_RDONLY, false)?;
    }

    if let Some(paths) = linux.and_then(|l| l.readonly_paths().as_ref()) {
        for p in paths {
            readonly_path(Path::new(p))?;
        }
    }

    if let Some(paths) = linux.and_then(|l| l.masked_paths().as_ref()) {
        let mut dev_null: Option<OwnedFd> = None;
        for p in paths {
            mask(Path::new(p), &mut dev_null)?;
        }
    }

    // runc applies only the modes the first step could not (private and slave were applied there).
    if let Some(p) = propagation
        && p.flags & (MS_PRIVATE | MS_SLAVE) == 0
    {
        super::mounts::change_propagation("/", p.flags)
            .map_err(|source| RootfsError::RootPropagation { mode: p.name, source })?;
    }
    Ok(())
}

/// Bind-remount `path` with `bits`; on EPERM (flags locked in a user namespace) again with the mount's
/// current lockable flags added. `readonly_path` selects the error variant.
fn remount_readonly(path: &Path, bits: u32, readonly_path: bool) -> Result<(), RootfsError> {
    let err = |source| {
        if readonly_path {
            RootfsError::ReadonlyPath {
                path: path.to_owned(),
                source,
            }
        } else {
            RootfsError::RemountReadonly {
                path: path.to_owned(),
                source,
            }
        }
    };
    match rustix::mount::mount_remount(path, flags(bits), c"") {
        Ok(()) => Ok(()),
        Err(Errno::PERM) => {
            let st = rustix::fs::statfs(path).map_err(err)?;
            let current = options::statfs_to_mount_flags(st.f_flags as u64) & options::LOCKABLE_FLAGS;
            rustix::mount::mount_remount(path, flags(bits | current), c"").map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Bind `path` onto itself and make it read-only, keeping nosuid/nodev/noexec. A missing path is skipped.
fn readonly_path(path: &Path) -> Result<(), RootfsError> {
    match rustix::mount::mount_bind_recursive(path, path) {
        Ok(()) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(source) => {
            return Err(RootfsError::ReadonlyPath {
                path: path.to_owned(),
                source,
            });
        }
    }
    let st = rustix::fs::statfs(path).map_err(|source| RootfsError::ReadonlyPath {
        path: path.to_owned(),
        source,
    })?;
    let keep = options::statfs_to_mount_flags(st.f_flags as u64) & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
    remount_readonly(path, keep | MS_BIND | MS_REC | MS_RDONLY, true)
}

/// A directory gets a read-only tmpfs, anything else a bind of `/dev/null`. A missing path is skipped.
fn mask(path: &Path, dev_null: &mut Option<OwnedFd>) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Mask {
        path: path.to_owned(),
        source,
    };
    let target = match rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let st = rustix::fs::fstat(&target).map_err(err)?;
    let target_path = ProcFd::new(target.as_fd());
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return rustix::mount::mount(c"tmpfs", target_path.as_cstr(), c"tmpfs", flags(MS_RDONLY), None)
            .map_err(err);
    }
    let null = match dev_null {
        Some(fd) => fd,
        None => dev_null.insert(open_dev_null().map_err(|e| match e {
            None => RootfsError::DevNull,
            Some(source) => RootfsError::Mask {
                path: PathBuf::from("/dev/null"),
                source,
            },
        })?),
    };
    let source = ProcFd::new(null.as_fd());
    rustix::mount::mount_bind(source.as_cstr(), target_path.as_cstr()).map_err(err)
}

/// The container's `/dev/null`, checked to be the null device (`Err(None)` when it is something else).
fn open_dev_null() -> Result<OwnedFd, Option<Errno>> {
    let fd = rustix::fs::open("/dev/null", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(Some)?;
    let st = rustix::fs::fstat(&fd).map_err(Some)?;
    let is_null = FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
        && rustix::fs::major(st.st_rdev) == 1
        && rustix::fs::minor(st.st_rdev) == 3;
    if is_null { Ok(fd) } else { Err(None) }
}
