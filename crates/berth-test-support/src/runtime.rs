//! A handle on `berth-runtime` for one test: its own `--root`, commands with a timeout, cleanup on drop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::bins::{BinError, RUNTIME_ENV, locate};
use crate::bundle::{Bundle, error_chain};
use crate::cleanup::{make_temp_dir, remove_tree};
use crate::ids::unique_id;
use crate::report::{CheckReport, parse_report};

/// How long one runtime command may take before the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long each cleanup command may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a runtime command could not be run (not: why it failed; that is in its [`Output`]).
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The binary is missing.
    #[error(transparent)]
    Bin(#[from] BinError),
    /// A temporary directory or output file could not be made.
    #[error("could not create {path}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The process could not be started or waited for.
    #[error("could not run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command did not finish in time and was killed.
    #[error(
        "`{command}` did not finish within {timeout:?} and was killed; stdout: {stdout:?}; stderr: {stderr:?}"
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
        /// What it printed.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// A process the guard may have to kill, identified by pid and start time so that a reused pid is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMark {
    /// The pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessMark {
    /// Marks the running process `pid`; `None` if it does not exist.
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether the marked process still exists (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid));
        let Ok(stat) = stat else { return false };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        !zombie && start_time(self.pid) == Some(self.start_time)
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after the last ')' are fixed.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn describe_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Panics unless `output` is a successful exit, with the command's stdout and stderr in the message.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// One test's view of `berth-runtime`: a private `--root`, and on drop (also when the test panics) every
/// container in it deleted with `delete --force`, every process recorded for it killed, and the root removed.
///
/// Runtime commands run with stdin from `/dev/null` and stdout/stderr into files, so that a container that
/// inherits them (`create` with `terminal: false`) never keeps a command from finishing; what such a container
/// prints later is read with [`Runtime::container_stdout`].
#[derive(Debug)]
pub struct Runtime {
    base: PathBuf,
    root: PathBuf,
    io: PathBuf,
    bin: PathBuf,
    timeout: Duration,
    counter: Cell<u64>,
    marks: RefCell<Vec<ProcessMark>>,
    container_io: RefCell<HashMap<String, (PathBuf, PathBuf)>>,
}

impl Runtime {
    /// A handle with a fresh root; see [`Runtime::new`].
    pub fn try_new() -> Result<Self, RuntimeError> {
        Self::try_with_binary(locate("berth-runtime", RUNTIME_ENV)?)
    }

