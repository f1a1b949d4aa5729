//! `start`: release a created container's init by writing to its exec fifo.

use rustix::fs::{Mode, OFlags};

use crate::state::{EXEC_FIFO, Root, Status};
use crate::{Error, Result};

/// Starts container `id`. Returns the warnings of failed `poststart` hooks (they do not fail the start).
pub fn start(root: &Root, id: &str) -> Result<Vec<String>> {
    let c = super::load(root, id)?;
    super::require(id, c.status, &[Status::Created], "start")?;
    let fifo = root.dir(id).join(EXEC_FIFO);
    // Non-blocking: with no reader (the init is gone) the open fails with ENXIO instead of hanging.
    let fd = match rustix::fs::open(
        &fifo,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NXIO) => {
            return Err(Error::WrongStatus {
                id: id.to_string(),
                status: Status::Stopped,
                op: "start",
            });
        }
        Err(e) => return Err(Error::sys(format!("open the exec fifo {}", fifo.display()), e)),
    };
    rustix::io::write(&fd, b"0").map_err(|e| Error::sys("signal the container's init to start", e))?;
    // Without the fifo the status reads `running`.
    std::fs::remove_file(&fifo)
        .map_err(|e| Error::sys(format!("remove the exec fifo {}", fifo.display()), e))?;
    wait_for_exec(&fd);
    Ok(match &c.record {
        Some(record) => poststart(record),
        None => Vec::new(),
    })
}

/// Waits (briefly) until the init has executed the program: its end of the fifo is close-on-exec and it is the
/// only reader, so our write end reports POLLERR once the exec happened. A signal sent right after `start`
/// then reaches the program rather than the init, which as pid 1 of its namespace would drop it. Bounded, so a
/// slow startContainer hook does not hold `start` for long.
fn wait_for_exec(fd: &std::os::fd::OwnedFd) {
    use rustix::event::{PollFd, PollFlags, poll};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(fd, PollFlags::empty())];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => return,
            Ok(0) => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

/// Runs the `poststart` hooks; failures become warnings.
pub fn poststart(record: &crate::state::Record) -> Vec<String> {
    let state = record.oci_state(Status::Running);
    match crate::hooks::run(record.hooks.as_ref(), crate::hooks::Kind::Poststart, &state) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}
