//! Seccomp: Berth's default profile, and profiles given with `--security-opt seccomp=<JSON>` in docker's format.
//!
//! The default profile is an allow list with `EPERM` for everything else, and blocks what Docker's default blocks:
//! the calls that need a capability the container does not hold (mount, namespaces, modules, clocks, reboot, BPF,
//! perf, ...), io_uring, keyrings (`add_key`, `keyctl`, `request_key`), `userfaultfd`, `kexec_*`, `swapon`, obsolete
//! calls (`uselib`, `ustat`, `sysfs`, `_sysctl`, `vm86`, `create_module`, ...), AF_ALG and AF_VSOCK sockets,
//! personalities other than the harmless ones, `clone` with namespace flags, and `clone3` (ENOSYS, so that libcs
//! fall back to `clone`, whose flags a filter can see). Rules that depend on a capability are included when the
//! container's bounding set holds it, as docker does.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde_json::{Map, Value};

use super::SpecError;

/// Reading, writing and moving data between descriptors.
#[rustfmt::skip]
const FILE_IO: &[&str] = &[
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "lseek", "_llseek", "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "readahead",
    "fadvise64", "fadvise64_64", "fallocate", "fsync", "fdatasync", "sync", "syncfs", "sync_file_range",
    "truncate", "truncate64", "ftruncate", "ftruncate64", "close", "close_range", "dup", "dup2", "dup3",
    "fcntl", "fcntl64", "flock", "ioctl", "pipe", "pipe2",
];

/// Creating, opening, renaming and changing files by path.
#[rustfmt::skip]
const PATHS: &[&str] = &[
    "open", "openat", "openat2", "creat", "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd",
    "mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
    "unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat",
    "fchmodat2", "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32", "umask", "utime",
    "utimes", "utimensat", "utimensat_time64", "futimesat", "name_to_handle_at",
];

/// Looking at files and mounts.
#[rustfmt::skip]
const STAT: &[&str] = &[
    "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx", "statfs",
    "statfs64", "fstatfs", "fstatfs64", "getdents", "getdents64", "statmount", "listmount",
];

/// Extended attributes.
#[rustfmt::skip]
const XATTR: &[&str] = &[
    "getxattr", "lgetxattr", "fgetxattr", "getxattrat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "listxattr", "llistxattr", "flistxattr", "listxattrat", "removexattr", "lremovexattr", "fremovexattr",
    "removexattrat",
];

/// Waiting for descriptors, signals and timers.
#[rustfmt::skip]
const EVENTS: &[&str] = &[
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old", "epoll_pwait",
    "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime",
    "timerfd_settime64", "timerfd_gettime", "timerfd_gettime64", "poll", "ppoll", "ppoll_time64", "select",
    "_newselect", "pselect6", "pselect6_time64",
];

/// Linux native asynchronous IO (io_uring stays blocked, as docker blocks it).
#[rustfmt::skip]
const AIO: &[&str] = &[
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
];

/// Mapping and managing memory.
#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock", "mlock2",
    "mlockall", "munlock", "munlockall", "membarrier", "memfd_create", "memfd_secret", "remap_file_pages",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack", "mseal", "cachestat",
];

/// Processes, limits, the calling thread, and self-restriction (seccomp, landlock).
#[rustfmt::skip]
const PROCESS: &[&str] = &[
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid", "kill", "tkill",
    "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "getpriority",
    "setpriority", "prctl", "prlimit64", "getrlimit", "setrlimit", "ugetrlimit", "getrusage", "times",
    "pidfd_open", "pidfd_send_signal", "process_mrelease", "set_tid_address", "set_robust_list",
    "get_robust_list", "rseq", "restart_syscall", "capget", "capset", "seccomp", "landlock_create_ruleset",
    "landlock_add_rule", "landlock_restrict_self", "uretprobe", "riscv_hwprobe", "get_thread_area",
    "set_thread_area", "ioprio_get", "ioprio_set", "getcpu", "sysinfo", "uname", "getrandom",
];

/// User and group ids (in the container's user namespace, or the host's: the kernel checks the capabilities).
#[rustfmt::skip]
const IDS: &[&str] = &[
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32", "getresuid",
    "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32", "setuid", "setuid32", "setgid",
    "setgid32", "setreuid", "setreuid32", "setregid", "setregid32", "setresuid", "setresuid32", "setresgid",
    "setresgid32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32",
];

