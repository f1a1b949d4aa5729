//! `berth-init` (Docker's `--init`, like tini): runs its arguments as a child in its own process group (the
//! terminal's foreground group when stdin is a terminal), forwards every signal it receives to the child,
//! reaps every zombie (it is pid 1, or a child subreaper otherwise), and exits with the child's status
//! (128 + the signal when the child was killed).
//!
//! All signals except the synchronous ones are blocked and taken with `sigwaitinfo`; a blocked signal is
//! queued even for a namespace's pid 1, which would otherwise drop signals it has no handler for.

use std::ffi::OsString;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Signals that are never blocked: they come from faults of this process itself.
const SYNCHRONOUS: [i32; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The exit code for a wait status (`waitpid`'s raw status).
pub fn status_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "berth-init: {message}");
}

/// Blocks every signal but the synchronous ones; returns the blocked set.
fn block_signals() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set; sigdelset gets valid signal numbers; the mask call reads the
    // initialised set and does not ask for the old one.
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        for signal in SYNCHRONOUS {
            libc::sigdelset(set.as_mut_ptr(), signal);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    }
}

/// Runs `args` (the program and its arguments); returns berth-init's exit code.
pub fn run(args: &[OsString]) -> i32 {
    let Some((program, rest)) = args.split_first() else {
        say("usage: berth-init PROGRAM [ARGUMENT...]");
        return 2;
    };
    let set = block_signals();
    // SAFETY: getpid takes no arguments.
    if unsafe { libc::getpid() } != 1 {
        // Not pid 1: become a subreaper so that orphans still come here to be reaped.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    // So that the child can take the terminal's foreground while it is not in the foreground group yet.
    // SAFETY: setting a signal's disposition to SIG_IGN involves no handler code.
    unsafe {
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    let mut cmd = Command::new(program);
    cmd.args(rest).process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and calls only async-signal-safe
    // functions (isatty, getpid, tcsetpgrp, signal).
    unsafe {
        cmd.pre_exec(|| {
            if libc::isatty(0) == 1 {
                // Failure leaves the child in the background of a terminal it may not need.
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            libc::signal(libc::SIGTTIN, libc::SIG_DFL);
            Ok(())
        });
    }
    // After the terminal hand-over above (which needs SIGTTOU ignored): the blocked set must not reach the
    // program, or SIGTERM would never arrive.
    crate::sys::reset_signals_in_child(&mut cmd);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            say(&format!("cannot run {}: {e}", program.to_string_lossy()));
            return match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
        }
    };
    let Ok(child_pid) = i32::try_from(child.id()) else {
        say("the child's pid is out of range");
        return 1;
    };
    // The child is reaped below with waitpid(-1); the handle is not used again.
    drop(child);
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        // SAFETY: `set` is initialised; `info` is written by the call.
        let signal = unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
        if signal < 0 {
            continue;
        }
        if signal != libc::SIGCHLD {
            // SAFETY: kill takes no pointers. ESRCH (the child is gone, not reaped yet) is fine.
            unsafe { libc::kill(child_pid, signal) };
            continue;
        }
        let mut child_code = None;
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child_pid {
                child_code = Some(status_code(status));
            }
        }
        if let Some(code) = child_code {
            return code;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(status_code(3 << 8), 3);
        assert_eq!(status_code(0), 0);
        assert_eq!(status_code(libc::SIGKILL), 137);
        assert_eq!(status_code(libc::SIGTERM), 143);
    }
}
