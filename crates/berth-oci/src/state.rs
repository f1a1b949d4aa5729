//! The runtime's record of a container: `<root>/<id>/state.json`, and its status derived from the kernel.
//!
//! A container directory without `state.json` is being created. Once created, the status is derived, as runc
//! does, from the recorded init process: alive (same pid and start time, not yet reaped) with `exec.fifo` still
//! present means `created`; alive without the fifo means `running`; otherwise `stopped`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Name of the state file inside a container directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the fifo the init waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Marker file of a paused container (written by `pause`, removed by `resume`).
pub const PAUSED: &str = "paused";
/// The default `--root`.
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";

/// Errors of the state store.
#[derive(Debug, Error)]
pub enum StateError {
    /// The id is not acceptable.
    #[error(
        "{0:?} is not a valid container id: use letters, digits, '_', '-' and '.', at most 1024 characters"
    )]
    InvalidId(String),
    /// A container with this id exists.
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// No container with this id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The root or container directory could not be used.
    #[error("cannot use the state directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state file is corrupt.
    #[error("the state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The path of state.json.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
}

/// A container's status, as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The container is being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// The container's processes are frozen (`pause`).
    Paused,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime records of a created container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// Pid of the init (later the user process) in the runtime's pid namespace.
    pub pid: i32,
    /// The process start time (field 22 of /proc/pid/stat), to tell a reused pid apart.
    pub start_time: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// Annotations from the spec.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Creation time, RFC 3339 in UTC.
    pub created: String,
    /// Whether the container has its own pid namespace (then killing the init kills all).
    pub own_pid_ns: bool,
    /// The owner's uid (the user who ran create).
    pub owner: u32,
    /// The container's cgroup, resolved (`Cgroup::relative_path`), so that every later verb finds the same one.
    #[serde(default)]
    pub cgroup_path: String,
    /// The cgroup directories `create` made (parents included), so that `delete` removes exactly those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_created: Vec<PathBuf>,
    /// The spec's hooks, kept for `poststart` and `poststop` (config.json may change after create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

impl Record {
    /// The container's cgroup.
    pub fn cgroup(&self) -> Result<berth_cgroups::Cgroup, berth_cgroups::Error> {
        Ok(berth_cgroups::Cgroup::new(Some(&self.cgroup_path), &self.id)?
            .with_created(self.cgroup_created.clone()))
    }

    /// The OCI state of this record with `status`.
    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped { 0 } else { self.pid },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: String::new(),
            annotations: self.annotations.clone(),
        }
    }
}

/// The OCI state, as `state` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// The spec version of this state.
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The status.
    pub status: Status,
    /// The init's pid; 0 once stopped.
    pub pid: i32,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs (runc prints it too).
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// The owner, as a name when known.
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// Checks an id the way runc does: non-empty, no path separators, not `.`/`..`.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// The runtime's state root (`--root`).
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// A state root at `path` (created on first use, mode 0700).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Reserves `id`: creates its directory, failing if it exists.
    pub fn reserve(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        let io = |path: &Path, source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !self.path.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)
                .map_err(|e| io(&self.path, e))?;
        }
        let dir = self.dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::AlreadyExists(id.to_string()))
            }
            Err(e) => Err(io(&dir, e)),
        }
    }

    /// Loads the record of `id`; `Ok(None)` while it is still being created.
    pub fn load(&self, id: &str) -> Result<Option<Record>, StateError> {
        validate_id(id)?;
        let dir = self.dir(id);
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Corrupt {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.is_dir() {
                    Ok(None)
                } else {
                    Err(StateError::NotFound(id.to_string()))
                }
            }
            Err(e) => Err(StateError::Io { path, source: e }),
        }
    }

    /// Writes the record atomically (temporary file, then rename).
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let dir = self.dir(&record.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join(STATE_FILE);
        let io = |path: &Path, source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec(record).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// Removes the directory of `id` and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io { path: dir, source: e }),
        }
    }

    /// The ids of all containers under this root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source: e,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The status of a created container.
    pub fn status(&self, record: &Record) -> Status {
        if !process_alive(record.pid, record.start_time) {
            return Status::Stopped;
        }
        let dir = self.dir(&record.id);
        if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if dir.join(PAUSED).exists() {
            Status::Paused
        } else {
            Status::Running
        }
    }
}

/// The start time and state letter of a process, from `/proc/<pid>/stat`.
pub fn proc_stat(pid: i32) -> Option<(u64, u8)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: fields count from the last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let mut fields = rest.split(' ');
    let state = fields.next()?.bytes().next()?;
    // `rest` starts at field 3; the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is the same process that was recorded and its parent has not reaped it yet. An exited but
/// unreaped process (a zombie) still counts, as with crun: the status turns `stopped` once it is reaped, which a
/// container's parent (containerd's shim, conmon, a subreaper) does at once.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(proc_stat(pid), Some((start, state)) if start == start_time && state != b'X')
}

/// Now, as RFC 3339 with nanoseconds in UTC (`jiff`: a small, well-kept time library, without a time-zone
/// database here).
pub fn now_rfc3339() -> String {
    format!("{:.9}", jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-123", "x_y.z", "A1"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserve_load_save_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path().join("root"));
        let d = root.reserve("c1").expect("reserve");
        assert!(matches!(root.reserve("c1"), Err(StateError::AlreadyExists(_))));
        assert!(
            root.load("c1").expect("load").is_none(),
            "no state.json yet means creating"
        );
        let (start_time, _) = proc_stat(std::process::id() as i32).expect("own stat");
        let rec = Record {
            id: "c1".into(),
            pid: std::process::id() as i32,
            start_time,
            bundle: d.clone(),
            rootfs: d.clone(),
            annotations: HashMap::new(),
            created: now_rfc3339(),
            own_pid_ns: true,
            owner: 0,
            cgroup_path: String::new(),
            cgroup_created: Vec::new(),
            hooks: None,
        };
        root.save(&rec).expect("save");
        let back = root.load("c1").expect("load").expect("record");
        assert_eq!(back.pid, rec.pid);
        assert_eq!(root.status(&back), Status::Running);
        std::fs::write(d.join(EXEC_FIFO), b"").expect("fifo stand-in");
        assert_eq!(root.status(&back), Status::Created);
        assert_eq!(
            root.status(&Record {
                start_time: start_time + 1,
                ..back
            }),
            Status::Stopped
        );
        assert_eq!(root.ids().expect("ids"), vec!["c1".to_string()]);
        root.remove("c1").expect("remove");
        assert!(matches!(root.load("c1"), Err(StateError::NotFound(_))));
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