/// Signal handling.
#[rustfmt::skip]
const SIGNALS: &[&str] = &[
    "rt_sigaction", "rt_sigprocmask", "rt_sigpending", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "sigaltstack", "sigprocmask", "sigreturn",
    "pause", "alarm",
];

/// Reading clocks, sleeping, timers (setting a clock needs CAP_SYS_TIME, below).
#[rustfmt::skip]
const TIME: &[&str] = &[
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
    "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "adjtimex", "clock_adjtime", "clock_adjtime64",
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "timer_getoverrun",
];

/// Futexes and scheduling.
#[rustfmt::skip]
const SCHED: &[&str] = &[
    "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "sched_yield",
    "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
];

/// Sockets (socket(2) itself is allowed per address family, below).
#[rustfmt::skip]
const SOCKETS: &[&str] = &[
    "socketpair", "socketcall", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "shutdown", "send", "sendto", "sendmsg", "sendmmsg", "recv", "recvfrom",
    "recvmsg", "recvmmsg", "recvmmsg_time64",
];

/// System V and POSIX message queues, semaphores, shared memory.
#[rustfmt::skip]
const IPC: &[&str] = &[
    "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semtimedop_time64",
    "semctl", "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
];

/// Every group above: allowed unconditionally.
const BASE: &[&[&str]] = &[
    FILE_IO, PATHS, STAT, XATTR, EVENTS, AIO, MEMORY, PROCESS, IDS, SIGNALS, TIME, SCHED, SOCKETS, IPC,
];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`:
/// the flags `clone` may not carry without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;
/// Address families `socket` refuses: AF_ALG (38) and AF_VSOCK (40).
const AF_ALG: u64 = 38;
const AF_NFC: u64 = 39;
const AF_VSOCK: u64 = 40;
/// Personalities a container may switch to: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, UNAME26|ADDR_NO_RANDOMIZE,
/// and the query value 0xffffffff.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
const ENOSYS: u32 = 38;

/// When a rule applies.
#[derive(Debug, Clone, Copy)]
enum When {
    /// Always.
    Always,
    /// The container holds this capability.
    Cap(&'static str),
    /// The container does not hold this capability.
    NoCap(&'static str),
}

/// A rule of the default profile.
struct Rule {
    names: &'static [&'static str],
    when: When,
    /// Architectures (as Rust's `target_arch`) the rule is for; empty: all.
    arches: &'static [&'static str],
    /// Architectures the rule is not for.
    not_arches: &'static [&'static str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    /// (argument index, operator, value); all must hold.
    args: &'static [(usize, LinuxSeccompOperator, u64)],
}

const fn allow(names: &'static [&'static str], when: When) -> Rule {
    Rule {
        names,
        when,
        arches: &[],
        not_arches: &[],
        action: LinuxSeccompAction::ScmpActAllow,
        errno: None,
        args: &[],
    }
}

const fn allow_on(names: &'static [&'static str], arches: &'static [&'static str]) -> Rule {
    Rule {
        arches,
        ..allow(names, When::Always)
    }
}

const fn allow_args(
    name: &'static [&'static str],
    args: &'static [(usize, LinuxSeccompOperator, u64)],
) -> Rule {
    Rule {
        args,
        ..allow(name, When::Always)
    }
}

use LinuxSeccompOperator::{ScmpCmpEq as EQ, ScmpCmpGt as GT, ScmpCmpLt as LT, ScmpCmpMaskedEq as MASKED_EQ};

/// The conditional rules, after [`BASE`].
const RULES: &[Rule] = &[
    // ptrace and cross-process memory access are safe with the seccomp-bypass fix (kernel 4.8, older than any
    // kernel Berth runs on).
    allow(&["process_vm_readv", "process_vm_writev", "ptrace"], When::Always),
    allow_args(&["socket"], &[(0, LT, AF_ALG)]),
    // AF_NFC, the one family between the two (two conditions on one argument would be OR-ed by runtimes).
    allow_args(&["socket"], &[(0, EQ, AF_NFC)]),
    allow_args(&["socket"], &[(0, GT, AF_VSOCK)]),
    allow_args(&["personality"], &[(0, EQ, PERSONALITIES[0])]),
    allow_args(&["personality"], &[(0, EQ, PERSONALITIES[1])]),
    allow_args(&["personality"], &[(0, EQ, PERSONALITIES[2])]),
    allow_args(&["personality"], &[(0, EQ, PERSONALITIES[3])]),
    allow_args(&["personality"], &[(0, EQ, PERSONALITIES[4])]),
    allow_on(&["arch_prctl", "modify_ldt"], &["x86_64"]),
    allow_on(&["modify_ldt"], &["x86"]),
    allow_on(&["sync_file_range2", "swapcontext"], &["powerpc64"]),
    allow_on(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        &["arm", "aarch64"],
    ),
    allow_on(
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        &["s390x"],
    ),
    allow_on(&["riscv_flush_icache"], &["riscv64"]),
    allow(&["open_by_handle_at"], When::Cap("CAP_DAC_READ_SEARCH")),
    allow(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        When::Cap("CAP_SYS_ADMIN"),
    ),
    // Without CAP_SYS_ADMIN: clone without namespace flags (the flags are argument 0, but argument 1 on s390).
    Rule {
        not_arches: &["s390x"],
        args: &[(0, MASKED_EQ, CLONE_NAMESPACE_FLAGS)],
        ..allow(&["clone"], When::NoCap("CAP_SYS_ADMIN"))
    },
    Rule {
        arches: &["s390x"],
        args: &[(1, MASKED_EQ, CLONE_NAMESPACE_FLAGS)],
        ..allow(&["clone"], When::NoCap("CAP_SYS_ADMIN"))
    },
    Rule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno: Some(ENOSYS),
        ..allow(&["clone3"], When::NoCap("CAP_SYS_ADMIN"))
    },
    allow(&["reboot"], When::Cap("CAP_SYS_BOOT")),
    allow(&["chroot"], When::Cap("CAP_SYS_CHROOT")),
    allow(
        &["delete_module", "init_module", "finit_module"],
        When::Cap("CAP_SYS_MODULE"),
    ),
    allow(&["acct"], When::Cap("CAP_SYS_PACCT")),
    allow(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        When::Cap("CAP_SYS_PTRACE"),
    ),
    allow(&["iopl", "ioperm"], When::Cap("CAP_SYS_RAWIO")),
    allow(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        When::Cap("CAP_SYS_TIME"),
    ),
    allow(&["vhangup"], When::Cap("CAP_SYS_TTY_CONFIG")),
    allow(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        When::Cap("CAP_SYS_NICE"),
    ),
    allow(&["syslog"], When::Cap("CAP_SYSLOG")),
    allow(&["bpf"], When::Cap("CAP_BPF")),
    allow(&["perf_event_open"], When::Cap("CAP_PERFMON")),
];

/// The seccomp architectures of this machine: the native one and those its CPU also runs (docker's archMap).
pub fn native_architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "powerpc64" if cfg!(target_endian = "little") => vec![Arch::ScmpArchPpc64le],
        "powerpc64" => vec![Arch::ScmpArchPpc64],
        "mips64" => vec![Arch::ScmpArchMips64, Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
        "loongarch64" => vec![Arch::ScmpArchLoongarch64],
        _ => Vec::new(),
    }
}

fn syscall(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names);
    rule.set_action(action);
    rule.set_errno_ret(errno);
    rule.set_args((!args.is_empty()).then_some(args));
    rule
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    // Every field is given and the builder defaults the rest, so building cannot fail.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
        .unwrap_or_default()
}

/// Berth's default profile for a container whose bounding set is `caps`, on architecture `arch` (Rust's
/// `target_arch` name).
pub fn profile_for(caps: &[String], arch: &str) -> LinuxSeccomp {
    let holds = |cap: &str| caps.iter().any(|c| c == cap);
    let mut syscalls = vec![syscall(
        BASE.iter()
            .flat_map(|g| g.iter())
            .map(|s| s.to_string())
            .collect(),
        LinuxSeccompAction::ScmpActAllow,
        None,
        Vec::new(),
    )];
    for rule in RULES {
        let applies = match rule.when {
            When::Always => true,
            When::Cap(cap) => holds(cap),
            When::NoCap(cap) => !holds(cap),
        };
        if !applies
            || (!rule.arches.is_empty() && !rule.arches.contains(&arch))
            || rule.not_arches.contains(&arch)
        {
            continue;
        }
        let args = rule.args.iter().map(|&(i, op, v)| arg(i, op, v)).collect();
        syscalls.push(syscall(
            rule.names.iter().map(|s| s.to_string()).collect(),
            rule.action,
            rule.errno,
            args,
        ));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc_eperm()));
    profile.set_architectures(Some(native_architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

const fn libc_eperm() -> u32 {
    1
}

/// Berth's default profile for a container with docker's default capabilities.
pub fn default_seccomp() -> LinuxSeccomp {
    let caps: Vec<String> = super::caps::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    profile_for(&caps, std::env::consts::ARCH)
}

/// Docker's name for this architecture in a profile's `includes.arches` / `excludes.arches`.
fn docker_arch_name(arch: &str) -> &'static str {
    match arch {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" => "mips64",
        "loongarch64" => "loong64",
        _ => "",
    }
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u64, u64) {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

fn parse_kernel(value: &Value) -> Result<Option<(u64, u64)>, SpecError> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s,
        other => {
            return Err(SpecError::SeccompProfile(format!(
                "invalid kernel version: {other}, expected \"<kernel>.<major>\""
            )));
        }
    };
    let bad = || {
        SpecError::SeccompProfile(format!(
            "invalid kernel version: \"{text}\", expected \"<kernel>.<major>\""
        ))
    };
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    let version = (
        major.parse::<u8>().map_err(|_| bad())?,
        minor.parse::<u8>().map_err(|_| bad())?,
    );
    if version == (0, 0) {
        return Err(bad());
    }
    Ok(Some((u64::from(version.0), u64::from(version.1))))
}

/// Whether a docker `includes`/`excludes` filter matches: every condition it sets holds (`all_caps`: every listed
/// capability must be held) — or, for excludes, any condition holds.
fn filter_matches(
    filter: &Map<String, Value>,
    caps: &[String],
    arch: &str,
    kernel: (u64, u64),
    exclude: bool,
) -> Result<bool, SpecError> {
    let strings = |key: &str| -> Vec<String> {
        filter
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let arches = strings("arches");
    let wanted_caps = strings("caps");
    let min_kernel = parse_kernel(filter.get("minKernel").unwrap_or(&Value::Null))?;
    let docker_arch = docker_arch_name(arch);
    if exclude {
        Ok(arches.iter().any(|a| a == docker_arch)
            || wanted_caps.iter().any(|c| caps.contains(c))
            || min_kernel.is_some_and(|k| kernel >= k))
    } else {
        Ok((arches.is_empty() || arches.iter().any(|a| a == docker_arch))
            && wanted_caps.iter().all(|c| caps.contains(c))
            && min_kernel.is_none_or(|k| kernel >= k))
    }
}

/// Turns a profile in docker's format (`archMap`, `syscalls[].name`/`names`, `includes`/`excludes` on
/// capabilities, architectures and kernel versions) into the runtime's. `None` when the profile has neither a
/// default action nor rules (docker treats that as no seccomp).
pub fn load_profile(json: &str, caps: &[String]) -> Result<Option<LinuxSeccomp>, SpecError> {
    load_profile_on(json, caps, std::env::consts::ARCH, kernel_version())
}

fn load_profile_on(
    json: &str,
    caps: &[String],
    arch: &str,
    kernel: (u64, u64),
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let invalid = |m: String| SpecError::SeccompProfile(m);
    let mut profile: Map<String, Value> = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let has_default = profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .is_some_and(|a| !a.is_empty());
    let rules = profile.remove("syscalls");
    let rules = match rules {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => rules,
        Some(other) => return Err(invalid(format!("syscalls must be a list, not {other}"))),
    };
    if !has_default && rules.is_empty() {
        return Ok(None);
    }
    let arch_map = profile.remove("archMap");
    let has_arch_map = arch_map
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let has_architectures = profile
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_arch_map && has_architectures {
        return Err(invalid(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or \
             'archMap'"
                .into(),
        ));
    }
    if let Some(Value::Array(entries)) = arch_map {
        let native = native_architectures();
        let native_name = native.first().and_then(|a| serde_json::to_value(a).ok());
        let mut arches = Vec::new();
        for entry in entries {
            if entry.get("architecture") == native_name.as_ref() && native_name.is_some() {
                if let Some(a) = entry.get("architecture") {
                    arches.push(a.clone());
                }
                if let Some(Value::Array(subs)) = entry.get("subArchitectures") {
                    arches.extend(subs.iter().cloned());
                }
                break;
            }
        }
        if !arches.is_empty() {
            profile.insert("architectures".into(), Value::Array(arches));
        }
    }
    let mut syscalls = Vec::new();
    for rule in rules {
        let Value::Object(mut rule) = rule else {
            return Err(invalid("a syscalls entry is not an object".into()));
        };
        let name = rule.remove("name");
        if let Some(Value::String(name)) = name.filter(|n| n.as_str().is_some_and(|s| !s.is_empty())) {
            if rule
                .get("names")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
            {
                return Err(invalid(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into(),
                ));
            }
            rule.insert("names".into(), Value::Array(vec![Value::String(name)]));
        }
        rule.remove("comment");
        if let Some(Value::Object(excludes)) = rule.remove("excludes")
            && filter_matches(&excludes, caps, arch, kernel, true)?
        {
            continue;
        }
        if let Some(Value::Object(includes)) = rule.remove("includes")
            && !filter_matches(&includes, caps, arch, kernel, false)?
        {
            continue;
        }
        syscalls.push(Value::Object(rule));
    }
    profile.insert("syscalls".into(), Value::Array(syscalls));
    serde_json::from_value(Value::Object(profile))
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The action the profile takes for `name` called with `args` (a tiny evaluator of the rule semantics).
    fn verdict(profile: &LinuxSeccomp, name: &str, args: &[u64]) -> (LinuxSeccompAction, Option<u32>) {
        for rule in profile.syscalls().as_ref().unwrap() {
            if !rule.names().iter().any(|n| n == name) {
                continue;
            }
            let ok = rule.args().as_ref().is_none_or(|conds| {
                conds.iter().all(|c| {
                    let v = args.get(c.index()).copied().unwrap_or(0);
                    match c.op() {
                        LinuxSeccompOperator::ScmpCmpEq => v == c.value(),
                        LinuxSeccompOperator::ScmpCmpLt => v < c.value(),
                        LinuxSeccompOperator::ScmpCmpGt => v > c.value(),
                        LinuxSeccompOperator::ScmpCmpMaskedEq => v & c.value() == c.value_two().unwrap_or(0),
                        other => panic!("operator {other:?} not used by the default profile"),
                    }
                })
            });
            if ok {
                return (rule.action(), rule.errno_ret());
            }
        }
        (profile.default_action(), profile.default_errno_ret())
    }

    fn allowed(profile: &LinuxSeccomp, name: &str, args: &[u64]) -> bool {
        verdict(profile, name, args).0 == LinuxSeccompAction::ScmpActAllow
    }

    #[test]
    fn base_groups_hold_no_duplicates() {
        let all: Vec<&str> = BASE.iter().flat_map(|g| g.iter().copied()).collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len());
        assert_eq!(all.len(), 361);
    }

    #[test]
    fn default_blocks_what_docker_blocks() {
        let p = default_seccomp();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        for blocked in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "swapon",
            "swapoff",
            "init_module",
            "finit_module",
            "delete_module",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "open_by_handle_at",
            "settimeofday",
            "clock_settime",
            "acct",
            "quotactl",
            "syslog",
            "sethostname",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "nfsservctl",
            "iopl",
            "ioperm",
            "kcmp",
            "pidfd_getfd",
            "fsopen",
            "move_mount",
            "open_tree",
            "lookup_dcookie",
            "vhangup",
            "mbind",
            "set_mempolicy",
            "create_module",
            "fanotify_init",
        ] {
            assert!(!allowed(&p, blocked, &[]), "{blocked} is allowed");
        }
        for ok in [
            "read",
            "openat",
            "execve",
            "clone",
            "ptrace",
            "chroot",
            "socket",
            "personality",
            "io_setup",
        ] {
            assert!(allowed(&p, ok, &[]), "{ok} is blocked");
        }
        if cfg!(target_arch = "x86_64") {
            assert!(allowed(&p, "arch_prctl", &[]));
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
        }
    }

    #[test]
    fn argument_rules() {
        let p = profile_for(&caps(&super::super::caps::DEFAULT_CAPS), "x86_64");
        // clone: no namespace flags without CAP_SYS_ADMIN; clone3 fails with ENOSYS.
        assert!(
            allowed(&p, "clone", &[0x0120_0011]),
            "fork: CHILD_SETTID|CHILD_CLEARTID|SIGCHLD"
        );
        assert!(!allowed(&p, "clone", &[0x1000_0000]), "CLONE_NEWUSER");
        assert!(!allowed(&p, "clone", &[0x0002_0000 | 0x11]), "CLONE_NEWNS");
        assert_eq!(
            verdict(&p, "clone3", &[]),
            (LinuxSeccompAction::ScmpActErrno, Some(ENOSYS))
        );
        // socket: AF_ALG and AF_VSOCK are refused.
        for (family, ok) in [
            (1, true),
            (2, true),
            (10, true),
            (16, true),
            (37, true),
            (38, false),
            (39, true),
            (40, false),
            (41, true),
        ] {
            assert_eq!(allowed(&p, "socket", &[family]), ok, "family {family}");
        }
        for (persona, ok) in [
            (0, true),
            (8, true),
            (0x20000, true),
            (0x20008, true),
            (0xffff_ffff, true),
            (0x0040_0000, false),
            (1, false),
        ] {
            assert_eq!(
                allowed(&p, "personality", &[persona]),
                ok,
                "personality {persona:#x}"
            );
        }
        // The s390 rules are not in an x86_64 profile.
        assert!(!allowed(&p, "s390_runtime_instr", &[]));
        let s390 = profile_for(&caps(&super::super::caps::DEFAULT_CAPS), "s390x");
        assert!(
            allowed(&s390, "clone", &[0x1000_0000, 0]),
            "s390 flags are argument 1"
        );
        assert!(!allowed(&s390, "clone", &[0, 0x1000_0000]));
    }

    #[test]
    fn no_rule_tests_one_argument_twice() {
        // Runtimes OR two conditions on the same argument (runc, crun, berth-runtime): a rule must not rely on
        // AND-ing them.
        for arch in ["x86_64", "aarch64", "s390x"] {
            let p = profile_for(&caps(&[]), arch);
            for rule in p.syscalls().as_ref().unwrap() {
                let indexes: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
                let unique: HashSet<usize> = indexes.iter().copied().collect();
                assert_eq!(indexes.len(), unique.len(), "{rule:?}");
            }
        }
    }

    #[test]
    fn capabilities_open_rules() {
        let p = profile_for(
            &caps(&[
                "CAP_SYS_ADMIN",
                "CAP_SYS_TIME",
                "CAP_SYS_PTRACE",
                "CAP_SYS_MODULE",
            ]),
            "x86_64",
        );
        for ok in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "clock_settime",
            "kcmp",
            "init_module",
            "clone3",
        ] {
            assert!(allowed(&p, ok, &[]), "{ok}");
        }
        assert!(
            allowed(&p, "clone", &[0x1000_0000]),
            "namespace flags with CAP_SYS_ADMIN"
        );
        assert!(!allowed(&p, "reboot", &[]));
        assert!(!allowed(&p, "chroot", &[]), "CAP_SYS_CHROOT not held");
    }

    #[test]
    fn the_profile_compiles_with_libseccomp_semantics() {
        // Every rule names something and no rule repeats the default action (libseccomp would refuse it).
        let p = default_seccomp();
        for rule in p.syscalls().as_ref().unwrap() {
            assert!(!rule.names().is_empty());
            assert!(
                rule.action() != p.default_action() || rule.errno_ret() != p.default_errno_ret(),
                "{rule:?}"
            );
        }
        // And it survives a JSON round trip (config.json).
        let json = serde_json::to_string(&p).unwrap();
        let back: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn docker_profiles_are_loaded() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.1"}}
            ]
        }"#;
        let p = load_profile_on(json, &caps(&["CAP_CHOWN"]), "x86_64", (6, 18))
            .unwrap()
            .unwrap();
        let names: Vec<Vec<String>> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.names().clone())
            .collect();
        assert_eq!(
            names,
            [
                vec!["read", "write"],
                vec!["mkdir"],
                vec!["chroot"],
                vec!["arch_prctl"],
                vec!["ptrace"]
            ]
            .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        );
        assert_eq!(p.syscalls().as_ref().unwrap()[1].errno_ret(), Some(13));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
        }
        let admin = load_profile_on(json, &caps(&["CAP_SYS_ADMIN"]), "aarch64", (4, 4))
            .unwrap()
            .unwrap();
        let names: Vec<String> = admin
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| r.names().clone())
            .collect();
        assert_eq!(names, ["read", "write", "mkdir", "mount"]);
    }

    #[test]
    fn bad_and_empty_profiles() {
        assert!(load_profile("{}", &[]).unwrap().is_none());
        assert!(load_profile(r#"{"syscalls": []}"#, &[]).unwrap().is_none());
        let err = load_profile("{nope", &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("Decoding seccomp profile failed: "),
            "{err}"
        );
        let err = load_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("both 'architectures' and 'archMap'"),
            "{err}"
        );
        let err = load_profile(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_BOGUS"), "{err}");
        let err = load_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("both 'name' and 'names'"), "{err}");
        let err = load_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["b"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4"}}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid kernel version"), "{err}");
    }
}
