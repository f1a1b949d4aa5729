//! Root tests of the rootfs setup. Each runs its body in a forked child that first unshares its mount
//! namespace, so nothing it mounts reaches the host: the namespace disappears with the child, which
//! reports through a pipe and its exit status. The temporary rootfs is created and removed by the parent.
//! Without root they are skipped (they print why).

use super::{RootfsError, finalize, setup};
use oci_spec::runtime::Spec;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

const TMPFS_MAGIC: i64 = 0x0102_1994;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;
const ST_RDONLY: u64 = 1;

type TestResult = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: this test needs root");
        false
    }
}

/// Runs `body` in a forked child inside a new mount namespace; fails with the child's message.
fn in_child(body: impl FnOnce() -> TestResult) {
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap_or_else(|e| panic!("pipe: {e}"));
    // SAFETY: the child only runs `body` (which uses the same primitives as the parent thread) and leaves
    // with `_exit`, never returning into the test harness; glibc's fork resets the allocator locks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(read_end);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: CLONE_NEWNS only changes this process's mount namespace; the child is single-threaded.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
                .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
            body()
        }));
        let message = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(m)) => Some(m),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned()),
            ),
        };
        let code = match message {
            None => 0,
            Some(m) => {
                let _ = rustix::io::write(&write_end, m.as_bytes());
                1
            }
        };
        // SAFETY: _exit ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(write_end);
    let mut message = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut message);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed (status {status:#x}): {message}"
    );
}

fn spec(json: serde_json::Value) -> Spec {
    serde_json::from_value(json).unwrap_or_else(|e| panic!("spec: {e}"))
}

/// A temporary bundle: `rootfs/` with a marker file, and `src/` (a bind source) with a file.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-rootfs-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        for d in [
            "rootfs/etc",
            "rootfs/proc",
            "rootfs/sys",
            "rootfs/dev",
            "rootfs/tmp",
            "src/sub",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
        }
        std::fs::write(dir.path().join("rootfs/marker"), "inside").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("src/file"), "from-src").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("hostname"), "berth-test").unwrap_or_else(|e| panic!("{e}"));
        Bundle { dir }
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
}

fn statfs(path: &str) -> Result<(i64, u64, u64, u64), String> {
    let st = rustix::fs::statfs(path).map_err(|e| format!("statfs {path}: {e}"))?;
    let vfs = rustix::fs::statvfs(path).map_err(|e| format!("statvfs {path}: {e}"))?;
    Ok((
        st.f_type as i64,
        vfs.f_flag.bits(),
        st.f_blocks as u64,
        st.f_bsize as u64,
    ))
}

fn write_fails_with(path: &str, errno: i32) -> TestResult {
    match std::fs::write(path, "x") {
        Ok(()) => Err(format!("writing {path} succeeded")),
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        Err(e) => Err(format!("writing {path}: expected errno {errno}, got {e}")),
    }
}

