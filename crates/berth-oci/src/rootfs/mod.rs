//! The container's root filesystem, built inside the init's new mount namespace.
//!
//! Called by [`crate::init`] in this order:
//! 1. [`setup`]: before `pivot_root`, with the host's `/proc` still visible. Makes `/` private (or what
//!    `linux.rootfsPropagation` asks for, applied in [`finalize`]), bind-mounts the rootfs onto itself, performs
//!    every entry of `mounts` in order (targets resolved inside the rootfs without following symlinks out of it),
//!    creates the default devices and `linux.devices`, the `/dev` symlinks and `/dev/pts/ptmx`, then pivots into
//!    the rootfs (or falls back as documented when pivot_root is impossible).
//! 2. The caller then sets up the console, hostname and sysctls (they need the container's `/dev` and `/proc`).
//! 3. [`finalize`]: masked paths, read-only paths, the read-only root and the root's final propagation.

mod error;

pub use error::RootfsError;

use oci_spec::runtime::Spec;
use std::path::Path;

/// Everything of the rootfs that happens before and including `pivot_root`.
///
/// `rootfs` is the absolute path of the container's root directory on the host.
/// `no_pivot` selects the documented fallback (move the rootfs onto `/` and chroot) instead of `pivot_root`.
pub fn setup(spec: &Spec, rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let _ = (spec, rootfs, no_pivot);
    Err(RootfsError::NotImplemented)
}

/// Everything of the rootfs that happens after `pivot_root`: masked and read-only paths, read-only root,
/// `rootfsPropagation`.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    let _ = spec;
    Err(RootfsError::NotImplemented)
}
