//! cgroup v1: one directory per mounted hierarchy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};

use crate::devices;
use crate::error::{Error, Result};
use crate::fsutil::{self, write, write_if_exists};
use crate::stats::{self, Stats};

/// The controllers a v1 hierarchy can carry, as mount options name them.
pub(crate) const KNOWN: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// One mounted v1 hierarchy and the container's directory in it.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchy {
    /// Controllers of the hierarchy ("cpu", "cpuacct", or "name=systemd").
    pub controllers: Vec<String>,
    /// Where it is mounted (e.g. /sys/fs/cgroup/cpu,cpuacct).
    pub mount: PathBuf,
    /// The cgroup the mount shows at its top (not "/" inside a cgroup namespace or for a bind mount).
    pub mount_root: String,
    /// The container's directory.
    pub path: PathBuf,
}

impl Hierarchy {
    pub(crate) fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

/// Finds the v1 hierarchies mounted directly under `root`: from /proc/self/mountinfo, or, when none is
/// found there (a test's fake tree), from the names of the directories in `root`.
pub(crate) fn hierarchies(root: &Path) -> Result<Vec<Hierarchy>> {
    let mountinfo = fsutil::read(Path::new("/proc/self/mountinfo"))?;
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts = post.nth(1).unwrap_or("");
        let mut pre = pre.split(' ');
        let (Some(mount_root), Some(mount_point)) = (pre.nth(3), pre.next()) else {
            continue;
        };
        let mount = PathBuf::from(unescape(mount_point));
        if mount.parent() != Some(root) {
            continue;
        }
        let controllers: Vec<String> = superopts
            .split(',')
            .filter(|o| KNOWN.contains(o) || o.starts_with("name="))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() || out.iter().any(|h: &Hierarchy| h.mount == mount) {
            continue;
        }
        out.push(Hierarchy {
            controllers,
            mount,
            mount_root: unescape(mount_root),
            path: PathBuf::new(),
        });
    }
    if out.is_empty() {
        let entries = std::fs::read_dir(root).map_err(|source| Error::Read {
            path: root.to_owned(),
            source,
        })?;
        for e in entries.flatten() {
            // Symlinks such as cpu -> cpu,cpuacct name a hierarchy that is listed under its real name.
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let controllers: Vec<String> = if name == "systemd" {
                vec!["name=systemd".to_owned()]
            } else {
                name.split(',')
                    .filter(|c| KNOWN.contains(c))
                    .map(str::to_owned)
                    .collect()
            };
            if controllers.is_empty() {
                continue;
            }
            out.push(Hierarchy {
                controllers,
                mount: e.path(),
                mount_root: "/".to_owned(),
                path: PathBuf::new(),
            });
        }
    }
    if out.is_empty() {
        return Err(Error::NotMounted {
            path: root.to_owned(),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container's directories in every v1 hierarchy.
#[derive(Debug)]
pub(crate) struct V1 {
    pub hierarchies: Vec<Hierarchy>,
}

impl V1 {
    pub(crate) fn dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.path.as_path())
    }

    fn need(&self, controller: &'static str, what: &'static str) -> Result<&Path> {
        self.dir(controller)
            .ok_or(Error::HierarchyMissing { what, controller })
    }

    /// Checks what can be checked without touching the kernel.
    pub(crate) fn validate(&self, r: &LinuxResources) -> Result<()> {
        if let Some(u) = r.unified()
            && let Some(key) = u.keys().min()
        {
            return Err(Error::Unsupported {
                what: format!("the unified resource {key:?}"),
                mode: "v1",
            });
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() {
                self.need("net_cls", "network classID")?;
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                self.need("net_prio", "network priorities")?;
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            self.need("rdma", "rdma limits")?;
        }
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            self.need("hugetlb", "hugepage limits")?;
        }
        Ok(())
    }

    /// mkdir -p in every hierarchy; new cpuset directories get their parent's cpus and mems.
    pub(crate) fn create(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for h in &self.hierarchies {
            let first = created.len();
            fsutil::mkdir_p(&h.path, created)?;
            if h.has("cpuset") {
                // Every directory between the mount and the container's, top down: one another process just
                // created may still have empty cpus or mems (it copies them after its mkdir), and a cgroup
                // with an empty cpuset cannot take a process (ENOSPC).
                let mut chain: Vec<&Path> = h
                    .path
                    .ancestors()
                    .take_while(|d| d.starts_with(&h.mount) && *d != h.mount.as_path())
                    .collect();
                chain.reverse();
                for dir in chain {
                    let mine = created[first..].iter().any(|c| c == dir);
                    if mine || cpuset_is_empty(dir)? {
                        copy_cpuset_from_parent(dir)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn add_pid(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for h in &self.hierarchies {
            write(&h.path, "cgroup.procs", &pid, &h.controllers.join(","))?;
        }
        Ok(())
    }

    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(cpu) = r.cpu() {
            if let Some(dir) = self.dir("cpuset") {
                if let Some(c) = cpu.cpus() {
                    write(dir, "cpuset.cpus", c, "cpuset")?;
                }
                if let Some(m) = cpu.mems() {
                    write(dir, "cpuset.mems", m, "cpuset")?;
                }
            } else if cpu.cpus().is_some() || cpu.mems().is_some() {
                self.need("cpuset", "cpus and mems")?;
            }
            let wants_cpu = cpu.shares().is_some()
                || cpu.quota().is_some()
                || cpu.period().is_some()
                || cpu.burst().is_some()
                || cpu.idle().is_some()
                || cpu.realtime_period().is_some()
                || cpu.realtime_runtime().is_some();
            if wants_cpu {
                let dir = self.need("cpu", "CPU limits")?;
                if let Some(s) = cpu.shares().filter(|&s| s != 0) {
                    write(dir, "cpu.shares", &s.to_string(), "cpu")?;
                }
                // The realtime period must be set before the runtime, which must fit into it.
                if let Some(p) = cpu.realtime_period().filter(|&p| p != 0) {
                    write(dir, "cpu.rt_period_us", &p.to_string(), "cpu")?;
                }
                if let Some(rt) = cpu.realtime_runtime().filter(|&r| r != 0) {
                    write(dir, "cpu.rt_runtime_us", &rt.to_string(), "cpu")?;
                }
                let period = cpu.period().filter(|&p| p != 0).map(|p| p.to_string());
                let quota = cpu
                    .quota()
                    .filter(|&q| q != 0)
                    .map(|q| if q < 0 { -1 } else { q }.to_string());
                // A new period can conflict with the old quota (and the reverse): on EINVAL try the other order.
                let set_period = |p: &String| write(dir, "cpu.cfs_period_us", p, "cpu");
                match (&period, &quota) {
                    (Some(p), Some(q)) => {
                        if let Err(e) = set_period(p) {
                            if !is_einval(&e) {
                                return Err(e);
                            }
                            write(dir, "cpu.cfs_quota_us", q, "cpu")?;
                            set_period(p)?;
                        } else {
                            write(dir, "cpu.cfs_quota_us", q, "cpu")?;
                        }
                    }
                    (Some(p), None) => set_period(p)?,
                    (None, Some(q)) => write(dir, "cpu.cfs_quota_us", q, "cpu")?,
                    (None, None) => {}
                }
                if let Some(b) = cpu.burst() {
                    write(dir, "cpu.cfs_burst_us", &b.to_string(), "cpu")?;
                }
                if let Some(i) = cpu.idle() {
                    write(dir, "cpu.idle", &i.to_string(), "cpu")?;
                }
            }
        }

        if let Some(mem) = r.memory() {
            let dir = self.need("memory", "memory limits")?;
            if let Some(true) = mem.check_before_update()
                && let Some(limit) = mem.limit().filter(|&l| l > 0)
            {
                let usage = fsutil::read_u64_opt(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0);
                if usage > limit as u64 {
                    return Err(Error::InvalidValue {
                        what: "memory limit",
                        value: limit.to_string(),
                        reason: "it is below the cgroup's current memory usage",
                    });
                }
            }
            let limit = mem.limit().filter(|&l| l != 0);
            // As runc: swap 0 means unset; memory -1 without swap makes memsw unlimited too.
            let swap = match (limit, mem.swap().filter(|&s| s != 0)) {
                (Some(-1), None) => Some(-1),
                (_, s) => s,
            };
            let set_limit = |v: i64| write(dir, "memory.limit_in_bytes", &v.to_string(), "memory");
            let set_swap = |v: i64| -> Result<()> {
                if write_if_exists(dir, "memory.memsw.limit_in_bytes", &v.to_string())? || v == -1 {
                    Ok(())
                } else {
                    Err(Error::ControllerMissing {
                        controller: "memory (swap accounting)".into(),
                        path: dir.join("memory.memsw.limit_in_bytes"),
                        value: v.to_string(),
                    })
                }
            };
            match (limit, swap) {
                (Some(l), Some(s)) => {
                    // memsw must stay >= the limit: raising both needs memsw first.
                    if let Err(e) = set_limit(l) {
                        if !is_einval(&e) {
                            return Err(e);
                        }
                        set_swap(s)?;
                        set_limit(l)?;
                    } else {
                        set_swap(s)?;
                    }
                }
                (Some(l), None) => set_limit(l)?,
                (None, Some(s)) => set_swap(s)?,
                (None, None) => {}
            }
            // 0 means "not set" for these, as runc reads them (dockerd sends zeros for what the user left out).
            if let Some(v) = mem.reservation().filter(|&v| v != 0) {
                write(dir, "memory.soft_limit_in_bytes", &v.to_string(), "memory")?;
            }
            // Kernel memory limits: the files are gone (or ignored) on new kernels; skip them then, as runc does.
            if let Some(v) = mem.kernel().filter(|&v| v != 0) {
                write_if_exists(dir, "memory.kmem.limit_in_bytes", &v.to_string())?;
            }
            if let Some(v) = mem.kernel_tcp().filter(|&v| v != 0) {
                write_if_exists(dir, "memory.kmem.tcp.limit_in_bytes", &v.to_string())?;
            }
            if let Some(v) = mem.swappiness() {
                if v > 100 {
                    return Err(Error::InvalidValue {
                        what: "memory swappiness",
                        value: v.to_string(),
                        reason: "it must be between 0 and 100",
                    });
                }
                write(dir, "memory.swappiness", &v.to_string(), "memory")?;
            }
            if let Some(d) = mem.disable_oom_killer() {
                write(dir, "memory.oom_control", if d { "1" } else { "0" }, "memory")?;
            }
            if let Some(h) = mem.use_hierarchy() {
                write(dir, "memory.use_hierarchy", if h { "1" } else { "0" }, "memory")?;
            }
        }

        if let Some(p) = r.pids() {
            let dir = self.need("pids", "the pids limit")?;
            match p.limit() {
                0 => {}
                l if l < 0 => write(dir, "pids.max", "max", "pids")?,
                l => write(dir, "pids.max", &l.to_string(), "pids")?,
            }
        }

        // A weight of 0 means "not set" (dockerd always sends `blockIO: {weight: 0}`), as runc reads it.
        if let Some(b) = r.block_io().as_ref().filter(|b| crate::blkio_is_set(b)) {
            let dir = self.need("blkio", "block I/O limits")?;
            if let Some(w) = b.weight().filter(|&w| w != 0) {
                // CFQ's file, or BFQ's where CFQ is gone.
                if !write_if_exists(dir, "blkio.weight", &w.to_string())? {
                    write(dir, "blkio.bfq.weight", &w.to_string(), "blkio")?;
                }
            }
            if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
                write(dir, "blkio.leaf_weight", &w.to_string(), "blkio")?;
            }
            for d in b.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    let line = format!("{}:{} {w}", d.major(), d.minor());
                    if !write_if_exists(dir, "blkio.weight_device", &line)? {
                        write(dir, "blkio.bfq.weight_device", &line, "blkio")?;
                    }
                }
                if let Some(w) = d.leaf_weight() {
                    write(
                        dir,
                        "blkio.leaf_weight_device",
                        &format!("{}:{} {w}", d.major(), d.minor()),
                        "blkio",
                    )?;
                }
            }
            let throttle = |file: &str, list: &Option<Vec<LinuxThrottleDevice>>| -> Result<()> {
                for d in list.iter().flatten() {
                    write(
                        dir,
                        file,
                        &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                        "blkio",
                    )?;
                }
                Ok(())
            };
            throttle("blkio.throttle.read_bps_device", b.throttle_read_bps_device())?;
            throttle("blkio.throttle.write_bps_device", b.throttle_write_bps_device())?;
            throttle("blkio.throttle.read_iops_device", b.throttle_read_iops_device())?;
            throttle("blkio.throttle.write_iops_device", b.throttle_write_iops_device())?;
        }

        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            let dir = self.need("hugetlb", "hugepage limits")?;
            for l in h {
                crate::check_page_size(l.page_size())?;
                let v = l.limit().to_string();
                write(
                    dir,
                    &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                    &v,
                    "hugetlb",
                )?;
                write_if_exists(dir, &format!("hugetlb.{}.rsvd.limit_in_bytes", l.page_size()), &v)?;
            }
        }

        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let dir = self.need("net_cls", "network classID")?;
                write(dir, "net_cls.classid", &id.to_string(), "net_cls")?;
            }
            if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
                let dir = self.need("net_prio", "network priorities")?;
                for p in prios {
                    write(
                        dir,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                        "net_prio",
                    )?;
                }
            }
        }

        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            let dir = self.need("rdma", "rdma limits")?;
            for (dev, l) in rdma {
                write(dir, "rdma.max", &crate::rdma_line(dev, l), "rdma")?;
            }
        }

        if let Some(list) = r.devices() {
            let dir = self.need("devices", "device rules")?;
            let rules = devices::rules(list)?;
            // Start from nothing, then each rule in order, as runc does.
            write(dir, "devices.deny", "a", "devices")?;
            for rule in &rules {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(dir, file, &rule.v1_line(), "devices")?;
            }
        }
        Ok(())
    }

    pub(crate) fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self.need("freezer", if frozen { "freezing" } else { "thawing" })?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let state_file = dir.join("freezer.state");
        let start = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut pause = Duration::from_micros(100);
        let mut tries = 0u32;
        loop {
            // Writing again helps tasks that were forking while the freeze started (runc does the same).
            if tries.is_multiple_of(10) {
                write(dir, "freezer.state", want, "freezer")?;
            }
            tries += 1;
            if fsutil::read(&state_file)?.trim() == want {
                return Ok(());
            }
            if start.elapsed() > timeout {
                if frozen {
                    // Do not leave the container half-frozen.
                    let _ = write(dir, "freezer.state", "THAWED", "freezer");
                }
                return Err(Error::FreezeTimeout {
                    path: state_file,
                    state: want,
                    millis: timeout.as_millis(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// The hierarchy whose cgroup.procs is read for the process list.
    pub(crate) fn procs_dir(&self) -> &Path {
        ["pids", "freezer", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.dir(c))
            .unwrap_or_else(|| self.hierarchies[0].path.as_path())
    }

    pub(crate) fn stats(&self) -> Result<Stats> {
        let mut st = Stats::default();
        stats::v1_cpu(self.dir("cpu"), self.dir("cpuacct"), &mut st.cpu)?;
        if let Some(d) = self.dir("memory") {
            stats::v1_memory(d, &mut st.memory)?;
        }
        if let Some(d) = self.dir("pids") {
            stats::pids(d, &mut st.pids)?;
        }
        if let Some(d) = self.dir("blkio") {
            stats::v1_blkio(d, &mut st.blkio)?;
        }
        if let Some(d) = self.dir("hugetlb") {
            stats::v1_hugetlb(d, &mut st.hugetlb)?;
        }
        Ok(st)
    }

    pub(crate) fn memory_dir(&self) -> Result<&Path> {
        self.need("memory", "OOM notification")
    }
}

fn is_einval(e: &Error) -> bool {
    matches!(e, Error::Write { source, .. } if source.raw_os_error() == Some(libc::EINVAL))
}

/// A new cpuset cgroup starts with empty cpus and mems, which makes joining it fail with ENOSPC.
/// Whether `dir` has an empty `cpuset.cpus` or `cpuset.mems` (a missing file, in a fake tree, is not empty).
fn cpuset_is_empty(dir: &Path) -> Result<bool> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fsutil::read_opt(&dir.join(file))?.is_some_and(|v| v.trim().is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn copy_cpuset_from_parent(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Some(value) = fsutil::read_opt(&parent.join(file))? else {
            continue;
        };
        let value = value.trim();
        // The file is always there in a real cpuset hierarchy; a fake tree may lack it.
        if !value.is_empty() {
            write_if_exists(dir, file, value)?;
        }
    }
    Ok(())
}
