//! `exec`: run another process in a running container, joining its namespaces and applying the process's
//! user, capabilities, no_new_privs, working directory and environment.
//!
//! The runtime joins the container's pid and time namespaces itself (they apply to children), forks, and the
//! child joins the rest (user first, mount last), makes the terminal when asked, and becomes the process
//! through the same steps as the container's init.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::state::{Root, Status};
use crate::sync::{self, Message};
use crate::{Error, Result, namespaces, process};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The container.
    pub id: String,
    /// The process; built by the caller from `--process` or from the flags on top of the container's.
    pub process: Process,
    /// Socket that receives the pty master (with a terminal).
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    pub detach: bool,
    /// Where to write the process's pid.
    pub pid_file: Option<PathBuf>,
    /// Descriptors after stdio passed to the process.
    pub preserve_fds: u32,
}

/// The container's process template: `process` of the bundle's config.json.
pub fn template(root: &Root, id: &str) -> Result<Process> {
    let c = super::load(root, id)?;
    let record = c
        .record
        .ok_or_else(|| Error::Init(format!("container {id:?} is still being created")))?;
    let bundle = crate::spec::load(&record.bundle)?;
    bundle
        .spec
        .process()
        .clone()
        .ok_or(crate::spec::SpecError::MissingField("process").into())
}

const NS_FILES: [(LinuxNamespaceType, &str); 8] = [
    (LinuxNamespaceType::User, "user"),
    (LinuxNamespaceType::Cgroup, "cgroup"),
    (LinuxNamespaceType::Ipc, "ipc"),
    (LinuxNamespaceType::Uts, "uts"),
    (LinuxNamespaceType::Network, "net"),
    (LinuxNamespaceType::Pid, "pid"),
    (LinuxNamespaceType::Time, "time"),
    (LinuxNamespaceType::Mount, "mnt"),
];

