//! A berthd per test: its own socket, data root and pid file in a temp dir; stopped (SIGTERM, then SIGKILL) and
//! removed on drop. Plus raw HTTP over the unix socket, and the `berth` and `docker` CLIs pointed at it.
//!
//! Daemons of [`start`] and friends run in the host's network namespace with `--bridge none`, so that they change
//! nothing in the host's network. Networking tests use [`start_netns`]: the daemon runs in a network namespace the
//! harness makes (and deletes after the daemon and its containers are gone), with its default bridge and
//! `BERTH_RESOLV_CONF` naming only that namespace's loopback; [`Daemon::in_netns`] and [`Daemon::with_netns`] run
//! commands and code there.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The docker 28 CLI.
pub const DOCKER: &str = "/usr/local/bin/docker";

/// The berthd binary under test.
pub fn berthd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berthd"))
}

/// The berth CLI (built by `cargo build`; `BERTH_CLI` overrides).
pub fn berth_bin() -> PathBuf {
    berth_test_support::bins::locate("berth", "BERTH_CLI").unwrap_or_else(|e| panic!("{e}"))
}

/// A running daemon.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub pidfile: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    /// `--exec-root` (the runtime's state is under `runtime/`, monitors under `c/`).
    pub exec_root: PathBuf,
    /// `--cgroup-parent`: unique per daemon, so that leftovers are found and removed.
    pub cgroup_parent: String,
    /// The network namespace the daemon runs in ([`start_netns`]); `None`: the host's, with `--bridge none`.
    /// Declared after everything else, so that it is deleted after [`Daemon`]'s `Drop` stopped the daemon and its
    /// containers.
    pub netns: Option<NetNs>,
}

/// Extra `berthd` arguments.
pub fn start(extra: &[&str]) -> Daemon {
    try_start(extra).unwrap_or_else(|(log, status)| panic!("berthd did not start ({status:?}):\n{log}"))
}

/// Starts a daemon; on failure its log and exit status.
pub fn try_start(extra: &[&str]) -> Result<Daemon, (String, Option<ExitStatus>)> {
    let dir = tempfile::Builder::new()
        .prefix("berthd-test-")
        .tempdir()
        .map_err(|e| (e.to_string(), None))?;
    start_in(dir, extra)
}

