//! `berth-runtime` as a drop-in for runc under real peers: containerd 1.6 (`ctr run --runc-binary`), podman 4.3
//! (`--runtime`) and dockerd 20.10 (`--add-runtime`), each started privately for one test (its own state
//! directories, sockets, ctr namespace / cgroup parent named after the test's unique id), with containers on network
//! `none` only. Needs root and Debian's `containerd`, `podman` and `docker.io` (scripts/lib.sh installs them).
//!
//! Every test holds a [`Scratch`] guard: on drop (also on panic) it removes the peer's containers through the peer,
//! stops the daemons (SIGTERM, then SIGKILL), kills every process whose command line names the test's directory or
//! unique id (shims, conmon, container processes), unmounts what is left under the directory (deepest first),
//! removes the cgroups whose name holds the unique id and then the directories.
//!
//! The busybox image is built by `tests/peers/make-image.sh` from the host's static busybox: a root filesystem tar
//! (`podman import`, `docker import`) and an OCI layout archive (`ctr image import`).
//!
//! dockerd is the only peer allowed to be missing at run time: when it cannot start here, its tests print why and
//! return.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_test_support::cleanup::{make_temp_dir, mounts_under, remove_tree};
use berth_test_support::{runtime_bin, unique_id};

/// How long one peer command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to answer after it was started.
const DAEMON_START: Duration = Duration::from_secs(30);
/// The image name every peer imports the busybox image as.
const IMAGE: &str = "docker.io/berth/busybox:test";
/// A long-running container command: pid 1 is a shell that exits 0 at once on SIGTERM (so a stop does not wait
/// for a kill timeout). `$0` is the test's tag, so that the guard finds the process by its command line.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 300 & wait";

// ------------------------------------------------------------------------------------------------------------------
// Commands with a timeout, output into files.

/// What a finished command printed.
#[derive(Debug)]
struct Out {
    line: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics unless the command succeeded; returns its stdout.
    fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "`{}` failed with {}\nstdout: {}\nstderr: {}",
            self.line,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\nstdout: {}\nstderr: {}",
            self.line, self.status, self.stdout, self.stderr
        )
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether process `pid` is gone or a zombie.
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a stale pid gives ESRCH, which is fine here.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Makes the child die with the test thread that started it, so that a test killed from outside (timeout) does not
/// leave a daemon behind.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and calls only prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

// ------------------------------------------------------------------------------------------------------------------
// The guard.

/// One test's private directory, daemons and unique tag; removes all of it on drop.
struct Scratch {
    /// Short on purpose: unix socket paths under it must fit in 108 bytes.
    dir: PathBuf,
    /// Unique across tests, threads and processes; names the ctr namespace and the cgroup parent.
    tag: String,
    daemons: Vec<(String, Child)>,
    /// Trees outside `dir` that the peers make per test (e.g. the runtime root containerd's shim picks).
    extra_trees: Vec<PathBuf>,
    counter: AtomicU32,
}

