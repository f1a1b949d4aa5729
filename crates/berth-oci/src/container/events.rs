//! `events`: the container's resource statistics and OOM kills, as runc prints them (one JSON object per line:
//! `{"type":"stats","id":...,"data":{...}}`, `{"type":"oom","id":...}`).

use std::time::Duration;

use serde_json::json;

use crate::state::{Root, Status};
use crate::{Error, Result};

fn cgroup_of(root: &Root, id: &str) -> Result<berth_cgroups::Cgroup> {
    let c = super::load(root, id)?;
    super::require(
        id,
        c.status,
        &[Status::Created, Status::Running, Status::Paused],
        "watch the events of",
    )?;
    let record = c
        .record
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    if record.cgroup_path.is_empty() {
        return Err(Error::Usage(format!("container {id:?} has no cgroup to read")));
    }
    Ok(record.cgroup()?)
}

/// One stats event.
pub fn stats(root: &Root, id: &str) -> Result<serde_json::Value> {
    let cgroup = cgroup_of(root, id)?;
    Ok(json!({ "type": "stats", "id": id, "data": cgroup.stats()? }))
}

/// Streams events to `emit` every `interval` until the container stops: stats at each tick, OOM kills as
/// they happen. Returns when the container is gone or `emit` returns false.
pub fn watch(
    root: &Root,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&serde_json::Value) -> bool,
) -> Result<()> {
    let cgroup = cgroup_of(root, id)?;
    let mut oom = cgroup.oom_events()?;
    loop {
        match oom.wait_timeout(interval)? {
            Some(berth_cgroups::OomEvent::Oom) if !emit(&json!({ "type": "oom", "id": id })) => return Ok(()),
            Some(berth_cgroups::OomEvent::Oom) => {}
            Some(berth_cgroups::OomEvent::CgroupRemoved) => return Ok(()),
            None => {}
        }
        let alive = super::load(root, id).is_ok_and(|c| c.status != Status::Stopped);
        if !alive {
            return Ok(());
        }
        let Ok(stats) = cgroup.stats() else { return Ok(()) };
        if !emit(&json!({ "type": "stats", "id": id, "data": stats })) {
            return Ok(());
        }
    }
}
