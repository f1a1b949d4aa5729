//! cgroup v2: one directory in the unified hierarchy.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxMemory, LinuxResources};
use rustix::event::{PollFd, PollFlags};

use crate::devices;
use crate::error::{Error, Result};
use crate::fsutil::{self, keyed_value, write, write_if_exists};

/// The container's directory in the unified hierarchy.
#[derive(Debug)]
pub(crate) struct V2 {
    pub path: PathBuf,
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), the linear mapping runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// blkio.weight (10..1000) to io.weight (1..10000), as runc converts it.
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

/// The value for memory.swap.max: the spec's swap is memory+swap (v1 semantics), v2 limits swap alone.
/// `None` leaves the file alone. Follows runc: swap 0 means unset, -1 unlimited.
pub fn swap_max(mem: &LinuxMemory) -> Result<Option<String>> {
    let limit = mem.limit().unwrap_or(0);
    let swap = mem.swap().unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    if swap == -1 {
        return Ok(Some("max".into()));
    }
    if swap == 0 {
        return Ok(None);
    }
    if swap < 0 {
        return Err(Error::InvalidValue {
            what: "memory swap",
            value: swap.to_string(),
            reason: "only -1 (unlimited) may be negative",
        });
    }
    if limit <= 0 {
        return Err(Error::InvalidValue {
            what: "memory swap",
            value: swap.to_string(),
            reason: "a swap limit needs a memory limit on cgroup v2",
        });
    }
    if swap < limit {
        return Err(Error::InvalidValue {
            what: "memory swap",
            value: swap.to_string(),
            reason: "memory+swap must not be less than the memory limit",
        });
    }
    Ok(Some((swap - limit).to_string()))
}

/// "max" for negative numbers, the number otherwise.
fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The controller that owns a v2 interface file ("memory" for "memory.max").
fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

fn put(dir: &Path, file: &str, value: &str) -> Result<()> {
    write(dir, file, value, controller_of(file))
}