    /// A handle that drives another runtime with runc's command line (runc, crun), to compare behaviour.
    pub fn try_with_binary(bin: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let bin = bin.into();
        let base = make_temp_dir("berth-runtime-test-").map_err(|source| RuntimeError::Create {
            path: std::env::temp_dir(),
            source,
        })?;
        let runtime = Runtime {
            root: base.join("root"),
            io: base.join("io"),
            base,
            bin,
            timeout: DEFAULT_TIMEOUT,
            counter: Cell::new(0),
            marks: RefCell::new(Vec::new()),
            container_io: RefCell::new(HashMap::new()),
        };
        for dir in [&runtime.root, &runtime.io] {
            std::fs::create_dir(dir).map_err(|source| RuntimeError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(runtime)
    }

    /// A handle with a fresh root directory.
    ///
    /// # Panics
    /// When `berth-runtime` is missing (the message says to run `cargo build`) or the directory cannot be made.
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// A handle on `bin` (for instance `/usr/sbin/runc`) with a fresh root.
    ///
    /// # Panics
    /// When the directory cannot be made.
    pub fn with_binary(bin: impl Into<PathBuf>) -> Self {
        Self::try_with_binary(bin).unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// Sets how long each command may take (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `--root` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `berth-runtime` binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `berth-runtime --root <root>`, for tests that need their own stdio or arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Records a process for the guard to kill on drop (if it is still the same process then).
    pub fn track_pid(&self, pid: i32) {
        if let Some(mark) = ProcessMark::of(pid) {
            self.marks.borrow_mut().push(mark);
        }
    }

    fn io_files(&self) -> (PathBuf, PathBuf) {
        let n = self.counter.get();
        self.counter.set(n + 1);
        (self.io.join(format!("{n}.out")), self.io.join(format!("{n}.err")))
    }

    /// Runs `cmd` with stdin from /dev/null and stdout/stderr into fresh files, waiting at most `timeout`.
    fn execute(
        &self,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<(Output, PathBuf, PathBuf), RuntimeError> {
        let command = describe_command(&cmd);
        let (out_path, err_path) = self.io_files();
        let create = |path: &Path| {
            File::create(path).map_err(|source| RuntimeError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        cmd.stdin(Stdio::null())
            .stdout(create(&out_path)?)
            .stderr(create(&err_path)?);
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        // The child is reaped only by this thread, so its pid cannot be reused while the timeout below kills it.
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status: ExitStatus = match rx.recv_timeout(timeout) {
            Ok(status) => status.map_err(|source| RuntimeError::Spawn {
                command: command.clone(),
                source,
            })?,
            Err(_) => {
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: kill takes no pointers; the pid is our unreaped child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = rx.recv();
                let read =
                    |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
                return Err(RuntimeError::Timeout {
                    command,
                    timeout,
                    stdout: read(&out_path),
                    stderr: read(&err_path),
                });
            }
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| RuntimeError::Create {
                path: p.to_path_buf(),
                source,
            })
        };
        let output = Output {
            status,
            stdout: read(&out_path)?,
            stderr: read(&err_path)?,
        };
        Ok((output, out_path, err_path))
    }

    fn run_command(&self, cmd: Command) -> (Output, PathBuf, PathBuf) {
        self.execute(cmd, self.timeout)
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// Runs `berth-runtime --root <root> <args>`; the output whatever the exit status.
    ///
    /// # Panics
    /// When the binary cannot be started or the command times out.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        self.run_command(cmd).0
    }

    fn run_for_container(&self, id: &str, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        let (output, out, err) = self.run_command(cmd);
        self.container_io.borrow_mut().insert(id.to_string(), (out, err));
        output
    }

    fn bundle_arg(bundle: &Bundle) -> &str {
        bundle
            .path()
            .to_str()
            .unwrap_or_else(|| panic!("bundle path {:?} is not UTF-8", bundle.path()))
    }

    /// Writes the bundle's config and runs `create --bundle <bundle> <id>`.
    pub fn create(&self, id: &str, bundle: &Bundle) -> Output {
        bundle.write_config();
        self.run_for_container(id, &["create", "--bundle", Self::bundle_arg(bundle), id])
    }

    /// `start <id>`.
    pub fn start(&self, id: &str) -> Output {
        self.run(&["start", id])
    }

    /// `kill <id> <signal>`.
    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.run(&["kill", id, signal])
    }

    /// `delete <id>`.
    pub fn delete(&self, id: &str) -> Output {
        self.run(&["delete", id])
    }

    /// `delete --force <id>`.
    pub fn delete_force(&self, id: &str) -> Output {
        self.run(&["delete", "--force", id])
    }

    /// `state <id>`, parsed.
    ///
    /// # Panics
    /// When the command fails or prints something that is not JSON.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["state", id]);
        assert_success(&out, &format!("berth-runtime state {id}"));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "berth-runtime state {id} printed invalid JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The `status` of `state <id>` (`created`, `running`, `stopped`, ...).
    pub fn status(&self, id: &str) -> String {
        self.state(id)
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `state <id>` until the status is `status`, for at most `timeout`.
    ///
    /// # Panics
    /// When the status is not reached in time.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.status(id);
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} is {now:?}, not {status:?}, after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes the bundle's config and runs `run --bundle <bundle> <id>` in the foreground: the container's
    /// stdout and stderr (with `terminal: false`) are the returned output.
    pub fn run_capture(&self, id: &str, bundle: &Bundle) -> Output {
        bundle.write_config();
        self.run_for_container(id, &["run", "--bundle", Self::bundle_arg(bundle), id])
    }

    /// What container `id` has written to stdout so far (the file given to the `create` or `run` that made it).
    pub fn container_stdout(&self, id: &str) -> String {
        self.container_file(id, |(out, _)| out)
    }

    /// What container `id` has written to stderr so far.
    pub fn container_stderr(&self, id: &str) -> String {
        self.container_file(id, |(_, err)| err)
    }

    fn container_file(&self, id: &str, pick: fn(&(PathBuf, PathBuf)) -> &PathBuf) -> String {
        let io = self.container_io.borrow();
        let files = io
            .get(id)
            .unwrap_or_else(|| panic!("container {id} was not created through this Runtime"));
        let path = pick(files);
        String::from_utf8_lossy(
            &std::fs::read(path).unwrap_or_else(|e| panic!("could not read {path:?}: {e}")),
        )
        .into_owned()
    }

    /// Runs `/bin/berth-check report` in `bundle` (without a terminal) and parses what it prints.
    ///
    /// # Panics
    /// When the container fails or its output is not a report.
    pub fn check_report(&self, bundle: &mut Bundle) -> CheckReport {
        bundle.set_check_args(&["report"]);
        let id = unique_id("check");
        let out = self.run_capture(&id, bundle);
        assert_success(&out, &format!("berth-runtime run {id} (berth-check report)"));
        parse_report(&out.stdout).unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// Container ids that have a directory in the root.
    pub fn containers(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// The pid of container `id` as `state` reports it, or as its `state.json` records it when `state` fails.
    fn recorded_pid(&self, id: &str) -> Option<i32> {
        let mut cmd = self.command();
        cmd.args(["state", id]);
        let from_state = self
            .execute(cmd, CLEANUP_TIMEOUT)
            .ok()
            .filter(|(out, _, _)| out.status.success())
            .and_then(|(out, _, _)| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok());
        let from_file = || {
            let text = std::fs::read(self.root.join(id).join("state.json")).ok()?;
            serde_json::from_slice::<serde_json::Value>(&text).ok()
        };
        let value = from_state.or_else(from_file)?;
        ["pid", "init_process_pid", "initProcessPid"]
            .iter()
            .find_map(|key| value.get(*key)?.as_i64())
            .and_then(|pid| i32::try_from(pid).ok())
    }

    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let own = i32::try_from(std::process::id()).unwrap_or(0);
        let mut marks = std::mem::take(self.marks.get_mut());
        for id in self.containers() {
            if let Some(mark) = self
                .recorded_pid(&id)
                .filter(|&p| p > 1 && p != own)
                .and_then(ProcessMark::of)
            {
                marks.push(mark);
            }
            let mut cmd = self.command();
            cmd.args(["delete", "--force", &id]);
            match self.execute(cmd, CLEANUP_TIMEOUT) {
                Ok((out, _, _)) if out.status.success() => {}
                Ok((out, _, _)) => problems.push(format!(
                    "delete --force {id} failed with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => problems.push(error_chain(&e)),
            }
        }
        for mark in marks {
            if mark.pid > 1 && mark.pid != own && mark.is_alive() {
                // SAFETY: kill takes no pointers; the mark checked that the pid still names the recorded process.
                unsafe { libc::kill(mark.pid, libc::SIGKILL) };
            }
        }
        if let Err(e) = remove_tree(&self.base) {
            problems.push(error_chain(&e));
        }
        problems
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for problem in self.cleanup() {
            eprintln!(
                "berth-test-support: cleanup of {}: {problem}",
                self.base.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_this_process() {
        let own = i32::try_from(std::process::id()).unwrap();
        let mark = ProcessMark::of(own).unwrap();
        assert!(mark.is_alive());
        assert!(
            !ProcessMark {
                start_time: mark.start_time + 1,
                ..mark
            }
            .is_alive()
        );
        assert!(ProcessMark::of(i32::MAX).is_none());
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = Command::new("/bin/busybox").args(["sleep", "5"]).spawn().unwrap();
        let mark = ProcessMark::of(i32::try_from(child.id()).unwrap()).unwrap();
        assert!(mark.is_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!mark.is_alive());
    }
}
