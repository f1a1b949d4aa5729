//! The user process: executable lookup, environment, rlimits, user and groups, capabilities, no_new_privs,
//! umask, working directory and file descriptors. Everything here runs in the container's init.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::Capability;
use oci_spec::runtime::{PosixRlimitType, Process};
use thiserror::Error;

/// Errors of the process setup.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The executable is not in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The executable exists but cannot be executed.
    #[error("exec: {0:?}: permission denied (not an executable file)")]
    NotExecutable(String),
    /// A string holds a NUL byte.
    #[error("process {what} contains a NUL byte")]
    Nul {
        /// args or env.
        what: &'static str,
    },
    /// An rlimit appears twice.
    #[error("rlimit {0} is given twice")]
    DuplicateRlimit(String),
    /// setrlimit failed.
    #[error("cannot set rlimit {name} to soft {soft} hard {hard}: {source}")]
    Rlimit {
        /// The rlimit.
        name: String,
        /// Soft limit.
        soft: u64,
        /// Hard limit.
        hard: u64,
        /// The cause.
        source: std::io::Error,
    },
    /// A capability name is unknown.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A capability call failed.
    #[error("cannot {what}: {source}")]
    Caps {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A user or group change failed.
    #[error("cannot {what}: {source}")]
    User {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The working directory is unusable.
    #[error("cannot change to the working directory {path}: {source}")]
    Cwd {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The working directory resolved outside the container (a leaked host directory).
    #[error("the working directory {0} is outside the container's root")]
    CwdOutsideRoot(PathBuf),
    /// no_new_privs or another prctl failed.
    #[error("cannot {what}: {source}")]
    Prctl {
        /// What was attempted.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// The program to execute, resolved inside the container before it waits for `start`.
#[derive(Debug)]
pub struct Command {
    /// Absolute (or cwd-relative) path of the executable.
    pub path: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// envp.
    pub envp: Vec<CString>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstring(s: &str, what: &'static str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Nul { what })
}

fn is_executable(path: &Path) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    Some(meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Resolves `args[0]` against `PATH` of the process environment (as `execvp` would, inside the container's
/// root), and builds argv and envp. Adds `HOME` from the container's `/etc/passwd` when the spec has none.
pub fn resolve(process: &Process) -> Result<Command, ProcessError> {
    let args = process.args().as_deref().unwrap_or_default();
    let program = args.first().map(String::as_str).unwrap_or_default();
    let env = process.env().as_deref().unwrap_or_default();
    let path = if program.contains('/') {
        let p = if Path::new(program).is_absolute() {
            PathBuf::from(program)
        } else {
            process.cwd().join(program)
        };
        match is_executable(&p) {
            Some(true) => PathBuf::from(program),
            Some(false) => return Err(ProcessError::NotExecutable(program.to_string())),
            None => return Err(ProcessError::NotFound(program.to_string())),
        }
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let mut found = None;
        let mut denied = false;
        for dir in search.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(program);
            match is_executable(&candidate) {
                Some(true) => {
                    found = Some(candidate);
                    break;
                }
                Some(false) => denied = true,
                None => {}
            }
        }
        match found {
            Some(p) => p,
            None if denied => return Err(ProcessError::NotExecutable(program.to_string())),
            None => return Err(ProcessError::NotFound(program.to_string())),
        }
    };
    let argv = args
        .iter()
        .map(|a| cstring(a, "args"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envp = env
        .iter()
        .map(|e| cstring(e, "env"))
        .collect::<Result<Vec<_>, _>>()?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        envp.push(cstring(&format!("HOME={home}"), "env")?);
    }
    Ok(Command {
        path: CString::new(path.as_os_str().as_bytes()).map_err(|_| ProcessError::Nul { what: "args" })?,
        argv,
        envp,
    })
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets the rlimits of the spec.
pub fn apply_rlimits(process: &Process) -> Result<(), ProcessError> {
    let mut seen = 0u32;
    for r in process.rlimits().as_deref().unwrap_or_default() {
        let res = rlimit_resource(r.typ());
        let bit = 1u32 << (res as u32);
        if seen & bit != 0 {
            return Err(ProcessError::DuplicateRlimit(r.typ().to_string()));
        }
        seen |= bit;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit struct that lives across the call.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(ProcessError::Rlimit {
                name: r.typ().to_string(),
                soft: r.soft(),
                hard: r.hard(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// A parsed capability configuration, as bit masks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

fn mask<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<u64, ProcessError> {
    let mut m = 0u64;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap =
            Capability::from_str(&full).map_err(|_| ProcessError::UnknownCapability(name.to_string()))?;
        m |= cap.bitmask();
    }
    Ok(m)
}

/// Parses the spec's capabilities. `None` in the spec means no capabilities at all (runc does the same).
pub fn cap_sets(process: &Process) -> Result<CapSets, ProcessError> {
    let Some(c) = process.capabilities() else {
        return Ok(CapSets::default());
    };
    let conv = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64, ProcessError> {
        match set {
            None => Ok(0),
            Some(s) => {
                let names: Vec<String> = s.iter().map(|c| c.to_string()).collect();
                mask(names.iter().map(String::as_str))
            }
        }
    };
    Ok(CapSets {
        bounding: conv(c.bounding())?,
        effective: conv(c.effective())?,
        permitted: conv(c.permitted())?,
        inheritable: conv(c.inheritable())?,
        ambient: conv(c.ambient())?,
    })
}

fn names_of(mask: u64) -> String {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops from the bounding set everything the spec does not list (needs CAP_SETPCAP: before the user change).
pub fn apply_bounding(sets: &CapSets) -> Result<(), ProcessError> {
    for cap in 0..=last_cap() {
        if sets.bounding & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                continue; // The kernel does not know this capability.
            }
            return Err(ProcessError::Caps {
                what: format!("drop capability {cap} from the bounding set"),
                source: e,
            });
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Sets the effective, permitted and inheritable sets in one `capset`, then raises the ambient capabilities
/// that are also permitted and inheritable.
pub fn apply_caps(sets: &CapSets) -> Result<(), ProcessError> {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let split = |m: u64| [(m & 0xffff_ffff) as u32, (m >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: header and data are the kernel's v3 structures (two data elements) and live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        let source = std::io::Error::last_os_error();
        let ours = caps::read(None, caps::CapSet::Bounding)
            .map(|s| s.iter().fold(0u64, |m, c| m | c.bitmask()))
            .unwrap_or(u64::MAX);
        let missing = (sets.permitted | sets.effective) & !ours;
        let what = if missing != 0 {
            format!(
                "set capabilities: {} not in the runtime's own bounding set",
                names_of(missing)
            )
        } else {
            "set the process capabilities".to_string()
        };
        return Err(ProcessError::Caps { what, source });
    }
    // The kernel raises an ambient capability only if it is permitted and inheritable; runc and crun skip the
    // others (runc's default spec asks for ambient capabilities that are not inheritable), and so do we.
    let raisable = sets.ambient & sets.permitted & sets.inheritable;
    for cap in 0..64u32 {
        if raisable & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number and no pointers.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(ProcessError::Caps {
                what: format!(
                    "raise {} in the ambient set (it must be permitted and inheritable)",
                    names_of(1 << cap)
                ),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Switches to the spec's user: supplementary groups, gid, then uid, keeping the permitted capabilities so
/// that [`apply_caps`] can set them afterwards.
pub fn apply_user(process: &Process) -> Result<(), ProcessError> {
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    let groups: Vec<libc::gid_t> = user.additional_gids().as_deref().unwrap_or_default().to_vec();
    let err = |what: String| ProcessError::User {
        what,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: `groups` is a valid array of `groups.len()` gids.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        // In a user namespace with setgroups denied, an empty list is all there is to set.
        if !(groups.is_empty() && e.raw_os_error() == Some(libc::EPERM)) {
            return Err(ProcessError::User {
                what: format!("set the supplementary groups {groups:?}"),
                source: e,
            });
        }
    }
    // SAFETY: setresgid takes plain integers.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(err(format!("change to gid {gid}")));
    }
    if uid != 0 {
        // SAFETY: PR_SET_KEEPCAPS takes an integer flag.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(ProcessError::Prctl {
                what: "keep capabilities across the user change",
                source: std::io::Error::last_os_error(),
            });
        }
    }
    // SAFETY: setresuid takes plain integers.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(err(format!("change to uid {uid}")));
    }
    if let Some(mask) = user.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

/// Sets no_new_privs.
pub fn apply_no_new_privs() -> Result<(), ProcessError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ProcessError::Prctl {
            what: "set no_new_privs",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Changes to the working directory and checks that it is inside the container's root: a directory file
/// descriptor leaked from the host would otherwise give the process a way out (CVE-2024-21626 class).
pub fn enter_cwd(cwd: &Path) -> Result<(), ProcessError> {
    std::env::set_current_dir(cwd).map_err(|source| ProcessError::Cwd {
        path: cwd.to_path_buf(),
        source,
    })?;
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is writable for its length; getcwd writes a NUL-terminated string into it.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() || buf[0] != b'/' {
        return Err(ProcessError::CwdOutsideRoot(cwd.to_path_buf()));
    }
    Ok(())
}

/// Marks every descriptor from `3 + preserve` up close-on-exec, so that only stdio and the preserved
/// descriptors reach the user process.
pub fn close_extra_fds(preserve: u32) -> Result<(), ProcessError> {
    let first = 3 + preserve;
    // SAFETY: close_range takes integers; CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc != 0 {
        return Err(ProcessError::Prctl {
            what: "mark inherited descriptors close-on-exec",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert_eq!(
            mask(["CAP_CHOWN", "kill"]).ok(),
            Some(Capability::CAP_CHOWN.bitmask() | Capability::CAP_KILL.bitmask())
        );
        let err = mask(["CAP_FLY"]).expect_err("unknown");
        assert!(err.to_string().contains("CAP_FLY"));
        assert!(names_of(Capability::CAP_KILL.bitmask()).contains("CAP_KILL"));
    }

    #[test]
    fn resolve_on_host() {
        let process: Process = serde_json::from_str(
            r#"{"args":["sh","-c","true"],"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/nonexistent:/bin:/usr/bin","HOME=/root"]}"#,
        )
        .expect("json");
        let cmd = resolve(&process).expect("sh is on the host");
        assert!(cmd.path.to_bytes().ends_with(b"/sh"));
        assert_eq!(cmd.envp.len(), 2);
        let missing: Process = serde_json::from_str(
            r#"{"args":["no-such-program-xyz"],"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/bin"]}"#,
        )
        .expect("json");
        let err = resolve(&missing).expect_err("missing");
        assert!(err.to_string().contains("executable file not found"), "{err}");
    }
}
