//! Running the OCI runtime (`berth-runtime`, or runc's command line): create, start, delete; and turning
//! what it printed on stderr into the error message berthd shows.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::config::MonitorConfig;

/// The runtime of one container.
#[derive(Debug, Clone, Copy)]
pub struct Runtime<'a> {
    config: &'a MonitorConfig,
}

impl<'a> Runtime<'a> {
    /// The runtime named by `config`.
    pub fn new(config: &'a MonitorConfig) -> Self {
        Self { config }
    }

    /// `<runtime> --root <root>`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.config.runtime);
        cmd.arg("--root").arg(&self.config.runtime_root);
        cmd
    }

    /// `create --bundle <bundle> --pid-file <pid_file> [--console-socket <console>] <id>`; the caller sets the
    /// stdio (which the container inherits without a terminal).
    pub fn create_command(&self, pid_file: &Path, console: Option<&Path>) -> Command {
        let mut cmd = self.command();
        cmd.arg("create")
            .arg("--bundle")
            .arg(&self.config.bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(console) = console {
            cmd.arg("--console-socket").arg(console);
        }
        cmd.arg(&self.config.id);
        // The container's processes descend from this one.
        crate::sys::reset_signals_in_child(&mut cmd);
        cmd
    }

    /// `start <id>`.
    pub fn start(&self) -> Result<(), String> {
        self.run(&["start"], "start")
    }

    /// `delete --force <id>`.
    pub fn delete_force(&self) -> Result<(), String> {
        self.run(&["delete", "--force"], "delete --force")
    }

    fn run(&self, args: &[&str], what: &str) -> Result<(), String> {
        let output = self
            .command()
            .args(args)
            .arg(&self.config.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.config.runtime.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(error_message(
                &self.config.runtime,
                what,
                output.status,
                &output.stderr,
            ))
        }
    }
}

/// The runtime's error message from what it printed on stderr: its lines without the `<name>: ` prefix,
/// warnings left out when there is an error, joined with `"; "`. When it printed nothing, a sentence with
/// the exit status.
pub fn error_message(runtime: &Path, what: &str, status: ExitStatus, stderr: &[u8]) -> String {
    let name = runtime
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}: ");
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("warning: "))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    if chosen.is_empty() {
        format!("{name} {what} failed ({status}) without an error message")
    } else {
        chosen.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn message_without_prefix_and_warnings() {
        let status = ExitStatus::from_raw(1 << 8);
        let rt = Path::new("/usr/bin/berth-runtime");
        assert_eq!(
            error_message(
                rt,
                "create",
                status,
                b"berth-runtime: warning: something odd\nberth-runtime: cannot parse config.json: eof\n"
            ),
            "cannot parse config.json: eof"
        );
        assert_eq!(
            error_message(rt, "create", status, b"berth-runtime: warning: only this\n"),
            "warning: only this"
        );
        let empty = error_message(rt, "start", status, b"\n");
        assert!(
            empty.contains("berth-runtime start failed") && empty.contains("exit status: 1"),
            "{empty}"
        );
        assert_eq!(
            error_message(Path::new("/bin/runc"), "create", status, b"a\nb\n"),
            "a; b"
        );
    }
}
