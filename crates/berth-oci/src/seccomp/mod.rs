//! Seccomp filters from the runtime spec's `linux.seccomp`.
//!
//! [`compile`] turns the profile into a classic BPF program with libseccomp (the same library runc and crun use,
//! so a profile means the same thing under all three) and keeps only the program: a [`Filter`] holds no libseccomp
//! state, can be built in the runtime before the init is forked and moved into it, and [`Filter::load`] is a single
//! `seccomp(SECCOMP_SET_MODE_FILTER)` call. crun loads its exported program the same way, and runc loads libseccomp's
//! program through its own `seccomp(2)` call too.
//!
//! Generating the program is the expensive part (libseccomp takes ~10-20 ms for a Docker-sized profile with three
//! architectures), so [`compile_cached`] keeps programs in a cache directory keyed by the whole profile, as crun
//! does; a hit costs a file read.
//!
//! Semantics follow runc and crun:
//! - a syscall name libseccomp does not know (newer than the library, or of another architecture) is skipped;
//! - a rule whose action equals the default action is skipped (libseccomp rejects such rules);
//! - conditions on distinct arguments are AND-ed in one rule; when two conditions test the same argument, each
//!   condition becomes a rule of its own (so they are OR-ed), as runc and crun do;
//! - `errnoRet` defaults to `EPERM` for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`; on any other action it is an error,
//!   as the spec asks (and as crun does);
//! - `no_new_privs` is never set by the filter: it is the process's `noNewPrivileges` setting.
//!
//! # Where to load the filter
//!
//! Loading needs `no_new_privs` or `CAP_SYS_ADMIN`. With `noNewPrivileges`, load after setting it, as the last
//! step before the exec, so that the init's own calls (capabilities, user change, fifo) need not be allowed by the
//! profile. Without it, load while the init still has `CAP_SYS_ADMIN`, i.e. before dropping capabilities and
//! changing the user (runc's order); everything the init does afterwards, up to and including the exec
//! (`execveat`, or `execve` of `/proc/self/fd/N`), then has to pass the filter.
//!
//! With `SCMP_ACT_NOTIFY` rules, [`Filter::load`] returns the listener fd, which must reach the agent at
//! `listenerPath` (a host path, unreachable after `pivot_root`). The init writes the fd's number to the runtime
//! over the sync socket (writing must therefore not be notified: [`compile`] rejects a notify rule on `write`, as
//! runc does), the runtime takes the fd with [`take_listener_fd`] (`pidfd_getfd`), sends it with
//! [`send_to_listener`] and a state from [`process_state_json`], then tells the init to go on. The handover needs
//! the runtime, so a filter with a listener is loaded before the init waits on the exec fifo (runc's place for
//! every filter), with status `creating`.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::Serialize;
use thiserror::Error;

use crate::state::Status;

#[cfg(test)]
mod tests;

/// The errno returned by `SCMP_ACT_ERRNO` and passed by `SCMP_ACT_TRACE` when `errnoRet` is absent.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;
/// System calls take at most six arguments.
const MAX_ARGS: usize = 6;
/// Above this many syscall names, libseccomp is asked for a binary search tree of syscall numbers instead of a
/// linear list (runc's threshold: libseccomp up to 2.5.4 misbehaves with the tree and no rules). The tree makes
/// both the kernel's load (it evaluates the filter for every syscall number to build its action cache) and every
/// filtered syscall of the container cheaper.
const BINARY_TREE_THRESHOLD: usize = 32;
/// The longest program the kernel accepts.
const MAX_INSTRUCTIONS: usize = libc::BPF_MAXINSNS as usize;
/// The name of the listener fd in the container process state's `fds`.
const SECCOMP_FD_NAME: &str = "seccompFd";

