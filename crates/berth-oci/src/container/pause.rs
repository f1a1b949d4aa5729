//! `pause` and `resume`: freeze and thaw every process of the container through its cgroup.

use crate::state::{PAUSED, Root, Status};
use crate::{Error, Result};

fn cgroup_of(root: &Root, id: &str, allowed: Status, op: &'static str) -> Result<berth_cgroups::Cgroup> {
    let c = super::load(root, id)?;
    super::require(id, c.status, &[allowed], op)?;
    let record = c
        .record
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    if record.cgroup_path.is_empty() {
        return Err(Error::Usage(format!("container {id:?} has no cgroup to freeze")));
    }
    Ok(record.cgroup()?)
}

/// Freezes container `id`.
pub fn pause(root: &Root, id: &str) -> Result<()> {
    let cgroup = cgroup_of(root, id, Status::Running, "pause")?;
    cgroup.freeze()?;
    let marker = root.dir(id).join(PAUSED);
    if let Err(e) = std::fs::write(&marker, b"") {
        let _ = cgroup.thaw();
        return Err(Error::sys(format!("record the pause in {}", marker.display()), e));
    }
    Ok(())
}

/// Thaws container `id`.
pub fn resume(root: &Root, id: &str) -> Result<()> {
    let cgroup = cgroup_of(root, id, Status::Paused, "resume")?;
    cgroup.thaw()?;
    let marker = root.dir(id).join(PAUSED);
    std::fs::remove_file(&marker).map_err(|e| Error::sys(format!("remove {}", marker.display()), e))
}
