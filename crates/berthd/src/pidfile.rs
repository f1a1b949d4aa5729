//! The pid file: locked with `flock` for the daemon's lifetime, so a second berthd on the same file refuses to
//! start even when the first one's pid was reused; removed at shutdown.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The pid file cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another daemon holds it.
    #[error("pid file found, ensure berthd is not running or delete {path} (held by process {pid})")]
    Held {
        /// The pid file.
        path: PathBuf,
        /// The pid written in it.
        pid: String,
    },
    /// An I/O failure.
    #[error("cannot write the pid file {path}: {source}")]
    Io {
        /// The pid file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A held pid file; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Takes `path`: creates it, locks it and writes our pid.
    pub fn take(path: &Path) -> Result<Self, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(PidFileError::Held {
                path: path.to_path_buf(),
                pid: pid.trim().to_string(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no other daemon can have taken it in between.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_is_refused_and_drop_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/berthd.pid");
        let first = PidFile::take(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        match PidFile::take(&p) {
            Err(PidFileError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(!p.exists());
        let _again = PidFile::take(&p).unwrap();
    }
}
