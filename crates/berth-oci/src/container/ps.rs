//! `ps`: the container's processes, as `ps` prints them or as a list of pids.

use crate::state::{Root, Status};
use crate::{Error, Result};

/// The pids of container `id`.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let c = super::load(root, id)?;
    super::require(
        id,
        c.status,
        &[Status::Created, Status::Running, Status::Paused],
        "list the processes of",
    )?;
    let record = c
        .record
        .as_ref()
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    Ok(super::pids(record))
}

/// Runs `ps` with `ps_args` (default `-ef`) and keeps the header and the lines of the container's pids.
pub fn table(root: &Root, id: &str, ps_args: &[String]) -> Result<String> {
    let pids = pids(root, id)?;
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::sys("run ps", e))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "ps {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Usage("the ps output has no PID column".into()))?;
    let mut result = format!("{header}\n");
    for line in lines {
        if line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            result.push_str(line);
            result.push('\n');
        }
    }
    Ok(result)
}
