//! `update`: change the resources of a created, running or paused container.

use oci_spec::runtime::LinuxResources;

use crate::state::{Root, Status};
use crate::{Error, Result};

/// Applies `resources` to container `id`'s cgroup.
pub fn update(root: &Root, id: &str, resources: &LinuxResources) -> Result<()> {
    let c = super::load(root, id)?;
    super::require(
        id,
        c.status,
        &[Status::Created, Status::Running, Status::Paused],
        "update",
    )?;
    let record = c
        .record
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    if record.cgroup_path.is_empty() {
        return Err(Error::Usage(format!("container {id:?} has no cgroup to update")));
    }
    let cgroup = record.cgroup()?;
    cgroup.validate(resources)?;
    cgroup.update(resources)?;
    Ok(())
}