impl Scratch {
    fn new(kind: &str) -> Self {
        let tag = unique_id(&format!("berth-test-{kind}"));
        let dir = make_temp_dir("berth-peer-")
            .expect("temporary directory")
            .canonicalize()
            .expect("canonical temporary directory");
        Self {
            dir,
            tag,
            daemons: Vec::new(),
            extra_trees: Vec::new(),
            counter: AtomicU32::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Runs `cmd` with stdin from /dev/null and stdout/stderr into files (a container or a daemon that inherits them
    /// cannot keep the test waiting); kills it after `timeout`.
    fn try_run(&self, mut cmd: Command, timeout: Duration) -> Result<Out, String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (out_path, err_path) = (
            self.path(&format!("cmd-{n}.out")),
            self.path(&format!("cmd-{n}.err")),
        );
        let line = command_line(&cmd);
        let stdout = File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
        let stderr = File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| format!("cannot run `{line}`: {e}"))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "`{line}` did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                        read_lossy(&out_path),
                        read_lossy(&err_path)
                    ));
                }
                Err(e) => return Err(format!("cannot wait for `{line}`: {e}")),
            }
        };
        Ok(Out {
            line,
            status,
            stdout: read_lossy(&out_path),
            stderr: read_lossy(&err_path),
        })
    }

    fn run(&self, cmd: Command) -> Out {
        self.try_run(cmd, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a daemon with its output in `<name>.log`; it dies with the test thread and is stopped on drop.
    fn spawn_daemon(&mut self, name: &str, mut cmd: Command) {
        let log = self.path(&format!("{name}.log"));
        let out = File::create(&log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (`{}`): {e}", command_line(&cmd)));
        self.daemons.push((name.to_string(), child));
    }

    fn daemon_log(&self, name: &str) -> String {
        let text = read_lossy(&self.path(&format!("{name}.log")));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Whether daemon `name` has exited; reaps it.
    fn daemon_exited(&mut self, name: &str) -> Option<ExitStatus> {
        self.daemons
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, child)| child.try_wait().ok().flatten())
    }

    /// The image files from tests/peers/make-image.sh: (rootfs tar, OCI archive).
    fn image(&self) -> (PathBuf, PathBuf) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/make-image.sh");
        let out = self.path("image");
        std::fs::create_dir_all(&out).expect("image directory");
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&out).arg(IMAGE);
        self.run(cmd).ok();
        (out.join("rootfs.tar"), out.join("oci.tar"))
    }

    /// Processes (not this one) whose command line names the scratch directory or the tag.
    fn marked_processes(&self) -> Vec<(i32, String)> {
        let me = std::process::id() as i32;
        let dir = self.dir.to_string_lossy().into_owned();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me || is_gone(pid) {
                continue;
            }
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(&dir) || cmdline.contains(&self.tag) {
                found.push((pid, cmdline));
            }
        }
        found
    }

    /// Cgroup directories (every hierarchy) whose name holds the tag.
    fn marked_cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, tag: &str, depth: u32, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if entry.file_name().to_string_lossy().contains(tag) {
                    found.push(path);
                } else if depth < 3 {
                    walk(&path, tag, depth + 1, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), &self.tag, 0, &mut found);
        found
    }

    fn teardown(&mut self) {
        // Daemons: SIGTERM, up to 15 s (dockerd stops its containerd), then SIGKILL.
        for (_, child) in &mut self.daemons {
            signal(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (_, child) in &mut self.daemons {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims, conmon, container processes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.marked_processes();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("peers cleanup: processes left: {left:?}");
                break;
            }
            for (pid, _) in &left {
                signal(*pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Cgroups, deepest first; processes that just died may hold them for a moment.
        fn remove_cgroup(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_cgroup(&entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.marked_cgroups();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("peers cleanup: cgroups left: {left:?}");
                break;
            }
            left.iter().for_each(|d| remove_cgroup(d));
            std::thread::sleep(Duration::from_millis(20));
        }
        for tree in self.extra_trees.iter().chain(std::iter::once(&self.dir)) {
            if let Err(e) = remove_tree(tree) {
                eprintln!("peers cleanup: {e}");
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Polls `f` until it gives `Some` or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> String {
    runtime_bin().to_string_lossy().into_owned()
}

/// Panics with an install hint unless `bin` is on the PATH (or is an existing path).
fn require(bin: &str, package: &str) -> String {
    if Path::new(bin).is_absolute() {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: install the Debian package {package} (scripts/lib.sh)"
        );
        return bin.to_string();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]) {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return candidate.to_string_lossy().into_owned();
        }
    }
    panic!("{bin} is not installed: install the Debian package {package} (scripts/lib.sh, BERTH_PACKAGES)");
}

/// The cgroup directory of a container on the memory hierarchy: a directory under `/sys/fs/cgroup/memory` below
/// the test's cgroup parent whose name holds `id`.
fn memory_cgroup_of(scratch: &Scratch, id: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, id: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().contains(id) {
                return Some(entry.path());
            }
            if let Some(found) = walk(&entry.path(), id) {
                return Some(found);
            }
        }
        None
    }
    walk(&Path::new("/sys/fs/cgroup/memory").join(&scratch.tag), id)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Asserts that the container `id` has a memory cgroup under the test's parent with `limit` bytes, and a pids
/// cgroup with `pids` as pids.max.
fn assert_limits(scratch: &Scratch, peer: &str, id: &str, limit: u64, pids: Option<u32>) {
    let cgroup = memory_cgroup_of(scratch, id).unwrap_or_else(|| {
        panic!(
            "{peer}: container {id} has no memory cgroup under /sys/fs/cgroup/memory/{} (the runtime must create \
             the cgroupsPath of the spec and apply linux.resources)",
            scratch.tag
        )
    });
    assert_eq!(
        read_trimmed(&cgroup.join("memory.limit_in_bytes")),
        limit.to_string(),
        "{peer}: memory.limit_in_bytes of {}",
        cgroup.display()
    );
    if let Some(pids) = pids {
        let rel = cgroup
            .strip_prefix("/sys/fs/cgroup/memory")
            .expect("under the memory hierarchy");
        let pids_dir = Path::new("/sys/fs/cgroup/pids").join(rel);
        assert_eq!(
            read_trimmed(&pids_dir.join("pids.max")),
            pids.to_string(),
            "{peer}: pids.max of {}",
            pids_dir.display()
        );
    }
}

// ------------------------------------------------------------------------------------------------------------------
// containerd

/// Starts a private containerd in `scratch` (config, root, state, opt directory and sockets under it; CRI and the
/// What the podman and docker scenarios share on a running container named `long` whose command line holds
/// `tag`: `exec` (output, exit code, `-e -w -u`, `-t`), `top`, and `stop` within 10 s (SIGTERM reaches pid 1's trap).
fn exec_top_stop(engine: &str, tag: &str, cli: impl Fn(&[&str]) -> Out) {
    let out = cli(&["exec", "long", "sh", "-c", "echo exec-out"]);
    assert!(out.ok().contains("exec-out"), "{}", out.describe());
    let out = cli(&["exec", "long", "sh", "-c", "exit 5"]);
    assert_eq!(out.code(), Some(5), "{}", out.describe());
    let out = cli(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "65534",
        "long",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    ]);
    assert_eq!(out.ok().trim(), "bar /tmp 65534", "{}", out.describe());
    let out = cli(&["exec", "-t", "long", "sh", "-c", "tty; echo tty-ok"]);
    let text = out.ok();
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{}",
        out.describe()
    );
    let out = cli(&["top", "long"]);
    assert!(
        out.ok().contains(tag),
        "{engine} top shows pid 1: {}",
        out.describe()
    );

    let started = Instant::now();
    cli(&["stop", "--time", "20", "long"]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}: SIGTERM did not reach pid 1's trap",
        started.elapsed()
    );
}

