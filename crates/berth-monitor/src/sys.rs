//! The system calls the monitor makes that rustix does not wrap (fork, signalfd, signal masks), and small
//! helpers over the ones it does.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

use rustix::io::Errno;
use thiserror::Error;

/// A failed system call.
#[derive(Debug, Error)]
#[error("cannot {what}: {source}")]
pub struct SysError {
    /// What was being done.
    pub what: &'static str,
    /// The cause.
    pub source: Errno,
}

fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

/// Which side of a fork this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// The child.
    Child,
    /// The parent, with the child's pid.
    Parent(i32),
}

/// `fork()`.
///
/// # Safety
/// The calling process must be single-threaded (the child continues with a copy of this thread only).
pub unsafe fn fork() -> Result<Fork, SysError> {
    // SAFETY: fork takes no arguments; the caller guarantees that no other thread holds a lock the child
    // could need.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(SysError {
            what: "fork the monitor",
            source: last_errno(),
        }),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it points to; sigaddset only fails for invalid numbers, which
    // the callers never pass.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &signal in signals {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    }
}

/// Blocks `signals` in this thread and returns a non-blocking, close-on-exec signalfd that reports them.
/// Children started with `std::process::Command` get an empty mask again.
pub fn signalfd(signals: &[i32]) -> Result<OwnedFd, SysError> {
    let set = sigset(signals);
    // SAFETY: `set` is an initialised sigset; the old mask is not asked for.
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(SysError {
            what: "block signals",
            source: last_errno(),
        });
    }
    // SAFETY: -1 asks for a new descriptor; `set` is initialised.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(SysError {
            what: "create a signalfd",
            source: last_errno(),
        });
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads every pending signal from a non-blocking signalfd; returns their numbers.
pub fn drain_signalfd(fd: BorrowedFd<'_>) -> Vec<i32> {
    let mut signals = Vec::new();
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    while let Ok(n) = rustix::io::read(fd, &mut buf) {
        if n < buf.len() {
            break;
        }
        // The first field of signalfd_siginfo is ssi_signo (u32).
        let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        signals.push(i32::try_from(signo).unwrap_or(0));
    }
    signals
}

/// Points stdin, stdout and stderr at /dev/null.
pub fn null_stdio() -> Result<(), SysError> {
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|source| SysError {
        what: "open /dev/null",
        source,
    })?;
    let err = |source| SysError {
        what: "point stdio at /dev/null",
        source,
    };
    rustix::stdio::dup2_stdin(&null).map_err(err)?;
    rustix::stdio::dup2_stdout(&null).map_err(err)?;
    rustix::stdio::dup2_stderr(&null).map_err(err)?;
    Ok(())
}

/// Closes every descriptor above stderr except `keep`: whatever the starting process let this one inherit
/// (the monitor outlives it and must not hold its pipes open).
pub fn close_inherited(keep: BorrowedFd<'_>) {
    let keep = u32::try_from(keep.as_raw_fd()).unwrap_or(u32::MAX);
    // SAFETY: close_range takes no pointers; every descriptor this process uses later is opened afterwards,
    // except `keep`, which is left alone. Failure (an old kernel) leaves the descriptors open, which is
    // harmless for the monitor itself.
    unsafe {
        if keep > 3 {
            libc::close_range(3, keep - 1, 0);
        }
        libc::close_range(keep.saturating_add(1), u32::MAX, 0);
    }
}

