//! The container's init: the child the runtime forks with the new namespaces. It sets the container up,
//! reports to the runtime, waits for `start`, then becomes the user process.
//!
//! It runs in a forked copy of the single-threaded runtime, so it may allocate; it must not return into the
//! runtime's code, and leaves only through `execve` or `_exit`.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::exe_guard::Trampoline;
use crate::hooks::{self, Kind as HookKind};
use crate::namespaces::Plan;
use crate::sync::{Channel, Message};
use crate::{console, namespaces, process, rootfs};

/// How the init learns that it may execute the user process.
#[derive(Debug)]
pub enum StartSignal {
    /// `create`: a byte written to the exec fifo by `berth-runtime start` (the fifo is open read-write here).
    Fifo(OwnedFd),
    /// `run`: a byte on a pipe from the runtime itself.
    Pipe(OwnedFd),
}

/// What the init needs; everything is prepared (files opened, spec parsed) by the runtime before the fork.
#[derive(Debug)]
pub struct InitArgs<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The compiled seccomp filter (taken out when it is loaded).
    pub seccomp: std::cell::RefCell<Option<crate::seccomp::Filter>>,
    /// The rootfs on the host.
    pub rootfs: &'a Path,
    /// The container id (for the hooks' state).
    pub id: &'a str,
    /// The bundle directory (for the hooks' state).
    pub bundle: &'a Path,
    /// Namespaces to join.
    pub plan: &'a Plan,
    /// Make the cgroup namespace only once the runtime has moved the init into its cgroup (cgroup v1).
    pub defer_cgroupns: bool,
    /// cgroup v1: the runtime moves the init into its cgroup after the fork; wait for that before anything reads
    /// `/proc/self/cgroup` (the cgroup mount binds the container's own cgroup directories).
    pub wait_cgroup: bool,
    /// The init's end of the sync channel.
    pub channel: Channel,
    /// The connected console socket, when the process has a terminal.
    pub console: Option<OwnedFd>,
    /// The start signal.
    pub start: StartSignal,
    /// How many descriptors after stdio reach the process.
    pub preserve_fds: u32,
    /// Use the chroot fallback instead of pivot_root.
    pub no_pivot: bool,
}

/// The error and its causes as one line, "what failed: why" (the runtime prints what the init sends as is).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// Runs the init. Never returns.
pub fn run(args: InitArgs<'_>) -> ! {
    let code = match setup(&args).and_then(|ready| drop_privileges_early(&args, ready)) {
        Ok(ready) => {
            // The channel's end of file tells the runtime that the init is set up and waits for `start`, as
            // runc's closed sync pipe does. After this, errors can only go to stderr.
            args.channel.close(std::os::fd::AsFd::as_fd(&ready.trampoline));
            match wait_and_exec(&args, ready) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "berth-runtime: {}", error_chain(&e));
                    match e {
                        crate::Error::Process(process::ProcessError::NotFound(_)) => 127,
                        _ => 126,
                    }
                }
            }
        }
        Err(e) => {
            let _ = args.channel.send(&Message::Error(error_chain(&e)));
            1
        }
    };
    // SAFETY: _exit ends the process without running the runtime's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Everything of the process that can happen before `start` (runc's order): rlimits, working directory,
/// descriptors, capabilities and user, no_new_privs, and the seccomp filter when it needs privilege. What is
/// left for after `start` is the startContainer hooks, a no_new_privs filter, and the exec; so a signal sent
/// right after `start` finds the program about to run, and failures are reported by `create`.
fn drop_privileges_early(args: &InitArgs<'_>, mut ready: Ready) -> crate::Result<Ready> {
    let p = args
        .spec
        .process()
        .as_ref()
        .ok_or(crate::spec::SpecError::MissingField("process"))?;
    let seccomp = ready.seccomp.take();
    ready.seccomp = drop_privileges(p, &ready.caps, args.preserve_fds, seccomp)?;
    Ok(ready)
}

