//! `delete`: remove a stopped (or created) container; with `--force`, kill a running one first.

use std::time::Duration;

use crate::state::{Root, StateError, Status};
use crate::{Error, Result};

/// Deletes container `id`. Returns the warnings of failed `poststop` hooks (they do not fail the delete).
pub fn delete(root: &Root, id: &str, force: bool) -> Result<Vec<String>> {
    delete_inner(root, id, force, true)
}

/// [`delete`]; without `remove_cgroup` the caller removes the cgroup (a foreground `run` that joined a user
/// namespace, from which cgroups cannot be removed, leaves that to its janitor).
pub(crate) fn delete_inner(root: &Root, id: &str, force: bool, remove_cgroup: bool) -> Result<Vec<String>> {
    let c = match super::load(root, id) {
        Ok(c) => c,
        Err(Error::State(StateError::NotFound(_))) if force => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // An init that has exited but is not reaped yet still reads as running (as with crun); there is nothing left
    // to stop, so delete treats it as stopped.
    let exited = c.record.as_ref().is_some_and(
        |r| matches!(crate::state::proc_stat(r.pid), Some((start, b'Z')) if start == r.start_time),
    );
    match (c.status, &c.record) {
        (Status::Running | Status::Paused, _) if !force && !exited => {
            return Err(Error::Usage(format!(
                "container {id:?} is running: stop it first, or delete it with --force"
            )));
        }
        (Status::Creating, _) if !force => {
            return Err(Error::Usage(format!(
                "container {id:?} is still being created: use --force"
            )));
        }
        (Status::Created | Status::Running | Status::Paused, Some(record)) => {
            if let Some(init) = super::pidfd(record) {
                for pid in super::pids(record) {
                    if let Some(p) = rustix::process::Pid::from_raw(pid)
                        && let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                    {
                        let _ = super::signal_pidfd(&fd, libc::SIGKILL);
                    }
                }
                let _ = super::signal_pidfd(&init, libc::SIGKILL);
                // Frozen processes die only once thawed.
                if c.status == Status::Paused
                    && let Ok(cgroup) = record.cgroup()
                {
                    let _ = cgroup.thaw();
                }
                if !super::wait_exit(&init, Duration::from_secs(10)) {
                    return Err(Error::Init(format!(
                        "container {id:?} did not die within 10 s of SIGKILL"
                    )));
                }
            }
        }
        _ => {}
    }
    // Whatever is left in the cgroup (processes that escaped the pid namespace's teardown) goes too.
    if let Some(record) = c
        .record
        .as_ref()
        .filter(|r| remove_cgroup && !r.cgroup_path.is_empty())
    {
        let cgroup = record.cgroup()?;
        let _ = cgroup.kill_all(libc::SIGKILL);
        cgroup.destroy()?;
    }
    root.remove(id)?;
    let mut warnings = Vec::new();
    if let Some(record) = &c.record {
        let state = record.oci_state(Status::Stopped);
        if let Err(e) = crate::hooks::run(record.hooks.as_ref(), crate::hooks::Kind::Poststop, &state) {
            warnings.push(e.to_string());
        }
    }
    Ok(warnings)
}