/// snapshotters that cannot work here disabled), listening on `<dir>/c.sock`.
fn spawn_containerd(scratch: &mut Scratch) {
    let containerd = require("containerd", "containerd");
    let d = scratch.dir.to_string_lossy().into_owned();
    let config = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    );
    std::fs::write(scratch.path("containerd.toml"), config).expect("containerd config");
    let mut cmd = Command::new(&containerd);
    cmd.arg("--config").arg(scratch.path("containerd.toml"));
    scratch.spawn_daemon("containerd", cmd);
}

/// A private containerd: config, root, state, sockets in the scratch directory; CRI disabled; the test's tag as
/// its ctr namespace (so containerd's default cgroupsPath is `/<tag>/<id>`).
struct Containerd {
    scratch: Scratch,
    ctr: String,
}

impl Containerd {
    fn start() -> Self {
        let ctr = require("ctr", "containerd");
        let mut scratch = Scratch::new("ctd");
        // containerd-shim-runc-v2 gives the runtime `--root /run/containerd/runc/<namespace>`.
        scratch
            .extra_trees
            .push(Path::new("/run/containerd/runc").join(&scratch.tag));
        spawn_containerd(&mut scratch);
        let me = Self { scratch, ctr };
        let ready = wait_for(DAEMON_START, || {
            let out = me
                .scratch
                .try_run(me.ctr_cmd(&["version"]), Duration::from_secs(5))
                .ok()?;
            out.status.success().then_some(())
        });
        assert!(
            ready.is_some(),
            "containerd did not answer within {DAEMON_START:?}; its log:\n{}",
            me.scratch.daemon_log("containerd")
        );
        me
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("--address")
            .arg(self.scratch.path("c.sock"))
            .arg("--namespace")
            .arg(&self.scratch.tag)
            .args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Out {
        self.scratch.run(self.ctr_cmd(args))
    }

    fn import_image(&self) {
        let (_, oci) = self.scratch.image();
        self.ctr(&["image", "import", &oci.to_string_lossy()]).ok();
    }

    /// `ctr run` with berth-runtime as the runc binary of the io.containerd.runc.v2 shim.
    fn run_args(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            runtime(),
            "--fifo-dir".into(),
            self.scratch.path_str("fifo"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(IMAGE.into());
        args.push(id.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        args
    }

    fn ctr_owned(&self, args: &[String]) -> Out {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)
    }

    fn exec(&self, id: &str, exec_id: &str, cmd: &[&str]) -> Out {
        let fifo = self.scratch.path_str("fifo");
        let mut args = vec!["task", "exec", "--fifo-dir", &fifo, "--exec-id", exec_id, id];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// The task's status column in `ctr task ls`.
    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(2).map(|s| s.to_string()))
    }

    fn wait_status(&self, id: &str, status: &str) {
        let got = wait_for(Duration::from_secs(10), || {
            (self.task_status(id).as_deref() == Some(status)).then_some(())
        });
        assert!(
            got.is_some(),
            "containerd: task {id} did not become {status} (now {:?})",
            self.task_status(id)
        );
    }

    /// The runtime's state directory for the namespace, as containerd's shim passes it (`--root`).
    fn runtime_root(&self) -> PathBuf {
        Path::new("/run/containerd/runc").join(&self.scratch.tag)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let quick = Duration::from_secs(10);
        if let Ok(out) = self.scratch.try_run(self.ctr_cmd(&["task", "ls", "-q"]), quick) {
            for id in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self
                    .scratch
                    .try_run(self.ctr_cmd(&["task", "kill", "-s", "SIGKILL", id]), quick);
                let _ = self
                    .scratch
                    .try_run(self.ctr_cmd(&["task", "rm", "-f", id]), quick);
            }
        }
        if let Ok(out) = self
            .scratch
            .try_run(self.ctr_cmd(&["container", "ls", "-q"]), quick)
        {
            for id in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self
                    .scratch
                    .try_run(self.ctr_cmd(&["container", "rm", id]), quick);
            }
        }
    }
}