/// What the init prepared before reporting ready.
struct Ready {
    command: process::Command,
    trampoline: Trampoline,
    caps: process::CapSets,
    /// The seccomp filter still to load (none when a listener needed it loaded before `ready`).
    seccomp: Option<crate::seccomp::Filter>,
    /// The init's pid in the runtime's namespace, when the runtime told it (only needed by hooks).
    host_pid: i32,
}

/// The state the hooks see.
fn hook_state(args: &InitArgs<'_>, status: crate::state::Status, pid: i32) -> crate::state::OciState {
    crate::state::OciState {
        oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
        id: args.id.to_string(),
        status,
        pid,
        bundle: args.bundle.to_path_buf(),
        rootfs: args.rootfs.to_path_buf(),
        created: String::new(),
        owner: String::new(),
        annotations: args.spec.annotations().clone().unwrap_or_default(),
    }
}

fn setup(args: &InitArgs<'_>) -> crate::Result<Ready> {
    let spec = args.spec;
    let linux = spec.linux().as_ref();
    let process_spec = spec
        .process()
        .as_ref()
        .ok_or(crate::spec::SpecError::MissingField("process"))?;

    if args.plan.new_user {
        match args.channel.recv()? {
            Some(Message::IdMapsWritten) => {}
            _ => {
                return Err(crate::Error::Init(
                    "the runtime did not write the user namespace's id maps".into(),
                ));
            }
        }
    }
    if args.plan.new_user || args.plan.join_user.is_some() {
        // Become root of the user namespace (a new one's maps are written now; a joined one was joined by the
        // runtime before the fork), so that files are made with its mapped ids.
        // SAFETY: plain integer arguments.
        if unsafe { libc::setresgid(0, 0, 0) } != 0 || unsafe { libc::setresuid(0, 0, 0) } != 0 {
            return Err(crate::Error::Init(format!(
                "cannot become root in the container's user namespace: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    if args.wait_cgroup {
        match args.channel.recv()? {
            Some(Message::CgroupJoined) => {}
            _ => {
                return Err(crate::Error::Init(
                    "the runtime did not move the init into its cgroup".into(),
                ));
            }
        }
    }
    if args.defer_cgroupns {
        // SAFETY: NEWCGROUP does not unshare the file table; the init is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
            .map_err(|e| crate::Error::sys("create the cgroup namespace", e))?;
    }
    for (typ, path, fd) in &args.plan.join {
        namespaces::join(*typ, path, fd)?;
    }
    if args.plan.clone_flags & namespaces::flag(LinuxNamespaceType::Network) != 0 {
        namespaces::loopback_up()?;
    }
    // SAFETY: setsid takes no arguments; the forked init is not a process group leader.
    if unsafe { libc::setsid() } < 0 {
        return Err(crate::Error::Init(format!(
            "cannot start a new session: {}",
            std::io::Error::last_os_error()
        )));
    }
    // The host binary must not be reachable through /proc/<pid>/exe while the init runs in the container.
    // In a new user namespace the container's root is not the host's root: it could not write the binary, and
    // a non-dumpable init could not write its own /proc files, so the flag stays.
    if !args.plan.new_user {
        // SAFETY: PR_SET_DUMPABLE takes an integer flag.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }

    let caps = process::cap_sets(process_spec)?;
    let spec_hooks = spec.hooks().as_ref();
    let mut host_pid = 0;
    let wants_hooks = hooks::any(
        spec_hooks,
        &[
            HookKind::Prestart,
            HookKind::CreateRuntime,
            HookKind::CreateContainer,
            HookKind::StartContainer,
        ],
    );
    // Without a mount namespace of its own (new or joined) the container shares the host's mounts: like crun,
    // the runtime then changes no mount at all and only chroots into the rootfs.
    let own_mounts = args.plan.clone_flags & namespaces::flag(LinuxNamespaceType::Mount) != 0
        || args
            .plan
            .join
            .iter()
            .any(|(t, _, _)| *t == LinuxNamespaceType::Mount);
    let setup = |before_pivot: &mut dyn FnMut() -> crate::Result<()>| -> crate::Result<()> {
        if own_mounts {
            rootfs::setup_with(spec, args.rootfs, args.no_pivot, before_pivot)?;
        } else {
            before_pivot()?;
            rustix::process::chroot(args.rootfs)
                .map_err(|e| crate::Error::sys(format!("chroot into {}", args.rootfs.display()), e))?;
            std::env::set_current_dir("/").map_err(|e| crate::Error::sys("change to the new root", e))?;
        }
        Ok(())
    };
    setup(&mut || {
        if !wants_hooks {
            return Ok(());
        }
        // The runtime runs prestart and createRuntime now, in its namespaces; then createContainer runs here,
        // in the container's namespaces, before pivot_root.
        args.channel.send(&Message::HooksRequest)?;
        match args.channel.recv()? {
            Some(Message::HooksDone(pid)) => host_pid = pid,
            _ => {
                return Err(crate::Error::Init(
                    "the runtime did not finish the createRuntime hooks".into(),
                ));
            }
        }
        // The runtime-tools conformance suite (and crun) give the create hooks the status `created`.
        let state = hook_state(args, crate::state::Status::Created, host_pid);
        hooks::run(spec_hooks, HookKind::CreateContainer, &state)?;
        Ok(())
    })?;

    if let Some(sock) = &args.console {
        let size = process_spec
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup(sock, size)?;
    }
    let in_uts = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| nss.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
    if in_uts {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            rustix::system::sethostname(h.as_bytes())
                .map_err(|e| crate::Error::Init(format!("cannot set the hostname {h:?}: {e}")))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            rustix::system::setdomainname(d.as_bytes())
                .map_err(|e| crate::Error::Init(format!("cannot set the domainname {d:?}: {e}")))?;
        }
    }
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (name, value) in sysctl {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| crate::Error::Init(format!("cannot set sysctl {name} to {value:?}: {e}")))?;
        }
    }
    if let Some(adj) = process_spec.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| crate::Error::Init(format!("cannot set oom_score_adj to {adj}: {e}")))?;
    }
    // A missing working directory is created (as crun and Docker do), before the root may turn read-only.
    let cwd = process_spec.cwd();
    if let Err(source) = std::fs::create_dir_all(cwd) {
        // A cwd given as a descriptor link (/proc/self/fd/N) is checked when the process enters it.
        if !cwd.starts_with("/proc") {
            return Err(process::ProcessError::Cwd {
                path: cwd.clone(),
                source,
            }
            .into());
        }
    }
    if own_mounts {
        rootfs::finalize(spec)?;
    }

    // Resolve the program now so that a missing executable fails `create`, as with runc.
    let command = process::resolve(process_spec)?;
    let trampoline = Trampoline::prepare()?;
    let mut seccomp = args.seccomp.borrow_mut().take();
    if let Some(filter) = seccomp.take_if(|f| f.needs_listener()) {
        load_with_listener(filter, process_spec, &args.channel)?;
    }
    args.channel.send(&Message::Ready)?;
    Ok(Ready {
        command,
        trampoline,
        caps,
        host_pid,
        seccomp,
    })
}

