//! A container's two layers in the overlay2 directory, as docker lays them out:
//!
//! ```text
//! overlay2/<cid>-init/diff/   mount points and placeholders: /etc/hosts, /etc/hostname, /etc/resolv.conf,
//!                             /dev/pts, /dev/shm, /proc, /sys, /.dockerenv, /etc/mtab -> /proc/mounts
//! overlay2/<cid>/diff/        the writable layer (overlay's upperdir)
//! overlay2/<cid>/work/        overlay's workdir
//! overlay2/<cid>/merged/      where the root is mounted while the container runs (or is being copied from)
//! overlay2/<cid>/lower        the lower layers' short names, top first, as docker writes it
//! ```
//!
//! The directories carry no `layer.json`, so the image layer store never lists them as image layers. The overlay is
//! mounted through the new mount API with one `lowerdir+` per layer (Linux 6.8+), so the number of image layers is
//! not limited by the one-page option string of `mount(2)`.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount, unmount,
};

/// Errors of the container layers.
#[derive(Debug, thiserror::Error)]
pub enum LayersError {
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
    /// Mounting the overlay failed.
    #[error("cannot mount the container's root at {path} ({step}): {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The step of the mount API that failed.
        step: String,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayersError + 'a {
    move |source| LayersError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The layers of one container.
#[derive(Debug, Clone)]
pub struct ContainerLayers {
    /// `<data-root>/overlay2`.
    root: PathBuf,
    /// The container id.
    id: String,
}

impl ContainerLayers {
    /// The layers of container `id` under the overlay2 directory `root`.
    pub fn new(root: &Path, id: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            id: id.to_string(),
        }
    }

    /// `overlay2/<cid>`.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    /// `overlay2/<cid>-init`.
    pub fn init_dir(&self) -> PathBuf {
        self.root.join(format!("{}-init", self.id))
    }

    /// The writable layer's files.
    pub fn upper(&self) -> PathBuf {
        self.dir().join("diff")
    }

    /// The mounted root.
    pub fn merged(&self) -> PathBuf {
        self.dir().join("merged")
    }

    /// Makes both layers. `image_lowers` are the image's `diff/` directories, top first (written to `lower` for
    /// tools that read docker's layout). On failure nothing is left.
    pub fn create(&self, image_lowers: &[PathBuf]) -> Result<(), LayersError> {
        let made = (|| {
            let init = self.init_dir();
            for sub in ["diff", "work"] {
                let p = init.join(sub);
                std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
            }
            fill_init(&init.join("diff"))?;
            let dir = self.dir();
            for sub in ["diff", "work", "merged"] {
                let p = dir.join(sub);
                std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
            }
            let mut lower = Vec::new();
            for l in image_lowers {
                if let Some(layer) = l.parent()
                    && let Ok(link) = std::fs::read_to_string(layer.join("link"))
                {
                    lower.push(format!("l/{}", link.trim()));
                }
            }
            let p = dir.join("lower");
            std::fs::write(&p, lower.join(":")).map_err(io_err("write", &p))?;
            Ok(())
        })();
        if made.is_err() {
            let _ = self.remove();
        }
        made
    }

    /// Whether the layers exist.
    pub fn exists(&self) -> bool {
        self.dir().join("diff").is_dir()
    }

    /// Mounts the overlay of `image_lowers` (top first), the init layer and the writable layer at `merged/`.
    /// Already mounted is fine.
    pub fn mount(&self, image_lowers: &[PathBuf]) -> Result<PathBuf, LayersError> {
        let merged = self.merged();
        if is_mount_point(&merged) {
            return Ok(merged);
        }
        std::fs::create_dir_all(&merged).map_err(io_err("create", &merged))?;
        let fail = |step: &str| {
            let merged = merged.clone();
            let step = step.to_string();
            move |e: rustix::io::Errno| LayersError::Mount {
                path: merged,
                step,
                source: e.into(),
            }
        };
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail("fsopen overlay"))?;
        let init = self.init_dir().join("diff");
        for l in std::iter::once(&init).chain(image_lowers.iter()) {
            fsconfig_set_string(fs.as_fd(), "lowerdir+", l)
                .map_err(fail(&format!("lower layer {}", l.display())))?;
        }
        let upper = self.upper();
        fsconfig_set_string(fs.as_fd(), "upperdir", &upper).map_err(fail("upperdir"))?;
        let work = self.dir().join("work");
        fsconfig_set_string(fs.as_fd(), "workdir", &work).map_err(fail("workdir"))?;
        fsconfig_create(fs.as_fd()).map_err(fail("create"))?;
        let mnt = fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(fail("fsmount"))?;
        move_mount(
            mnt.as_fd(),
            "",
            rustix::fs::CWD,
            &merged,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(fail("move_mount"))?;
        Ok(merged)
    }