/// `ctr run --rm` prints the container's output and passes its exit code on; the runtime leaves no state.
#[test]
fn containerd_ctr_run_rm() {
    let c = Containerd::start();
    c.import_image();
    let id = "hello";
    let out = c.ctr_owned(&c.run_args(
        &["--rm"],
        id,
        &["sh", "-c", "echo hello from $0; echo pid=$$", &c.scratch.tag],
    ));
    let text = out.ok();
    assert!(
        text.contains(&format!("hello from {}", c.scratch.tag)),
        "{}",
        out.describe()
    );
    assert!(text.contains("pid=1"), "{}", out.describe());

    let out = c.ctr_owned(&c.run_args(&["--rm"], "fails", &["sh", "-c", "exit 3"]));
    assert_eq!(
        out.code(),
        Some(3),
        "ctr run passes the container's exit code on: {}",
        out.describe()
    );

    assert!(c.ctr(&["container", "ls", "-q"]).ok().trim().is_empty());
    let left: Vec<_> = std::fs::read_dir(c.runtime_root())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "the runtime left state under {}: {left:?}",
        c.runtime_root().display()
    );
}

/// `ctr run -d`, `ctr task exec` (output and exit code), `ctr task ps`, `ctr task kill` (SIGTERM reaches pid 1),
/// `ctr task delete`, `ctr container delete`.
#[test]
fn containerd_detached_exec_kill_delete() {
    let c = Containerd::start();
    c.import_image();
    let id = "long";
    c.ctr_owned(&c.run_args(&["-d"], id, &["sh", "-c", LONG_RUNNING, &c.scratch.tag]))
        .ok();
    c.wait_status(id, "RUNNING");

    let out = c.exec(id, "e1", &["sh", "-c", "echo exec-out; hostname; echo $PATH"]);
    let text = out.ok();
    assert!(text.contains("exec-out"), "{}", out.describe());
    assert!(
        text.contains("/bin"),
        "the exec inherits the image's PATH: {}",
        out.describe()
    );
    let out = c.exec(id, "e2", &["sh", "-c", "exit 7"]);
    assert_eq!(out.code(), Some(7), "{}", out.describe());

    let ps = c.ctr(&["task", "ps", id]);
    let pids = ps.ok().lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    assert!(
        pids >= 2,
        "ctr task ps lists the shell and its sleep: {}",
        ps.describe()
    );

    c.ctr(&["task", "kill", id]).ok();
    c.wait_status(id, "STOPPED");
    let out = c.ctr(&["task", "delete", id]);
    out.ok();
    assert!(
        !out.stderr.contains("non-zero exit code"),
        "SIGTERM reaches the trap of pid 1, which exits 0: {}",
        out.describe()
    );
    c.ctr(&["container", "delete", id]).ok();
    assert!(
        !c.runtime_root().join(id).exists(),
        "the runtime's state of {id} is gone after delete"
    );
    assert!(
        mounts_under(&c.scratch.path("state"))
            .expect("mountinfo")
            .is_empty(),
        "the rootfs is unmounted after delete"
    );
}

