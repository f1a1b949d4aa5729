//! `list`: every container under the root with its status.

use crate::Result;
use crate::state::{OciState, Root, Status};

/// The OCI state of container `id`, as `state` prints it.
pub fn state(root: &Root, id: &str) -> Result<OciState> {
    let c = super::load(root, id)?;
    Ok(match c.record {
        None => OciState {
            oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
            id: id.to_string(),
            status: Status::Creating,
            pid: 0,
            bundle: Default::default(),
            rootfs: Default::default(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
        },
        Some(r) => OciState {
            oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
            id: r.id,
            status: c.status,
            pid: if c.status == Status::Stopped { 0 } else { r.pid },
            bundle: r.bundle,
            rootfs: r.rootfs,
            created: r.created,
            owner: owner_name(r.owner),
            annotations: r.annotations,
        },
    })
}

fn owner_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// The states of all containers; entries that vanish while listing are skipped.
pub fn list(root: &Root) -> Result<Vec<OciState>> {
    Ok(root.ids()?.iter().filter_map(|id| state(root, id).ok()).collect())
}
