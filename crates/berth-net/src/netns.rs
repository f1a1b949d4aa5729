//! Persistent network namespaces: a fresh namespace kept alive by a bind mount of its nsfs file (as
//! `ip netns add` and podman do), so that berthd can prepare a container's interfaces before the container's
//! first process exists, the runtime joins it by path, and it can be found again after a daemon restart.

use std::path::{Path, PathBuf};

/// Errors from creating or removing a persistent network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The mount point file could not be created.
    #[error("cannot create the network namespace file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The kernel refused a new network namespace.
    #[error("cannot create a network namespace: {0}")]
    Unshare(std::io::Error),
    /// The namespace could not be bind-mounted onto its file.
    #[error("cannot bind-mount the new network namespace on {}: {source}", path.display())]
    Mount {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The helper thread could not be started or panicked.
    #[error("the network namespace thread failed: {0}")]
    Thread(String),
    /// Unmounting failed for another reason than "not mounted".
    #[error("cannot unmount the network namespace {}: {source}", path.display())]
    Unmount {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Creates the empty file a namespace is bind-mounted on; an existing one is refused.
fn mount_point(path: &Path) -> Result<(), NetnsError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|source| NetnsError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates a new network namespace (loopback down, nothing else) and bind-mounts it on `path` (created as an
/// empty file; its directory must exist). On any failure nothing is left mounted and the file is removed.
///
/// The namespace is made by a short-lived thread of its own (`unshare` changes only the calling thread), so no
/// thread of the caller ever changes namespace.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    mount_point(path)?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("netns".into())
        .stack_size(64 * 1024)
        .spawn(move || -> Result<(), NetnsError> {
            // SAFETY: CLONE_NEWNET only changes this thread's network namespace; no file descriptor table or
            // memory is unshared, which is what makes `unshare` unsafe in general. The thread ends right after.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .map_err(|e| NetnsError::Unshare(e.into()))?;
            rustix::mount::mount_bind("/proc/thread-self/ns/net", &target).map_err(|e| NetnsError::Mount {
                path: target.clone(),
                source: e.into(),
            })
        })
        .map_err(|e| NetnsError::Thread(e.to_string()))?
        .join()
        .map_err(|_| NetnsError::Thread("it panicked".into()))
        .and_then(|r| r);
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Bind-mounts an existing namespace file (`/proc/<pid>/ns/net`) on `path` (created as an empty file), so it
/// outlives the process and can be found by path. On failure the file is removed.
pub fn adopt(path: &Path, source: &str) -> Result<(), NetnsError> {
    mount_point(path)?;
    rustix::mount::mount_bind(source, path).map_err(|e| {
        let _ = std::fs::remove_file(path);
        NetnsError::Mount {
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
}

/// Unmounts the namespace on `path` (lazily: the namespace itself ends once no process uses it) and removes the
/// file. A missing file or one that is not mounted is not an error.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(NetnsError::Unmount {
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `path` is a mounted network namespace.
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // An nsfs file has its own device; the placeholder file has its directory's.
    match (std::fs::metadata(path), path.parent().map(std::fs::metadata)) {
        (Ok(f), Some(Ok(d))) => f.dev() != d.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn a_namespace_is_created_mounted_and_removed() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create(&path).unwrap();
        assert!(is_mounted(&path));
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            own,
            "a new namespace, not ours"
        );
        // This thread's namespace is unchanged.
        assert_eq!(std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(), own);
        assert!(
            matches!(create(&path), Err(NetnsError::File { .. })),
            "an existing file is refused"
        );
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn a_process_namespace_is_adopted() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        adopt(&path, "/proc/self/ns/net").unwrap();
        assert!(is_mounted(&path));
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), own);
        remove(&path).unwrap();
        assert!(!path.exists());
        let bad = dir.path().join("bad");
        assert!(adopt(&bad, "/proc/self/ns/nonexistent").is_err());
        assert!(!bad.exists());
    }

    #[test]
    fn a_failed_mount_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("ns");
        assert!(create(&path).is_err());
        assert!(!path.exists());
    }
}
