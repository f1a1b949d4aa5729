//! `kill`: send a signal to the init, or with `--all` to every process of the container.

use crate::state::{Root, Status};
use crate::{Error, Result};

/// Sends `signal` to container `id`.
pub fn kill(root: &Root, id: &str, signal: i32, all: bool) -> Result<()> {
    let c = super::load(root, id)?;
    super::require(
        id,
        c.status,
        &[Status::Created, Status::Running, Status::Paused],
        "kill",
    )?;
    let record = c
        .record
        .as_ref()
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    let not_running = || Error::WrongStatus {
        id: id.to_string(),
        status: Status::Stopped,
        op: "kill",
    };
    let init = super::pidfd(record).ok_or_else(not_running)?;
    if all {
        for pid in super::pids(record) {
            if pid == record.pid {
                continue;
            }
            let Some(p) = rustix::process::Pid::from_raw(pid) else {
                continue;
            };
            if let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
                // A process that exits meanwhile is fine to miss.
                let _ = super::signal_pidfd(&fd, signal);
            }
        }
    }
    super::signal_pidfd(&init, signal).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => not_running(),
        _ => Error::sys(format!("send signal {signal} to the container's init"), e),
    })
}
