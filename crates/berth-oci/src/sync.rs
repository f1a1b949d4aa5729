//! The typed channel between the runtime and the container's init: a `SOCK_SEQPACKET` socketpair, so each
//! message arrives whole, and a closed peer reads as end of stream.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use thiserror::Error;

/// Errors on the channel.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The socketpair could not be made.
    #[error("cannot create the runtime's sync socket: {0}")]
    Create(rustix::io::Errno),
    /// Sending failed.
    #[error("cannot send to the container's init: {0}")]
    Send(rustix::io::Errno),
    /// Receiving failed.
    #[error("cannot receive from the container's init: {0}")]
    Recv(rustix::io::Errno),
    /// A message with an unknown tag.
    #[error("the container's init sent a malformed message")]
    Malformed,
}

/// A message between the runtime and the init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// init → runtime: the container is set up and waits for `start`.
    Ready,
    /// init → runtime: setting up failed; the text says why.
    Error(String),
    /// runtime → init: the user namespace's id maps are written.
    IdMapsWritten,
    /// init → runtime: the seccomp listener is this descriptor number in the init; hand it to the agent.
    SeccompFd(i32),
    /// runtime → init: the listener was handed to the seccomp agent.
    SeccompDone,
    /// runtime → init: the init is in its cgroup (v1); it may now make its cgroup namespace.
    CgroupJoined,
    /// init → runtime: the mounts are in place; run the createRuntime hooks, then answer [`Message::HooksDone`].
    HooksRequest,
    /// runtime → init: the runtime's hooks ran; the init's pid in the runtime's pid namespace.
    HooksDone(i32),
}

const MAX: usize = 8192;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// Makes a connected pair (runtime end, init end), both close-on-exec.
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(SyncError::Create)?;
    Ok((Channel(a), Channel(b)))
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Channel {
    /// Closes this end for the peer, which reads end of file, by putting a close-on-exec copy of `placeholder`
    /// in its place: the descriptor number stays valid, so nothing else can get it while this `Channel` lives,
    /// and `dup3` and `close` are what even strict seccomp profiles allow. The channel must not be used after.
    pub fn close(&self, placeholder: BorrowedFd<'_>) {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        // SAFETY: dup3 onto a descriptor this Channel owns; the old socket is closed by the kernel.
        let rc = unsafe { libc::dup3(placeholder.as_raw_fd(), fd, libc::O_CLOEXEC) };
        if rc < 0 {
            // SAFETY: the fallback only closes our own descriptor; the owner never uses it again (the init
            // ends in exec or _exit, so the OwnedFd is never dropped).
            unsafe { libc::close(fd) };
        }
    }

    /// Sends one message.
    pub fn send(&self, msg: &Message) -> Result<(), SyncError> {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Message::Ready => buf.push(b'R'),
            Message::Error(text) => {
                buf.push(b'E');
                let bytes = text.as_bytes();
                buf.extend_from_slice(&bytes[..bytes.len().min(MAX - 1)]);
            }
            Message::IdMapsWritten => buf.push(b'M'),
            Message::HooksRequest => buf.push(b'H'),
            Message::CgroupJoined => buf.push(b'C'),
            Message::SeccompDone => buf.push(b'G'),
            Message::SeccompFd(fd) => {
                buf.push(b'F');
                buf.extend_from_slice(&fd.to_le_bytes());
            }
            Message::HooksDone(pid) => {
                buf.push(b'D');
                buf.extend_from_slice(&pid.to_le_bytes());
            }
        }
        rustix::net::send(&self.0, &buf, SendFlags::NOSIGNAL).map_err(SyncError::Send)?;
        Ok(())
    }

    /// Receives one message; `None` when the peer closed its end.
    pub fn recv(&self) -> Result<Option<Message>, SyncError> {
        let mut buf = vec![0u8; MAX];
        let n = loop {
            match rustix::net::recv(&self.0, &mut buf, RecvFlags::empty()) {
                Ok((n, _)) => break n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SyncError::Recv(e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = match buf[0] {
            b'R' => Message::Ready,
            b'E' => Message::Error(String::from_utf8_lossy(&buf[1..n]).into_owned()),
            b'M' => Message::IdMapsWritten,
            b'H' => Message::HooksRequest,
            b'C' => Message::CgroupJoined,
            b'G' => Message::SeccompDone,
            b'F' if n == 5 => Message::SeccompFd(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])),
            b'D' if n == 5 => Message::HooksDone(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])),
            _ => return Err(SyncError::Malformed),
        };
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_eof() {
        let (a, b) = pair().expect("pair");
        for m in [
            Message::Ready,
            Message::Error("bad mount".into()),
            Message::IdMapsWritten,
            Message::HooksRequest,
            Message::CgroupJoined,
            Message::SeccompFd(5),
            Message::SeccompDone,
            Message::HooksDone(-7),
        ] {
            a.send(&m).expect("send");
            assert_eq!(b.recv().expect("recv"), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().expect("recv"), None);
    }
}