/// Runs the process; returns its exit status (0 when detached).
pub fn exec(root: &Root, opts: &ExecOptions) -> Result<i32> {
    let c = super::load(root, &opts.id)?;
    super::require(&opts.id, c.status, &[Status::Created, Status::Running], "exec in")?;
    let record = c
        .record
        .as_ref()
        .ok_or_else(|| Error::Init("the container has no record yet".into()))?;
    let init = super::pidfd(record).ok_or(Error::WrongStatus {
        id: opts.id.clone(),
        status: Status::Stopped,
        op: "exec in",
    })?;
    let p = &opts.process;
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(crate::spec::SpecError::EmptyArgs.into());
    }
    let terminal = p.terminal() == Some(true);
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Usage(
            "--console-socket was given but the process has no terminal".into(),
        ));
    }
    if terminal && opts.console_socket.is_none() && opts.detach {
        return Err(Error::Usage(
            "a detached exec with a terminal needs --console-socket".into(),
        ));
    }
    let caps = process::cap_sets(p)?;
    // The container's seccomp profile applies to every process in it.
    let spec = crate::spec::load(&record.bundle)?.spec;
    let (seccomp, listener) = match spec.linux() {
        Some(linux) => super::create::compile_seccomp(linux)?,
        None => (None, None),
    };

    // Open the init's namespaces that differ from ours; the pidfd pins the init while we do.
    let mut join = Vec::new();
    let (mut pid_ns, mut time_ns) = (None, None);
    for (typ, name) in NS_FILES {
        let theirs = format!("/proc/{}/ns/{name}", record.pid);
        let same = match (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.ino() == b.ino() && a.dev() == b.dev()
            }
            (Err(_), _) => continue,
            _ => false,
        };
        if same {
            continue;
        }
        let fd = rustix::fs::open(
            &theirs,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|source| namespaces::NamespaceError::Open {
            typ,
            path: theirs.clone().into(),
            source,
        })?;
        match typ {
            LinuxNamespaceType::Pid => pid_ns = Some((PathBuf::from(&theirs), fd)),
            LinuxNamespaceType::Time => time_ns = Some((PathBuf::from(&theirs), fd)),
            _ => join.push((typ, PathBuf::from(&theirs), fd)),
        }
    }
    if let Some((path, fd)) = &pid_ns {
        namespaces::join(LinuxNamespaceType::Pid, path, fd)?;
    }
    if let Some((path, fd)) = &time_ns {
        namespaces::join(LinuxNamespaceType::Time, path, fd)?;
    }
    let (console, local_console) = super::create::console_for(opts.console_socket.as_deref(), terminal)?;
    let (parent_end, child_end) = sync::pair()?;
    // The process joins the container's cgroup: born there on v2, moved by us before it runs anything on v1.
    let cgroup = if record.cgroup_path.is_empty() {
        None
    } else {
        Some(record.cgroup()?)
    };
    let into_cgroup = match &cgroup {
        Some(c) => c.dir_fd()?,
        None => None,
    };
    let wait_for_cgroup = cgroup.is_some() && into_cgroup.is_none();

    let forked = super::create::fork(0, into_cgroup.as_ref(), "fork the exec process")?;
    let super::create::Forked::Parent(pid, pidfd) = forked else {
        drop(parent_end);
        let err = match wait_for_cgroup {
            true if child_end.recv().ok().flatten() != Some(Message::CgroupJoined) => {
                Error::Init("the runtime did not move the process into the container's cgroup".into())
            }
            _ => child(
                &join,
                console.as_ref(),
                p,
                &caps,
                opts.preserve_fds,
                seccomp,
                &child_end,
            ),
        };
        let _ = child_end.send(&Message::Error(crate::init::error_chain(&err)));
        // SAFETY: _exit ends the forked child without running the runtime's destructors.
        unsafe { libc::_exit(126) };
    };
    drop(child_end);
    drop(console);
    drop(init);
    if wait_for_cgroup && let Some(c) = &cgroup {
        if let Err(e) = c.add_pid(pid) {
            let _ = super::signal_pidfd(&pidfd, libc::SIGKILL);
            // SAFETY: reaps our own child; a null status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            return Err(e.into());
        }
        parent_end.send(&Message::CgroupJoined)?;
    }
    let reap = |pid: i32| {
        // SAFETY: reaps our own child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    };
    let master = match &local_console {
        Some(sock) => match crate::console::recv_fd(sock.as_fd()) {
            Ok(m) => Some(m),
            Err(e) => {
                let msg = parent_end.recv().ok().flatten();
                reap(pid);
                return Err(match msg {
                    Some(Message::Error(text)) => Error::Init(text),
                    _ => e.into(),
                });
            }
        },
        None => None,
    };
    // The channel closes (close-on-exec) when the program was executed; an error message means it was not.
    loop {
        match parent_end.recv()? {
            None => break,
            Some(Message::SeccompFd(fd)) => {
                let state = record.oci_state(Status::Running);
                if let Err(e) = super::create::hand_listener_over(listener.as_ref(), pid, fd, &state) {
                    let _ = super::signal_pidfd(&pidfd, libc::SIGKILL);
                    reap(pid);
                    return Err(e);
                }
                parent_end.send(&Message::SeccompDone)?;
            }
            Some(Message::Error(text)) => {
                reap(pid);
                return Err(Error::Init(text));
            }
            Some(_) => return Err(Error::Init("the exec process sent an unexpected message".into())),
        }
    }
    if let Some(path) = &opts.pid_file {
        super::create::write_pid_file(path, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    super::run::forward_and_wait(pid, &pidfd, master)
}

/// The forked child: joins the namespaces, makes the terminal, becomes the process. Returns only on failure.
fn child(
    join: &[(LinuxNamespaceType, PathBuf, OwnedFd)],
    console: Option<&OwnedFd>,
    p: &Process,
    caps: &process::CapSets,
    preserve_fds: u32,
    mut seccomp: Option<crate::seccomp::Filter>,
    channel: &sync::Channel,
) -> Error {
    let run = || -> Result<(process::Command, crate::exe_guard::Trampoline)> {
        namespaces::join_all(join)?;
        // SAFETY: setsid takes no arguments.
        if unsafe { libc::setsid() } < 0 {
            return Err(Error::sys("start a new session", std::io::Error::last_os_error()));
        }
        // Joining the mount namespace put us at its root: the container's.
        std::env::set_current_dir("/").map_err(|e| Error::sys("change to the container's root", e))?;
        if let Some(sock) = console {
            let size = p
                .console_size()
                .as_ref()
                .map(|b| (b.height() as u16, b.width() as u16));
            crate::console::setup(sock, size)?;
        }
        let command = process::resolve(p)?;
        Ok((command, crate::exe_guard::Trampoline::prepare()?))
    };
    let (command, trampoline) = match run() {
        Ok(prepared) => prepared,
        Err(e) => return e,
    };
    if let Some(filter) = seccomp.take_if(|f| f.needs_listener())
        && let Err(e) = crate::init::load_with_listener(filter, p, channel)
    {
        return e;
    }
    crate::init::become_process(p, caps, preserve_fds, &command, &trampoline, seccomp)
}