/// Resources from the spec land in the container's cgroup (`/<namespace>/<id>`), and `ctr task pause` / `resume`
/// work (runc's `pause` and `resume` commands, through the freezer).
#[test]
fn containerd_cgroup_limits_pause_resume() {
    let c = Containerd::start();
    c.import_image();
    let id = "limited";
    c.ctr_owned(&c.run_args(
        &["-d", "--memory-limit", "67108864"],
        id,
        &["sh", "-c", LONG_RUNNING, &c.scratch.tag],
    ))
    .ok();
    c.wait_status(id, "RUNNING");
    assert_limits(&c.scratch, "containerd", id, 67_108_864, None);

    c.ctr(&["task", "pause", id]).ok();
    c.wait_status(id, "PAUSED");
    c.ctr(&["task", "resume", id]).ok();
    c.wait_status(id, "RUNNING");
    let out = c.exec(id, "after-resume", &["echo", "resumed"]);
    assert!(out.ok().contains("resumed"), "{}", out.describe());
    c.ctr(&["task", "kill", id]).ok();
    c.wait_status(id, "STOPPED");
}

// ------------------------------------------------------------------------------------------------------------------
// podman

/// podman with everything private: `--root`, `--runroot`, `--tmpdir`, a containers.conf through `CONTAINERS_CONF`
/// (no default ulimits: CAP_SYS_RESOURCE may be missing from the bounding set; file events; network config dir),
/// vfs storage, cgroupfs with the test's tag as cgroup parent, network none.
struct Podman {
    scratch: Scratch,
    podman: String,
}

impl Podman {
    fn new() -> Self {
        let podman = require("podman", "podman");
        require("conmon", "conmon");
        let scratch = Scratch::new("pod");
        let d = scratch.dir.to_string_lossy().into_owned();
        let conf = format!(
            r#"[containers]
default_ulimits = []
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
volume_path = "{d}/root/volumes"
[network]
network_config_dir = "{d}/net"
"#
        );
        std::fs::write(scratch.path("containers.conf"), conf).expect("containers.conf");
        Self { scratch, podman }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let s = &self.scratch;
        let mut cmd = Command::new(&self.podman);
        cmd.env("CONTAINERS_CONF", s.path("containers.conf"))
            .arg("--runtime")
            .arg(runtime_bin())
            .args(["--root", &s.path_str("root"), "--runroot", &s.path_str("runroot")])
            .args(["--tmpdir", &s.path_str("tmp")])
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args);
        cmd
    }

    fn podman(&self, args: &[&str]) -> Out {
        self.scratch.run(self.cmd(args))
    }

    fn import_image(&self) {
        let (rootfs, _) = self.scratch.image();
        self.podman(&["import", &rootfs.to_string_lossy(), IMAGE]).ok();
    }

    /// `podman run` on network none under the test's cgroup parent.
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Out {
        let parent = format!("/{}", self.scratch.tag);
        let mut args = vec!["run", "--network", "none", "--cgroup-parent", &parent];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        self.podman(&["inspect", "--format", format, id])
            .ok()
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let quick = Duration::from_secs(20);
        let ids = self
            .scratch
            .try_run(self.cmd(&["ps", "-aq", "--no-trunc"]), quick)
            .map(|o| o.stdout)
            .unwrap_or_default();
        let _ = self
            .scratch
            .try_run(self.cmd(&["rm", "--all", "--force", "--time", "0"]), quick);
        // podman gives the runtime no --root: its state is under the runtime's default root.
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut cmd = Command::new(runtime_bin());
            cmd.args(["delete", "--force", id]);
            let _ = self.scratch.try_run(cmd, quick);
        }
    }
}