impl V2 {
    /// Checks what can be checked without touching the kernel.
    pub(crate) fn validate(&self, r: &LinuxResources) -> Result<()> {
        let unsupported = |what: &str| Error::Unsupported {
            what: what.to_owned(),
            mode: "v2",
        };
        if let Some(cpu) = r.cpu()
            && (cpu.realtime_period().is_some_and(|v| v != 0)
                || cpu.realtime_runtime().is_some_and(|v| v != 0))
        {
            return Err(unsupported(
                "realtime CPU scheduling (realtimePeriod, realtimeRuntime)",
            ));
        }
        if let Some(mem) = r.memory() {
            swap_max(mem)?;
            if mem.swappiness().is_some() {
                return Err(unsupported("memory swappiness"));
            }
            if mem.disable_oom_killer() == Some(true) {
                return Err(unsupported("disabling the OOM killer"));
            }
        }
        if let Some(b) = r.block_io()
            && (b.leaf_weight().is_some_and(|w| w != 0)
                || b.weight_device()
                    .iter()
                    .flatten()
                    .any(|d| d.leaf_weight().is_some()))
        {
            return Err(unsupported("block I/O leaf weights"));
        }
        if let Some(n) = r.network()
            && (n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()))
        {
            return Err(unsupported("network classID and priorities (net_cls, net_prio)"));
        }
        for key in r.unified().iter().flat_map(|u| u.keys()) {
            check_unified_key(key)?;
        }
        Ok(())
    }

    /// mkdir -p, then enables the parent's controllers in each new directory's parent (and the deepest
    /// existing ancestor), so that the leaf gets every controller its ancestors offer.
    pub(crate) fn create(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        let first = created.len();
        fsutil::mkdir_p(&self.path, created)?;
        for dir in &created[first..] {
            if let Some(parent) = dir.parent() {
                enable_controllers(parent)?;
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<()> {
        let dir = self.path.as_path();
        if let Some(cpu) = r.cpu() {
            if let Some(w) = cpu.shares().map(shares_to_weight).filter(|&w| w != 0) {
                put(dir, "cpu.weight", &w.to_string())?;
            }
            let quota = cpu.quota().unwrap_or(0);
            let period = cpu.period().unwrap_or(0);
            if quota != 0 || period != 0 {
                let q = if quota > 0 {
                    quota.to_string()
                } else {
                    "max".into()
                };
                let p = if period != 0 { period } else { 100_000 };
                put(dir, "cpu.max", &format!("{q} {p}"))?;
            }
            if let Some(b) = cpu.burst() {
                put(dir, "cpu.max.burst", &b.to_string())?;
            }
            if let Some(i) = cpu.idle() {
                put(dir, "cpu.idle", &i.to_string())?;
            }
            if let Some(c) = cpu.cpus() {
                put(dir, "cpuset.cpus", c)?;
            }
            if let Some(m) = cpu.mems() {
                put(dir, "cpuset.mems", m)?;
            }
        }
        if let Some(mem) = r.memory() {
            if let Some(true) = mem.check_before_update()
                && let Some(limit) = mem.limit().filter(|&l| l > 0)
            {
                let usage = fsutil::read_u64_opt(&dir.join("memory.current"))?.unwrap_or(0);
                if usage > limit as u64 {
                    return Err(Error::InvalidValue {
                        what: "memory limit",
                        value: limit.to_string(),
                        reason: "it is below the cgroup's current memory usage",
                    });
                }
            }
            // Swap first: lowering memory.max may push pages out to swap.
            if let Some(s) = swap_max(mem)? {
                put(dir, "memory.swap.max", &s)?;
            }
            if let Some(l) = mem.limit().filter(|&l| l != 0) {
                put(dir, "memory.max", &max_or(l))?;
            }
            if let Some(v) = mem.reservation().filter(|&v| v != 0) {
                put(dir, "memory.low", &max_or(v))?;
            }
            // kernel and kernelTCP have no v2 files: ignored, as runc does.
        }
        if let Some(p) = r.pids() {
            match p.limit() {
                0 => {}
                l => put(dir, "pids.max", &max_or(l))?,
            }
        }
        if let Some(b) = r.block_io() {
            // BFQ takes blkio's weight range as it is; io.weight wants it converted.
            if let Some(w) = b.weight().filter(|&w| w != 0)
                && !write_if_exists(dir, "io.bfq.weight", &w.to_string())?
            {
                put(
                    dir,
                    "io.weight",
                    &format!("default {}", blkio_weight_to_io_weight(w)),
                )?;
            }
            for d in b.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    let bfq = format!("{}:{} {w}", d.major(), d.minor());
                    if !write_if_exists(dir, "io.bfq.weight", &bfq)? {
                        let line = format!("{}:{} {}", d.major(), d.minor(), blkio_weight_to_io_weight(w));
                        put(dir, "io.weight", &line)?;
                    }
                }
            }
            let lists = [
                ("rbps", b.throttle_read_bps_device()),
                ("wbps", b.throttle_write_bps_device()),
                ("riops", b.throttle_read_iops_device()),
                ("wiops", b.throttle_write_iops_device()),
            ];
            for (key, list) in lists {
                for d in list.iter().flatten() {
                    let rate = if d.rate() == 0 {
                        "max".to_owned()
                    } else {
                        d.rate().to_string()
                    };
                    put(
                        dir,
                        "io.max",
                        &format!("{}:{} {key}={rate}", d.major(), d.minor()),
                    )?;
                }
            }
        }
        for l in r.hugepage_limits().iter().flatten() {
            crate::check_page_size(l.page_size())?;
            let v = max_or(l.limit());
            put(dir, &format!("hugetlb.{}.max", l.page_size()), &v)?;
            write_if_exists(dir, &format!("hugetlb.{}.rsvd.max", l.page_size()), &v)?;
        }
        if let Some(rdma) = r.rdma() {
            for (dev, l) in rdma {
                put(dir, "rdma.max", &crate::rdma_line(dev, l))?;
            }
        }
        if let Some(list) = r.devices() {
            let rules = devices::rules(list)?;
            devices::apply_v2(dir, &rules)?;
        }
        if let Some(u) = r.unified() {
            // Sorted, so that errors and the order of writes do not depend on the map's order.
            let mut keys: Vec<_> = u.iter().collect();
            keys.sort();
            for (key, value) in keys {
                check_unified_key(key)?;
                put(dir, key, value)?;
            }
        }
        Ok(())
    }

    /// cgroup.freeze, then waits for "frozen 1" (or 0) in cgroup.events.
    pub(crate) fn set_frozen(&self, frozen: bool) -> Result<()> {
        let want = if frozen { 1 } else { 0 };
        write(&self.path, "cgroup.freeze", &want.to_string(), "freezer")?;
        let events = self.path.join("cgroup.events");
        let file = std::fs::File::open(&events).map_err(|source| Error::Read {
            path: events.clone(),
            source,
        })?;
        let timeout = Duration::from_secs(5);
        let start = Instant::now();
        loop {
            if keyed_value(&fsutil::read(&events)?, "frozen") == Some(want) {
                return Ok(());
            }
            let elapsed = start.elapsed();
            if elapsed > timeout {
                if frozen {
                    let _ = write(&self.path, "cgroup.freeze", "0", "freezer");
                }
                return Err(Error::FreezeTimeout {
                    path: events,
                    state: if frozen { "frozen" } else { "thawed" },
                    millis: timeout.as_millis(),
                });
            }
            // cgroup.events signals changes with POLLPRI; a short timeout covers a missed edge.
            let fd = file.as_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
            let ts = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(n) if n > 0 && !fds[0].revents().contains(PollFlags::PRI) => {
                    // Not a kernfs file (a test's stand-in): do not spin.
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => {}
            }
        }
    }

    /// SIGKILL through cgroup.kill; `false` when the kernel has no cgroup.kill (before 5.14).
    pub(crate) fn kill(&self) -> Result<bool> {
        write_if_exists(&self.path, "cgroup.kill", "1")
    }
}

