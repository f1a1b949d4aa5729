//! Shared test helpers: unique names, processes that are always killed, cgroups that are always removed.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_cgroups::Cgroup;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// "berth-test-<pid>-<n>-<what>": unique within and across test processes, visible if leaked.
pub fn unique(what: &str) -> String {
    format!(
        "berth-test-{}-{}-{what}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A process that waits for a line on stdin before it runs `script` (so it can be moved into a cgroup
/// first).
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    pub fn shell(script: &str) -> Proc {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn /bin/sh");
        let stdin = child.stdin.take();
        Proc { child, stdin }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn go(&mut self) {
        let mut s = self.stdin.take().expect("go once");
        s.write_all(b"go\n").expect("write to child");
    }

    /// Waits for the exit with a deadline; returns the status.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    pub fn output(mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state letter of a process (third field of /proc/<pid>/stat).
pub fn proc_state(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = &s[s.rfind(')').expect("comm end") + 2..];
    after.chars().next().expect("state")
}

/// Removes, on drop (also on panic), every directory a test cgroup could have left: thawed first, the
/// processes killed, then the container's directories and the named test parents.
pub struct CgroupGuard {
    pub cg: Cgroup,
    /// Extra directories to remove last (test parents), deepest first.
    pub extra: Vec<PathBuf>,
}

impl CgroupGuard {
    pub fn new(cg: Cgroup) -> Self {
        CgroupGuard {
            cg,
            extra: Vec::new(),
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for p in self.cg.paths() {
            let _ = std::fs::write(p.join("freezer.state"), "THAWED");
            let _ = std::fs::write(p.join("cgroup.freeze"), "0");
        }
        let _ = self.cg.kill_all(libc::SIGKILL);
        let _ = self.cg.destroy();
        for p in self.cg.paths() {
            remove_tree(&p);
        }
        for p in &self.extra {
            remove_tree(p);
        }
    }
}

/// rmdir of a cgroup tree, children first, a few tries.
pub fn remove_tree(p: &Path) {
    for _ in 0..100 {
        if !p.exists() {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path());
                }
            }
        }
        if std::fs::remove_dir(p).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private cgroup2 mount in a temporary directory, unmounted on drop.
pub struct Cgroup2Mount {
    pub dir: tempfile::TempDir,
}

impl Cgroup2Mount {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        rustix::mount::mount(
            "none",
            dir.path(),
            "cgroup2",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mount cgroup2");
        Cgroup2Mount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cgroup2Mount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}
