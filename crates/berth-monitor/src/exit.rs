//! The exit record: what `wait` answers and what `<state-dir>/exit.json` holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why exit.json could not be written.
#[derive(Debug, Error)]
#[error("cannot write {path}: {source}")]
pub struct ExitFileError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// How the container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, 128 + signal when it was killed; -1 when it never ran (see `error`).
    pub exit_code: i32,
    /// Whether the kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// When the monitor saw the exit (RFC 3339 with nanoseconds, UTC).
    pub finished_at: String,
    /// Why the container did not run (start failed, start timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The exit code of a wait status: the status itself, or 128 + the signal that killed the process.
pub fn exit_code(status: rustix::process::WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(signal) = status.terminating_signal() {
        128 + signal
    } else {
        // Stopped or continued: not an end; callers only pass ends. 255 marks the impossible case.
        255
    }
}

/// Writes `record` to `path` atomically: a temporary file next to it, synced, then renamed over it.
pub fn write_atomic(path: &Path, record: &ExitRecord) -> Result<(), ExitFileError> {
    let err = |source| ExitFileError {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let record = ExitRecord {
            exit_code: 137,
            oom_killed: true,
            finished_at: "2026-11-28T16:00:00.000000001Z".into(),
            error: None,
        };
        write_atomic(&path, &record).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("error"), "{text}");
        assert_eq!(serde_json::from_str::<ExitRecord>(&text).unwrap(), record);
        let failed = ExitRecord {
            exit_code: -1,
            error: Some("it failed".into()),
            ..record
        };
        write_atomic(&path, &failed).unwrap();
        let back: ExitRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, failed);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    // The children are reaped with waitpid below, which is what is tested.
    #[allow(clippy::zombie_processes)]
    fn exit_codes_of_real_processes() {
        use std::process::Command;
        let status = |script: &str| {
            let child = Command::new("/bin/sh").args(["-c", script]).spawn().unwrap();
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
                .unwrap()
                .unwrap();
            exit_code(status)
        };
        assert_eq!(status("exit 0"), 0);
        assert_eq!(status("exit 3"), 3);
        assert_eq!(status("kill -9 $$"), 137);
        assert_eq!(status("kill -15 $$"), 143);
    }
}