/// Errors of compiling, loading and handing over a seccomp filter.
#[derive(Debug, Error)]
pub enum SeccompError {
    /// An argument index is out of range.
    #[error("seccomp rule {rule} tests argument {index}, but system calls have only arguments 0 to 5")]
    ArgIndex {
        /// Index of the rule in `syscalls`.
        rule: usize,
        /// The index given.
        index: usize,
    },
    /// An errno value does not fit the 16 bits the kernel passes on.
    #[error("seccomp {place} sets errnoRet {value}, but the value must be at most 65535")]
    ErrnoRange {
        /// `defaultErrnoRet` or the rule.
        place: String,
        /// The value given.
        value: u32,
    },
    /// `errnoRet` is set on an action that returns no errno.
    #[error(
        "seccomp {place} sets errnoRet {value} for {action}, which takes none: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do"
    )]
    ErrnoNotSupported {
        /// `defaultErrnoRet` or the rule.
        place: String,
        /// The action.
        action: LinuxSeccompAction,
        /// The value given.
        value: u32,
    },
    /// A rule has no syscall names, or an empty one.
    #[error("seccomp rule {rule} names no system call (names is empty or holds an empty string)")]
    NoNames {
        /// Index of the rule in `syscalls`.
        rule: usize,
    },
    /// The default action is `SCMP_ACT_NOTIFY`.
    #[error(
        "SCMP_ACT_NOTIFY cannot be the seccomp defaultAction: the init could not hand the listener over without being \
         notified itself"
    )]
    NotifyDefault,
    /// `write` is to be notified.
    #[error(
        "seccomp rule {rule} uses SCMP_ACT_NOTIFY for write: the init writes to hand the listener over, so write cannot \
         wait for the agent"
    )]
    NotifyOnWrite {
        /// Index of the rule in `syscalls`.
        rule: usize,
    },
    /// A notify rule but nowhere to send the listener.
    #[error(
        "seccomp rule {rule} uses SCMP_ACT_NOTIFY, but the profile sets no listenerPath to send the notifications to"
    )]
    NotifyWithoutListener {
        /// Index of the rule in `syscalls`.
        rule: usize,
    },
    /// Metadata without a listener.
    #[error("the seccomp profile sets listenerMetadata without listenerPath")]
    MetadataWithoutListener,
    /// libseccomp cannot make a filter for this architecture.
    #[error("seccomp architecture {arch} is not supported by this libseccomp: {source}")]
    Architecture {
        /// The architecture as the spec names it.
        arch: Arch,
        /// What libseccomp said.
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused a rule.
    #[error("cannot add the seccomp rule {rule} ({action}) for system call {syscall:?}: {source}")]
    Rule {
        /// Index of the rule in `syscalls`.
        rule: usize,
        /// The syscall name.
        syscall: String,
        /// The rule's action.
        action: LinuxSeccompAction,
        /// What libseccomp said.
        source: libseccomp::error::SeccompError,
    },
    /// Another libseccomp call failed.
    #[error("libseccomp cannot {what}: {source}")]
    Libseccomp {
        /// What was attempted.
        what: &'static str,
        /// What libseccomp said.
        source: libseccomp::error::SeccompError,
    },
    /// The program could not be read back from libseccomp.
    #[error("cannot read the seccomp program libseccomp generated: {0}")]
    Export(io::Error),
    /// The program is longer than the kernel takes.
    #[error(
        "the seccomp profile compiles to {0} BPF instructions, more than the kernel's limit of 4096; use fewer rules"
    )]
    TooLong(usize),
    /// The kernel refused the filter for lack of privilege.
    #[error(
        "cannot load the seccomp filter: permission denied; without noNewPrivileges the filter must be loaded while \
         the process still has CAP_SYS_ADMIN"
    )]
    LoadNotPermitted,
    /// The kernel refused the filter.
    #[error("cannot load the seccomp filter (flags {flags:#x}): {source}")]
    Load {
        /// The flags passed to seccomp(2).
        flags: u32,
        /// The kernel's error.
        source: io::Error,
    },
    /// SECCOMP_FILTER_FLAG_TSYNC failed for a thread.
    #[error(
        "cannot load the seccomp filter: thread {0} cannot be synchronized to it (SECCOMP_FILTER_FLAG_TSYNC)"
    )]
    Tsync(i64),
    /// The listener fd could not be taken from the process that loaded the filter.
    #[error("cannot take the seccomp listener fd {fd} from process {pid}: {source}")]
    TakeFd {
        /// The process.
        pid: i32,
        /// Its fd number.
        fd: RawFd,
        /// The cause.
        source: io::Error,
    },
    /// The container process state cannot be serialized.
    #[error("cannot serialize the container process state for the seccomp agent: {0}")]
    State(serde_json::Error),
    /// The state to send is empty.
    #[error("the container process state for the seccomp agent at {0} is empty")]
    EmptyState(PathBuf),
    /// The agent's socket could not be reached.
    #[error("cannot connect to the seccomp agent's socket {path}: {source}")]
    Connect {
        /// listenerPath.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Sending to the agent failed.
    #[error("cannot send the seccomp listener to the agent's socket {path}: {source}")]
    Send {
        /// listenerPath.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A compiled seccomp filter: the BPF program and the flags to load it with.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// seccomp(2) flags other than the listener's.
    flags: u32,
    /// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV was asked for (it only applies with a listener).
    wait_killable_recv: bool,
    /// Some rule uses SCMP_ACT_NOTIFY.
    listener: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("wait_killable_recv", &self.wait_killable_recv)
            .field("listener", &self.listener)
            .field("listener_path", &self.listener_path)
            .field("listener_metadata", &self.listener_metadata)
            .finish()
    }
}