/// `podman run --rm` prints the output, passes the exit code on, and works with a terminal (`-t`: the console
/// socket); nothing stays in the runtime's root.
#[test]
fn podman_run_rm() {
    let p = Podman::new();
    p.import_image();
    let out = p.run(
        &["--rm"],
        &["sh", "-c", "echo hello from $0; echo pid=$$", &p.scratch.tag],
    );
    let text = out.ok();
    assert!(
        text.contains(&format!("hello from {}", p.scratch.tag)),
        "{}",
        out.describe()
    );
    assert!(text.contains("pid=1"), "{}", out.describe());

    let out = p.run(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(
        out.code(),
        Some(3),
        "podman run passes the exit code on: {}",
        out.describe()
    );

    let out = p.run(&["--rm", "-t"], &["sh", "-c", "tty; echo tty-ok"]);
    let text = out.ok();
    assert!(
        text.contains("/dev/pts/0") && text.contains("tty-ok"),
        "{}",
        out.describe()
    );
    assert!(p.podman(&["ps", "-aq"]).ok().trim().is_empty());
}

/// `podman run -d`, `podman exec` (output, exit code, -e, -w, -u, -t), `podman top`, `podman stop` (SIGTERM reaches
/// pid 1), `podman rm`; the runtime's state is gone after rm.
#[test]
fn podman_detached_exec_stop_rm() {
    let p = Podman::new();
    p.import_image();
    let out = p.run(
        &["-d", "--name", "long"],
        &["sh", "-c", LONG_RUNNING, &p.scratch.tag],
    );
    let id = out.ok().trim().to_string();
    assert_eq!(id.len(), 64, "podman run -d prints the id: {}", out.describe());
    assert_eq!(p.inspect("long", "{{.State.Status}}"), "running");

    exec_top_stop("podman", &p.scratch.tag, |a| p.podman(a));
    assert_eq!(p.inspect("long", "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect("long", "{{.State.ExitCode}}"), "0");
    p.podman(&["rm", "long"]).ok();
    assert!(
        !Path::new(berth_oci::state::DEFAULT_ROOT).join(&id).exists(),
        "the runtime's state of {id} is gone after podman rm"
    );
}

/// `--memory` / `--pids-limit` land in the container's cgroup; `podman pause` / `unpause` work.
#[test]
fn podman_cgroup_limits_pause_unpause() {
    let p = Podman::new();
    p.import_image();
    let out = p.run(
        &["-d", "--name", "limited", "--memory", "64m", "--pids-limit", "50"],
        &["sh", "-c", LONG_RUNNING, &p.scratch.tag],
    );
    let id = out.ok().trim().to_string();
    assert_limits(&p.scratch, "podman", &id, 64 << 20, Some(50));

    p.podman(&["pause", "limited"]).ok();
    assert_eq!(p.inspect("limited", "{{.State.Status}}"), "paused");
    p.podman(&["unpause", "limited"]).ok();
    assert_eq!(p.inspect("limited", "{{.State.Status}}"), "running");
    let out = p.podman(&["exec", "limited", "echo", "resumed"]);
    assert!(out.ok().contains("resumed"), "{}", out.describe());
    p.podman(&["stop", "--time", "20", "limited"]).ok();
}

// ------------------------------------------------------------------------------------------------------------------
// dockerd

/// A private dockerd (data root, exec root, pidfile, socket, config file and trust key in the scratch directory) on a
/// private containerd (its own, not the one dockerd would start: that one makes /opt/containerd) in the test's
/// namespace, with no bridge, no iptables, no forwarding, cgroupfs with the test's tag as cgroup parent, and
/// berth-runtime registered as runtime `berth`.
struct Dockerd {
    scratch: Scratch,
    docker: String,
}

impl Dockerd {
    /// `None` (with the reason printed) when dockerd cannot start on this machine.
    fn start() -> Option<Self> {
        let dockerd = require("dockerd", "docker.io");
        // Debian's CLI (20.10) matches the daemon; any docker CLI on the PATH works too.
        let docker = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker".to_string()
        } else {
            require("docker", "docker.io")
        };
        let mut scratch = Scratch::new("dkr");
        spawn_containerd(&mut scratch);
        let key = scratch.path("key.json");
        let config = serde_json::json!({ "deprecated-key-path": key });
        std::fs::write(scratch.path("daemon.json"), config.to_string()).expect("daemon.json");
        let s = &scratch;
        let mut cmd = Command::new(&dockerd);
        cmd.args(["--config-file", &s.path_str("daemon.json")])
            .args([
                "--data-root",
                &s.path_str("data"),
                "--exec-root",
                &s.path_str("exec"),
            ])
            .args(["--pidfile", &s.path_str("docker.pid")])
            .args(["-H", &format!("unix://{}", s.path_str("docker.sock"))])
            .args([
                "--containerd",
                &s.path_str("c.sock"),
                "--containerd-namespace",
                &s.tag,
            ])
            .args(["--containerd-plugins-namespace", &format!("{}-plugins", s.tag)])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
            ])
            .args(["--ip-masq=false", "--userland-proxy=false"])
            .args([
                "--storage-driver",
                "overlay2",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .args(["--cgroup-parent", &format!("/{}", s.tag)])
            .args(["--add-runtime", &format!("berth={}", runtime())]);
        scratch.spawn_daemon("dockerd", cmd);
        let mut me = Self { scratch, docker };
        let mut exited = None;
        let ready = wait_for(DAEMON_START, || {
            exited = me.scratch.daemon_exited("dockerd");
            if exited.is_some() {
                return Some(false);
            }
            let out = me
                .scratch
                .try_run(me.cmd(&["version"]), Duration::from_secs(5))
                .ok()?;
            out.status.success().then_some(true)
        });
        if ready != Some(true) {
            let log = me.scratch.daemon_log("dockerd");
            // A command line dockerd rejects is this test's mistake, not the machine's.
            assert!(
                !log.contains("unknown flag") && !log.contains("invalid argument"),
                "dockerd rejected its command line:\n{log}"
            );
            // Straight to stderr, past the test harness's capture, so that CI shows the skip.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: dockerd could not start on this machine ({}); its log:\n{log}",
                exited.map_or_else(
                    || format!("no answer within {DAEMON_START:?}"),
                    |s| format!("it exited with {s}")
                ),
            );
            return None;
        }
        Some(me)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_CONFIG", self.scratch.path("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.scratch.path_str("docker.sock")))
            .args(args);
        cmd
    }

    fn docker(&self, args: &[&str]) -> Out {
        self.scratch.run(self.cmd(args))
    }

    fn import_image(&self) {
        let (rootfs, _) = self.scratch.image();
        self.docker(&["import", &rootfs.to_string_lossy(), IMAGE]).ok();
    }

    /// `docker run --runtime berth --network none`.
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Out {
        let mut args = vec!["run", "--runtime", "berth", "--network", "none"];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        self.docker(&["inspect", "--format", format, id])
            .ok()
            .trim()
            .to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let quick = Duration::from_secs(20);
        if let Ok(out) = self.scratch.try_run(self.cmd(&["ps", "-aq"]), quick) {
            let ids: Vec<&str> = out
                .stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.scratch.try_run(self.cmd(&args), quick);
            }
        }
    }
}

