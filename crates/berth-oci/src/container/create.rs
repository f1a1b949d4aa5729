//! `create`: fork the init into its namespaces, let it set the container up, record the state.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use berth_cgroups::Cgroup;
use oci_spec::runtime::LinuxNamespaceType;

use crate::hooks::{self, Kind as HookKind};
use crate::init::{InitArgs, StartSignal};
use crate::state::{EXEC_FIFO, Record, Root};
use crate::sync::{self, Channel, Message};
use crate::{Error, Result, namespaces, spec};

/// Options of `create` (and of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// The socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// Descriptors after stdio passed to the process.
    pub preserve_fds: u32,
    /// Use the chroot fallback instead of pivot_root.
    pub no_pivot: bool,
}

/// How the created container will be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A later `start` (another process) writes to the exec fifo.
    Detached,
    /// The same process starts it over the sync channel (`run`).
    Attached,
}

/// A container just created.
#[derive(Debug)]
pub struct Created {
    /// The init's pid.
    pub pid: i32,
    /// A pidfd of the init.
    pub pidfd: OwnedFd,
    /// The runtime's end of the sync channel.
    pub channel: Channel,
    /// For a foreground run with a terminal: the socket on which the init sent the pty master.
    pub console: Option<OwnedFd>,
    /// For `run`: writing a byte here starts the container.
    pub start_pipe: Option<OwnedFd>,
    /// For `run` in a user namespace joined by path: removes the cgroup once the container is gone.
    pub(crate) janitor: Option<Janitor>,
}

/// clone3's CLONE_INTO_CGROUP (a 64-bit flag, which libc's `c_int` constant cannot hold).
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// The result of [`fork`]: in the child, or in the parent with the child's pid and pidfd.
pub(crate) enum Forked {
    /// This is the new process.
    Child,
    /// This is the runtime; the child's pid and a pidfd for it.
    Parent(i32, OwnedFd),
}

/// Forks with `clone3`: `flags` (new namespaces) plus `CLONE_PIDFD`, and born into `cgroup` when given (v2).
pub(crate) fn fork(flags: u64, cgroup: Option<&OwnedFd>, what: &str) -> Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = std::os::fd::AsRawFd::as_raw_fd(fd) as u64;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child gets a copy of this
    // single-threaded process and continues with its own memory. `args` lives across the call.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        p if p < 0 => Err(Error::sys(what, std::io::Error::last_os_error())),
        0 => Ok(Forked::Child),
        // SAFETY: clone3 with CLONE_PIDFD stored a new descriptor that nothing else owns.
        p => Ok(Forked::Parent(p as i32, unsafe { OwnedFd::from_raw_fd(pidfd) })),
    }
}

/// The terminal of a process: `(for the child, for the runtime)`. With `--console-socket` the child sends the
/// pty master there; a foreground process with a terminal and no socket gets a local pair, whose other end the
/// runtime keeps to relay the terminal itself.
pub(crate) fn console_for(
    console_socket: Option<&Path>,
    terminal: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    let console = console_socket.map(crate::console::connect).transpose()?;
    if terminal && console.is_none() {
        let (ours, theirs) = crate::console::local_pair()?;
        return Ok((Some(theirs), Some(ours)));
    }
    Ok((console, None))
}

/// The spec's seccomp filter, compiled (and cached) before anything is made, and its listener when it has one.
pub(crate) type Listener = (PathBuf, Option<String>);

pub(crate) fn compile_seccomp(
    linux: &oci_spec::runtime::Linux,
) -> Result<(Option<crate::seccomp::Filter>, Option<Listener>)> {
    let filter = linux
        .seccomp()
        .as_ref()
        .map(|s| crate::seccomp::compile_cached(s, Path::new(crate::seccomp::CACHE_DIR)))
        .transpose()?;
    let listener = filter.as_ref().filter(|f| f.needs_listener()).and_then(|f| {
        Some((
            f.listener_path()?.to_path_buf(),
            f.listener_metadata().map(str::to_string),
        ))
    });
    Ok((filter, listener))
}

/// Removes what a failed create made: the init (killed and reaped) and the state directory.
struct Cleanup<'a> {
    root: &'a Root,
    id: &'a str,
    child: Option<(i32, OwnedFd)>,
    cgroup: Option<&'a Cgroup>,
    /// Removes the cgroup from the host's user namespace when the runtime itself has joined another one.
    janitor: Option<Janitor>,
    armed: bool,
}

/// A child forked before the runtime joins a user namespace given by path. From inside that namespace the runtime
/// may no longer remove cgroup directories; the janitor, still in the host's user namespace, does it if `create`
/// fails, and otherwise just exits.
#[derive(Debug)]
pub(crate) struct Janitor {
    pid: i32,
    pipe: Option<OwnedFd>,
}

