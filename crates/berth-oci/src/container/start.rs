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
    Ok(match &c.record {
        Some(record) => poststart(record),
        None => Vec::new(),
    })
}

/// Runs the `poststart` hooks; failures become warnings.
pub fn poststart(record: &crate::state::Record) -> Vec<String> {
    let state = record.oci_state(Status::Running);
    match crate::hooks::run(record.hooks.as_ref(), crate::hooks::Kind::Poststart, &state) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}