fn wait_and_exec(args: &InitArgs<'_>, ready: Ready) -> crate::Result<()> {
    match &args.start {
        StartSignal::Fifo(fd) => {
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(fd, &mut byte) {
                    Ok(1) => break,
                    Ok(_) => return Err(crate::Error::Init("the exec fifo was closed before start".into())),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(crate::Error::Init(format!("cannot wait on the exec fifo: {e}"))),
                }
            }
        }
        StartSignal::Pipe(fd) => {
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(fd, &mut byte) {
                    Ok(1) => break,
                    Ok(_) => {
                        return Err(crate::Error::Init(
                            "the runtime went away before starting the container".into(),
                        ));
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        return Err(crate::Error::Init(format!(
                            "cannot wait for the start signal: {e}"
                        )));
                    }
                }
            }
        }
    }
    let spec = args.spec;
    let state = hook_state(args, crate::state::Status::Created, ready.host_pid);
    hooks::run(spec.hooks().as_ref(), HookKind::StartContainer, &state)?;
    if let Some(filter) = ready.seccomp {
        filter.load()?;
    }
    Err(ready
        .trampoline
        .exec(&ready.command.path, &ready.command.argv, &ready.command.envp)
        .into())
}

/// Loads a filter that has a listener now, while the runtime is still there to hand the listener to the seccomp
/// agent (runc's order): the process reports the listener's descriptor number and waits until the runtime has
/// passed it on. What the process does afterwards goes through the filter.
pub(crate) fn load_with_listener(
    filter: crate::seccomp::Filter,
    p: &oci_spec::runtime::Process,
    channel: &Channel,
) -> crate::Result<()> {
    if p.no_new_privileges() == Some(true) {
        process::apply_no_new_privs()?;
    }
    let listener = filter
        .load()?
        .ok_or_else(|| crate::Error::Init("the seccomp filter gave no listener".into()))?;
    channel.send(&Message::SeccompFd(std::os::fd::AsRawFd::as_raw_fd(&listener)))?;
    match channel.recv()? {
        Some(Message::SeccompDone) => Ok(()),
        _ => Err(crate::Error::Init(
            "the runtime did not hand the seccomp listener over".into(),
        )),
    }
}