/// `docker run --runtime berth --rm` prints the output, passes the exit code on, works with `-t`.
#[test]
fn dockerd_run_rm() {
    let Some(d) = Dockerd::start() else { return };
    d.import_image();
    let out = d.run(
        &["--rm"],
        &["sh", "-c", "echo hello from $0; echo pid=$$", &d.scratch.tag],
    );
    let text = out.ok();
    assert!(
        text.contains(&format!("hello from {}", d.scratch.tag)),
        "{}",
        out.describe()
    );
    assert!(text.contains("pid=1"), "{}", out.describe());

    let out = d.run(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(
        out.code(),
        Some(3),
        "docker run passes the exit code on: {}",
        out.describe()
    );

    let out = d.run(&["--rm", "-t"], &["sh", "-c", "tty; echo tty-ok"]);
    let text = out.ok();
    assert!(
        text.contains("/dev/pts/0") && text.contains("tty-ok"),
        "{}",
        out.describe()
    );
    assert!(d.docker(&["ps", "-aq"]).ok().trim().is_empty());
}

/// `docker run -d`, `docker exec` (output, exit code, -e, -w, -u, -t), `docker top`, `docker stop` (SIGTERM reaches
/// pid 1), `docker kill`, `docker rm`; the runtime's state is gone after rm.
#[test]
fn dockerd_detached_exec_stop_rm() {
    let Some(d) = Dockerd::start() else { return };
    d.import_image();
    let out = d.run(
        &["-d", "--name", "long"],
        &["sh", "-c", LONG_RUNNING, &d.scratch.tag],
    );
    let id = out.ok().trim().to_string();
    assert_eq!(id.len(), 64, "docker run -d prints the id: {}", out.describe());
    assert_eq!(d.inspect("long", "{{.State.Status}}"), "running");

    exec_top_stop("docker", &d.scratch.tag, |a| d.docker(a));
    assert_eq!(d.inspect("long", "{{.State.ExitCode}}"), "0");

    // docker kill: SIGKILL, exit code 137.
    d.docker(&["start", "long"]).ok();
    assert_eq!(d.inspect("long", "{{.State.Status}}"), "running");
    d.docker(&["kill", "long"]).ok();
    let stopped = wait_for(Duration::from_secs(10), || {
        (d.inspect("long", "{{.State.Status}}") == "exited").then_some(())
    });
    assert!(stopped.is_some(), "docker kill stops the container");
    assert_eq!(d.inspect("long", "{{.State.ExitCode}}"), "137");
    d.docker(&["rm", "long"]).ok();
    let runtime_root = d.scratch.path("exec/runtime-runc/moby");
    assert!(
        !runtime_root.join(&id).exists(),
        "the runtime's state of {id} is gone after docker rm"
    );
}

/// `--memory` / `--pids-limit` land in the container's cgroup, `docker update` changes them (runc's `update
/// --resources -`), `docker pause` / `unpause` work.
#[test]
fn dockerd_cgroup_limits_update_pause() {
    let Some(d) = Dockerd::start() else { return };
    d.import_image();
    let out = d.run(
        &["-d", "--name", "limited", "--memory", "64m", "--pids-limit", "50"],
        &["sh", "-c", LONG_RUNNING, &d.scratch.tag],
    );
    let id = out.ok().trim().to_string();
    assert_limits(&d.scratch, "dockerd", &id, 64 << 20, Some(50));

    d.docker(&["update", "--memory", "96m", "--memory-swap", "192m", "limited"])
        .ok();
    assert_limits(&d.scratch, "dockerd", &id, 96 << 20, Some(50));

    d.docker(&["pause", "limited"]).ok();
    assert_eq!(d.inspect("limited", "{{.State.Status}}"), "paused");
    d.docker(&["unpause", "limited"]).ok();
    assert_eq!(d.inspect("limited", "{{.State.Status}}"), "running");
    let out = d.docker(&["exec", "limited", "echo", "resumed"]);
    assert!(out.ok().contains("resumed"), "{}", out.describe());
    d.docker(&["stop", "--time", "20", "limited"]).ok();
}
