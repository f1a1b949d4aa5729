//! `berth-monitor <state-dir>`: the process berthd starts validates monitor.json, forks the monitor and waits
//! for its report on a pipe, prints the report as one JSON line and exits 0 (ok) or 1 (error).

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;

use serde_json::json;

use crate::config::MonitorConfig;
use crate::server::Monitor;
use crate::sys::{self, Fork};

/// The line printed when the monitor failed.
fn error_line(message: &str) -> String {
    json!({ "ok": false, "error": message }).to_string()
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the command line `args` (without the program name); returns the exit code of the launching process.
/// The forked monitor never returns from here: it exits when the container is gone.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let [state_dir] = args else {
        print_line(&error_line("usage: berth-monitor <state-dir>"));
        return 1;
    };
    let state_dir = PathBuf::from(state_dir);
    let config = match MonitorConfig::load(&state_dir) {
        Ok(config) => config,
        Err(e) => {
            print_line(&error_line(&e.to_string()));
            return 1;
        }
    };
    let (report_read, report_write) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(pair) => pair,
        Err(e) => {
            print_line(&error_line(&format!("cannot create the report pipe: {e}")));
            return 1;
        }
    };
    let _ = std::io::stdout().flush();
    // SAFETY: the launcher is single-threaded (no thread has been started).
    match unsafe { sys::fork() } {
        Err(e) => {
            print_line(&error_line(&e.to_string()));
            1
        }
        Ok(Fork::Child) => {
            drop(report_read);
            let code = monitor(config, state_dir, report_write);
            std::process::exit(code);
        }
        Ok(Fork::Parent(child)) => {
            drop(report_write);
            relay_report(report_read, child)
        }
    }
}

/// Reads the monitor's report, prints it, and returns 0 when it says ok.
fn relay_report(report: OwnedFd, child: i32) -> i32 {
    let mut text = String::new();
    let read = std::fs::File::from(report).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    let parsed: Option<serde_json::Value> = serde_json::from_str(&line).ok();
    match (read, parsed) {
        (Ok(_), Some(value)) if value.get("ok").is_some() => {
            print_line(&line);
            if value["ok"] == true { 0 } else { 1 }
        }
        _ => {
            let pid = rustix::process::Pid::from_raw(child);
            let status = pid.and_then(|pid| {
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG)
                    .ok()
                    .flatten()
            });
            let how = match status {
                Some((_, status)) => format!("exited with code {}", crate::exit::exit_code(status)),
                None => "closed its report pipe".to_string(),
            };
            print_line(&error_line(&format!(
                "the monitor {how} before reporting whether the container was created"
            )));
            1
        }
    }
}

/// The forked monitor: detaches, creates the container, reports through `report`, serves until the
/// container is gone. Returns the monitor's exit code.
fn monitor(config: MonitorConfig, state_dir: PathBuf, report: OwnedFd) -> i32 {
    let report_line = |report: OwnedFd, line: String| {
        let mut file = std::fs::File::from(report);
        let _ = file.write_all(line.as_bytes());
        let _ = file.write_all(b"\n");
    };
    sys::close_inherited(report.as_fd());
    let detach = || -> Result<OwnedFd, sys::SysError> {
        rustix::process::setsid().map_err(|source| sys::SysError {
            what: "start a new session",
            source,
        })?;
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|source| {
            sys::SysError {
                what: "become a child subreaper",
                source,
            }
        })?;
        sys::null_stdio()?;
        sys::signalfd(&[libc::SIGCHLD])
    };
    let signals = match detach() {
        Ok(fd) => fd,
        Err(e) => {
            report_line(report, error_line(&e.to_string()));
            return 1;
        }
    };
    match Monitor::create(config, state_dir, signals) {
        Err(message) => {
            report_line(report, error_line(&message));
            1
        }
        Ok(mut monitor) => {
            let line = json!({
                "ok": true,
                "pid": monitor.pid(),
                "monitor_pid": rustix::process::getpid().as_raw_nonzero().get(),
            })
            .to_string();
            report_line(report, line);
            monitor.run()
        }
    }
}