/// Unmaps the clean, read-only file pages of this process (its program text and constants), so that only
/// the code the monitor runs from now on is mapped again as it runs.
///
/// The kernel maps file pages 64 KiB at a time ("fault-around"), so the start-up code of a static binary
/// (runtime create, config parsing, glibc's initialisation) leaves most of the binary mapped for the life of
/// the monitor although the steady state runs a fraction of it. Only mappings without anonymous (copied)
/// pages are dropped: their contents come back from the file identically; relocated (RELRO) and writable
/// mappings are left alone. Returns the number of kilobytes that were mapped in the dropped ranges.
pub fn drop_startup_pages() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    let mut current: Option<(usize, usize, bool)> = None;
    let mut rss = 0u64;
    let mut anonymous = 0u64;
    let mut finish = |range: Option<(usize, usize, bool)>, rss: u64, anonymous: u64| {
        if let Some((start, end, candidate)) = range
            && candidate
            && anonymous == 0
            && rss > 0
        {
            // SAFETY: the range is a whole mapping of this process that is read-only, file-backed and holds
            // no anonymous pages; dropping its pages only makes the next access read them from the file
            // again, with the same contents.
            if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
                dropped += rss;
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        {
            finish(current.take(), rss, anonymous);
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let candidate = perms.starts_with('r') && !perms.contains('w') && inode != "0";
            current = Some((start, end, candidate));
            rss = 0;
            anonymous = 0;
        } else if first == "Rss:" {
            rss = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Anonymous:" {
            // Unknown means "do not touch".
            anonymous = fields.next().and_then(|v| v.parse().ok()).unwrap_or(1);
        }
    }
    finish(current.take(), rss, anonymous);
    dropped
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: impl AsFd) -> Result<(), SysError> {
    let err = |source| SysError {
        what: "make a descriptor non-blocking",
        source,
    };
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(err)?;
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK).map_err(err)
}

/// Receives one descriptor sent with SCM_RIGHTS (the runtime sends the pty master this way, with the pty's
/// name as the message body).
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).map_err(|source| {
        SysError {
            what: "receive the terminal from the console socket",
            source,
        }
    })?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(SysError {
        what: "receive the terminal from the console socket (no descriptor came)",
        source: Errno::NOMSG,
    })
}

/// Sends `signal` to `pid`.
pub fn kill(pid: i32, signal: i32) -> Result<(), SysError> {
    // SAFETY: kill takes no pointers.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(SysError {
            what: "send a signal",
            source: last_errno(),
        });
    }
    Ok(())
}

/// The raw descriptor number, for messages and poll bookkeeping.
pub fn raw(fd: &impl AsFd) -> i32 {
    fd.as_fd().as_raw_fd()
}

/// Makes `cmd`'s child start with no blocked signal and every signal at its default disposition, whatever this
/// process blocks (the monitor takes SIGCHLD on a signalfd, berth-init blocks everything) or inherited as ignored
/// (a daemon started from a shell's background job ignores SIGINT and SIGQUIT): a container's processes must not
/// inherit either.
pub fn reset_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec and calls only async-signal-safe functions
    // (sigemptyset, sigprocmask, signal) with valid arguments; signal() on SIGKILL/SIGSTOP just fails.
    unsafe {
        cmd.pre_exec(|| {
            for signal in 1..libc::SIGRTMIN() {
                libc::signal(signal, libc::SIG_DFL);
            }
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_passing_round_trip() {
        use std::io::{Read as _, Write as _};
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, mut w) = std::io::pipe().unwrap();
        let fds = [w.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &a,
            &[std::io::IoSlice::new(b"/dev/pts/9")],
            &mut control,
            rustix::net::SendFlags::empty(),
        )
        .unwrap();
        let got = recv_fd(b.as_fd()).unwrap();
        w.write_all(b"x").unwrap();
        drop(w);
        let mut file = std::fs::File::from(got);
        file.write_all(b"y").unwrap();
        drop(file);
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        assert_eq!(text, "xy");
        drop(a);
        assert!(recv_fd(b.as_fd()).is_err(), "no descriptor after the peer closed");
    }

    #[test]
    fn dropping_startup_pages_keeps_the_program_working() {
        let before = std::fs::read_to_string("/proc/self/status").unwrap();
        drop_startup_pages();
        // Code and constants come back from the file as they are used.
        let text = format!("{:?}", (1..5).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(text, "[3, 6, 9, 12]");
        assert!(before.contains("VmRSS"));
    }

    #[test]
    fn nonblocking_read_of_an_empty_pipe_would_block() {
        let (r, _w) = std::io::pipe().unwrap();
        set_nonblocking(&r).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(rustix::io::read(&r, &mut buf), Err(Errno::AGAIN));
    }
}
