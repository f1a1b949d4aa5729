//! `berth-cgroups` puts cgroup v1 and cgroup v2 behind one interface for `berth-runtime` (and later the
//! daemon): create a container's cgroup, apply the OCI `linux.resources`, move processes in, freeze, thaw,
//! kill, read statistics, wait for OOM kills, and remove it again.
//!
//! The cgroup version is detected at run time ([`detect`]): `/sys/fs/cgroup` being a cgroup2 mount means
//! [`CgroupMode::V2`]; otherwise the v1 hierarchies mounted under it are used, and a cgroup2 mount at
//! `/sys/fs/cgroup/unified` only turns the mode into [`CgroupMode::Hybrid`], which behaves exactly like V1
//! (that hierarchy is left alone: on the machines we know it carries no controllers).
//!
//! Everything is synchronous and does only what the spec asks for: [`Cgroup::new`] computes paths (one read
//! of /proc/self/mountinfo for v1, one of /proc/self/cgroup for relative paths), [`Cgroup::create`] is one
//! mkdir per hierarchy in the common case, and [`Cgroup::apply`] opens, writes and closes one file per value.
//! No directory is walked except by the verbs that must (`pids`, `kill_all`, `destroy` of a nested tree).
//!
//! # Paths
//! The OCI `cgroupsPath` is interpreted as runc's cgroupfs driver does:
//! - absolute (`/a/b`): relative to the root of every hierarchy;
//! - relative (`a/b`): relative to the runtime's own cgroup in each hierarchy (from /proc/self/cgroup);
//! - systemd style `slice:prefix:name`: mapped to the path systemd would use, without talking to systemd
//!   (`system.slice:docker:id` → `/system.slice/docker-id.scope`, see [`path`] for the rules);
//! - absent: `/berth-runtime-<container id>`.
//!
//! Paths are normalised; one that climbs above the hierarchy root or resolves to the root itself is refused.
//!
//! # Removal
//! [`Cgroup::destroy`] never removes a directory that existed before: when this object ran
//! [`create`](Cgroup::create), exactly the directories it made are removed (deepest first); an object made
//! for a later `delete` (another process) removes only the container's own leaf directories.
//!
//! # Dependencies, and why
//! - `oci-spec`: the runtime spec's `LinuxResources` types, the input of [`Cgroup::apply`]; already used by
//!   `berth-oci`, so the runtime hands its parsed spec over as it is.
//! - `rustix`: typed, checked system calls without a C shim: statfs for detection, `open(O_PATH)` for
//!   `CLONE_INTO_CGROUP`, eventfd, inotify and poll for OOM and freeze notification.
//! - `libc`: the calls rustix does not wrap: bpf(2) for the v2 device filter, kill(2) with any signal number.
//! - `thiserror`: the error enum, each variant a sentence naming the file and value.
//! - `serde`: [`Stats`] serialises to the JSON of runc's `events --stats`.

pub mod devices;
pub mod error;
mod fsutil;
pub mod oom;
pub mod path;
pub mod stats;
mod v1;
pub mod v2;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::runtime::{LinuxRdma, LinuxResources};

pub use error::{Error, Result};
pub use oom::{OomEvent, OomWatcher};
pub use path::{OwnCgroup, own_cgroup_paths, parse_proc_cgroup};
pub use stats::Stats;

/// Where cgroup file systems are mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup version the machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 mount at `<root>/unified`; handled as [`CgroupMode::V1`].
    Hybrid,
    /// The unified hierarchy only.
    V2,
}

impl CgroupMode {
    /// `"v1"` or `"v2"`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V1 | CgroupMode::Hybrid => "v1",
            CgroupMode::V2 => "v2",
        }
    }
}

fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC)
}

/// Detects the mode of the machine (`/sys/fs/cgroup`).
pub fn detect() -> Result<CgroupMode> {
    detect_at(Path::new(DEFAULT_ROOT))
}

/// Detects the mode of cgroups mounted at `root`: `root` itself a cgroup2 → V2; `root/unified` a cgroup2 →
/// Hybrid; otherwise V1. A `root` that does not exist is an error.
pub fn detect_at(root: &Path) -> Result<CgroupMode> {
    if let Err(e) = rustix::fs::statfs(root) {
        return Err(Error::Read {
            path: root.to_owned(),
            source: e.into(),
        });
    }
    if is_cgroup2(root) {
        Ok(CgroupMode::V2)
    } else if is_cgroup2(&root.join("unified")) {
        Ok(CgroupMode::Hybrid)
    } else {
        Ok(CgroupMode::V1)
    }
}

#[derive(Debug)]
enum Inner {
    V1(v1::V1),
    V2(v2::V2),
}

