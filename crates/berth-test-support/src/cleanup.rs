//! Removing what a test created, without ever reaching through a mount into the host.

use std::path::{Path, PathBuf};

use rustix::mount::{UnmountFlags, unmount};
use thiserror::Error;

/// Why a directory tree could not be removed.
#[derive(Debug, Error)]
pub enum CleanupError {
    /// The mount table could not be read.
    #[error("could not read /proc/self/mountinfo")]
    MountInfo(#[source] std::io::Error),
    /// The mount table could not be parsed.
    #[error("could not parse /proc/self/mountinfo: {0}")]
    MountInfoFormat(String),
    /// Mounts are still there after unmounting.
    #[error(
        "{path} still has mounts under it ({mounts:?}); the tree is left in place so that removing it cannot \
             reach into a mounted host directory"
    )]
    StillMounted {
        /// The tree.
        path: PathBuf,
        /// The mount points left.
        mounts: Vec<PathBuf>,
    },
    /// Removing the files failed.
    #[error("could not remove {path}")]
    Remove {
        /// The tree.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Mount points at or below `dir` in this process's mount namespace, in the order the table lists them.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, CleanupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CleanupError::MountInfo)?;
    let mounts = berth_check::probe::parse_mountinfo(&text).map_err(CleanupError::MountInfoFormat)?;
    Ok(mounts
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// Removes the tree at `path`. Mounts under it (left by a faulty runtime) are detached first, deepest first;
/// if any remain the tree is left alone, because removing it would delete files of whatever is mounted there.
/// A missing tree is not an error.
pub fn remove_tree(path: &Path) -> Result<(), CleanupError> {
    let path = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CleanupError::Remove {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut mounts = mounts_under(&path)?;
    if !mounts.is_empty() {
        // Deepest first; stacked mounts on one point need one detach each, so go over the list as it is.
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for mount in &mounts {
            // A failure shows up in the check below.
            let _ = unmount(mount, UnmountFlags::DETACH);
        }
        let left = mounts_under(&path)?;
        if !left.is_empty() {
            return Err(CleanupError::StillMounted { path, mounts: left });
        }
    }
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CleanupError::Remove { path, source }),
    }
}

/// Creates a fresh directory `<tmp>/<prefix>XXXXXX` that the caller removes (with [`remove_tree`]).
pub fn make_temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix(prefix).tempdir()?.keep())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_and_tolerates_a_missing_one() {
        let dir = make_temp_dir("berth-cleanup-test-").unwrap();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("a/link")).unwrap();
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
        assert!(Path::new("/etc").is_dir(), "the symlink target is untouched");
        remove_tree(&dir).unwrap();
    }

    struct MountGuard {
        target: PathBuf,
        dirs: Vec<PathBuf>,
    }

    impl Drop for MountGuard {
        fn drop(&mut self) {
            let _ = unmount(&self.target, UnmountFlags::DETACH);
            for dir in &self.dirs {
                let _ = remove_tree(dir);
            }
        }
    }

    /// A bind mount of a directory with a file in it, left inside the tree, is detached before removal, and
    /// the bound directory keeps its file.
    #[test]
    fn detaches_mounts_before_removing() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let outside = make_temp_dir("berth-cleanup-outside-").unwrap();
        let dir = make_temp_dir("berth-cleanup-test-").unwrap();
        let target = dir.join("mnt/deep");
        // Declared before the mount: on panic the guard unmounts, then removes both trees.
        let _guard = MountGuard {
            target: target.clone(),
            dirs: vec![dir.clone(), outside.clone()],
        };
        std::fs::write(outside.join("precious"), b"keep me").unwrap();
        std::fs::create_dir_all(&target).unwrap();
        rustix::mount::mount_bind(&outside, &target).unwrap();
        assert_eq!(mounts_under(&dir.canonicalize().unwrap()).unwrap().len(), 1);

        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep me");
    }
}
