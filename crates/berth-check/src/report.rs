//! The report types `berth-check` prints, shared with the tests that read them.
//!
//! Every field that can fail to be read is a [`Probe`]: `Ok(value)` or `Err(sentence)`. One unreadable field
//! (say, `/proc` is not mounted) does not hide the others. In JSON a probe is `{"Ok": value}` or `{"Err": "..."}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value read best-effort: the value, or a sentence saying why it could not be read.
pub type Probe<T> = Result<T, String>;

/// Everything `berth-check report` sees from inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// `getpid()`: 1 when the check is the init of a new pid namespace.
    pub pid: i32,
    /// `getppid()`: 0 for the init of a pid namespace.
    pub ppid: i32,
    /// `getpgrp()`.
    pub pgid: i32,
    /// `getsid(0)`.
    pub sid: i32,
    /// `getuid()`.
    pub uid: u32,
    /// `geteuid()`.
    pub euid: u32,
    /// `getgid()`.
    pub gid: u32,
    /// `getegid()`.
    pub egid: u32,
    /// Supplementary groups, `getgroups()`.
    pub groups: Probe<Vec<u32>>,
    /// The file mode creation mask (`Umask` of `/proc/self/status`).
    pub umask: Probe<u32>,
    /// The working directory.
    pub cwd: Probe<String>,
    /// `uname().nodename`.
    pub hostname: Probe<String>,
    /// `uname().domainname`.
    pub domainname: Probe<String>,
    /// Lines of `/proc/self/uid_map`, as the kernel prints them.
    pub uid_map: Probe<Vec<String>>,
    /// Lines of `/proc/self/gid_map`, as the kernel prints them.
    pub gid_map: Probe<Vec<String>>,
    /// The five capability sets of `/proc/self/status`.
    pub capabilities: Probe<Capabilities>,
    /// `NoNewPrivs` of `/proc/self/status`.
    pub no_new_privs: Probe<bool>,
    /// `Seccomp` of `/proc/self/status`: 0 disabled, 1 strict, 2 filter.
    pub seccomp: Probe<u32>,
    /// `Seccomp_filters` of `/proc/self/status`: how many filters are attached.
    pub seccomp_filters: Probe<u32>,
    /// `/proc/self/mountinfo`, parsed.
    pub mounts: Probe<Vec<MountEntry>>,
    /// Every resource limit, keyed by name (`RLIMIT_NOFILE`, ...).
    pub rlimits: BTreeMap<String, Probe<Rlimit>>,
    /// Lines of `/proc/self/cgroup`.
    pub cgroup: Probe<Vec<String>>,
    /// The open file descriptors (the one used to list them is left out).
    pub fds: Probe<Vec<OpenFd>>,
    /// The environment, one `NAME=value` string per variable, in order.
    pub env: Vec<String>,
    /// The command line.
    pub argv: Vec<String>,
    /// Network interface names, from `/proc/net/dev` (or `/sys/class/net` when that fails).
    pub interfaces: Probe<Vec<String>>,
    /// Inode numbers of `/proc/self/ns/*`, keyed by the link name (`pid`, `mnt`, `net`, ...).
    pub namespaces: BTreeMap<String, Probe<u64>>,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Probe<i32>,
    /// What happened when the process opened `/proc/self/exe` for writing (it should fail, `ETXTBSY`).
    pub exe_write: WriteOutcome,
    /// Whether stdin, stdout and stderr are terminals.
    pub tty: StdioTty,
}

/// The five capability sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `CapInh`.
    pub inheritable: CapSet,
    /// `CapPrm`.
    pub permitted: CapSet,
    /// `CapEff`.
    pub effective: CapSet,
    /// `CapBnd`.
    pub bounding: CapSet,
    /// `CapAmb`.
    pub ambient: CapSet,
}

/// One capability set, raw and decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSet {
    /// The mask as `/proc/self/status` prints it (16 hex digits).
    pub hex: String,
    /// The names of the bits that are set (`CAP_CHOWN`, ...), lowest bit first; unknown bits are `CAP_<n>`.
    pub names: Vec<String>,
}

impl CapSet {
    /// Whether the set holds the capability `name` (`"CAP_KILL"`).
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// Mount id.
    pub mount_id: u32,
    /// Parent mount id.
    pub parent_id: u32,
    /// `major:minor` of the filesystem's device.
    pub major_minor: String,
    /// The directory of the filesystem that is mounted here (not `/` for bind mounts of a subdirectory).
    pub root: String,
    /// Where it is mounted, relative to the process's root.
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...).
    pub mount_options: Vec<String>,
    /// The optional fields: propagation (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`); empty when
    /// the mount is private.
    pub propagation: Vec<String>,
    /// Filesystem type (`proc`, `tmpfs`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Per-superblock options (`mode=755`, `size=65536k`, ...).
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether `option` is among the per-mount or the per-superblock options.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == option)
    }

    /// Whether the mount is read-only (per mount).
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }
}

/// A soft and hard resource limit; `u64::MAX` is `RLIM_INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// An open file descriptor and what it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFd {
    /// The descriptor number.
    pub fd: i32,
    /// The target of `/proc/self/fd/<fd>` (`/dev/null`, `pipe:[1234]`, ...).
    pub target: Probe<String>,
}

/// The result of trying to open or write a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Whether the operation succeeded.
    pub ok: bool,
    /// The errno name (`EROFS`, `EACCES`, ...) when it failed with one.
    pub errno: Option<String>,
    /// The error as a sentence when it failed.
    pub error: Option<String>,
}

/// Whether the standard descriptors are terminals (`isatty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioTty {
    /// fd 0.
    pub stdin: bool,
    /// fd 1.
    pub stdout: bool,
    /// fd 2.
    pub stderr: bool,
}

/// What `berth-check fds` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdsReport {
    /// The open file descriptors.
    pub fds: Probe<Vec<OpenFd>>,
}

impl CheckReport {
    /// The mount whose mount point is `mount_point`; the topmost one when several are stacked there.
    pub fn mount_at(&self, mount_point: &str) -> Option<&MountEntry> {
        self.mounts
            .as_ref()
            .ok()?
            .iter()
            .rev()
            .find(|m| m.mount_point == mount_point)
    }

    /// The value of the environment variable `name` (the first one, if it is set more than once).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            (key == name).then_some(value)
        })
    }

    /// The descriptor numbers that are open.
    pub fn fd_numbers(&self) -> Option<Vec<i32>> {
        Some(self.fds.as_ref().ok()?.iter().map(|f| f.fd).collect())
    }
}
