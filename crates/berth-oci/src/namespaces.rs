//! Namespaces from `linux.namespaces`: new ones become clone flags, ones with a path are joined with `setns`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset};
use rustix::fs::{Mode, OFlags};
use rustix::thread::LinkNameSpaceType;
use thiserror::Error;

/// Errors of namespace handling.
#[derive(Debug, Error)]
pub enum NamespaceError {
    /// A namespace file could not be opened.
    #[error("cannot open the {typ:?} namespace {path}: {source}")]
    Open {
        /// The namespace type.
        typ: LinuxNamespaceType,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: rustix::io::Errno,
    },
    /// setns failed.
    #[error("cannot join the {typ:?} namespace {path}: {source}")]
    Join {
        /// The namespace type.
        typ: LinuxNamespaceType,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: rustix::io::Errno,
    },
    /// A new time namespace could not be made.
    #[error("cannot create a time namespace: {0}")]
    Time(rustix::io::Errno),
    /// The loopback interface could not be brought up.
    #[error("cannot bring up the loopback interface of the container's network namespace: {0}")]
    Loopback(std::io::Error),
    /// The time offsets are unusable.
    #[error("invalid time offsets: {0}")]
    TimeOffset(String),
    /// The id maps could not be written.
    #[error("cannot write {file} of the container's init: {source}")]
    IdMap {
        /// uid_map, gid_map or setgroups.
        file: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// The clone flag of a namespace type.
pub fn flag(typ: LinuxNamespaceType) -> u64 {
    (match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }) as u64
}

fn link_type(typ: LinuxNamespaceType) -> LinkNameSpaceType {
    match typ {
        LinuxNamespaceType::Mount => LinkNameSpaceType::Mount,
        LinuxNamespaceType::Cgroup => LinkNameSpaceType::ControlGroup,
        LinuxNamespaceType::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        LinuxNamespaceType::Ipc => LinkNameSpaceType::InterProcessCommunication,
        LinuxNamespaceType::User => LinkNameSpaceType::User,
        LinuxNamespaceType::Pid => LinkNameSpaceType::ProcessID,
        LinuxNamespaceType::Network => LinkNameSpaceType::Network,
        LinuxNamespaceType::Time => LinkNameSpaceType::Time,
    }
}

/// The namespaces of a spec, split into what the runtime creates and what it joins.
#[derive(Debug, Default)]
pub struct Plan {
    /// Clone flags for the new namespaces (pid and time excluded when joined by path).
    pub clone_flags: u64,
    /// Namespaces joined by path, opened in the runtime (user first), joined by the init.
    pub join: Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>,
    /// A pid namespace given by path: the runtime joins it before forking, so the init is born in it.
    pub join_pid: Option<(PathBuf, OwnedFd)>,
    /// A time namespace given by path: joined by the runtime before forking, like pid.
    pub join_time: Option<(PathBuf, OwnedFd)>,
    /// A user namespace given by path: joined by the runtime before forking, so that the namespaces the init
    /// is born with belong to it (as runc joins it before unsharing the others).
    pub join_user: Option<(PathBuf, OwnedFd)>,
    /// Network, IPC and UTS namespaces given by path while the init gets a new user namespace: joined by the
    /// runtime before forking, while it is still privileged over namespaces the host owns (a network namespace
    /// the daemon prepared, as with docker's userns-remap; runc also joins before unsharing the user namespace).
    pub join_before_user: Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>,
    /// Whether the init gets a new user namespace (the runtime then writes its id maps).
    pub new_user: bool,
    /// Whether the init gets a new pid namespace.
    pub new_pid: bool,
}

/// Opens every namespace path and computes the clone flags.
pub fn plan(namespaces: &[LinuxNamespace]) -> Result<Plan, NamespaceError> {
    let mut plan = Plan::default();
    for ns in namespaces {
        let typ = ns.typ();
        match ns.path() {
            None => {
                plan.clone_flags |= flag(typ);
                plan.new_user |= typ == LinuxNamespaceType::User;
                plan.new_pid |= typ == LinuxNamespaceType::Pid;
            }
            Some(path) => {
                let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(
                    |source| NamespaceError::Open {
                        typ,
                        path: path.clone(),
                        source,
                    },
                )?;
                match typ {
                    LinuxNamespaceType::Pid => plan.join_pid = Some((path.clone(), fd)),
                    LinuxNamespaceType::Time => plan.join_time = Some((path.clone(), fd)),
                    LinuxNamespaceType::User => plan.join_user = Some((path.clone(), fd)),
                    _ => plan.join.push((typ, path.clone(), fd)),
                }
            }
        }
    }
    if plan.new_user {
        let (before, after): (Vec<_>, Vec<_>) =
            std::mem::take(&mut plan.join).into_iter().partition(|(t, _, _)| {
                matches!(
                    t,
                    LinuxNamespaceType::Network | LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts
                )
            });
        plan.join_before_user = before;
        plan.join = after;
    }
    Ok(plan)
}

/// Joins namespaces for a process entering a container (exec): every namespace but the user one first, while
/// the caller is still privileged over namespaces the host owns; then the user namespace; then, inside it, those
/// that refused the first attempt (as runc's nsenter does).
pub fn join_all(list: &[(LinuxNamespaceType, PathBuf, OwnedFd)]) -> Result<(), NamespaceError> {
    let mut later = Vec::new();
    for (typ, path, fd) in list.iter().filter(|(t, _, _)| *t != LinuxNamespaceType::User) {
        match join(*typ, path, fd) {
            Ok(()) => {}
            Err(NamespaceError::Join {
                source: rustix::io::Errno::PERM,
                ..
            }) => later.push((typ, path, fd)),
            Err(e) => return Err(e),
        }
    }
    for (typ, path, fd) in list.iter().filter(|(t, _, _)| *t == LinuxNamespaceType::User) {
        join(*typ, path, fd)?;
    }
    for (typ, path, fd) in later {
        join(*typ, path, fd)?;
    }
    Ok(())
}

/// Joins one namespace by its open file.
pub fn join(typ: LinuxNamespaceType, path: &std::path::Path, fd: &OwnedFd) -> Result<(), NamespaceError> {
    rustix::thread::move_into_link_name_space(fd.as_fd(), Some(link_type(typ))).map_err(|source| {
        NamespaceError::Join {
            typ,
            path: path.to_path_buf(),
            source,
        }
    })
}

/// In the runtime, before forking: joins a pid or time namespace given by path (it applies to children), and
/// unshares a new time namespace (clone cannot create one) with the spec's clock offsets.
pub fn prepare_parent(
    plan: &Plan,
    time_offsets: Option<&std::collections::HashMap<String, LinuxTimeOffset>>,
) -> Result<(), NamespaceError> {
    // The user namespace first: joining the others needs its capabilities, and new ones belong to it.
    if let Some((path, fd)) = &plan.join_user {
        join(LinuxNamespaceType::User, path, fd)?;
    }
    for (typ, path, fd) in &plan.join_before_user {
        join(*typ, path, fd)?;
    }
    if let Some((path, fd)) = &plan.join_pid {
        join(LinuxNamespaceType::Pid, path, fd)?;
    }
    if let Some((path, fd)) = &plan.join_time {
        join(LinuxNamespaceType::Time, path, fd)?;
    }
    if plan.clone_flags & flag(LinuxNamespaceType::Time) != 0 {
        // SAFETY: NEWTIME does not unshare the file table; the runtime is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWTIME) }
            .map_err(NamespaceError::Time)?;
        if let Some(offsets) = time_offsets.filter(|o| !o.is_empty()) {
            let mut text = String::new();
            for (clock, off) in offsets {
                if clock != "monotonic" && clock != "boottime" {
                    return Err(NamespaceError::TimeOffset(format!(
                        "{clock:?} is not a clock with an offset (monotonic, boottime)"
                    )));
                }
                text.push_str(&format!(
                    "{clock} {} {}\n",
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
            // The offsets must be written before the first process enters the namespace: the init, next.
            std::fs::write("/proc/self/timens_offsets", text).map_err(|e| {
                NamespaceError::TimeOffset(format!("cannot write /proc/self/timens_offsets: {e}"))
            })?;
        }
    } else if time_offsets.is_some_and(|o| !o.is_empty()) {
        return Err(NamespaceError::TimeOffset(
            "time offsets need a new time namespace".into(),
        ));
    }
    Ok(())
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the uid and gid maps of the init `pid` (the runtime does this right after the fork).
pub fn write_id_maps(
    pid: i32,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let write = |file: &'static str, text: &str| {
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(|source| NamespaceError::IdMap { file, source })
    };
    if !uids.is_empty() {
        write("uid_map", &map_text(uids))?;
    }
    if !gids.is_empty() {
        write("gid_map", &map_text(gids))?;
    }
    Ok(())
}

/// Brings the loopback interface of the current (new) network namespace up, as runc does.
pub fn loopback_up() -> Result<(), NamespaceError> {
    let err = |source: std::io::Error| NamespaceError::Loopback(source);
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: `sock` is a new descriptor that nothing else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock) };
    // SAFETY: an all-zero ifreq is valid; the name is copied below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: SIOCGIFFLAGS fills `req`, a valid ifreq for the call.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS wrote.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, valid for the call.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_new_namespaces() {
        let nss: Vec<LinuxNamespace> = serde_json::from_str(
            r#"[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"uts"},{"type":"ipc"}]"#,
        )
        .expect("json");
        let p = plan(&nss).expect("plan");
        let want = libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC;
        assert_eq!(p.clone_flags, want as u64);
        assert!(p.new_pid && !p.new_user && p.join.is_empty());
    }

    #[test]
    fn joined_user_namespace_is_kept_apart() {
        let nss: Vec<LinuxNamespace> = serde_json::from_str(
            r#"[{"type":"network","path":"/proc/self/ns/net"},{"type":"user","path":"/proc/self/ns/user"},{"type":"mount"}]"#,
        )
        .expect("json");
        let p = plan(&nss).expect("plan");
        assert_eq!(p.join.len(), 1);
        assert_eq!(p.join[0].0, LinuxNamespaceType::Network);
        assert!(
            p.join_user.is_some(),
            "the runtime joins the user namespace itself, before forking"
        );
        assert_eq!(p.clone_flags, libc::CLONE_NEWNS as u64);
        let bad: Vec<LinuxNamespace> =
            serde_json::from_str(r#"[{"type":"network","path":"/nonexistent/ns"}]"#).expect("json");
        let err = plan(&bad).expect_err("missing path");
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