/// One container's cgroup: its directory in every v1 hierarchy, or its one v2 directory.
#[derive(Debug)]
pub struct Cgroup {
    mode: CgroupMode,
    inner: Inner,
    /// The normalised path inside the hierarchies, for messages (for relative paths: as in the first one).
    rel: String,
    /// `None` until [`Cgroup::create`] ran on this object; then the directories it made, outermost first.
    created: Mutex<Option<Vec<PathBuf>>>,
}

impl Cgroup {
    /// The container's cgroup on this machine (mode detected, hierarchies under `/sys/fs/cgroup`).
    /// Computes paths only; nothing is created.
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<Self> {
        let root = Path::new(DEFAULT_ROOT);
        Self::with_root(root, detect_at(root)?, cgroups_path, container_id)
    }

    /// Like [`new`](Self::new) with another root and a given mode. For V1 the hierarchies are the cgroup
    /// mounts directly under `root` listed in /proc/self/mountinfo, or, when there are none, the
    /// subdirectories of `root` named after their controllers (`cpu,cpuacct`, `memory`, `systemd` for
    /// `name=systemd`), which lets tests use a fake tree of plain files.
    pub fn with_root(
        root: &Path,
        mode: CgroupMode,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Self> {
        let resolved = path::resolve(cgroups_path, container_id)?;
        let original = cgroups_path.unwrap_or(container_id);
        let mut own: Option<Vec<OwnCgroup>> = None;
        let mut own_for = |matches: &dyn Fn(&OwnCgroup) -> bool, name: &str| -> Result<String> {
            if own.is_none() {
                own = Some(own_cgroup_paths()?);
            }
            own.iter()
                .flatten()
                .find(|o| matches(o))
                .map(|o| o.path.clone())
                .ok_or_else(|| Error::OwnCgroupUnknown {
                    hierarchy: name.to_owned(),
                })
        };
        match mode {
            CgroupMode::V2 => {
                let rel = match &resolved {
                    path::Resolved::Absolute(p) => p.clone(),
                    path::Resolved::Relative(r) => {
                        let own = own_for(&|o| o.hierarchy_id == 0 && o.controllers.is_empty(), "cgroup2")?;
                        path::join_relative(original, &own, r)?
                    }
                };
                Ok(Self {
                    mode,
                    inner: Inner::V2(v2::V2 {
                        path: root.join(&rel),
                    }),
                    rel,
                    created: Mutex::new(None),
                })
            }
            CgroupMode::V1 | CgroupMode::Hybrid => {
                let mut hierarchies = v1::hierarchies(root)?;
                let mut first_rel = None;
                for h in &mut hierarchies {
                    let rel = match &resolved {
                        path::Resolved::Absolute(p) => p.clone(),
                        path::Resolved::Relative(r) => {
                            let ctrls = h.controllers.clone();
                            let own = own_for(
                                &|o| {
                                    o.hierarchy_id != 0
                                        && o.controllers.len() == ctrls.len()
                                        && o.controllers.iter().all(|c| ctrls.contains(c))
                                },
                                &h.controllers.join(","),
                            )?;
                            // Inside a cgroup namespace or a bind mount the mount shows a subtree.
                            let own = match own.strip_prefix(h.mount_root.as_str()) {
                                Some(rest) if h.mount_root != "/" => rest.to_owned(),
                                _ => own,
                            };
                            path::join_relative(original, &own, r)?
                        }
                    };
                    h.path = h.mount.join(&rel);
                    first_rel.get_or_insert(rel);
                }
                Ok(Self {
                    mode,
                    inner: Inner::V1(v1::V1 { hierarchies }),
                    rel: first_rel.unwrap_or_default(),
                    created: Mutex::new(None),
                })
            }
        }
    }

    /// The mode this cgroup is managed in.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The container's directories: one per v1 hierarchy, or the v2 directory.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.inner {
            Inner::V1(v) => v.hierarchies.iter().map(|h| h.path.clone()).collect(),
            Inner::V2(v) => vec![v.path.clone()],
        }
    }

    /// The container's directory for one v1 controller ("memory", "name=systemd"), or the v2 directory.
    pub fn path_of(&self, controller: &str) -> Option<PathBuf> {
        match &self.inner {
            Inner::V1(v) => v.dir(controller).map(Path::to_owned),
            Inner::V2(v) => Some(v.path.clone()),
        }
    }

    /// The normalised path inside the hierarchy (no leading slash), e.g. `berth-runtime-<id>`.
    pub fn relative_path(&self) -> &str {
        &self.rel
    }

    /// Creates the directories: in every v1 hierarchy (cpuset directories get their parent's cpus and
    /// mems), or the v2 directory (with the parents' controllers enabled for it where the kernel allows).
    /// On failure, what this call created is removed again.
    pub fn create(&self) -> Result<()> {
        let mut made = Vec::new();
        let r = match &self.inner {
            Inner::V1(v) => v.create(&mut made),
            Inner::V2(v) => v.create(&mut made),
        };
        if let Err(e) = r {
            let _ = self.remove_dirs(made.iter().rev());
            return Err(e);
        }
        let mut guard = self.created.lock().unwrap_or_else(|p| p.into_inner());
        guard.get_or_insert_with(Vec::new).extend(made);
        Ok(())
    }

    /// [`create`](Self::create), then [`apply`](Self::apply) when resources are given; if applying fails,
    /// the directories just created are removed and the error returned. The runtime's one call at create.
    pub fn setup(&self, resources: Option<&LinuxResources>) -> Result<()> {
        if let Some(r) = resources {
            self.validate(r)?;
        }
        self.create()?;
        if let Some(r) = resources
            && let Err(e) = self.apply(r)
        {
            let _ = self.destroy();
            return Err(e);
        }
        Ok(())
    }

    /// v2: an `O_PATH | O_DIRECTORY` descriptor of the cgroup for clone3's `CLONE_INTO_CGROUP`.
    /// v1: `None` (the child is moved with [`add_pid`](Self::add_pid)).
    pub fn dir_fd(&self) -> Result<Option<OwnedFd>> {
        match &self.inner {
            Inner::V1(_) => Ok(None),
            Inner::V2(v) => {
                use rustix::fs::{Mode, OFlags};
                rustix::fs::open(
                    &v.path,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map(Some)
                .map_err(|e| Error::Read {
                    path: v.path.clone(),
                    source: e.into(),
                })
            }
        }
    }

    /// Moves a process (all its threads) into the cgroup: cgroup.procs of every v1 hierarchy or of the
    /// v2 directory.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        match &self.inner {
            Inner::V1(v) => v.add_pid(pid),
            Inner::V2(v) => fsutil::write(&v.path, "cgroup.procs", &pid.to_string(), "cgroup"),
        }
    }

    /// Checks the resources against what this mode and these hierarchies support, without any system call.
    pub fn validate(&self, resources: &LinuxResources) -> Result<()> {
        if let Some(list) = resources.devices() {
            devices::rules(list)?;
        }
        for l in resources.hugepage_limits().iter().flatten() {
            check_page_size(l.page_size())?;
        }
        match &self.inner {
            Inner::V1(v) => v.validate(resources),
            Inner::V2(v) => v.validate(resources),
        }
    }

    /// Writes every resource of the spec that is set. What the mode or the kernel cannot do is an error
    /// naming it (checked before anything is written, where that is possible without the kernel); a value
    /// the kernel refuses is an error naming the file and the value.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.validate(resources)?;
        match &self.inner {
            Inner::V1(v) => v.apply(resources),
            Inner::V2(v) => v.apply(resources),
        }
    }

    /// Changes the resources of a running container; the same writes as [`apply`](Self::apply) (the v2
    /// device filter is replaced without a window without one).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.apply(resources)
    }

    /// Freezes every process of the cgroup and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        match &self.inner {
            Inner::V1(v) => v.set_frozen(true),
            Inner::V2(v) => v.set_frozen(true),
        }
    }

    /// Thaws the cgroup and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<()> {
        match &self.inner {
            Inner::V1(v) => v.set_frozen(false),
            Inner::V2(v) => v.set_frozen(false),
        }
    }

    /// The processes in the cgroup and in every cgroup below it (v1: as seen by the pids hierarchy, or
    /// freezer, memory, ... when that is not mounted).
    pub fn pids(&self) -> Result<Vec<i32>> {
        match &self.inner {
            Inner::V1(v) => fsutil::pids_recursive(v.procs_dir()),
            Inner::V2(v) => fsutil::pids_recursive(&v.path),
        }
    }

    /// Whether no process is left in the cgroup (or below it).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.pids()?.is_empty())
    }

    /// Sends `signal` to every process of the cgroup. v2 with SIGKILL writes cgroup.kill where the kernel has
    /// it; otherwise the cgroup is frozen (when it can be), every process signalled, and the cgroup thawed,
    /// so that no process can fork away meanwhile. Processes that exit meanwhile are not an error.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL
            && let Inner::V2(v) = &self.inner
            && v.kill()?
        {
            return Ok(());
        }
        let can_freeze = match &self.inner {
            Inner::V1(v) => v.dir("freezer").is_some(),
            Inner::V2(_) => true,
        };
        let frozen = can_freeze && self.freeze().is_ok();
        let mut result = Ok(());
        match self.pids() {
            Ok(pids) => {
                for pid in pids {
                    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                    let r = unsafe { libc::kill(pid, signal) };
                    if r != 0 {
                        let source = std::io::Error::last_os_error();
                        if source.raw_os_error() != Some(libc::ESRCH) && result.is_ok() {
                            result = Err(Error::Signal { pid, signal, source });
                        }
                    }
                }
            }
            Err(e) => result = Err(e),
        }
        if frozen {
            let thawed = self.thaw();
            if result.is_ok() {
                result = thawed;
            }
        }
        result
    }

    /// Resource usage, shaped like runc's `events --stats`. Counters of controllers that are not there are
    /// left at zero.
    pub fn stats(&self) -> Result<Stats> {
        match &self.inner {
            Inner::V1(v) => v.stats(),
            Inner::V2(v) => stats::v2(&v.path),
        }
    }

    /// Starts watching for OOM kills: v1 registers an eventfd for memory.oom_control through
    /// cgroup.event_control; v2 watches memory.events with inotify.
    pub fn oom_events(&self) -> Result<OomWatcher> {
        match &self.inner {
            Inner::V1(v) => OomWatcher::v1(v.memory_dir()?),
            Inner::V2(v) => OomWatcher::v2(&v.path),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup (0 when the kernel does not count it or
    /// the cgroup is gone).
    pub fn oom_kill_count(&self) -> Result<u64> {
        let n = match &self.inner {
            Inner::V1(v) => match v.dir("memory") {
                Some(d) => oom::oom_kill_count_v1(d)?,
                None => None,
            },
            Inner::V2(v) => oom::oom_kill_count_v2(&v.path.join("memory.events"))?,
        };
        Ok(n.unwrap_or(0))
    }

    /// Removes the cgroup's directories, child cgroups first, retrying EBUSY briefly (kill the processes
    /// first). Only directories this object created, or, for an object that did not run
    /// [`create`](Self::create), the container's own leaf directories. Missing directories are fine.
    pub fn destroy(&self) -> Result<()> {
        self.destroy_inner()
    }

    /// The directories [`Cgroup::create`] (or [`Cgroup::setup`]) made, parents first, for a caller that
    /// destroys the cgroup from another process later (see [`Cgroup::with_created`]).
    pub fn created_dirs(&self) -> Vec<PathBuf> {
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Tells this object which directories an earlier `create` made, so that [`Cgroup::destroy`] also removes
    /// the parents it made (when they are empty). Paths outside this cgroup's hierarchies are ignored.
    pub fn with_created(self, dirs: Vec<PathBuf>) -> Self {
        let roots: Vec<PathBuf> = self.paths();
        let ours: Vec<PathBuf> = dirs
            .into_iter()
            .filter(|d| roots.iter().any(|leaf| leaf.starts_with(d)))
            .collect();
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = Some(ours);
        self
    }

    fn destroy_inner(&self) -> Result<()> {
        let mut guard = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let dirs: Vec<PathBuf> = match guard.as_ref() {
            Some(made) => made.iter().rev().cloned().collect(),
            None => self.paths(),
        };
        let r = self.remove_dirs(dirs.iter());
        if let Some(made) = guard.as_mut() {
            made.retain(|d| d.exists());
        }
        r
    }

    /// Removes `dirs` in the order given: the container's leaf directories with their child cgroups,
    /// parents only when empty (another container may live there; that is not an error).
    fn remove_dirs<'a>(&self, dirs: impl Iterator<Item = &'a PathBuf>) -> Result<()> {
        let leaves = self.paths();
        let mut first_err = None;
        for dir in dirs {
            let r = if leaves.contains(dir) {
                fsutil::rmdir_tree(dir)
            } else {
                fsutil::rmdir_if_unused(dir)
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A hugepage size must be a plain name such as "2MB".
pub(crate) fn check_page_size(size: &str) -> Result<()> {
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidValue {
            what: "hugepage size",
            value: format!("{size:?}"),
            reason: "it must look like 2MB or 1GB",
        });
    }
    Ok(())
}

/// The rdma.max line for one device.
pub(crate) fn rdma_line(dev: &str, l: &LinuxRdma) -> String {
    let mut s = dev.to_owned();
    if let Some(h) = l.hca_handles() {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = l.hca_objects() {
        s.push_str(&format!(" hca_object={o}"));
    }
    s
}

/// Whether a `blockIO` section sets anything: zero weights mean "not set", as runc reads them (dockerd always
/// sends `blockIO: {weight: 0}`).
pub(crate) fn blkio_is_set(b: &oci_spec::runtime::LinuxBlockIo) -> bool {
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
        || b.throttle_read_bps_device()
            .as_ref()
            .is_some_and(|d| !d.is_empty())
        || b.throttle_write_bps_device()
            .as_ref()
            .is_some_and(|d| !d.is_empty())
        || b.throttle_read_iops_device()
            .as_ref()
            .is_some_and(|d| !d.is_empty())
        || b.throttle_write_iops_device()
            .as_ref()
            .is_some_and(|d| !d.is_empty())
}