impl Filter {
    /// Whether a rule uses `SCMP_ACT_NOTIFY`: then [`Filter::load`] returns a listener fd for the agent at
    /// [`Filter::listener_path`].
    pub fn needs_listener(&self) -> bool {
        self.listener
    }

    /// The agent's socket (`listenerPath`).
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// The opaque string for the agent (`listenerMetadata`).
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// The program's length in BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The seccomp(2) flags [`Filter::load`] passes.
    pub fn load_flags(&self) -> u32 {
        let mut flags = self.flags;
        if self.listener {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
            if flags & libc::SECCOMP_FILTER_FLAG_TSYNC as u32 != 0 {
                // TSYNC reports a failing thread as a positive return value, which a listener fd would be
                // indistinguishable from; this makes the kernel report ESRCH instead (libseccomp does the same).
                flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
            }
            if self.wait_killable_recv {
                flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;
            }
        }
        flags
    }

    /// Installs the filter on the calling thread (and, with `SECCOMP_FILTER_FLAG_TSYNC`, all its threads).
    ///
    /// Needs `no_new_privs` or `CAP_SYS_ADMIN`. Returns the listener fd (close-on-exec) when a rule uses
    /// `SCMP_ACT_NOTIFY`. Allocates nothing on success, so it can run in a forked child.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        let flags = self.load_flags();
        let Ok(len) = u16::try_from(self.program.len()) else {
            return Err(SeccompError::TooLong(self.program.len()));
        };
        let prog = libc::sock_fprog {
            len,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `len` initialized instructions that outlive the call; the kernel copies the
        // program and does not keep the pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(flags),
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EACCES) {
                SeccompError::LoadNotPermitted
            } else {
                SeccompError::Load { flags, source: err }
            });
        }
        if !self.listener {
            if ret > 0 {
                return Err(SeccompError::Tsync(ret));
            }
            return Ok(None);
        }
        let Ok(fd) = RawFd::try_from(ret) else {
            return Err(SeccompError::Load {
                flags,
                source: io::Error::other(format!(
                    "the kernel returned {ret}, which is not a file descriptor"
                )),
            });
        };
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful seccomp(2) returns a new fd that nothing else
        // owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Compiles `linux.seccomp` into a [`Filter`], validating it on the way.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default_action = action(seccomp.default_action(), seccomp.default_errno_ret(), || {
        "defaultErrnoRet".to_owned()
    })?;
    if default_action == ScmpAction::Notify {
        return Err(SeccompError::NotifyDefault);
    }
    let rules = seccomp.syscalls().as_deref().unwrap_or_default();
    let listener_path = seccomp.listener_path().clone();
    let listener_metadata = seccomp.listener_metadata().clone();
    if listener_metadata.is_some() && listener_path.is_none() {
        return Err(SeccompError::MetadataWithoutListener);
    }

    let mut ctx = ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Libseccomp {
        what: "create a filter",
        source,
    })?;
    for &arch in seccomp.architectures().as_deref().unwrap_or_default() {
        ctx.add_arch(scmp_arch(arch))
            .map_err(|source| SeccompError::Architecture { arch, source })?;
    }
    if rules.iter().map(|rule| rule.names().len()).sum::<usize>() > BINARY_TREE_THRESHOLD {
        // Only an optimization: older libseccomp versions lack it, and the filter is correct without it.
        let _ = ctx.set_ctl_optimize(2);
    }

    let mut listener = false;
    let mut conditions = Vec::with_capacity(MAX_ARGS);
    for (index, rule) in rules.iter().enumerate() {
        let rule_action = action(rule.action(), rule.errno_ret(), || format!("rule {index}"))?;
        let args = rule.args().as_deref().unwrap_or_default();
        let separate = split_conditions(index, args)?;
        if rule.names().is_empty() || rule.names().iter().any(String::is_empty) {
            return Err(SeccompError::NoNames { rule: index });
        }
        if rule_action == ScmpAction::Notify {
            if listener_path.is_none() {
                return Err(SeccompError::NotifyWithoutListener { rule: index });
            }
            if rule.names().iter().any(|name| name == "write") {
                return Err(SeccompError::NotifyOnWrite { rule: index });
            }
        }
        if rule_action == default_action {
            continue;
        }
        conditions.clear();
        conditions.extend(args.iter().map(condition));
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                // Unknown to libseccomp: not a system call of this architecture or this library (runc and crun
                // skip these too, since profiles list system calls of several kernels and architectures).
                continue;
            };
            let added = if separate {
                conditions.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(rule_action, syscall, std::slice::from_ref(c))
                        .map(drop)
                })
            } else {
                ctx.add_rule_conditional(rule_action, syscall, &conditions)
                    .map(drop)
            };
            added.map_err(|source| SeccompError::Rule {
                rule: index,
                syscall: name.clone(),
                action: rule.action(),
                source,
            })?;
            listener |= rule_action == ScmpAction::Notify;
        }
    }

    let mut flags = 0;
    let mut wait_killable_recv = false;
    for flag in seccomp.flags().as_deref().unwrap_or_default() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags |= libc::SECCOMP_FILTER_FLAG_TSYNC as u32,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= libc::SECCOMP_FILTER_FLAG_LOG as u32,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => wait_killable_recv = true,
        }
    }

    Ok(Filter {
        program: export(&ctx)?,
        flags,
        wait_killable_recv,
        listener,
        listener_path,
        listener_metadata,
    })
}

