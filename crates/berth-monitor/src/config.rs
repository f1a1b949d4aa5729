//! `<state-dir>/monitor.json`: what the monitor is asked to run, and its validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// The file name of the configuration in the state directory.
pub const CONFIG_FILE: &str = "monitor.json";
/// The monitor's socket in the state directory.
pub const SOCKET_FILE: &str = "m.sock";
/// The console socket the runtime sends the pty master to (tty containers only, removed once received).
pub const CONSOLE_SOCKET_FILE: &str = "c.sock";
/// The runtime's `--pid-file`.
pub const PID_FILE: &str = "pid";
/// The exit record.
pub const EXIT_FILE: &str = "exit.json";
/// How long a created container may wait for `start` unless `start_timeout_ms` says otherwise.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest path a unix socket address holds (sun_path is 108 bytes with the trailing NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why monitor.json is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path} is not a valid monitor configuration: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A field has a value the monitor cannot use.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn default_max_files() -> u32 {
    1
}

/// The contents of monitor.json (see the crate documentation for the file and the issue notes for the contract).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MonitorConfig {
    /// The container id, as given to the runtime.
    pub id: String,
    /// The runtime binary (absolute).
    pub runtime: PathBuf,
    /// The runtime's `--root` (absolute).
    pub runtime_root: PathBuf,
    /// The bundle (absolute), holding config.json.
    pub bundle: PathBuf,
    /// Whether the container has a terminal (the spec's process.terminal).
    #[serde(default)]
    pub tty: bool,
    /// Whether the container's stdin is kept open for attach clients.
    #[serde(default)]
    pub open_stdin: bool,
    /// Whether the container's stdin is closed when the first attach client that sent stdin closes its side.
    #[serde(default)]
    pub stdin_once: bool,
    /// The json-file log, or none.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The size at which the log rotates, in bytes; 0: never.
    #[serde(default)]
    pub log_max_size: u64,
    /// How many log files are kept in total (the current one included); 1 truncates instead of rotating.
    #[serde(default = "default_max_files")]
    pub log_max_files: u32,
    /// The spec's linux.cgroupsPath (for the OOM kill count); none: the runtime's default path.
    #[serde(default)]
    pub cgroups_path: Option<String>,
    /// How long a created container waits for `start` before it is deleted, in milliseconds (default 60 s).
    #[serde(default)]
    pub start_timeout_ms: Option<u64>,
}

impl MonitorConfig {
    /// Reads and validates `<state_dir>/monitor.json`.
    pub fn load(state_dir: &Path) -> Result<Self, ConfigError> {
        let path = state_dir.join(CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config: MonitorConfig = serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        config
            .validate(state_dir)
            .map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(config)
    }

    /// Checks the values; the message says what is wrong.
    pub fn validate(&self, state_dir: &Path) -> Result<(), String> {
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
            || self.id.starts_with('.')
        {
            return Err(format!(
                "the container id {:?} is not a valid id (letters, digits, '_', '+', '-', '.')",
                self.id
            ));
        }
        for (name, path) in [
            ("runtime", &self.runtime),
            ("runtime_root", &self.runtime_root),
            ("bundle", &self.bundle),
        ] {
            if !path.is_absolute() {
                return Err(format!("{name} {} is not an absolute path", path.display()));
            }
        }
        if !self.runtime.is_file() {
            return Err(format!("the runtime {} does not exist", self.runtime.display()));
        }
        if let Some(log) = &self.log_path
            && !log.is_absolute()
        {
            return Err(format!("log_path {} is not an absolute path", log.display()));
        }
        if self.log_max_files == 0 {
            return Err("log_max_files is 0; it must be at least 1".to_string());
        }
        if self.stdin_once && !self.open_stdin {
            return Err("stdin_once is set but open_stdin is not".to_string());
        }
        if !state_dir.is_absolute() {
            return Err(format!(
                "the state directory {} is not an absolute path",
                state_dir.display()
            ));
        }
        for file in [SOCKET_FILE, CONSOLE_SOCKET_FILE] {
            let socket = state_dir.join(file);
            if socket.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(format!(
                    "the socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                    socket.display()
                ));
            }
        }
        Ok(())
    }

    /// How long the container may wait for `start`.
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_START_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> MonitorConfig {
        serde_json::from_str(json).unwrap()
    }

    const MINIMAL: &str = r#"{"id":"c1","runtime":"/bin/sh","runtime_root":"/run/r","bundle":"/run/c/c1"}"#;

    #[test]
    fn defaults() {
        let c = config(MINIMAL);
        assert!(!c.tty && !c.open_stdin && !c.stdin_once);
        assert_eq!(c.log_path, None);
        assert_eq!(c.log_max_size, 0);
        assert_eq!(c.log_max_files, 1);
        assert_eq!(c.start_timeout(), DEFAULT_START_TIMEOUT);
        c.validate(Path::new("/run/c/c1")).unwrap();
    }

    #[test]
    fn full_file_parses() {
        let c = config(
            r#"{"id":"abc","runtime":"/bin/sh","runtime_root":"/r","bundle":"/b","tty":true,
                "open_stdin":true,"stdin_once":true,"log_path":"/d/abc-json.log","log_max_size":100,
                "log_max_files":3,"cgroups_path":"/berth/abc","start_timeout_ms":250}"#,
        );
        assert!(c.tty && c.open_stdin && c.stdin_once);
        assert_eq!(c.log_path.as_deref(), Some(Path::new("/d/abc-json.log")));
        assert_eq!((c.log_max_size, c.log_max_files), (100, 3));
        assert_eq!(c.cgroups_path.as_deref(), Some("/berth/abc"));
        assert_eq!(c.start_timeout(), Duration::from_millis(250));
        c.validate(Path::new("/b")).unwrap();
    }

    #[test]
    fn invalid_values_are_named() {
        let state = Path::new("/run/c/c1");
        let mut c = config(MINIMAL);
        c.id = "../x".into();
        assert!(c.validate(state).unwrap_err().contains("../x"));
        let mut c = config(MINIMAL);
        c.bundle = "relative".into();
        assert!(c.validate(state).unwrap_err().contains("bundle relative"));
        let mut c = config(MINIMAL);
        c.runtime = "/no/such/runtime".into();
        assert!(c.validate(state).unwrap_err().contains("/no/such/runtime"));
        let mut c = config(MINIMAL);
        c.log_max_files = 0;
        assert!(c.validate(state).unwrap_err().contains("log_max_files"));
        let c = config(MINIMAL);
        let long = PathBuf::from(format!("/{}", "x".repeat(120)));
        assert!(c.validate(&long).unwrap_err().contains("longer than"));
        let mut c = config(MINIMAL);
        c.stdin_once = true;
        assert!(c.validate(state).unwrap_err().contains("open_stdin"));
    }

    #[test]
    fn load_reports_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = MonitorConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("monitor.json"), "{err}");
        std::fs::write(dir.path().join(CONFIG_FILE), b"{\"id\":").unwrap();
        let err = MonitorConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid monitor configuration"), "{err}");
        std::fs::write(dir.path().join(CONFIG_FILE), MINIMAL).unwrap();
        assert_eq!(MonitorConfig::load(dir.path()).unwrap().id, "c1");
    }
}