/// The last steps of every container process (the init after `start`, and `exec`): rlimits, working
/// directory, capabilities and user, no_new_privs, descriptors, the seccomp filter, then the program through
/// the trampoline. Returns only on failure.
///
/// The filter is loaded last when no_new_privs is set. Without no_new_privs, loading needs CAP_SYS_ADMIN, so it
/// happens before the user and capabilities change (runc's order); the profile must then allow what follows.
pub(crate) fn become_process(
    p: &oci_spec::runtime::Process,
    caps: &process::CapSets,
    preserve_fds: u32,
    command: &process::Command,
    trampoline: &Trampoline,
    seccomp: Option<crate::seccomp::Filter>,
) -> crate::Error {
    let late = match drop_privileges(p, caps, preserve_fds, seccomp) {
        Ok(late) => late,
        Err(e) => return e,
    };
    if let Some(filter) = late
        && let Err(e) = filter.load()
    {
        return e.into();
    }
    trampoline
        .exec(&command.path, &command.argv, &command.envp)
        .into()
}

/// Rlimits, working directory, descriptors, the filter when it needs privilege, capabilities and user,
/// no_new_privs. Returns the filter still to load last (with no_new_privs).
fn drop_privileges(
    p: &oci_spec::runtime::Process,
    caps: &process::CapSets,
    preserve_fds: u32,
    seccomp: Option<crate::seccomp::Filter>,
) -> crate::Result<Option<crate::seccomp::Filter>> {
    let nnp = p.no_new_privileges() == Some(true);
    let (early, late) = if nnp { (None, seccomp) } else { (seccomp, None) };
    process::apply_rlimits(p)?;
    let cwd = p.cwd();
    let early_cwd = process::enter_cwd(cwd);
    // Before any filter: a profile need not allow close_range (only flags change; nothing is closed yet).
    process::close_extra_fds(preserve_fds)?;
    if let Some(filter) = early {
        filter.load()?;
    }
    process::apply_bounding(caps)?;
    process::apply_user(p)?;
    process::apply_caps(caps)?;
    if early_cwd.is_err() {
        // The directory may be reachable only for the container's user.
        process::enter_cwd(cwd)?;
    }
    if nnp {
        process::apply_no_new_privs()?;
    }
    Ok(late)
}