#[test]
fn mounts_devices_and_pivot_root() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": b.rootfs()},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m"]},
            {"destination": "/data", "type": "bind", "source": b.path("src"), "options": ["rbind", "rprivate"]},
            {"destination": "/data-ro/deep", "source": b.path("src"), "options": ["bind", "ro"]},
            {"destination": "/etc/hostname", "type": "bind", "source": b.path("hostname"), "options": ["bind", "ro", "nosuid"]}
        ],
        "linux": {
            "devices": [
                {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o620, "uid": 0, "gid": 5},
                {"path": "/dev/myfifo", "type": "p", "fileMode": 0o600}
            ]
        }
    }));
    let rootfs = b.rootfs();
    in_child(|| {
        setup(&s, &rootfs, false).map_err(|e| format!("setup: {e}"))?;
        // Inside the rootfs, at its root.
        check!(
            std::fs::read_to_string("/marker").ok().as_deref() == Some("inside"),
            "not in the rootfs"
        );
        check!(
            std::env::current_dir().ok().as_deref() == Some(Path::new("/")),
            "cwd is not /"
        );
        check!(!Path::new("/src").exists(), "host paths visible");
        // The old root is gone: one mount of the rootfs at /, nothing of the host.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let roots = mountinfo
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .count();
        check!(roots == 1, "the old root is still mounted: {mountinfo}");

        check!(statfs("/proc")?.0 == PROC_SUPER_MAGIC, "/proc is not a procfs");
        let (t, flags, _, _) = statfs("/sys")?;
        check!(
            t == SYSFS_MAGIC && flags & ST_RDONLY != 0,
            "/sys is not a read-only sysfs"
        );
        let (t, _, blocks, bsize) = statfs("/tmp")?;
        check!(
            t == TMPFS_MAGIC && blocks * bsize == 1 << 20,
            "/tmp is not a 1 MiB tmpfs ({blocks} x {bsize})"
        );
        let (t, _, blocks, bsize) = statfs("/dev")?;
        check!(
            t == TMPFS_MAGIC && blocks * bsize == 65536 << 10,
            "/dev is not a 64 MiB tmpfs"
        );

        // Binds: rw, ro, and a file bind onto a created file.
        check!(
            std::fs::read_to_string("/data/file").ok().as_deref() == Some("from-src"),
            "bind missing"
        );
        std::fs::write("/data/new", "w").map_err(|e| format!("write to the rw bind: {e}"))?;
        check!(
            std::fs::read_to_string("/data-ro/deep/new").is_ok(),
            "ro bind is not the same directory"
        );
        write_fails_with("/data-ro/deep/other", libc::EROFS)?;
        check!(
            std::fs::read_to_string("/etc/hostname").ok().as_deref() == Some("berth-test"),
            "file bind missing"
        );
        write_fails_with("/etc/hostname", libc::EROFS)?;
        let (_, flags, _, _) = statfs("/etc/hostname")?;
        check!(flags & libc::ST_NOSUID != 0, "file bind is not nosuid");

        // Devices and symlinks.
        for (path, major, minor) in [
            ("/dev/null", 1, 3),
            ("/dev/zero", 1, 5),
            ("/dev/full", 1, 7),
            ("/dev/random", 1, 8),
            ("/dev/urandom", 1, 9),
            ("/dev/tty", 5, 0),
            ("/dev/net/tun", 10, 200),
        ] {
            let md = std::fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
            check!(md.file_type().is_char_device(), "{path} is not a char device");
            let rdev = md.rdev();
            check!(
                rustix::fs::major(rdev) == major && rustix::fs::minor(rdev) == minor,
                "{path} has the wrong number"
            );
            let mode = md.permissions().mode() & 0o7777;
            let want = if path == "/dev/net/tun" { 0o620 } else { 0o666 };
            check!(mode == want, "{path} has mode {mode:o}");
        }
        check!(
            std::fs::metadata("/dev/net/tun").map(|m| m.gid()).ok() == Some(5),
            "/dev/net/tun gid"
        );
        check!(
            std::fs::symlink_metadata("/dev/myfifo").is_ok_and(|m| m.file_type().is_fifo()),
            "fifo missing"
        );
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            let got = std::fs::read_link(link).map_err(|e| format!("{link}: {e}"))?;
            check!(got == Path::new(target), "{link} -> {}", got.display());
        }
        check!(Path::new("/dev/pts/ptmx").exists(), "devpts not mounted");
        check!(Path::new("/dev/mqueue").is_dir(), "mqueue missing");

        // cgroup: cgroup2, or a tmpfs with the v1 hierarchies.
        let (t, flags, _, _) = statfs("/sys/fs/cgroup")?;
        if t == TMPFS_MAGIC {
            let names: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            check!(
                names.iter().any(|n| n == "memory"),
                "no memory hierarchy in {names:?}"
            );
            check!(
                Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                "memory hierarchy is empty"
            );
            let (_, mflags, _, _) = statfs("/sys/fs/cgroup/memory")?;
            check!(mflags & ST_RDONLY != 0, "cgroup hierarchy is not read-only");
            if names.iter().any(|n| n == "cpu,cpuacct") {
                let link = std::fs::read_link("/sys/fs/cgroup/cpu").map_err(|e| e.to_string())?;
                check!(link == Path::new("cpu,cpuacct"), "cpu link");
            }
        } else {
            check!(
                t == 0x6367_7270 && flags & ST_RDONLY != 0,
                "/sys/fs/cgroup is not a read-only cgroup2"
            );
        }

        // tmpfs and /dev stay writable until finalize.
        std::fs::write("/dev/shm-probe", "x")
            .map_err(|e| format!("/dev not writable before finalize: {e}"))?;
        Ok(())
    });
}

