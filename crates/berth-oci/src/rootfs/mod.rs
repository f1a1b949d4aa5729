//! The container's root filesystem, built inside the init's new mount namespace.
//!
//! Called by [`crate::init`] in this order:
//! 1. [`setup`]: before `pivot_root`, with the host's `/proc` still visible. Makes `/` `rslave` (or what
//!    `linux.rootfsPropagation` asks for, as runc does; if that leaves shared mounts, the mount holding the
//!    rootfs is made private so nothing propagates back to the host), bind-mounts the rootfs onto itself,
//!    performs every entry of `mounts` in order, creates the default devices and `linux.devices`, the `/dev`
//!    symlinks and `/dev/ptmx`, then pivots into the rootfs (or falls back as documented below).
//! 2. The caller then sets up the console, hostname and sysctls (they need the container's `/dev` and `/proc`).
//! 3. [`finalize`]: read-only tmpfs and `/dev` mounts, the read-only root, read-only paths, masked paths and
//!    the root's final propagation.
//!
//! # Mount destinations
//! Every destination is resolved inside the rootfs with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to an fd of the rootfs; missing components are created one at a time relative to fds (a
//! directory, or an empty file for the last component of a bind mount whose source is not a directory), and
//! the mount is made onto `/proc/self/fd/<N>` of the resolved fd. So a symlink in the image pointing at
//! `/etc` or `../../..` lands inside the rootfs (CVE-2021-30465 and its kind). As in runc, a destination that
//! resolves to `/` is refused, one that resolves inside `/proc` is refused unless it is one of the files
//! lxcfs emulates, `/proc` itself takes only a procfs, and `proc`/`sysfs` must be mounted on a real
//! directory (not a symlink).
//!
//! # Mount options
//! Options are split as runc splits them: flags for mount(2), propagation changes (`rprivate`, ...)
//! applied afterwards, the recursive attributes `rro`, `rnosuid`, ... applied with mount_setattr(2), and
//! everything else joined into the data string for the filesystem. A bind mount with per-mount flags is
//! followed by a bind-remount; if the kernel refuses it because the source has locked flags (a user
//! namespace), the source's lockable flags are kept, and a request to clear one of them is an error. tmpfs
//! mounts and `/dev` are mounted read-write and made read-only in [`finalize`], so that mount points and
//! devices can still be created inside them. A tmpfs over an existing directory inherits its mode, as in runc.
//! `cgroup` mounts become a cgroup2 mount on a unified host, and on a cgroup v1 host a tmpfs with one bind
//! mount per hierarchy of this process (fresh cgroup mounts when the container has a cgroup namespace) and
//! the `cpu -> cpu,cpuacct` symlinks.
//!
//! # Devices
//! Unless `/dev` is a bind mount, the default devices (`null`, `zero`, `full`, `random`, `urandom`, `tty`,
//! 0666 root:root) and every `linux.devices` entry are created with mknod under a zero umask; when mknod is
//! not permitted (a user namespace) the host's device node is bind-mounted onto an empty file instead.
//! Then `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/core` (when the host has
//! `/proc/kcore`) and, when a devpts is mounted on `/dev/pts`, `/dev/ptmx -> pts/ptmx`.
//!
//! # Entering the rootfs
//! By default: `fchdir` into the rootfs, `pivot_root(".", ".")` (the old root ends up stacked on the new one
//! and is the current directory), make the old root `rslave` so the detach cannot propagate to the host,
//! `umount2(".", MNT_DETACH)`, `chdir("/")`. No directory is created in the rootfs for the old root.
//!
//! With `no_pivot` (for a rootfs on the initramfs/ramfs, where pivot_root fails with EINVAL): every full
//! procfs and sysfs mount of the host outside the rootfs is detached from this namespace (or covered by a
//! tmpfs), so the container cannot find a full procfs to justify mounting a new one; then the rootfs is
//! moved onto `/` (`mount --move`) and the process `chroot`s into it. A chroot is weaker than pivot_root:
//! the host's mounts stay in the mount namespace, only out of reach of path lookups, so a process that keeps
//! `CAP_SYS_CHROOT` can escape it. Use it only where pivot_root is impossible.

mod cgroup;
mod devices;
mod error;
mod finalize;
mod mounts;
mod options;
mod pivot;
mod resolve;
#[cfg(test)]
mod tests;

pub use error::RootfsError;

use oci_spec::runtime::Spec;
use std::path::Path;

/// Everything of the rootfs that happens before and including `pivot_root`.
///
/// `rootfs` is the absolute path of the container's root directory on the host.
/// `no_pivot` selects the documented fallback (move the rootfs onto `/` and chroot) instead of `pivot_root`.
pub fn setup(spec: &Spec, rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    setup_with(spec, rootfs, no_pivot, || Ok(()))
}

/// [`setup`], calling `before_pivot` once the mounts and devices are in place and before the pivot: the
/// moment the runtime spec gives the `createRuntime` and `createContainer` hooks.
pub fn setup_with(
    spec: &Spec,
    rootfs: &Path,
    no_pivot: bool,
    before_pivot: impl FnOnce() -> Result<(), crate::Error>,
) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    let propagation = options::root_propagation(linux.and_then(|l| l.rootfs_propagation().as_ref()))?;
    mounts::prepare_root(rootfs, propagation)?;
    let ctx = mounts::Ctx::open(spec, rootfs)?;
    let mut setup_dev = true;
    let mut devpts = false;
    if let Some(list) = spec.mounts() {
        for m in list {
            let done = ctx.mount(m)?;
            if done.rel.as_slice() == b"dev" && done.bind {
                setup_dev = false;
            }
            if done.rel.as_slice() == b"dev/pts" && done.typ == "devpts" {
                devpts = true;
            }
        }
    }
    if setup_dev {
        devices::setup_dev(&ctx, linux, devpts)?;
    }
    before_pivot().map_err(|e| RootfsError::BeforePivot(Box::new(e)))?;
    if no_pivot {
        pivot::move_root(ctx.root(), rootfs)
    } else {
        pivot::pivot_root(ctx.root(), rootfs)
    }
}

/// Everything of the rootfs that happens after `pivot_root`: masked and read-only paths, read-only root,
/// `rootfsPropagation`.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    finalize::finalize(spec)
}