/// The libseccomp action for a spec action and its `errnoRet`; `place` names the field for errors.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    place: impl Fn() -> String,
) -> Result<ScmpAction, SeccompError> {
    let data = match (action, errno_ret) {
        (LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace, value) => {
            let value = value.unwrap_or(DEFAULT_ERRNO);
            u16::try_from(value).map_err(|_| SeccompError::ErrnoRange {
                place: place(),
                value,
            })?
        }
        (_, Some(value)) => {
            return Err(SeccompError::ErrnoNotSupported {
                place: place(),
                action,
                value,
            });
        }
        (_, None) => 0,
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// Checks argument indexes; true when two conditions test the same argument, so each needs a rule of its own.
fn split_conditions(rule: usize, args: &[LinuxSeccompArg]) -> Result<bool, SeccompError> {
    let mut seen = [false; MAX_ARGS];
    let mut repeated = false;
    for arg in args {
        let index = arg.index();
        let Some(slot) = seen.get_mut(index) else {
            return Err(SeccompError::ArgIndex { rule, index });
        };
        repeated |= *slot;
        *slot = true;
    }
    Ok(repeated)
}

/// The libseccomp comparison for a spec argument; the index is checked by [`split_conditions`].
fn condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    let value = arg.value();
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpArgCompare::new(index, ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => ScmpArgCompare::new(index, ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => ScmpArgCompare::new(index, ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => ScmpArgCompare::new(index, ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => ScmpArgCompare::new(index, ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => ScmpArgCompare::new(index, ScmpCompareOp::Greater, value),
        // The spec's value is the mask and valueTwo the value compared with: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpArgCompare::new(
            index,
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    }
}

/// The spec's architecture as libseccomp's.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Generates the BPF program: libseccomp (up to 2.5) exports it only to a file descriptor, so it goes through a
/// memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let memfd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&memfd)
        .map_err(|source| SeccompError::Libseccomp {
            what: "generate the BPF program",
            source,
        })?;
    let mut file = File::from(memfd);
    file.seek(SeekFrom::Start(0)).map_err(SeccompError::Export)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(SeccompError::Export)?;
    parse_program(&bytes)
}

/// Splits exported bytes into instructions (`struct sock_filter` in native byte order).
fn parse_program(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    const SIZE: usize = size_of::<libc::sock_filter>();
    let chunks = bytes.chunks_exact(SIZE);
    if !chunks.remainder().is_empty() || bytes.is_empty() {
        return Err(SeccompError::Export(io::Error::other(format!(
            "{} bytes is not a whole number of {SIZE}-byte instructions",
            bytes.len()
        ))));
    }
    let program: Vec<libc::sock_filter> = chunks
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(program.len()));
    }
    Ok(program)
}

/// Bump when the meaning of a cached program changes (compile semantics or the entry layout).
const CACHE_FORMAT: &str = "berth-seccomp-cache-1";

/// Like [`compile`], but keeps the generated program in `cache_dir` and reuses it for an identical profile.
///
/// An entry holds the whole cache key (the profile as JSON, the libseccomp version and this crate's version) and
/// is used only when the key matches byte for byte, so a hash collision can only cause a recompilation. The cache
/// is an optimization: if it cannot be read or written the profile is compiled as usual; invalid profiles are
/// never cached, so they fail every time. `cache_dir` must be writable by root only (the runtime's `--root`).
pub fn compile_cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
    let Some(key) = cache_key(seccomp) else {
        return compile(seccomp);
    };
    let path = cache_dir.join(format!("{:016x}", {
        use std::hash::{DefaultHasher, Hasher};
        let mut hasher = DefaultHasher::new();
        hasher.write(&key);
        hasher.finish()
    }));
    if let Some(filter) = std::fs::read(&path)
        .ok()
        .and_then(|entry| decode_entry(&entry, &key, seccomp))
    {
        return Ok(filter);
    }
    let filter = compile(seccomp)?;
    // Best effort: a failure to store costs the next start a compilation, nothing else.
    let _ = store_entry(cache_dir, &path, &encode_entry(&key, &filter));
    Ok(filter)
}

/// What a cached program depends on.
fn cache_key(seccomp: &LinuxSeccomp) -> Option<Vec<u8>> {
    let version = libseccomp::ScmpVersion::current().ok()?;
    let mut key = format!(
        "{CACHE_FORMAT}\0{}\0libseccomp {}.{}.{}\0",
        env!("CARGO_PKG_VERSION"),
        version.major,
        version.minor,
        version.micro
    )
    .into_bytes();
    serde_json::to_writer(&mut key, seccomp).ok()?;
    Some(key)
}

/// Entry layout: key length (u32), key, flags (u32), wait_killable_recv (u8), listener (u8), program.
fn encode_entry(key: &[u8], filter: &Filter) -> Vec<u8> {
    let mut entry =
        Vec::with_capacity(key.len() + 10 + filter.program.len() * size_of::<libc::sock_filter>());
    entry.extend_from_slice(&(key.len() as u32).to_ne_bytes());
    entry.extend_from_slice(key);
    entry.extend_from_slice(&filter.flags.to_ne_bytes());
    entry.push(u8::from(filter.wait_killable_recv));
    entry.push(u8::from(filter.listener));
    for insn in &filter.program {
        entry.extend_from_slice(&insn.code.to_ne_bytes());
        entry.push(insn.jt);
        entry.push(insn.jf);
        entry.extend_from_slice(&insn.k.to_ne_bytes());
    }
    entry
}

/// The filter stored in `entry` if it was made from exactly `key`.
fn decode_entry(entry: &[u8], key: &[u8], seccomp: &LinuxSeccomp) -> Option<Filter> {
    let (len, rest) = entry.split_first_chunk::<4>()?;
    let (stored_key, rest) = rest.split_at_checked(usize::try_from(u32::from_ne_bytes(*len)).ok()?)?;
    if stored_key != key {
        return None;
    }
    let (flags, rest) = rest.split_first_chunk::<4>()?;
    let (&[wait_killable_recv, listener], program) = rest.split_first_chunk::<2>()?;
    Some(Filter {
        program: parse_program(program).ok()?,
        flags: u32::from_ne_bytes(*flags),
        wait_killable_recv: wait_killable_recv != 0,
        listener: listener != 0,
        listener_path: seccomp.listener_path().clone(),
        listener_metadata: seccomp.listener_metadata().clone(),
    })
}

/// Writes an entry atomically (a temporary file renamed over the entry), creating the directory (mode 0700).
/// Where `berth-runtime` keeps compiled profiles (root only). Outside `--root`, whose entries are containers.
pub const CACHE_DIR: &str = "/var/cache/berth-runtime/seccomp";

/// At most this many profiles are kept; a store beyond it removes the least recently written ones.
const CACHE_MAX_ENTRIES: usize = 64;

/// Keeps the cache bounded: runs after a miss (when a compile already cost milliseconds), never on a hit.
fn prune(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= CACHE_MAX_ENTRIES {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - CACHE_MAX_ENTRIES] {
        let _ = std::fs::remove_file(path);
    }
}

fn store_entry(cache_dir: &Path, path: &Path, entry: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(entry))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    prune(cache_dir);
    written
}