#[test]
fn symlinked_destinations_stay_inside_the_rootfs() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let outside = b.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.join("marker"), "host").unwrap_or_else(|e| panic!("{e}"));
    let rootfs = b.rootfs();
    // An absolute symlink to the real host directory, and a relative one climbing out of the rootfs.
    std::os::unix::fs::symlink(&outside, rootfs.join("abs")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../outside", rootfs.join("rel")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../../../../../../../..", rootfs.join("up"))
        .unwrap_or_else(|e| panic!("{e}"));
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [
            {"destination": "/abs", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/rel/x", "type": "bind", "source": b.path("src"), "options": ["rbind"]},
            {"destination": format!("/up{}/y", outside.display()), "type": "tmpfs", "source": "tmpfs"}
        ]
    }));
    let parent = b.dir.path().to_owned();
    in_child(|| {
        let host_dir: OwnedFd = rustix::fs::open(
            &parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        setup(&s, &rootfs, false).map_err(|e| format!("setup: {e}"))?;
        // The host directory is untouched: still its own marker, nothing mounted on it or created in it.
        let host_outside = rustix::fs::openat(
            host_dir.as_fd(),
            "outside",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        let st = rustix::fs::fstatfs(&host_outside).map_err(|e| e.to_string())?;
        check!(
            st.f_type as i64 != TMPFS_MAGIC,
            "a tmpfs landed on the host directory"
        );
        // (No /proc in this container: list through the fd.)
        let entries: Vec<String> = rustix::fs::Dir::read_from(&host_outside)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n != "." && n != "..")
            .collect();
        check!(entries == ["marker"], "the host directory changed: {entries:?}");
        // Inside the container the mounts are where the symlinks lead within the rootfs.
        let inside = format!("{}", outside.display());
        check!(
            statfs(&inside)?.0 == TMPFS_MAGIC,
            "/abs did not become a tmpfs at {inside}"
        );
        check!(
            statfs("/abs")?.0 == TMPFS_MAGIC,
            "/abs does not resolve to the tmpfs"
        );
        check!(
            std::fs::read_to_string("/outside/x/file").ok().as_deref() == Some("from-src"),
            "/rel/x not at /outside/x"
        );
        check!(
            statfs(&format!("{inside}/y"))?.0 == TMPFS_MAGIC,
            "/up/... not inside the rootfs"
        );
        Ok(())
    });
}

#[test]
fn no_pivot_moves_the_rootfs_and_chroots() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
    }));
    let rootfs = b.rootfs();
    in_child(|| {
        setup(&s, &rootfs, true).map_err(|e| format!("setup: {e}"))?;
        check!(
            std::fs::read_to_string("/marker").ok().as_deref() == Some("inside"),
            "not in the rootfs"
        );
        check!(
            std::env::current_dir().ok().as_deref() == Some(Path::new("/")),
            "cwd is not /"
        );
        check!(statfs("/proc")?.0 == PROC_SUPER_MAGIC, "/proc is not a procfs");
        // The rootfs is now the mount at / of this namespace, and the host's procfs is gone.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let host_proc = mountinfo
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some("/proc"))
            .count();
        check!(host_proc == 1, "expected only the container's /proc: {mountinfo}");
        Ok(())
    });
}

