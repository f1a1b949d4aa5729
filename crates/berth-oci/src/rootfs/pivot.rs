//! Entering the rootfs: pivot_root, or the move-and-chroot fallback. See the module documentation.

use super::RootfsError;
use super::mounts::change_propagation;
use super::options::{MS_REC, MS_SLAVE};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::{Path, PathBuf};

/// `fchdir(root)`, `pivot_root(".", ".")`, old root made rslave and detached, `chdir("/")`.
pub(crate) fn pivot_root(root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), RootfsError> {
    let err = |step| {
        move |source| RootfsError::PivotRoot {
            step,
            path: rootfs.to_owned(),
            source,
        }
    };
    rustix::process::fchdir(root).map_err(err("change into the rootfs"))?;
    rustix::process::pivot_root(".", ".").map_err(err("call pivot_root"))?;
    // "." is now the old root, stacked on top of the new one.
    change_propagation(".", MS_SLAVE | MS_REC).map_err(err("make the old root rslave"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(err("detach the old root"))?;
    rustix::process::chdir("/").map_err(err("change into the new root"))
}

/// The no-pivot fallback: hide the host's full procfs and sysfs mounts, move the rootfs onto `/`, chroot.
pub(crate) fn move_root(root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), RootfsError> {
    let err = |step| {
        move |source| RootfsError::MoveRoot {
            step,
            path: rootfs.to_owned(),
            source,
        }
    };
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| RootfsError::ReadProc {
            path: PathBuf::from("/proc/self/mountinfo"),
            source,
        })?;
    for mount_point in host_pseudo_mounts(&mountinfo, rootfs) {
        match change_propagation(mount_point.as_path(), MS_SLAVE | MS_REC) {
            Ok(()) => {}
            // Already gone with a parent detached before it.
            Err(Errno::NOENT) => continue,
            Err(source) => return Err(err("make a host procfs or sysfs rslave")(source)),
        }
        match rustix::mount::unmount(mount_point.as_path(), UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::INVAL | Errno::PERM) => {
                // Locked (a user namespace): cover it instead.
                rustix::mount::mount(
                    c"tmpfs",
                    mount_point.as_path(),
                    c"tmpfs",
                    MountFlags::empty(),
                    None,
                )
                .map_err(err("cover a host procfs or sysfs"))?;
            }
            Err(source) => return Err(err("detach a host procfs or sysfs")(source)),
        }
    }
    rustix::process::fchdir(root).map_err(err("change into the rootfs"))?;
    rustix::mount::mount_move(rootfs, "/").map_err(err("move the rootfs"))?;
    rustix::process::chroot(".").map_err(err("chroot into the rootfs"))?;
    rustix::process::chdir("/").map_err(err("change into the new root"))
}

/// Mount points of full (root `/`) procfs and sysfs mounts outside `rootfs`, in mountinfo order.
fn host_pseudo_mounts(mountinfo: &str, rootfs: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split(' ').next().unwrap_or("");
        if fstype != "proc" && fstype != "sysfs" {
            continue;
        }
        let mut fields = pre.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        if root != "/" {
            continue;
        }
        let mount_point = PathBuf::from(mount_point.replace("\\040", " "));
        if mount_point.starts_with(rootfs) {
            continue;
        }
        out.push(mount_point);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_pseudo_mounts_outside_the_rootfs() {
        let mi = "\
22 1 254:0 / / rw - ext4 /dev/vda rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:21 / /sys rw - sysfs sysfs rw
25 22 0:5 /sys /mnt/procsys rw - proc proc rw
26 40 0:77 / /b/rootfs/proc rw - proc proc rw
";
        assert_eq!(
            host_pseudo_mounts(mi, Path::new("/b/rootfs")),
            vec![PathBuf::from("/proc"), PathBuf::from("/sys")]
        );
    }
}