/// Takes a copy of fd `fd` of process `pid` with `pidfd_getfd` (close-on-exec): how the runtime gets the listener
/// fd that the init reported by number. Needs ptrace access to the process (the runtime is its parent and the same
/// user, or root).
pub fn take_listener_fd(pid: i32, fd: RawFd) -> Result<OwnedFd, SeccompError> {
    let err = |source: io::Error| SeccompError::TakeFd { pid, fd, source };
    let target =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| err(io::Error::from_raw_os_error(libc::ESRCH)))?;
    let pidfd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty())
        .map_err(|e| err(e.into()))?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|e| err(e.into()))
}

/// The OCI state embedded in the container process state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateView<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: Status,
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    annotations: &'a HashMap<String, String>,
}

/// The runtime spec's "container process state" (config-linux.md), sent to the seccomp agent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a> {
    oci_version: &'a str,
    fds: [&'static str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a str>,
    state: StateView<'a>,
}

/// Builds the container process state JSON for [`send_to_listener`]: `fds` is `["seccompFd"]`, `metadata` is
/// `listenerMetadata`, and `state` is the container's OCI state.
pub fn process_state_json(
    oci_version: &str,
    id: &str,
    status: Status,
    pid: i32,
    bundle: &Path,
    annotations: &HashMap<String, String>,
    metadata: Option<&str>,
) -> Result<Vec<u8>, SeccompError> {
    serde_json::to_vec(&ProcessState {
        oci_version,
        fds: [SECCOMP_FD_NAME],
        pid,
        metadata,
        state: StateView {
            oci_version,
            id,
            status,
            pid,
            bundle,
            annotations,
        },
    })
    .map_err(SeccompError::State)
}