/// Enables in `dir`'s cgroup.subtree_control every controller listed in its cgroup.controllers that is not
/// enabled yet. A controller the kernel refuses (e.g. EBUSY because `dir` has processes) is skipped: the
/// resource files it would provide are then missing, which `apply` reports by name.
fn enable_controllers(dir: &Path) -> Result<()> {
    let Some(available) = fsutil::read_opt(&dir.join("cgroup.controllers"))? else {
        return Ok(());
    };
    let enabled = fsutil::read_opt(&dir.join("cgroup.subtree_control"))?.unwrap_or_default();
    let missing: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if fsutil::write_raw(&dir.join("cgroup.subtree_control"), &all.join(" ")).is_err() {
        for c in all {
            let _ = fsutil::write_raw(&dir.join("cgroup.subtree_control"), &c);
        }
    }
    Ok(())
}

/// A `unified` key must name an interface file of the cgroup itself: "controller.name", no slashes, and not
/// one of the core files whose writes would move processes or change the tree.
fn check_unified_key(key: &str) -> Result<()> {
    let bad = |reason| Error::InvalidValue {
        what: "unified key",
        value: format!("{key:?}"),
        reason,
    };
    if key.contains('/') || key.contains('\0') || key.starts_with('.') || !key.contains('.') {
        return Err(bad(
            "it must be the name of a cgroup interface file such as memory.high",
        ));
    }
    if matches!(
        key,
        "cgroup.procs"
            | "cgroup.threads"
            | "cgroup.subtree_control"
            | "cgroup.type"
            | "cgroup.kill"
            | "cgroup.freeze"
    ) {
        return Err(bad("the runtime manages this file itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxMemoryBuilder;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_arithmetic() {
        let m = |l: Option<i64>, s: Option<i64>| {
            let mut b = LinuxMemoryBuilder::default();
            if let Some(l) = l {
                b = b.limit(l);
            }
            if let Some(s) = s {
                b = b.swap(s);
            }
            b.build().unwrap()
        };
        assert_eq!(
            swap_max(&m(Some(100), Some(300))).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(swap_max(&m(Some(100), Some(100))).unwrap().as_deref(), Some("0"));
        assert_eq!(swap_max(&m(Some(100), Some(-1))).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(&m(Some(-1), None)).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(&m(Some(100), None)).unwrap(), None);
        let e = swap_max(&m(Some(100), Some(50))).unwrap_err();
        assert!(e.to_string().contains("50"), "{e}");
        assert!(swap_max(&m(None, Some(50))).is_err());
    }

    #[test]
    fn unified_keys_are_checked() {
        assert!(check_unified_key("memory.high").is_ok());
        assert!(check_unified_key("../memory.high").is_err());
        assert!(check_unified_key("cgroup.procs").is_err());
        assert!(check_unified_key("memory").is_err());
    }
}
