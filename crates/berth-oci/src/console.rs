//! The container's terminal: a pty made inside the container's devpts, whose master goes to the
//! `--console-socket` listener with SCM_RIGHTS (as runc sends it), and whose slave becomes the init's stdio and
//! controlling terminal.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType};
use thiserror::Error;

/// Errors of the console setup.
#[derive(Debug, Error)]
pub enum ConsoleError {
    /// The console socket could not be reached.
    #[error("cannot connect to the console socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: rustix::io::Errno,
    },
    /// A pty call failed.
    #[error("cannot set up the container's terminal ({what}): {source}")]
    Pty {
        /// The step.
        what: &'static str,
        /// The cause.
        source: rustix::io::Errno,
    },
    /// The master could not be sent.
    #[error("cannot send the terminal to the console socket: {0}")]
    Send(rustix::io::Errno),
}

/// Connects to the `--console-socket` (done by the runtime before the fork; the init inherits the socket).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let err = |source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(err)?;
    let addr = SocketAddrUnix::new(path).map_err(err)?;
    rustix::net::connect(&sock, &addr).map_err(err)?;
    Ok(sock)
}

/// Sends `fd` over `socket` with `name` as the message body.
pub fn send_fd(socket: BorrowedFd<'_>, name: &[u8], fd: BorrowedFd<'_>) -> Result<(), rustix::io::Errno> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let iov = [std::io::IoSlice::new(name)];
    rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// In the init, after pivot_root: makes the pty, sends the master, and makes the slave stdin, stdout,
/// stderr and the controlling terminal (the init is already a session leader).
pub fn setup(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<(), ConsoleError> {
    let pty = |what| move |source| ConsoleError::Pty { what, source };
    let master = rustix::fs::open(
        "/dev/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(pty("open /dev/ptmx"))?;
    rustix::pty::unlockpt(&master).map_err(pty("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(pty("ptsname"))?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY, Mode::empty())
        .map_err(pty("open the pty slave"))?;
    if let Some((height, width)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, ws).map_err(pty("set the window size"))?;
    }
    send_fd(socket.as_fd(), name.as_bytes(), master.as_fd()).map_err(ConsoleError::Send)?;
    drop(master);
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; `slave` stays open for the call.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&slave), target) } < 0 {
            return Err(ConsoleError::Pty {
                what: "dup2 onto stdio",
                source: rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                    .unwrap_or(rustix::io::Errno::IO),
            });
        }
    }
    rustix::process::ioctl_tiocsctty(&slave).map_err(pty("make it the controlling terminal"))?;
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`].
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<OwnedFd, ConsoleError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).map_err(|source| {
        ConsoleError::Pty {
            what: "receive the terminal",
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
    Err(ConsoleError::Pty {
        what: "receive the terminal",
        source: rustix::io::Errno::NOMSG,
    })
}

/// A connected socketpair for a foreground `run` that owns the terminal itself: (runtime end, init end).
pub fn local_pair() -> Result<(OwnedFd, OwnedFd), ConsoleError> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|source| ConsoleError::Pty {
        what: "create the terminal socketpair",
        source,
    })
}

/// Puts the host terminal on stdin into raw mode until dropped (no-op when stdin is not a terminal).
pub struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    /// Enters raw mode.
    pub fn enter() -> Self {
        let stdin = rustix::stdio::stdin();
        let saved = rustix::termios::tcgetattr(stdin).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
        }
        Self { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// Copies the window size of the host terminal on stdin to `master` (nothing when stdin is no terminal).
pub fn copy_winsize(master: BorrowedFd<'_>) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}
