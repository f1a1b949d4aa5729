//! `run`: create and start in one go; in the foreground, forward signals and return the exit status.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::create::{self, CreateOptions, StartMode};
use crate::state::Root;
use crate::{Error, Result};

/// Signals the foreground `run` forwards to the container's init.
const FORWARDED: [i32; 9] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGTSTP,
];

/// Runs container `opts.id`. Detached: returns 0 once it is started. In the foreground: waits for the
/// process, deletes the container, and returns the exit status as a shell reports it (128 + signal).
/// Also returns the warnings of failed `poststart` and `poststop` hooks.
pub fn run(root: &Root, opts: &CreateOptions, detach: bool) -> Result<(i32, Vec<String>)> {
    if detach {
        create::create(root, opts, StartMode::Detached)?;
        return match super::start::start(root, &opts.id) {
            Ok(warnings) => Ok((0, warnings)),
            Err(e) => {
                let _ = super::delete::delete(root, &opts.id, true);
                Err(e)
            }
        };
    }
    let created = create::create(root, opts, StartMode::Attached)?;
    let mut warnings = Vec::new();
    let status = (|| {
        let master = match &created.console {
            Some(sock) => Some(crate::console::recv_fd(sock.as_fd())?),
            None => None,
        };
        let pipe = created
            .start_pipe
            .as_ref()
            .ok_or_else(|| Error::Init("the container has no start pipe".into()))?;
        rustix::io::write(pipe, b"0").map_err(|e| Error::sys("start the container", e))?;
        if let Ok(Some(record)) = root.load(&opts.id) {
            warnings.extend(super::start::poststart(&record));
        }
        forward_and_wait(created.pid, &created.pidfd, master)
    })();
    let mut created = created;
    let remove_cgroup = created.janitor.is_none();
    if let Ok(w) = super::delete::delete_inner(root, &opts.id, true, remove_cgroup) {
        warnings.extend(w);
    }
    if let Some(janitor) = created.janitor.as_mut() {
        janitor.finish(true);
    }
    Ok((status?, warnings))
}

/// Waits for our child `pid` to exit, forwarding signals to it, and relaying the terminal when `master` is a
/// pty master; returns the exit status as a shell reports it.
pub(crate) fn forward_and_wait(pid: i32, pidfd: &OwnedFd, master: Option<OwnedFd>) -> Result<i32> {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: `set` is initialised; -1 asks for a new descriptor.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if sfd < 0 {
        return Err(Error::sys("create a signalfd", std::io::Error::last_os_error()));
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    let sfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sfd) };
    if let Some(m) = &master {
        crate::console::copy_winsize(m.as_fd());
    }
    let _raw = master.as_ref().map(|_| crate::console::RawMode::enter());
    let mut relay = master.as_ref().map(|m| Relay {
        master: m.as_fd(),
        stdin_open: true,
        master_open: true,
    });
    loop {
        use rustix::event::{PollFd, PollFlags};
        let stdin = rustix::stdio::stdin();
        let mut fds = vec![
            PollFd::new(pidfd, PollFlags::IN),
            PollFd::new(&sfd, PollFlags::IN),
        ];
        if let Some(r) = &relay {
            fds.push(PollFd::from_borrowed_fd(
                r.master,
                if r.master_open {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ));
            fds.push(PollFd::from_borrowed_fd(
                stdin,
                if r.stdin_open {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys("wait for the container", e)),
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
        drop(fds);
        if let Some(r) = relay.as_mut() {
            if revents[2].intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                r.master_open = copy(r.master, rustix::stdio::stdout());
            }
            if revents[3].intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                r.stdin_open = copy(stdin, r.master);
            }
        }
        if revents[1].contains(PollFlags::IN) {
            // SAFETY: a zeroed signalfd_siginfo is a valid buffer for read.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: reads at most size_of::<signalfd_siginfo>() bytes into `info`.
            let n = unsafe {
                libc::read(
                    sfd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n > 0 {
                let sig = info.ssi_signo as i32;
                match &relay {
                    // The kernel tells the terminal's foreground process group about the new size.
                    Some(r) if sig == libc::SIGWINCH => crate::console::copy_winsize(r.master),
                    _ => {
                        let _ = super::signal_pidfd(pidfd, sig);
                    }
                }
            }
        }
        if revents[0].contains(rustix::event::PollFlags::IN) {
            // Drain what the process wrote before it exited.
            if let Some(r) = &relay {
                while r.master_open && readable(r.master) && copy(r.master, rustix::stdio::stdout()) {}
            }
            break;
        }
    }
    let mut status = 0;
    // SAFETY: reaps our own child into a valid status integer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(Error::sys(
            "reap the container's process",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// The terminal relay of a foreground run: host stdin → pty master → host stdout.
struct Relay<'a> {
    master: BorrowedFd<'a>,
    stdin_open: bool,
    master_open: bool,
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
        fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Copies one chunk; false once the source is closed (end of file, or EIO from a pty whose slave closed).
fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    let n = match rustix::io::read(from, &mut buf) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    let mut done = 0;
    while done < n {
        match rustix::io::write(to, &buf[done..n]) {
            Ok(w) => done += w,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}