/// Starts a daemon in `dir`.
pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Result<Daemon, (String, Option<ExitStatus>)> {
    let sock = dir.path().join("berth.sock");
    let pidfile = dir.path().join("berthd.pid");
    let data = dir.path().join("data");
    let log = dir.path().join("berthd.log");
    let exec_root = dir.path().join("exec");
    let cgroup_parent = format!("/{}", berth_test_support::ids::unique_id("berthd-test"));
    let config = dir.path().join("daemon.json");
    if !config.exists() {
        std::fs::write(&config, "{}").map_err(|e| (e.to_string(), None))?;
    }
    let logf = std::fs::File::create(&log).map_err(|e| (e.to_string(), None))?;
    let logf2 = logf.try_clone().map_err(|e| (e.to_string(), None))?;
    let mut cmd = Command::new(berthd_bin());
    cmd.arg("--config-file").arg(&config);
    if !extra.iter().any(|a| *a == "-H" || a.starts_with("--host")) {
        cmd.arg("-H").arg(format!("unix://{}", sock.display()));
    }
    if !extra.contains(&"--pidfile") {
        cmd.arg("--pidfile").arg(&pidfile);
    }
    if !extra.contains(&"--data-root") {
        cmd.arg("--data-root").arg(&data);
    }
    if !extra.contains(&"--exec-root") {
        cmd.arg("--exec-root").arg(&exec_root);
    }
    if !extra.contains(&"--cgroup-parent") {
        cmd.arg("--cgroup-parent").arg(&cgroup_parent);
    }
    if !names_bridge(extra) {
        cmd.arg("--bridge").arg("none");
    }
    cmd.args(extra)
        .env("BERTHD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2);
    let child = cmd.spawn().map_err(|e| (e.to_string(), None))?;
    let mut d = Daemon {
        child: Some(child),
        dir,
        sock,
        pidfile,
        data,
        log,
        exec_root,
        cgroup_parent,
        netns: None,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if UnixStream::connect(&d.sock).is_ok() || (d.is_tcp(extra) && d.log_text().contains("API listening"))
        {
            return Ok(d);
        }
        if let Some(c) = d.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            d.child = None;
            return Err((d.log_text(), Some(status)));
        }
        if Instant::now() > deadline {
            return Err((d.log_text(), None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Daemon {
    fn is_tcp(&self, extra: &[&str]) -> bool {
        extra.iter().any(|a| a.starts_with("tcp://"))
    }

    /// `unix://<sock>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (10 s) for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).ok()?)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A raw HTTP/1.1 request over the socket: (status, headers with lowercase names, body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        raw_request(&self.sock, method, path, &[], body)
    }

    /// A JSON request: (status, body as JSON or `Null`).
    pub fn json(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (s, _, b) = self.request(method, path, body);
        (s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
    }

    /// Runs `berth -H <sock> args` with a private config dir.
    pub fn berth(&self, args: &[&str]) -> Output {
        let mut c = Command::new(berth_bin());
        c.arg("-H").arg(self.host()).args(args);
        c.env("BERTH_CONFIG", self.dir.path().join("berth-config"))
            .env_remove("BERTH_HOST")
            .env_remove("DOCKER_HOST");
        run(c)
    }

    /// Runs the docker CLI with `DOCKER_HOST=unix://<sock>` and a private config dir.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT");
        run(c)
    }
}

/// Runs a command with a 120 s limit.
pub fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{c:?} failed: {e}")),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(id).unwrap_or(0)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("{c:?} did not finish within 120 s");
        }
    }
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Daemon {
    /// Starts a new daemon on the same directories (after [`Daemon::kill9`] or [`Daemon::terminate`]).
    pub fn restart(&mut self, extra: &[&str]) {
        self.restart_env(extra, &[]);
    }

    /// Removes every container through the API (a running daemon), then whatever a crashed daemon could leave:
    /// runtime containers, monitors, mounts and cgroups under this daemon's directories.
    fn sweep(&mut self) {
        if self.child.is_some() && UnixStream::connect(&self.sock).is_ok() {
            let (_, list) = self.json("GET", "/containers/json?all=1", b"");
            for c in list.as_array().cloned().unwrap_or_default() {
                if let Some(id) = c["Id"].as_str() {
                    let _ = self.request("DELETE", &format!("/containers/{id}?force=1&v=1"), b"");
                }
            }
        }
        if self.child.is_some()
            && self.terminate().is_none()
            && let Some(mut c) = self.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let runtime_root = self.exec_root.join("runtime");
        if let Ok(rd) = std::fs::read_dir(&runtime_root) {
            for e in rd.flatten() {
                let _ = Command::new(berth_test_support::bins::runtime_bin())
                    .arg("--root")
                    .arg(&runtime_root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Monitors see their container die and exit; give them a moment, then kill any that remain.
        let needle = self.exec_root.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_with(&needle);
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for pid in left {
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(mounts) = berth_test_support::cleanup::mounts_under(self.dir.path()) {
            for m in mounts.iter().rev() {
                let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
            }
        }
        remove_cgroups(&self.cgroup_parent);
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// Removes a cgroup parent (and the containers' cgroups below it) in every hierarchy.
pub fn remove_cgroups(parent: &str) {
    let rel = parent.trim_start_matches('/');
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let dir = root.join(rel);
        if !dir.is_dir() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Whether any cgroup directory of `parent` still exists.
pub fn cgroups_left(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path().join(rel);
        if let Ok(children) = std::fs::read_dir(&dir) {
            out.extend(children.flatten().map(|c| c.path()).filter(|p| p.is_dir()));
        }
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Imports a busybox image (from the distribution's busybox-static) into the daemon as `name`, with the
/// applets linked in /bin and a passwd/group file; returns the name.
pub fn busybox_image(d: &Daemon, name: &str) -> String {
    busybox_image_with(d, name, &[])
}

/// Like [`busybox_image`], with `import --change` instructions (`EXPOSE 80/tcp`, `CMD ...`).
pub fn busybox_image_with(d: &Daemon, name: &str, changes: &[&str]) -> String {
    let rootfs = d
        .dir
        .path()
        .join(format!("bb-rootfs-{}", name.replace([':', '/'], "_")));
    let _ = std::fs::remove_dir_all(&rootfs);
    for sub in ["bin", "etc", "tmp", "root", "home/user"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("make the rootfs");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox (busybox-static)");
    let applets = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in String::from_utf8_lossy(&applets.stdout).lines() {
        if a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )
    .expect("write group");
    let tar = rootfs.with_extension("tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar failed");
    let tar_arg = tar.display().to_string();
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["--change", c]);
    }
    args.extend([tar_arg.as_str(), name]);
    let o = d.berth(&args);
    ok(&o);
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_file(&tar);
    name.to_string()
}

/// Raw HTTP over a unix socket (chunked bodies decoded).
pub fn raw_request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s =
        UnixStream::connect(sock).unwrap_or_else(|e| panic!("cannot connect to {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw, method == "HEAD")
}

/// Splits a raw response.
pub fn parse_response(raw: &[u8], head: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if head {
        body.clear();
    } else if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + size]);
            rest = &rest[p + 2 + size + 2..];
        }
        body = out;
    }
    (status, headers, body)
}

/// A header's value.
pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// VmRSS of a process, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Like [`start`], with environment variables for berthd (`BERTH_ETC_DIR`, `BERTH_USERNS_LAYERS`, ...).
pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_fresh(None, "{}", extra, env)
}

/// A daemon in a new temporary directory with `config` as its `daemon.json`, in `netns` (or the host's
/// namespace), started with `extra` arguments and `env`.
fn start_fresh(netns: Option<NetNs>, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix("berthd-test-")
        .tempdir()
        .expect("make the daemon's temp dir");
    std::fs::write(dir.path().join("daemon.json"), config).expect("write daemon.json");
    let mut d = Daemon {
        child: None,
        sock: dir.path().join("berth.sock"),
        pidfile: dir.path().join("berthd.pid"),
        data: dir.path().join("data"),
        log: dir.path().join("berthd.log"),
        exec_root: dir.path().join("exec"),
        cgroup_parent: format!("/{}", berth_test_support::ids::unique_id("berthd-test")),
        dir,
        netns,
    };
    d.restart_env(extra, env);
    d
}

impl Daemon {
    /// The berthd command line of this daemon's directories, with `extra` arguments and `env` (stdio not set).
    ///
    /// A daemon of [`start_netns`] is started as `nsenter --net=<netns> -- berthd ...` (nsenter execs berthd, so
    /// the child's pid is berthd's) with `BERTH_RESOLV_CONF` at a file naming only its own loopback (unless `env`
    /// sets it); any other daemon gets `--bridge none` unless `extra` names a bridge.
    pub fn command(&self, extra: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path.display()))
                    .arg("--")
                    .arg(berthd_bin());
                if !env.iter().any(|(k, _)| *k == "BERTH_RESOLV_CONF") {
                    let resolv = self.dir.path().join("resolv.conf");
                    if !resolv.exists() {
                        std::fs::write(&resolv, "nameserver 127.0.0.1\n")
                            .expect("write the daemon's resolv.conf");
                    }
                    c.env("BERTH_RESOLV_CONF", resolv);
                }
                c
            }
            None => Command::new(berthd_bin()),
        };
        berthd_args(
            &mut cmd,
            &DaemonPaths {
                config: &self.dir.path().join("daemon.json"),
                sock: &self.sock,
                pidfile: &self.pidfile,
                data: &self.data,
                exec_root: &self.exec_root,
                cgroup_parent: &self.cgroup_parent,
            },
            self.netns.is_none(),
            extra,
        );
        cmd.envs(env.iter().copied()).stdin(Stdio::null());
        cmd
    }

    /// Like [`Daemon::restart`], with environment variables for berthd.
    pub fn restart_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "the daemon still runs");
        let mut cmd = self.command(extra, env);
        cmd.env("BERTHD_LOG", "debug");
        let logf = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .expect("open the daemon log");
        cmd.stdout(logf.try_clone().expect("dup the log")).stderr(logf);
        self.child = Some(cmd.spawn().expect("start berthd"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.sock).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                panic!("berthd did not start ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether daemon arguments choose the default bridge themselves (`--bridge X` or `--bridge=X`).
/// Where a berthd keeps its state.
pub struct DaemonPaths<'a> {
    pub config: &'a Path,
    pub sock: &'a Path,
    pub pidfile: &'a Path,
    pub data: &'a Path,
    pub exec_root: &'a Path,
    pub cgroup_parent: &'a str,
}

/// Appends berthd's arguments for `paths` and `extra` to `cmd`; a daemon in the host's network namespace
/// (`host_net`) gets `--bridge none` unless `extra` names a bridge, so that it changes nothing in the host's network.
pub fn berthd_args(cmd: &mut Command, paths: &DaemonPaths<'_>, host_net: bool, extra: &[&str]) {
    if host_net && !names_bridge(extra) {
        cmd.arg("--bridge").arg("none");
    }
    cmd.arg("--config-file")
        .arg(paths.config)
        .arg("-H")
        .arg(format!("unix://{}", paths.sock.display()))
        .arg("--pidfile")
        .arg(paths.pidfile)
        .arg("--data-root")
        .arg(paths.data)
        .arg("--exec-root")
        .arg(paths.exec_root)
        .arg("--cgroup-parent")
        .arg(paths.cgroup_parent)
        .args(extra);
}

fn names_bridge(extra: &[&str]) -> bool {
    extra
        .iter()
        .any(|a| *a == "--bridge" || a.starts_with("--bridge="))
}

/// A network namespace made for one daemon (`ip netns add berth-t-<pid>-<n>-<time>`, loopback up), deleted on drop
/// together with everything in it (bridges, veths, the nftables table, the forwarding sysctl).
pub struct NetNs {
    /// `berth-t-...`.
    pub name: String,
    /// `/run/netns/<name>`.
    pub path: PathBuf,
}

impl NetNs {
    /// Makes a namespace with its loopback up; first deletes the namespaces of earlier test processes that are gone.
    pub fn create() -> NetNs {
        remove_stale_netns();
        let name = berth_test_support::ids::unique_id("berth-t");
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            o.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ns = NetNs {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        let o = Command::new("ip")
            .args(["-n", &ns.name, "link", "set", "lo", "up"])
            .output()
            .expect("run ip link set lo up");
        assert!(
            o.status.success(),
            "lo up in {}: {}",
            ns.name,
            String::from_utf8_lossy(&o.stderr)
        );
        ns
    }

    /// `nsenter --net=<ns> -- args` with the 120 s limit of [`run`].
    pub fn run(&self, args: &[&str]) -> Output {
        assert!(!args.is_empty(), "no command to run in {}", self.name);
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .args(args);
        run(c)
    }

    /// Runs `f` on a thread that joined this namespace: sockets it makes stay in the namespace after it returns.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns_path(&self.path, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes `berth-t-<pid>-...` namespaces whose test process no longer runs (a test binary killed mid-test).
fn remove_stale_netns() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("berth-t-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `f` on a new thread that joined the network namespace at `path` (`/run/netns/X`, `/proc/PID/ns/net`);
/// the calling thread's namespace is untouched, and sockets made by `f` stay in `path`'s namespace.
pub fn in_netns_path<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Starts a daemon in a network namespace of its own (see [`NetNs`]) with its default bridge (unless `extra`
/// says `--bridge ...`) and `BERTH_RESOLV_CONF` at `nameserver 127.0.0.1`, so that nothing it or its containers do
/// reaches the host's network or resolvers. Restarts keep the namespace.
pub fn start_netns(extra: &[&str]) -> Daemon {
    start_netns_env(extra, &[])
}

/// Like [`start_netns`], with environment variables for berthd.
pub fn start_netns_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_in_netns(NetNs::create(), extra, env)
}

/// Like [`start_netns_env`], in a namespace the caller made and prepared (links, addresses, routes that berthd must
/// find at start); the daemon owns it from here and deletes it on drop.
pub fn start_in_netns(netns: NetNs, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_in_netns_config(netns, "{}", extra, env)
}

/// Like [`start_netns`], with `config` as the daemon's `daemon.json`.
pub fn start_netns_config(config: &str, extra: &[&str]) -> Daemon {
    start_in_netns_config(NetNs::create(), config, extra, &[])
}

/// Like [`start_in_netns`], with `config` as the daemon's `daemon.json`.
pub fn start_in_netns_config(netns: NetNs, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_fresh(Some(netns), config, extra, env)
}

impl Daemon {
    /// The daemon's network namespace; panics for a daemon of the host's namespace.
    pub fn ns(&self) -> &NetNs {
        self.netns
            .as_ref()
            .expect("this daemon has no network namespace of its own (use start_netns)")
    }

    /// Runs a host-side command (`wget`, `nft list ruleset`, `ip -br addr`, ...) inside the daemon's namespace.
    pub fn in_netns(&self, args: &[&str]) -> Output {
        self.ns().run(args)
    }

    /// Runs `f` on a thread inside the daemon's namespace (sockets made there stay there).
    pub fn with_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns().enter(f)
    }
}

/// Polls `f` every 50 ms until it is true; false after `secs` seconds.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The CLI a test drives.
#[derive(Clone, Copy, Debug)]
pub enum Cli {
    Berth,
    Docker,
}

/// A daemon and the CLI the test drives it with; derefs to the [`Daemon`] for the API and the directories.
pub struct Env {
    pub daemon: Daemon,
    pub cli: Cli,
}

impl std::ops::Deref for Env {
    type Target = Daemon;

    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

/// The CLI under test.
pub fn cli(d: &Env, args: &[&str]) -> Output {
    match d.cli {
        Cli::Berth => d.berth(args),
        Cli::Docker => d.docker(args),
    }
}

/// Makes each `fn name(Cli)` of the test file two tests, `berth::name` and `docker::name`. A check left out of the
/// list is dead code, which clippy (`-D warnings`) refuses.
#[allow(unused_macros)]
macro_rules! for_both_clis {
    ($($name:ident,)*) => {
        mod berth {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Cli::Berth);
                }
            )*
        }

        mod docker {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Cli::Docker);
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use for_both_clis;