impl Janitor {
    fn spawn(cgroup: &Cgroup) -> Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::sys("create the janitor's pipe", e))?;
        // SAFETY: the runtime is single-threaded; the child only reads a pipe, removes a cgroup and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::sys(
                "fork the cgroup janitor",
                std::io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            drop(write);
            // Keep nothing but the pipe: a copy of the init's sync socket (or fifo) here would keep the runtime
            // from seeing the init close its end.
            let keep = std::os::fd::AsRawFd::as_raw_fd(&read) as u32;
            // SAFETY: close_range takes integers; only descriptors this forked child inherited are closed.
            unsafe {
                libc::syscall(libc::SYS_close_range, 3u32, keep.saturating_sub(1), 0u32);
                libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
            }
            let mut byte = [0u8; 1];
            if matches!(rustix::io::read(&read, &mut byte), Ok(1)) && byte[0] == b'c' {
                let _ = cgroup.kill_all(libc::SIGKILL);
                let _ = cgroup.destroy();
            }
            // SAFETY: ends the forked child without running the runtime's destructors.
            unsafe { libc::_exit(0) };
        }
        drop(read);
        Ok(Self {
            pid,
            pipe: Some(write),
        })
    }

    /// Tells the janitor to remove the cgroup (`true`) or just to exit, and reaps it. Always a byte, never end
    /// of file: the init holds a copy of the pipe until it executes the program.
    pub(crate) fn finish(&mut self, remove: bool) {
        if let Some(pipe) = self.pipe.take() {
            let _ = rustix::io::write(&pipe, if remove { b"c" } else { b"k" });
            drop(pipe);
            // SAFETY: reaps our own child; a null status pointer is allowed.
            unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((pid, fd)) = self.child.take() {
            let _ = super::signal_pidfd(&fd, libc::SIGKILL);
            // SAFETY: reaps our own child; a null status pointer is allowed.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        match (self.janitor.as_mut(), self.cgroup) {
            (Some(janitor), _) => janitor.finish(true),
            (None, Some(cgroup)) => {
                let _ = cgroup.kill_all(libc::SIGKILL);
                let _ = cgroup.destroy();
            }
            (None, None) => {}
        }
        let _ = self.root.remove(self.id);
    }
}

