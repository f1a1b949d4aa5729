//! The lifecycle verbs, one module each, over the state store in [`crate::state`].

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod start;
pub mod update;

use std::os::fd::OwnedFd;

use crate::state::{Record, Root, Status};
use crate::{Error, Result};

/// A container as found in the state store.
#[derive(Debug)]
pub struct Container {
    /// The record; `None` while the container is being created.
    pub record: Option<Record>,
    /// Its status now.
    pub status: Status,
}

/// Loads container `id` and derives its status.
pub fn load(root: &Root, id: &str) -> Result<Container> {
    let record = root.load(id)?;
    let status = match &record {
        None => Status::Creating,
        Some(r) => root.status(r),
    };
    Ok(Container { record, status })
}

/// Opens a pidfd for the recorded init, checking that the pid was not reused.
pub fn pidfd(record: &Record) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(record.pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // The pidfd pins the process; checking the start time after opening closes the reuse race.
    crate::state::process_alive(record.pid, record.start_time).then_some(fd)
}

fn ns_inode(pid: i32, ns: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|m| m.ino())
}

/// The pids of every process of the container: its cgroup's; without one (a container from before cgroups
/// were managed, or a cgroup removed by hand), those in the init's pid namespace when it has its own, else
/// those in its mount namespace.
pub fn pids(record: &Record) -> Vec<i32> {
    if !record.cgroup_path.is_empty()
        && let Ok(mut pids) = record.cgroup().and_then(|c| c.pids())
    {
        pids.sort_unstable();
        return pids;
    }
    let ns = if record.own_pid_ns { "pid" } else { "mnt" };
    let Some(want) = ns_inode(record.pid, ns) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| ns_inode(pid, ns) == Some(want))
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` through a pidfd.
pub fn signal_pidfd(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number and a null siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(fd),
            signal,
            std::ptr::null::<u8>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits up to `timeout` for the process behind `fd` to exit.
pub fn wait_exit(fd: &OwnedFd, timeout: std::time::Duration) -> bool {
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// Requires one of `allowed` statuses for `op`.
pub fn require(id: &str, status: Status, allowed: &[Status], op: &'static str) -> Result<()> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(Error::WrongStatus {
            id: id.to_string(),
            status,
            op,
        })
    }
}
