//! Waiting for the OOM killer: v1 through `cgroup.event_control` and an eventfd, v2 through inotify on
//! `memory.events`.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify;

use crate::error::{Error, Result};
use crate::fsutil::{self, keyed_value, read_opt};

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The OOM killer acted in the cgroup (v2: `oom_kill` grew; v1: the cgroup hit its limit and an OOM
    /// notification was sent).
    Oom,
    /// The cgroup was removed.
    CgroupRemoved,
}

enum Kind {
    V1 {
        eventfd: OwnedFd,
        // Kept open: closing it would end the registration.
        _oom_control: File,
    },
    V2 {
        inotify: OwnedFd,
        last: u64,
    },
}

/// Watches one cgroup for OOM kills.
pub struct OomWatcher {
    kind: Kind,
    /// memory.oom_control (v1) or memory.events (v2).
    file: PathBuf,
}

impl OomWatcher {
    pub(crate) fn v1(dir: &Path) -> Result<Self> {
        let file = dir.join("memory.oom_control");
        let oom_control = File::open(&file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        let eventfd =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).map_err(|e| Error::Sys {
                op: "eventfd",
                path: file.clone(),
                source: e.into(),
            })?;
        let line = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        fsutil::write(dir, "cgroup.event_control", &line, "memory")?;
        Ok(Self {
            kind: Kind::V1 {
                eventfd,
                _oom_control: oom_control,
            },
            file,
        })
    }

    pub(crate) fn v2(dir: &Path) -> Result<Self> {
        let file = dir.join("memory.events");
        let sys = |op, e: rustix::io::Errno| Error::Sys {
            op,
            path: file.clone(),
            source: e.into(),
        };
        let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| sys("inotify_init1", e))?;
        inotify::add_watch(&ino, &file, inotify::WatchFlags::MODIFY).map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::ControllerMissing {
                controller: "memory".into(),
                path: file.clone(),
                value: "(OOM notification)".into(),
            },
            e => sys("inotify_add_watch", e),
        })?;
        let last = oom_kill_count_v2(&file)?.unwrap_or(0);
        Ok(Self {
            kind: Kind::V2 { inotify: ino, last },
            file,
        })
    }

    /// Blocks until the next OOM kill or until the cgroup is removed.
    pub fn wait(&mut self) -> Result<OomEvent> {
        loop {
            if let Some(ev) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(ev);
            }
        }
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout` and returns `None`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<OomEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let left = deadline - now;
            let fd = match &self.kind {
                Kind::V1 { eventfd, .. } => eventfd.as_fd(),
                Kind::V2 { inotify, .. } => inotify.as_fd(),
            };
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(Error::Sys {
                        op: "poll",
                        path: self.file.clone(),
                        source: e.into(),
                    });
                }
            }
            if let Some(ev) = self.consume()? {
                return Ok(Some(ev));
            }
        }
    }

    /// Reads what woke the poll and decides whether it was an OOM kill.
    fn consume(&mut self) -> Result<Option<OomEvent>> {
        match &mut self.kind {
            Kind::V1 { eventfd, .. } => {
                let mut buf = [0u8; 8];
                rustix::io::read(&*eventfd, &mut buf).map_err(|e| Error::Sys {
                    op: "read of the OOM eventfd",
                    path: self.file.clone(),
                    source: e.into(),
                })?;
                // The kernel also signals the eventfd when the cgroup goes away.
                if self.file.exists() {
                    Ok(Some(OomEvent::Oom))
                } else {
                    Ok(Some(OomEvent::CgroupRemoved))
                }
            }
            Kind::V2 { inotify, last } => {
                let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
                let mut reader = inotify::Reader::new(&*inotify, &mut buf);
                let mut removed = false;
                loop {
                    match reader.next() {
                        Ok(ev) => {
                            if ev
                                .events()
                                .intersects(inotify::ReadFlags::IGNORED | inotify::ReadFlags::DELETE_SELF)
                            {
                                removed = true;
                            }
                        }
                        Err(rustix::io::Errno::AGAIN) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(e) => {
                            return Err(Error::Sys {
                                op: "read of inotify events",
                                path: self.file.clone(),
                                source: e.into(),
                            });
                        }
                    }
                    if reader.is_buffer_empty() {
                        break;
                    }
                }
                match oom_kill_count_v2(&self.file)? {
                    Some(n) if n > *last => {
                        *last = n;
                        Ok(Some(OomEvent::Oom))
                    }
                    None => Ok(Some(OomEvent::CgroupRemoved)),
                    Some(_) if removed => Ok(Some(OomEvent::CgroupRemoved)),
                    Some(_) => Ok(None),
                }
            }
        }
    }
}

/// `oom_kill` of memory.events; `None` when the file is gone.
pub(crate) fn oom_kill_count_v2(file: &Path) -> Result<Option<u64>> {
    Ok(read_opt(file)?.map(|s| keyed_value(&s, "oom_kill").unwrap_or(0)))
}

/// `oom_kill` of v1 memory.oom_control (kernel 4.13 and later); `None` when the file is gone.
pub(crate) fn oom_kill_count_v1(dir: &Path) -> Result<Option<u64>> {
    Ok(read_opt(&dir.join("memory.oom_control"))?.map(|s| keyed_value(&s, "oom_kill").unwrap_or(0)))
}