/// Creates container `opts.id` from `opts.bundle`.
pub fn create(root: &Root, opts: &CreateOptions, mode: StartMode) -> Result<Created> {
    crate::state::validate_id(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    let process = bundle
        .spec
        .process()
        .as_ref()
        .ok_or(spec::SpecError::MissingField("process"))?;
    let terminal = process.terminal() == Some(true);
    match (terminal, &opts.console_socket, mode) {
        (true, None, StartMode::Detached) => {
            return Err(Error::Usage(
                "process.terminal is true: pass --console-socket to receive the terminal, or set terminal to false".into(),
            ));
        }
        (false, Some(_), _) => {
            return Err(Error::Usage(
                "--console-socket was given but process.terminal is false".into(),
            ));
        }
        _ => {}
    }
    let linux = bundle
        .spec
        .linux()
        .as_ref()
        .ok_or(spec::SpecError::MissingField("linux section"))?;
    let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())?;
    let spec_hooks = bundle.spec.hooks().as_ref();
    hooks::validate(spec_hooks)?;
    // A foreground run with a terminal and no console socket relays the terminal itself.
    let (console, local_console) = console_for(opts.console_socket.as_deref(), terminal)?;

    // Compiled before anything is made, so that a bad profile changes nothing; cached across containers.
    let (seccomp, seccomp_listener) = compile_seccomp(linux)?;
    let cgroups_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = Cgroup::new(cgroups_path.as_deref(), &opts.id)?;
    let resources = crate::cgroups::effective_resources(linux);
    cgroup.validate(&resources)?;

    let dir = root.reserve(&opts.id)?;
    let mut cleanup = Cleanup {
        root,
        id: &opts.id,
        child: None,
        cgroup: None,
        janitor: None,
        armed: true,
    };
    cgroup.setup(Some(&resources))?;
    cleanup.cgroup = Some(&cgroup);
    // cgroup v2: the init is born in its cgroup. v1: the runtime moves it right after the fork, before the
    // init can run anything of the container's; a new cgroup namespace then waits for that move.
    let into_cgroup = cgroup.dir_fd()?;
    let new_cgroupns = plan.clone_flags & namespaces::flag(LinuxNamespaceType::Cgroup) != 0;
    let defer_cgroupns = new_cgroupns && into_cgroup.is_none();
    let wait_cgroup = into_cgroup.is_none();

    let mut start_pipe = None;
    let start = match mode {
        StartMode::Detached => {
            let fifo = dir.join(EXEC_FIFO);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::FileType::Fifo,
                Mode::from_raw_mode(0o622),
                0,
            )
            .map_err(|e| Error::sys(format!("create the exec fifo {}", fifo.display()), e))?;
            let fd = rustix::fs::open(&fifo, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::sys(format!("open the exec fifo {}", fifo.display()), e))?;
            StartSignal::Fifo(fd)
        }
        StartMode::Attached => {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Error::sys("create the start pipe", e))?;
            start_pipe = Some(write);
            StartSignal::Pipe(read)
        }
    };
    let (parent_end, child_end) = sync::pair()?;
    if plan.join_user.is_some() {
        cleanup.janitor = Some(Janitor::spawn(&cgroup)?);
    }
    namespaces::prepare_parent(&plan, linux.time_offsets().as_ref())?;

    let mut flags = plan.clone_flags & !namespaces::flag(LinuxNamespaceType::Time);
    if defer_cgroupns {
        flags &= !namespaces::flag(LinuxNamespaceType::Cgroup);
    }
    let forked = fork(flags, into_cgroup.as_ref(), "fork the container's init")?;
    let Forked::Parent(pid, pidfd) = forked else {
        drop(parent_end);
        crate::init::run(InitArgs {
            spec: &bundle.spec,
            seccomp: std::cell::RefCell::new(seccomp),
            rootfs: &bundle.rootfs,
            id: &opts.id,
            bundle: &bundle.dir,
            plan: &plan,
            defer_cgroupns,
            wait_cgroup,
            channel: child_end,
            console,
            start,
            preserve_fds: opts.preserve_fds,
            no_pivot: opts.no_pivot,
        });
    };
    drop(child_end);
    drop(start);
    drop(console);
    cleanup.child = Some((
        pid,
        pidfd
            .try_clone()
            .map_err(|e| Error::sys("duplicate the init's pidfd", e))?,
    ));

    if into_cgroup.is_none() {
        cgroup.add_pid(pid)?;
    }
    if plan.new_user {
        namespaces::write_id_maps(
            pid,
            linux.uid_mappings().as_deref().unwrap_or_default(),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
        parent_end.send(&Message::IdMapsWritten)?;
    }
    if wait_cgroup {
        parent_end.send(&Message::CgroupJoined)?;
    }
    let state = |status| crate::state::OciState {
        oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
        id: opts.id.clone(),
        status,
        pid,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: String::new(),
        owner: String::new(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
    };
    loop {
        match parent_end.recv()? {
            Some(Message::Ready) => break,
            Some(Message::HooksRequest) => {
                // The runtime-tools conformance suite (and crun) give the create hooks the status `created`.
                let created = state(crate::state::Status::Created);
                hooks::run(spec_hooks, HookKind::Prestart, &created)?;
                hooks::run(spec_hooks, HookKind::CreateRuntime, &created)?;
                parent_end.send(&Message::HooksDone(pid))?;
            }
            Some(Message::SeccompFd(fd)) => {
                hand_listener_over(
                    seccomp_listener.as_ref(),
                    pid,
                    fd,
                    &state(crate::state::Status::Creating),
                )?;
                parent_end.send(&Message::SeccompDone)?;
            }
            Some(Message::Error(text)) => return Err(Error::Init(text)),
            _ => {
                return Err(Error::Init(
                    "the container's init exited before it was ready".into(),
                ));
            }
        }
    }
    // After `ready` the init drops its privileges; end of file on the channel says it waits for `start`.
    match parent_end.recv()? {
        None => {}
        Some(Message::Error(text)) => return Err(Error::Init(text)),
        Some(_) => {
            return Err(Error::Init(
                "the container's init sent an unexpected message".into(),
            ));
        }
    }
    let (start_time, _) = crate::state::proc_stat(pid)
        .ok_or_else(|| Error::Init("the container's init exited before it was ready".into()))?;
    let record = Record {
        id: opts.id.clone(),
        pid,
        start_time,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        created: crate::state::now_rfc3339(),
        own_pid_ns: plan.new_pid,
        // Absolute within the hierarchies, so that a later verb run from another cgroup finds the same one.
        cgroup_path: format!("/{}", cgroup.relative_path()),
        cgroup_created: cgroup.created_dirs(),
        // SAFETY: getuid cannot fail.
        owner: unsafe { libc::getuid() },
        hooks: spec_hooks.cloned(),
    };
    root.save(&record)?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid)?;
    }
    cleanup.armed = false;
    // `create` ends here, a foreground `run` still needs the janitor for its delete.
    let mut janitor = cleanup.janitor.take();
    if mode == StartMode::Detached
        && let Some(j) = janitor.as_mut()
    {
        j.finish(false);
        janitor = None;
    }
    Ok(Created {
        pid,
        pidfd,
        channel: parent_end,
        console: local_console,
        start_pipe,
        janitor,
    })
}

/// Takes the seccomp listener `fd` out of process `pid` and sends it, with the container's state, to the agent
/// at `listenerPath`.
pub(crate) fn hand_listener_over(
    listener: Option<&(PathBuf, Option<String>)>,
    pid: i32,
    fd: i32,
    state: &crate::state::OciState,
) -> Result<()> {
    let Some((path, metadata)) = listener else {
        return Err(Error::Init(
            "the init sent a seccomp listener, but the spec has no listenerPath".into(),
        ));
    };
    let notify = crate::seccomp::take_listener_fd(pid, fd)?;
    let json = crate::seccomp::process_state_json(
        &state.oci_version,
        &state.id,
        state.status,
        pid,
        &state.bundle,
        &state.annotations,
        metadata.as_deref(),
    )?;
    crate::seccomp::send_to_listener(path, std::os::fd::AsFd::as_fd(&notify), &json)?;
    Ok(())
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| Error::sys(format!("write the pid file {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::sys(format!("write the pid file {}", path.display()), e))
}
