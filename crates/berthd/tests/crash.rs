//! A daemon killed with SIGKILL restarts into a consistent state (issue 5).
//!
//! - Live restore: running containers keep running and logging while berthd is dead, berthd reconnects to their
//!   monitors when it comes back (ps, logs, wait, stop and rm work, the exit code is recorded), an exit that
//!   happens while it is down is recorded with its code, and restart policies apply at start-up as dockerd's.
//! - A crash at a random moment (0-300 ms) after create, start, stop or rm was issued, through the CLI or the raw
//!   API: after the restart every listed container is consistent (running ones have a live process in their own
//!   cgroup and a monitor; created and exited ones have no process, no root mount, no runtime state), nothing that
//!   no listed container owns is left (overlay mount, monitor, runtime state, run directory, cgroup, layers,
//!   container directory), and the operation can be completed or repeated.
//!
//! `BERTH_CRASH_ITERATIONS` sets the iterations per operation (default 20), `BERTH_CRASH_SEED` the seed of the
//! delays (printed by every run).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Daemon, busybox_image, ok, processes_with, start, wait_until};
use serde_json::Value;

/// Logs a counter every 100 ms; exits 42 on SIGTERM (the trap is set before the first line).
const COUNTER: &str = "trap 'exit 42' TERM; i=0; while :; do echo $i; i=$((i+1)); usleep 100000; done";
/// Logs a counter every 100 ms and ignores SIGTERM: a stop has to time out and SIGKILL it.
const STUBBORN: &str = "trap '' TERM; i=0; while :; do echo $i; i=$((i+1)); usleep 100000; done";

// ---------------------------------------------------------------------------------------------------------
// Small helpers.

/// A container's inspect document, or None on 404.
fn inspect(d: &Daemon, name: &str) -> Option<Value> {
    let (s, v) = d.json("GET", &format!("/containers/{name}/json"), b"");
    match s {
        200 => Some(v),
        404 => None,
        _ => panic!("inspect {name}: {s} {v}"),
    }
}

/// `State.Status` of a container ("" if it does not exist).
fn status(d: &Daemon, name: &str) -> String {
    inspect(d, name)
        .and_then(|v| v["State"]["Status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|st| !st.trim_start().starts_with('Z') && !st.trim_start().starts_with('X'))
}

/// The cgroup paths of `pid` (one per hierarchy).
fn cgroups_of(pid: i64) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect()
}

/// Monitors (and anything else run on a container's run directory) of this daemon: pid → container id.
fn monitors(d: &Daemon) -> Vec<(i32, String)> {
    let needle = format!("{}/c/", d.exec_root.display());
    processes_with(&needle)
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            let at = cmd.find(&needle)? + needle.len();
            let id: String = cmd[at..].chars().take_while(char::is_ascii_hexdigit).collect();
            Some((pid, id))
        })
        .collect()
}

/// Pids of the monitors of container `id`.
fn monitors_of(d: &Daemon, id: &str) -> Vec<i32> {
    monitors(d)
        .into_iter()
        .filter(|(_, m)| m == id)
        .map(|(p, _)| p)
        .collect()
}

/// Names in a directory (empty if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Container layer directories (`<64 hex>` or `<64 hex>-init` without a `layer.json`) → container ids.
fn container_layer_ids(d: &Daemon) -> HashSet<String> {
    let root = d.data.join("overlay2");
    entries(&root)
        .into_iter()
        .filter(|n| {
            let id = n.strip_suffix("-init").unwrap_or(n);
            id.len() == 64
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && !root.join(n).join("layer.json").exists()
        })
        .map(|n| n.strip_suffix("-init").unwrap_or(&n).to_string())
        .collect()
}

/// Mount points under the daemon's directories (its data root and exec root live there).
fn mounts(d: &Daemon) -> Vec<PathBuf> {
    berth_test_support::cleanup::mounts_under(d.dir.path()).expect("read the mount table")
}

