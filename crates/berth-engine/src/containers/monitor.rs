//! The daemon's side of the per-container monitor (`berth-monitor`): writing its `monitor.json`, spawning it, and
//! its socket protocol (one JSON request line per connection, one JSON reply line; `attach` then carries docker's
//! multiplexed stream). The monitor itself is a separate small synchronous binary that outlives the daemon.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Talking to a monitor failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A file of the monitor's state directory cannot be written or read.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The monitor did not start.
    #[error("cannot start the container monitor {bin}: {source}")]
    Spawn {
        /// The monitor binary.
        bin: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The monitor or the runtime refused (the runtime's own message).
    #[error("{0}")]
    Refused(String),
    /// The monitor is not reachable (it has exited).
    #[error("the container's monitor is gone ({path}): {source}")]
    Gone {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The monitor answered something that is not its protocol.
    #[error("the container's monitor answered {0:?}, which is not a valid reply")]
    Protocol(String),
}

/// `monitor.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// The container id.
    pub id: String,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The bundle (holding config.json).
    pub bundle: PathBuf,
    /// A pty instead of pipes.
    pub tty: bool,
    /// Keep stdin open.
    pub open_stdin: bool,
    /// Close stdin when the first attached client detaches.
    pub stdin_once: bool,
    /// The json-file log (None: no log).
    pub log_path: Option<PathBuf>,
    /// Rotate at this many bytes (0: never).
    pub log_max_size: u64,
    /// Files kept, the current one included.
    pub log_max_files: u32,
    /// The spec's cgroupsPath (for the OOM kill count).
    pub cgroups_path: String,
}

/// How a container ended, as the monitor records it (`exit.json` and the `wait` reply).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit status (128 + signal when killed; -1 when the start itself failed).
    pub exit_code: i64,
    /// Killed by the OOM killer.
    #[serde(default)]
    pub oom_killed: bool,
    /// When, RFC 3339 with nanoseconds.
    #[serde(default)]
    pub finished_at: String,
    /// Why it could not run, when it could not.
    #[serde(default)]
    pub error: String,
}

/// What a started monitor reports.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    /// The container's init pid.
    pub pid: i64,
    /// The monitor's pid.
    pub monitor_pid: i64,
}

/// The socket of the monitor whose state directory is `dir`.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("m.sock")
}

/// The exit record the monitor left in `dir`, if any.
pub fn exit_record(dir: &Path) -> Option<ExitRecord> {
    let data = std::fs::read(dir.join("exit.json")).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Writes `monitor.json` into `dir` and starts the monitor; returns once the runtime has created the container.
pub async fn spawn(bin: &Path, dir: &Path, spec: &MonitorSpec) -> Result<Spawned, MonitorError> {
    let path = dir.join("monitor.json");
    let data = serde_json::to_vec(spec).map_err(|e| MonitorError::Protocol(e.to_string()))?;
    tokio::fs::write(&path, data)
        .await
        .map_err(|source| MonitorError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
    let out = tokio::process::Command::new(bin)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|source| MonitorError::Spawn {
            bin: bin.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("").trim();
    let reply: serde_json::Value = serde_json::from_str(line).map_err(|_| {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.is_empty() {
            MonitorError::Protocol(line.to_string())
        } else {
            MonitorError::Refused(err)
        }
    })?;
    let reply = check(reply)?;
    Ok(Spawned {
        pid: reply.get("pid").and_then(|v| v.as_i64()).unwrap_or(0),
        monitor_pid: reply.get("monitor_pid").and_then(|v| v.as_i64()).unwrap_or(0),
    })
}

fn check(reply: serde_json::Value) -> Result<serde_json::Value, MonitorError> {
    match reply.get("ok").and_then(|v| v.as_bool()) {
        Some(true) => Ok(reply),
        Some(false) => Err(MonitorError::Refused(
            reply
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("the monitor failed")
                .to_string(),
        )),
        None => Err(MonitorError::Protocol(reply.to_string())),
    }
}

/// Connects and sends one request; returns the stream positioned after the reply line, and the reply.
pub async fn open(
    dir: &Path,
    request: serde_json::Value,
) -> Result<(UnixStream, serde_json::Value), MonitorError> {
    let path = socket(dir);
    let gone = |source| MonitorError::Gone {
        path: path.clone(),
        source,
    };
    let mut s = UnixStream::connect(&path).await.map_err(gone)?;
    let mut line = request.to_string().into_bytes();
    line.push(b'\n');
    s.write_all(&line).await.map_err(gone)?;
    let mut reply = Vec::new();
    loop {
        let mut b = [0u8; 1];
        match s.read(&mut b).await.map_err(gone)? {
            0 => {
                return Err(gone(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the monitor closed the connection",
                )));
            }
            _ if b[0] == b'\n' => break,
            _ => reply.push(b[0]),
        }
        if reply.len() > 64 * 1024 {
            return Err(MonitorError::Protocol(
                String::from_utf8_lossy(&reply).into_owned(),
            ));
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|_| MonitorError::Protocol(String::from_utf8_lossy(&reply).into_owned()))?;
    Ok((s, check(v)?))
}

/// One request, one reply.
pub async fn request(dir: &Path, request: serde_json::Value) -> Result<serde_json::Value, MonitorError> {
    Ok(open(dir, request).await?.1)
}

/// Starts the created container.
pub async fn start(dir: &Path) -> Result<(), MonitorError> {
    request(dir, serde_json::json!({"op": "start"})).await.map(|_| ())
}

/// Sets the pty's size.
pub async fn resize(dir: &Path, height: u16, width: u16) -> Result<(), MonitorError> {
    request(
        dir,
        serde_json::json!({"op": "resize", "height": height, "width": width}),
    )
    .await
    .map(|_| ())
}

/// An attach stream: docker's multiplexed frames out, raw stdin in.
pub async fn attach(dir: &Path, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream, MonitorError> {
    let (s, _) = open(
        dir,
        serde_json::json!({"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}),
    )
    .await?;
    Ok(s)
}

/// Waits for the container to exit.
pub async fn wait(dir: &Path) -> Result<ExitRecord, MonitorError> {
    let reply = request(dir, serde_json::json!({"op": "wait"})).await?;
    serde_json::from_value(reply.clone()).map_err(|_| MonitorError::Protocol(reply.to_string()))
}

/// Whether the monitor answers.
pub async fn alive(dir: &Path) -> bool {
    request(dir, serde_json::json!({"op": "status"})).await.is_ok()
}