#[test]
fn finalize_masks_and_makes_read_only() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.rootfs();
    for d in ["secret", "rodir", "keep"] {
        std::fs::create_dir(rootfs.join(d)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(rootfs.join(d).join("f"), "data").unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(rootfs.join("secret-file"), "secret").unwrap_or_else(|e| panic!("{e}"));
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
            {"destination": "/keep", "type": "bind", "source": b.path("src"), "options": ["rbind", "rw"]}
        ],
        "linux": {
            "maskedPaths": ["/secret", "/secret-file", "/proc/kcore", "/does/not/exist"],
            "readonlyPaths": ["/rodir", "/proc/sys", "/missing"],
            "rootfsPropagation": "rshared"
        }
    }));
    in_child(|| {
        setup(&s, &rootfs, false).map_err(|e| format!("setup: {e}"))?;
        // /dev was mounted rw so the devices could be made; finalize makes it ro.
        check!(Path::new("/dev/null").exists(), "devices missing");
        finalize(&s).map_err(|e| format!("finalize: {e}"))?;

        let names: Vec<_> = std::fs::read_dir("/secret").map_err(|e| e.to_string())?.collect();
        check!(names.is_empty(), "/secret is not masked");
        write_fails_with("/secret/new", libc::EROFS)?;
        check!(
            std::fs::read_to_string("/secret-file").ok().as_deref() == Some(""),
            "/secret-file is not masked"
        );
        if Path::new("/proc/kcore").exists() {
            let md = std::fs::metadata("/proc/kcore").map_err(|e| e.to_string())?;
            check!(
                md.file_type().is_char_device(),
                "/proc/kcore is not masked by /dev/null"
            );
        }
        write_fails_with("/rodir/f", libc::EROFS)?;
        check!(
            std::fs::read_to_string("/rodir/f").ok().as_deref() == Some("data"),
            "/rodir content lost"
        );
        write_fails_with("/proc/sys/kernel/hostname", libc::EROFS)?;
        write_fails_with("/new-in-root", libc::EROFS)?;
        write_fails_with("/dev/new", libc::EROFS)?;
        check!(
            statfs("/dev")?.1 & libc::ST_NOSUID != 0,
            "/dev lost nosuid in the ro remount"
        );
        std::fs::write("/tmp/ok", "x").map_err(|e| format!("/tmp must stay writable: {e}"))?;
        std::fs::write("/keep/ok", "x").map_err(|e| format!("/keep must stay writable: {e}"))?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let root_line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or("");
        check!(root_line.contains("shared:"), "/ is not shared: {root_line}");
        Ok(())
    });
}

#[test]
fn destinations_in_proc_and_on_symlinks_are_refused() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.rootfs();
    std::os::unix::fs::symlink("/proc/sys/kernel", rootfs.join("sneaky")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/tmp", rootfs.join("fakeproc")).unwrap_or_else(|e| panic!("{e}"));
    type Case = (serde_json::Value, fn(&RootfsError) -> bool);
    let cases: Vec<Case> = vec![
        (
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sneaky/core_pattern", "type": "bind", "source": b.path("hostname"), "options": ["bind"]}
            ]),
            |e| matches!(e, RootfsError::InsideProc { .. }),
        ),
        (
            serde_json::json!([{"destination": "/fakeproc", "type": "proc", "source": "proc"}]),
            |e| matches!(e, RootfsError::NotDirectory { .. }),
        ),
        (
            serde_json::json!([{"destination": "/proc", "type": "bind", "source": b.path("src"), "options": ["rbind"]}]),
            |e| matches!(e, RootfsError::NotProc { .. }),
        ),
        (
            serde_json::json!([{"destination": "/", "type": "tmpfs", "source": "tmpfs"}]),
            |e| matches!(e, RootfsError::OnRoot { .. }),
        ),
    ];
    for (mounts, expected) in cases {
        let s = spec(serde_json::json!({"ociVersion": "1.0.2", "mounts": mounts}));
        let rootfs = rootfs.clone();
        in_child(move || match setup(&s, &rootfs, false) {
            Ok(()) => Err(format!("setup accepted {mounts}")),
            Err(e) if expected(&e) => Ok(()),
            Err(e) => Err(format!("unexpected error for {mounts}: {e}")),
        });
    }
}

#[test]
fn cgroup_mount_in_a_cgroup_namespace() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "cgroup"}]}
    }));
    let rootfs = b.rootfs();
    in_child(|| {
        // SAFETY: the child is single-threaded; CLONE_NEWCGROUP only changes its cgroup namespace.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
            .map_err(|e| format!("unshare(CLONE_NEWCGROUP): {e}"))?;
        setup(&s, &rootfs, false).map_err(|e| format!("setup: {e}"))?;
        let (t, flags, _, _) = statfs("/sys/fs/cgroup")?;
        if t == TMPFS_MAGIC {
            // v1: fresh hierarchy mounts whose root is this process's cgroup.
            const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
            let (t, flags, _, _) = statfs("/sys/fs/cgroup/memory")?;
            check!(
                t == CGROUP_SUPER_MAGIC,
                "/sys/fs/cgroup/memory is not a cgroup mount"
            );
            check!(flags & ST_RDONLY != 0, "/sys/fs/cgroup/memory is not read-only");
            check!(
                Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists(),
                "no cgroup.procs"
            );
        } else {
            check!(
                t == 0x6367_7270 && flags & ST_RDONLY != 0,
                "/sys/fs/cgroup is not a read-only cgroup2"
            );
        }
        Ok(())
    });
}
