//! runc-style logging: `--log FILE` with `--log-format text|json`; errors also go to stderr so that a person
//! running the command sees them. containerd reads the JSON lines of the log file.

use std::io::Write;
use std::path::PathBuf;

/// The log format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `time="..." level=error msg="..."`.
    Text,
    /// `{"level":"error","msg":"...","time":"..."}`.
    Json,
}

/// Writes log lines.
pub struct Logger {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

impl Logger {
    /// A logger.
    pub fn new(file: Option<PathBuf>, format: Format, debug: bool) -> Self {
        Self { file, format, debug }
    }

    fn line(&self, level: &str, msg: &str) -> String {
        let time = berth_oci::state::now_rfc3339();
        match self.format {
            Format::Json => serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string(),
            Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
        }
    }

    fn write(&self, level: &str, msg: &str) {
        if let Some(path) = &self.file {
            let line = self.line(level, msg);
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    /// Logs an error; it always reaches stderr as one line.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
        let one_line = msg.replace('\n', " ");
        let _ = writeln!(std::io::stderr(), "berth-runtime: {one_line}");
    }

    /// Logs an error to the log file only (the caller prints its own text on stderr).
    pub fn error_to_file(&self, msg: &str) {
        self.write("error", msg);
    }

    /// Logs a warning; it always reaches stderr too.
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
        let _ = writeln!(
            std::io::stderr(),
            "berth-runtime: warning: {}",
            msg.replace('\n', " ")
        );
    }

    /// Logs a debug message when `--debug` is given.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            if self.file.is_some() {
                self.write("debug", msg);
            } else {
                let _ = writeln!(std::io::stderr(), "{}", self.line("debug", msg));
            }
        }
    }
}