    /// Unmounts `merged/` (not mounted is fine). Detaches lazily if busy, so a process still holding a file there
    /// cannot keep the layers from being removed.
    pub fn unmount(&self) -> Result<(), LayersError> {
        let merged = self.merged();
        while is_mount_point(&merged) {
            match unmount(&merged, UnmountFlags::empty()) {
                Ok(()) => {}
                Err(rustix::io::Errno::BUSY) => {
                    unmount(&merged, UnmountFlags::DETACH).map_err(|e| LayersError::Io {
                        op: "unmount",
                        path: merged.clone(),
                        source: e.into(),
                    })?;
                }
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => break,
                Err(e) => {
                    return Err(LayersError::Io {
                        op: "unmount",
                        path: merged,
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Unmounts and removes both layers (absent is fine).
    pub fn remove(&self) -> Result<(), LayersError> {
        self.unmount()?;
        for dir in [self.dir(), self.init_dir()] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &dir)(e)),
            }
        }
        Ok(())
    }

    /// The bytes in the writable layer.
    pub fn upper_size(&self) -> u64 {
        dir_size(&self.upper())
    }
}

/// The ids of container layers under the overlay2 directory (`<64 hex>` without `layer.json`, and
/// `<64 hex>-init`), for the start-up sweep of layers whose container was never committed.
pub fn container_layer_ids(root: &Path) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix("-init").unwrap_or(&name);
        if id.len() == 64
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && !e.path().join("layer.json").exists()
        {
            out.insert(id.to_string());
        }
    }
    out.into_iter().collect()
}

/// Whether `path` is a mount point (its mount id differs from its parent's, or it is the root of a mount).
pub fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    let Some(parent) = path.parent() else {
        return true;
    };
    let id = |p: &Path| {
        statx(rustix::fs::CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)
            .ok()
            .map(|s| s.stx_mnt_id)
    };
    match (id(path), id(parent)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// docker's init layer: the files and directories bind-mounted or mounted over at start, so the writable layer
/// never records them as changes.
fn fill_init(diff: &Path) -> Result<(), LayersError> {
    for d in ["dev/pts", "dev/shm", "proc", "sys", "etc"] {
        let p = diff.join(d);
        std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
    }
    for f in [
        ".dockerenv",
        "dev/console",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        let p = diff.join(f);
        std::fs::write(&p, b"").map_err(io_err("create", &p))?;
    }
    let mtab = diff.join("etc/mtab");
    std::os::unix::fs::symlink("/proc/mounts", &mtab).map_err(io_err("create", &mtab))?;
    Ok(())
}

/// The size of the regular files under `dir` (not following links, not crossing into other mounts).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lays_out_and_remove_clears() {
        let t = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let l = ContainerLayers::new(t.path(), &id);
        l.create(&[]).unwrap();
        assert!(l.exists());
        assert!(l.init_dir().join("diff/etc/hosts").is_file());
        assert_eq!(
            std::fs::read_link(l.init_dir().join("diff/etc/mtab")).unwrap(),
            PathBuf::from("/proc/mounts")
        );
        assert_eq!(container_layer_ids(t.path()), vec![id.clone()]);
        l.remove().unwrap();
        assert!(!l.exists());
        assert!(container_layer_ids(t.path()).is_empty());
    }
}