/// Everything that contradicts the API's list of containers, as sentences. Empty = consistent.
fn violations(d: &Daemon) -> Vec<String> {
    let mut bad = Vec::new();
    let (s, list) = d.json("GET", "/containers/json?all=1", b"");
    if s != 200 {
        return vec![format!("GET /containers/json answered {s}: {list}")];
    }
    let mut listed: HashMap<String, String> = HashMap::new();
    for c in list.as_array().cloned().unwrap_or_default() {
        let id = c["Id"].as_str().unwrap_or_default().to_string();
        let Some(v) = inspect(d, &id) else {
            bad.push(format!("{id} is listed but inspect says 404"));
            continue;
        };
        let st = v["State"]["Status"].as_str().unwrap_or_default().to_string();
        let pid = v["State"]["Pid"].as_i64().unwrap_or(-1);
        let merged = d.data.join("overlay2").join(&id).join("merged");
        let mounted = mounts(d).contains(&merged);
        let run_dir = d.exec_root.join("c").join(&id);
        let runtime_dir = d.exec_root.join("runtime").join(&id);
        let own_monitors = monitors(d).into_iter().filter(|(_, m)| *m == id).count();
        for p in [
            d.data.join("overlay2").join(&id).join("diff"),
            d.data.join("overlay2").join(&id).join("work"),
            d.data.join("overlay2").join(format!("{id}-init")).join("diff"),
            d.data.join("containers").join(&id).join("hostname"),
        ] {
            if !p.exists() {
                bad.push(format!("{id} ({st}) is listed but {} is missing", p.display()));
            }
        }
        match st.as_str() {
            "running" | "paused" => {
                let cg = format!("{}/{id}", d.cgroup_parent);
                if !alive(pid) {
                    bad.push(format!("{id} is {st} but its pid {pid} is not alive"));
                } else if !cgroups_of(pid).contains(&cg) {
                    bad.push(format!(
                        "{id}: pid {pid} is not in the cgroup {cg}: {:?}",
                        cgroups_of(pid)
                    ));
                }
                if !mounted {
                    bad.push(format!(
                        "{id} is {st} but its root {} is not mounted",
                        merged.display()
                    ));
                }
                if !runtime_dir.exists() {
                    bad.push(format!(
                        "{id} is {st} but has no runtime state {}",
                        runtime_dir.display()
                    ));
                }
                if own_monitors == 0 {
                    bad.push(format!("{id} is {st} but no monitor runs for it"));
                }
            }
            "created" | "exited" => {
                if pid != 0 {
                    bad.push(format!("{id} is {st} with State.Pid {pid}"));
                }
                if mounted {
                    bad.push(format!(
                        "{id} is {st} but its root {} is mounted",
                        merged.display()
                    ));
                }
                for p in [&run_dir, &runtime_dir] {
                    if p.exists() {
                        bad.push(format!("{id} is {st} but {} exists", p.display()));
                    }
                }
                if own_monitors > 0 {
                    bad.push(format!("{id} is {st} but a monitor runs for it"));
                }
                let procs = common::cgroups_left(&d.cgroup_parent)
                    .into_iter()
                    .filter(|p| p.ends_with(&id))
                    .flat_map(|p| {
                        std::fs::read_to_string(p.join("cgroup.procs"))
                            .unwrap_or_default()
                            .lines()
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>();
                if !procs.is_empty() {
                    bad.push(format!("{id} is {st} but processes {procs:?} are in its cgroup"));
                }
            }
            other => bad.push(format!("{id} is in the state {other:?} after the restart")),
        }
        listed.insert(id, st);
    }
    let running = |id: &str| matches!(listed.get(id).map(String::as_str), Some("running" | "paused"));
    for m in mounts(d) {
        let owner = m
            .strip_prefix(d.data.join("overlay2"))
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if !running(&owner) || m != d.data.join("overlay2").join(&owner).join("merged") {
            bad.push(format!("orphaned mount {}", m.display()));
        }
    }
    for (pid, id) in monitors(d) {
        if !running(&id) {
            bad.push(format!("orphaned monitor (pid {pid}) of container {id}"));
        }
    }
    for sub in ["c", "runtime"] {
        for id in entries(&d.exec_root.join(sub)) {
            if !running(&id) {
                bad.push(format!("orphaned {}", d.exec_root.join(sub).join(&id).display()));
            }
        }
    }
    for cg in common::cgroups_left(&d.cgroup_parent) {
        let id = cg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !running(&id) {
            bad.push(format!("orphaned cgroup {}", cg.display()));
        }
    }
    for id in container_layer_ids(d) {
        if !listed.contains_key(&id) {
            bad.push(format!("layers of container {id}, which is not listed"));
        }
    }
    for id in entries(&d.data.join("containers")) {
        if !listed.contains_key(&id) {
            bad.push(format!("container directory {id}, which is not listed"));
        }
    }
    bad
}

/// Waits (10 s) for the daemon's state to become consistent; panics with what is not.
fn assert_consistent(d: &Daemon, when: &str) {
    let mut last = Vec::new();
    let ok = wait_until(10, || {
        last = violations(d);
        last.is_empty()
    });
    assert!(
        ok,
        "{when}: inconsistent after the restart:\n  {}\ndaemon log tail:\n{}",
        last.join("\n  "),
        tail(d)
    );
    assert!(
        !d.log_text().contains("panicked"),
        "{when}: the daemon panicked:\n{}",
        d.log_text()
    );
}

/// No container at all, and nothing left of any.
fn assert_clean(d: &Daemon, when: &str) {
    assert_consistent(d, when);
    let (_, list) = d.json("GET", "/containers/json?all=1", b"");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "{when}: containers are left: {list}"
    );
}

/// The last lines of the daemon's log.
fn tail(d: &Daemon) -> String {
    let t = d.log_text();
    let lines: Vec<&str> = t.lines().filter(|l| !l.contains("DEBUG request")).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The integers a counter container logged, in order.
fn counter_values(d: &Daemon, name: &str) -> Vec<u64> {
    let o = d.berth(&["logs", name]);
    ok(&o).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Lines in a json-file log.
fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// `berth run -d` with the arguments; the id.
fn run_detached(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    ok(&d.berth(&a)).trim().to_string()
}

/// Waits for a container's log to have its first line (the program runs, its traps are set).
fn wait_for_output(d: &Daemon, name: &str) {
    assert!(
        wait_until(10, || {
            let (_, _, b) = d.request("GET", &format!("/containers/{name}/logs?stdout=1"), b"");
            !b.is_empty()
        }),
        "{name} printed nothing:\n{}",
        tail(d)
    );
}

/// A tiny deterministic generator for the crash delays (xorshift64*), seeded from the clock or
/// `BERTH_CRASH_SEED` and printed, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Self {
        let seed = std::env::var("BERTH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|t| t.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("crash delays: BERTH_CRASH_SEED={seed}");
        Self((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn iterations() -> usize {
    std::env::var("BERTH_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// An operation issued in the background: a CLI process or a raw API request on a thread.
enum Background {
    Cli(Child),
    Api(std::thread::JoinHandle<()>),
}

impl Background {
    fn cli(d: &Daemon, args: &[&str]) -> Self {
        let child = Command::new(common::berth_bin())
            .arg("-H")
            .arg(d.host())
            .args(args)
            .env("BERTH_CONFIG", d.dir.path().join("berth-config"))
            .env_remove("BERTH_HOST")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the berth CLI");
        Self::Cli(child)
    }

    /// A request whose answer (or the lack of one) is ignored.
    fn api(d: &Daemon, method: &str, path: &str, body: &[u8]) -> Self {
        let sock = d.sock.clone();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        Self::Api(std::thread::spawn(move || {
            if let Ok(mut s) = UnixStream::connect(&sock) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                if s.write_all(&bytes).is_ok() {
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                }
            }
        }))
    }

    /// Waits for the client to notice the daemon's death (it is killed after 10 s).
    fn finish(self) {
        match self {
            Self::Cli(mut c) => {
                let done = wait_until(10, || matches!(c.try_wait(), Ok(Some(_))));
                if !done {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("the CLI did not end within 10 s after the daemon was killed");
                }
            }
            Self::Api(h) => {
                let _ = h.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Live restore.

#[test]
fn running_containers_survive_a_killed_daemon_and_keep_logging() {
    let mut d = start(&[]);
    let image = busybox_image(&d, "crash-live:latest");
    let sig = d.dir.path().join("sig");
    std::fs::create_dir(&sig).expect("make the signal directory");
    let bind = format!("{}:/sig", sig.display());

    let counter = run_detached(&d, &["--name", "counter", &image, "sh", "-c", COUNTER]);
    let exiter = run_detached(
        &d,
        &[
            "--name",
            "exiter",
            "-v",
            &bind,
            &image,
            "sh",
            "-c",
            "echo up; while [ ! -e /sig/go ]; do usleep 50000; done; exit 7",
        ],
    );
    wait_for_output(&d, "counter");
    wait_for_output(&d, "exiter");
    let c = inspect(&d, "counter").expect("counter exists");
    let counter_pid = c["State"]["Pid"].as_i64().unwrap();
    let log_path = PathBuf::from(c["LogPath"].as_str().unwrap());
    assert!(log_path.is_file(), "no log at {}", log_path.display());
    let exiter_pid = inspect(&d, "exiter").unwrap()["State"]["Pid"].as_i64().unwrap();
    let counter_monitor = monitors_of(&d, &counter);
    assert_eq!(
        counter_monitor.len(),
        1,
        "monitors of counter: {counter_monitor:?}"
    );

    d.kill9();

    // The daemon is dead: the monitor and the container go on, and so does the log.
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(counter_pid), "the counter died with the daemon");
    assert!(
        alive(i64::from(counter_monitor[0])),
        "the counter's monitor died with the daemon"
    );
    let before = log_lines(&log_path);
    assert!(
        wait_until(5, || log_lines(&log_path) >= before + 5),
        "the log stopped growing while the daemon was down ({before} lines)"
    );
    // A container that exits while the daemon is away: the monitor records it and goes.
    std::fs::write(sig.join("go"), b"").unwrap();
    assert!(wait_until(10, || !alive(exiter_pid)), "exiter did not exit");
    assert!(
        wait_until(10, || monitors_of(&d, &exiter).is_empty()),
        "exiter's monitor did not exit"
    );
    let while_down = log_lines(&log_path);

    d.restart(&[]);

    assert_consistent(&d, "live restore");
    let ps = ok(&d.berth(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.lines().any(|l| l.starts_with("counter Up")),
        "ps after the restart:\n{ps}"
    );
    assert!(!ps.contains("exiter"), "exiter is still shown running:\n{ps}");
    let ps_a = ok(&d.berth(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps_a.lines().any(|l| l.starts_with("exiter Exited (7)")),
        "ps -a after the restart:\n{ps_a}"
    );
    let e = inspect(&d, "exiter").unwrap();
    assert_eq!(e["State"]["Status"], "exited", "{e}");
    assert_eq!(e["State"]["ExitCode"], 7, "{e}");
    assert_eq!(e["State"]["Running"], false);
    let c = inspect(&d, "counter").unwrap();
    assert_eq!(
        c["State"]["Pid"].as_i64(),
        Some(counter_pid),
        "the counter was restarted, not reconnected"
    );
    assert_eq!(c["State"]["Running"], true);

    // The log keeps growing, and the logs endpoint shows every line, those written while the daemon was down too.
    assert!(
        wait_until(5, || log_lines(&log_path) >= while_down + 3),
        "the log stopped after the restart"
    );
    let values = counter_values(&d, "counter");
    assert!(
        values.len() >= while_down,
        "{} values, {while_down} lines were logged",
        values.len()
    );
    assert!(
        values.iter().enumerate().all(|(i, v)| *v == i as u64),
        "the counter's log has gaps or repeats: {values:?}"
    );

    // wait, stop and rm work on the reconnected container; the exit code is its own (the TERM trap).
    let waited = {
        let sock = d.sock.clone();
        std::thread::spawn(move || common::raw_request(&sock, "POST", "/containers/counter/wait", &[], b""))
    };
    std::thread::sleep(Duration::from_millis(200));
    ok(&d.berth(&["stop", "counter"]));
    let (s, _, body) = waited.join().expect("the wait request");
    assert_eq!(s, 200);
    let body: Value = serde_json::from_slice(&body).expect("wait answer");
    assert_eq!(body["StatusCode"], 42, "{body}");
    let c = inspect(&d, "counter").unwrap();
    assert_eq!(c["State"]["ExitCode"], 42, "{c}");
    assert!(!alive(counter_pid));
    assert!(
        wait_until(10, || monitors_of(&d, &counter).is_empty()),
        "the counter's monitor outlived it"
    );
    ok(&d.berth(&["rm", "counter", "exiter"]));
    assert_clean(&d, "after rm");
}

#[test]
fn restart_policies_apply_when_the_daemon_comes_back() {
    let mut d = start(&[]);
    let image = busybox_image(&d, "crash-policy:latest");
    let sig = d.dir.path().join("sig");
    std::fs::create_dir(&sig).expect("make the signal directory");
    let bind = format!("{}:/sig", sig.display());
    // Exits 3 once (when /sig/go appears), runs for good when started again.
    let once = |tag: &str| {
        format!(
            "echo run; [ -e /sig/done-{tag} ] && exec sleep 1000; while [ ! -e /sig/go ]; do usleep 50000; done; \
             touch /sig/done-{tag}; exit 3"
        )
    };
    let with_sig = ["-v", bind.as_str()];
    let cases: [(&str, &[&str], String); 6] = [
        ("always-exits", &["--restart", "always"], once("always")),
        (
            "on-failure-exits",
            &["--restart", "on-failure:5"],
            once("failure"),
        ),
        ("no-exits", &[], once("no")),
        ("always-runs", &["--restart", "always"], COUNTER.to_string()),
        ("always-stopped", &["--restart", "always"], COUNTER.to_string()),
        (
            "unless-stopped",
            &["--restart", "unless-stopped"],
            COUNTER.to_string(),
        ),
    ];
    for (name, opts, script) in &cases {
        let mut args = vec!["--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&with_sig);
        args.extend_from_slice(&[&image, "sh", "-c", script]);
        run_detached(&d, &args);
    }
    for (name, _, _) in &cases {
        wait_for_output(&d, name);
    }
    ok(&d.berth(&["stop", "always-stopped", "unless-stopped"]));
    let pid = |n: &str| inspect(&d, n).unwrap()["State"]["Pid"].as_i64().unwrap_or(0);
    let exiting: Vec<i64> = ["always-exits", "on-failure-exits", "no-exits"]
        .iter()
        .map(|n| pid(n))
        .collect();
    let runs_pid = pid("always-runs");

    d.kill9();
    std::fs::write(sig.join("go"), b"").unwrap();
    for p in &exiting {
        assert!(wait_until(10, || !alive(*p)), "pid {p} did not exit");
    }
    d.restart(&[]);

    // dockerd at start-up: `always` and `on-failure` (non-zero exit) containers that are not running are started,
    // `always` even when it was stopped by hand, `unless-stopped` not when it was; a running one is left alone.
    for n in ["always-exits", "on-failure-exits"] {
        assert!(
            wait_until(10, || status(&d, n) == "running"),
            "{n} was not started at daemon start: {}\n{}",
            inspect(&d, n).unwrap()["State"],
            tail(&d)
        );
    }
    let runs = inspect(&d, "always-runs").unwrap();
    assert_eq!(
        runs["State"]["Pid"].as_i64(),
        Some(runs_pid),
        "a running container was restarted: {runs}"
    );
    assert_eq!(runs["RestartCount"], 0, "{runs}");
    let no = inspect(&d, "no-exits").unwrap();
    assert_eq!(no["State"]["Status"], "exited", "{no}");
    assert_eq!(no["State"]["ExitCode"], 3, "{no}");
    let unless = inspect(&d, "unless-stopped").unwrap();
    assert_eq!(
        unless["State"]["Status"], "exited",
        "unless-stopped was started after a manual stop: {unless}"
    );
    for n in ["always-exits", "on-failure-exits"] {
        let logs = ok(&d.berth(&["logs", n]));
        assert_eq!(logs.matches("run").count(), 2, "{n} ran {logs:?}");
    }
    // Last, as it fails while berthd keeps a manually stopped `always` container down.
    assert!(
        wait_until(10, || status(&d, "always-stopped") == "running"),
        "an `always` container stopped by hand was not started at daemon start (dockerd starts it): {}",
        inspect(&d, "always-stopped").unwrap()["State"]
    );
    assert_consistent(&d, "restart policies");
    ok(&d.berth(&[
        "rm",
        "-f",
        "always-exits",
        "on-failure-exits",
        "no-exits",
        "always-runs",
        "always-stopped",
        "unless-stopped",
    ]));
    assert_clean(&d, "after rm -f");
}

// ---------------------------------------------------------------------------------------------------------
// A crash in the middle of an operation.

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Start,
    Stop,
    Remove,
}

/// The create body of a counter container named by the query string.
fn create_body(image: &str, script: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "Image": image, "Cmd": ["sh", "-c", script], "HostConfig": {"NetworkMode": "none"}
    }))
    .unwrap()
}

fn api_create(d: &Daemon, name: &str, image: &str, script: &str) -> String {
    let (s, v) = d.json(
        "POST",
        &format!("/containers/create?name={name}"),
        &create_body(image, script),
    );
    assert_eq!(s, 201, "create {name}: {v}");
    v["Id"].as_str().unwrap().to_string()
}

fn api_start(d: &Daemon, name: &str) {
    let (s, v) = d.json("POST", &format!("/containers/{name}/start"), b"");
    assert!(s == 204 || s == 304, "start {name}: {s} {v}\n{}", tail(d));
    assert!(
        wait_until(10, || status(d, name) == "running"),
        "{name} is not running after start"
    );
    wait_for_output(d, name);
}

fn api_remove(d: &Daemon, name: &str) -> u16 {
    let (s, v) = d.json("DELETE", &format!("/containers/{name}?force=1"), b"");
    assert!(s == 204 || s == 404, "rm -f {name}: {s} {v}\n{}", tail(d));
    s
}

/// Issues `op` on `name` in the background, kills the daemon after a random delay, restarts it, checks the
/// invariants, then completes or repeats the operation and checks that nothing is left.
fn crash_in_the_middle_of(op: Op) {
    let mut d = start(&[]);
    let image = busybox_image(&d, &format!("crash-{op:?}:latest").to_lowercase());
    let mut rng = Rng::new(op as u64 + 1);
    for i in 0..iterations() {
        let name = format!("{op:?}-{i}").to_lowercase();
        let via_api = i % 2 == 1;
        let stubborn = i % 4 >= 2;
        let script = if stubborn { STUBBORN } else { COUNTER };
        // The state before the operation.
        match op {
            Op::Create => {}
            Op::Start => {
                api_create(&d, &name, &image, script);
            }
            Op::Stop => {
                api_create(&d, &name, &image, script);
                api_start(&d, &name);
            }
            Op::Remove => {
                api_create(&d, &name, &image, COUNTER);
                api_start(&d, &name);
                if stubborn {
                    let (s, v) = d.json("POST", &format!("/containers/{name}/stop"), b"");
                    assert_eq!(s, 204, "stop {name}: {v}");
                }
            }
        }
        let bg = match (op, via_api) {
            (Op::Create, false) => Background::cli(
                &d,
                &[
                    "create",
                    "--name",
                    &name,
                    "--network",
                    "none",
                    &image,
                    "sh",
                    "-c",
                    script,
                ],
            ),
            (Op::Create, true) => Background::api(
                &d,
                "POST",
                &format!("/containers/create?name={name}"),
                &create_body(&image, script),
            ),
            (Op::Start, false) => Background::cli(&d, &["start", &name]),
            (Op::Start, true) => Background::api(&d, "POST", &format!("/containers/{name}/start"), b""),
            (Op::Stop, false) => Background::cli(&d, &["stop", "-t", "1", &name]),
            (Op::Stop, true) => Background::api(&d, "POST", &format!("/containers/{name}/stop?t=1"), b""),
            (Op::Remove, false) => Background::cli(&d, &["rm", "-f", &name]),
            (Op::Remove, true) => Background::api(&d, "DELETE", &format!("/containers/{name}?force=1"), b""),
        };
        let delay = rng.below(300);
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        bg.finish();
        d.restart(&[]);
        let when = format!(
            "{op:?} #{i} ({}, killed after {delay} ms)",
            if via_api { "API" } else { "CLI" }
        );
        assert_consistent(&d, &when);

        // Complete or repeat the operation.
        let st = status(&d, &name);
        match op {
            Op::Create => {
                assert!(
                    st.is_empty() || st == "created",
                    "{when}: a created container is {st}"
                );
                if st.is_empty() {
                    api_create(&d, &name, &image, script);
                }
                api_start(&d, &name);
            }
            Op::Start => {
                assert!(
                    matches!(st.as_str(), "created" | "running" | "exited"),
                    "{when}: {name} is {st:?}"
                );
                api_start(&d, &name);
                let before = counter_values(&d, &name).len();
                assert!(
                    wait_until(5, || counter_values(&d, &name).len() > before),
                    "{when}: the started container does not log"
                );
            }
            Op::Stop => {
                assert!(
                    matches!(st.as_str(), "running" | "exited"),
                    "{when}: {name} is {st:?}"
                );
                let (s, v) = d.json("POST", &format!("/containers/{name}/stop?t=1"), b"");
                assert!(s == 204 || s == 304, "{when}: stop again: {s} {v}");
                let v = inspect(&d, &name).unwrap();
                assert_eq!(v["State"]["Status"], "exited", "{when}: {v}");
                let want = if stubborn { 137 } else { 42 };
                assert_eq!(v["State"]["ExitCode"], want, "{when}: {}", v["State"]);
            }
            Op::Remove => {
                assert!(
                    matches!(st.as_str(), "" | "running" | "exited"),
                    "{when}: {name} is {st:?}"
                );
                if !st.is_empty() {
                    // Still listed: it must be whole, so it can start again.
                    api_start(&d, &name);
                }
            }
        }
        assert_consistent(&d, &format!("{when}, completed"));
        api_remove(&d, &name);
        // The name is free again.
        api_create(&d, &name, &image, COUNTER);
        assert_eq!(api_remove(&d, &name), 204);
        assert_clean(&d, &format!("{when}, removed"));
    }
}

#[test]
fn a_crash_during_create_leaves_nothing_half_made() {
    crash_in_the_middle_of(Op::Create);
}

#[test]
fn a_crash_during_start_leaves_a_consistent_state() {
    crash_in_the_middle_of(Op::Start);
}

#[test]
fn a_crash_during_stop_leaves_a_consistent_state() {
    crash_in_the_middle_of(Op::Stop);
}

#[test]
fn a_crash_during_rm_leaves_nothing_orphaned() {
    crash_in_the_middle_of(Op::Remove);
}