/// Sends the listener fd to the seccomp agent: connects to `listener_path` (a `SOCK_STREAM` unix socket), sends
/// `state_json` with `notify_fd` attached as `SCM_RIGHTS` to the first message, and closes the connection.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    if state_json.is_empty() {
        // On a stream socket, file descriptors travel only with at least one byte of data.
        return Err(SeccompError::EmptyState(listener_path.to_owned()));
    }
    let send_err = |source: io::Error| SeccompError::Send {
        path: listener_path.to_owned(),
        source,
    };
    let stream = UnixStream::connect(listener_path).map_err(|source| SeccompError::Connect {
        path: listener_path.to_owned(),
        source,
    })?;
    let fds = [notify_fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(send_err(io::Error::other(
            "the control message does not fit its buffer",
        )));
    }
    let mut sent = loop {
        match rustix::net::sendmsg(
            &stream,
            &[IoSlice::new(state_json)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other.map_err(|e| send_err(e.into()))?,
        }
    };
    // The fd went with the first message; the rest of the JSON follows without it.
    while sent < state_json.len() {
        match rustix::net::send(&stream, &state_json[sent..], SendFlags::NOSIGNAL) {
            Ok(0) => return Err(send_err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(send_err(e.into())),
        }
    }
    Ok(())
}
