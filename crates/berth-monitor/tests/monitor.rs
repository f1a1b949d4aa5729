//! berth-monitor driving berth-runtime on busybox bundles: create, the socket protocol, logs, exit records,
//! clean-up. Needs root, `berth-runtime` and `berth-check` built (`cargo build`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_test_support::bins::locate;
use berth_test_support::{Bundle, ProcessMark, Runtime, unique_id};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

fn monitor_bin() -> PathBuf {
    locate("berth-monitor", "BERTH_MONITOR").unwrap_or_else(|e| panic!("{e}"))
}

/// Kills the monitor (if it is still the same process) when the test ends, before the runtime guard deletes
/// the container and removes its root.
struct MonitorGuard(Option<ProcessMark>);

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        if let Some(mark) = self.0
            && mark.is_alive()
        {
            // SAFETY: kill takes no pointers; the mark checked the pid still names the monitor.
            unsafe { libc::kill(mark.pid, libc::SIGKILL) };
        }
    }
}

/// One container under a monitor. Fields drop in order: monitor, runtime (deletes containers, kills
/// tracked processes, removes its root), bundle, state directory.
struct Fixture {
    monitor: MonitorGuard,
    rt: Runtime,
    bundle: Bundle,
    state: tempfile::TempDir,
    id: String,
    config: Value,
}

impl Fixture {
    fn new(args: &[&str], tty: bool) -> Self {
        let rt = Runtime::new();
        let mut bundle = Bundle::busybox();
        bundle.set_args(args).set_terminal(tty);
        bundle.write_config();
        // Short: unix socket paths must stay under 108 bytes.
        let state = tempfile::Builder::new().prefix("bm-").tempdir_in("/tmp").unwrap();
        let id = unique_id("mon");
        let config = json!({
            "id": id,
            "runtime": rt.bin(),
            "runtime_root": rt.root(),
            "bundle": bundle.path(),
            "tty": tty,
        });
        Self {
            monitor: MonitorGuard(None),
            rt,
            bundle,
            state,
            id,
            config,
        }
    }

    fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.config[key] = value;
        self
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    fn write_config(&self) {
        std::fs::write(
            self.dir().join("monitor.json"),
            serde_json::to_vec(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Runs `berth-monitor <state>`: (its exit success, its report).
    fn launch(&mut self) -> (bool, Value) {
        self.write_config();
        let out = Command::new(monitor_bin()).arg(self.dir()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "berth-monitor printed {text:?} ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(text.trim().lines().count(), 1, "one line on stdout: {text:?}");
        if report["ok"] == true {
            self.track(&report);
        }
        (out.status.success(), report)
    }

    fn track(&mut self, report: &Value) {
        let pid = report["pid"].as_i64().unwrap() as i32;
        let monitor_pid = report["monitor_pid"].as_i64().unwrap() as i32;
        self.rt.track_pid(pid);
        self.monitor = MonitorGuard(ProcessMark::of(monitor_pid));
    }

    /// Launches and asserts success; returns the report.
    fn launch_ok(&mut self) -> Value {
        let (ok, report) = self.launch();
        assert!(ok && report["ok"] == true, "{report}");
        assert!(self.dir().join("m.sock").exists());
        report
    }

    fn connect(&self, request: Value) -> UnixStream {
        let mut sock = UnixStream::connect(self.dir().join("m.sock")).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.write_all(format!("{request}\n").as_bytes()).unwrap();
        sock
    }

    /// One request, one reply line.
    fn call(&self, request: Value) -> Value {
        let sock = self.connect(request);
        read_reply(&mut BufReader::new(sock))
    }

    /// Attaches: returns a reader positioned after the `{"ok":true}` line, and the stream to write to.
    fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> (BufReader<UnixStream>, UnixStream) {
        let sock = self.connect(json!({"op":"attach","stdin":stdin,"stdout":stdout,"stderr":stderr}));
        let writer = sock.try_clone().unwrap();
        let mut reader = BufReader::new(sock);
        assert_eq!(read_reply(&mut reader), json!({"ok": true}));
        (reader, writer)
    }

    fn start(&self) {
        assert_eq!(self.call(json!({"op":"start"})), json!({"ok": true}));
    }

    /// Waits for the monitor process to be gone.
    fn wait_monitor_gone(&self) {
        let mark = self.monitor.0.expect("the monitor was launched");
        let deadline = Instant::now() + TIMEOUT;
        while mark.is_alive() {
            assert!(Instant::now() < deadline, "the monitor did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the monitor exited: exit.json is there, m.sock and the container are gone.
    fn assert_cleaned_up(&self) -> Value {
        self.wait_monitor_gone();
        assert!(!self.dir().join("m.sock").exists(), "m.sock removed");
        assert!(
            !self.rt.containers().contains(&self.id),
            "the container is deleted: {:?}",
            self.rt.containers()
        );
        serde_json::from_slice(&std::fs::read(self.dir().join("exit.json")).unwrap()).unwrap()
    }
}

fn read_reply(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
}

/// Reads multiplexed frames until EOF: (stdout, stderr).
fn read_frames(reader: &mut impl std::io::Read) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading a frame header: {e}"),
        }
        assert_eq!(&header[1..4], &[0, 0, 0]);
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        reader.read_exact(&mut data).unwrap();
        match header[0] {
            1 => out.extend_from_slice(&data),
            2 => err.extend_from_slice(&data),
            other => panic!("unknown stream {other}"),
        }
    }
    (out, err)
}

fn is_rfc3339_nano_utc(text: &str) -> bool {
    // 2026-11-29T00:00:00.123456789Z
    text.len() == 30
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[19] == b'.'
        && text[20..29].bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn attach_without_tty_keeps_stdout_and_stderr_apart_and_wait_returns_the_code() {
    let mut f = Fixture::new(&["sh", "-c", "echo out; echo err >&2; exit 3"], false);
    let report = f.launch_ok();
    let pid = report["pid"].as_i64().unwrap();
    assert_eq!(
        f.call(json!({"op":"status"})),
        json!({"ok": true, "pid": pid, "state": "created"})
    );
    assert_eq!(f.rt.status(&f.id), "created");
    let resize = f.call(json!({"op":"resize","height":10,"width":10}));
    assert_eq!(resize["ok"], false, "{resize}");
    assert!(resize["error"].as_str().unwrap().contains("no terminal"));
    assert_eq!(f.call(json!({"op":"bogus"}))["ok"], false);

    let (mut reader, _writer) = f.attach(false, true, true);
    let waiter = f.connect(json!({"op":"wait"}));
    f.start();
    let (out, err) = read_frames(&mut reader);
    assert_eq!(String::from_utf8_lossy(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    let exit = read_reply(&mut BufReader::new(waiter));
    assert_eq!(exit["ok"], true);
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["oom_killed"], false);
    assert!(
        is_rfc3339_nano_utc(exit["finished_at"].as_str().unwrap()),
        "{exit}"
    );
    let record = f.assert_cleaned_up();
    assert_eq!(record["exit_code"], 3);
    assert_eq!(record["finished_at"], exit["finished_at"]);
}

#[test]
fn attach_can_select_one_stream() {
    let mut f = Fixture::new(&["sh", "-c", "echo out; echo err >&2"], false);
    f.launch_ok();
    let (mut reader, _w) = f.attach(false, false, true);
    f.start();
    let (out, err) = read_frames(&mut reader);
    assert!(out.is_empty());
    assert_eq!(err, b"err\n");
    f.assert_cleaned_up();
}

#[test]
fn wait_reports_zero_and_137_for_sigkill() {
    let mut f = Fixture::new(&["true"], false);
    f.launch_ok();
    f.start();
    let exit = f.call(json!({"op":"wait"}));
    assert_eq!(exit["exit_code"], 0, "{exit}");
    assert_eq!(f.assert_cleaned_up()["exit_code"], 0);

    let mut f = Fixture::new(&["sleep", "100"], false);
    f.launch_ok();
    let waiter = f.connect(json!({"op":"wait"}));
    f.start();
    assert_eq!(f.call(json!({"op":"status"}))["state"], "running");
    assert_eq!(
        f.call(json!({"op":"start"}))["error"],
        "the container is already running"
    );
    let killed = f.rt.kill(&f.id, "KILL");
    assert!(killed.status.success(), "{killed:?}");
    let exit = read_reply(&mut BufReader::new(waiter));
    assert_eq!(exit["exit_code"], 137, "{exit}");
    assert_eq!(f.assert_cleaned_up()["exit_code"], 137);
}

#[test]
fn tty_attach_goes_through_the_pty() {
    let mut f = Fixture::new(&["sh", "-c", "read line; echo \"got:$line\"; tty"], true);
    f.set("open_stdin", json!(true));
    f.launch_ok();
    assert!(
        !f.dir().join("c.sock").exists(),
        "the console socket is gone once the pty arrived"
    );
    let (mut reader, mut writer) = f.attach(true, true, true);
    f.start();
    writer.write_all(b"hello\n").unwrap();
    let (out, err) = read_frames(&mut reader);
    assert!(err.is_empty(), "with a tty everything is stream 1");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("hello\r\n"), "the pty echoes the input: {text:?}");
    assert!(text.contains("got:hello\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert_eq!(f.assert_cleaned_up()["exit_code"], 0);
}

#[test]
fn stdin_once_eof_closes_the_containers_stdin() {
    let mut f = Fixture::new(&["cat"], false);
    f.set("open_stdin", json!(true)).set("stdin_once", json!(true));
    f.launch_ok();
    let (mut reader, writer) = f.attach(true, true, true);
    f.start();
    (&writer).write_all(b"abc\n").unwrap();
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, err) = read_frames(&mut reader);
    assert_eq!(out, b"abc\n");
    assert!(err.is_empty());
    assert_eq!(f.assert_cleaned_up()["exit_code"], 0, "cat saw EOF and exited");
}

#[test]
fn stdin_stays_open_without_stdin_once() {
    let mut f = Fixture::new(&["cat"], false);
    f.set("open_stdin", json!(true));
    f.launch_ok();
    let (mut reader, writer) = f.attach(true, true, false);
    f.start();
    (&writer).write_all(b"one\n").unwrap();
    writer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut frame = [0u8; 12];
    reader.read_exact(&mut frame).unwrap();
    assert_eq!(&frame[8..], b"one\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.call(json!({"op":"status"}))["state"],
        "running",
        "cat still has its stdin"
    );
    assert!(f.rt.kill(&f.id, "KILL").status.success());
    assert_eq!(f.assert_cleaned_up()["exit_code"], 137);
}

fn log_entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn json_file_log_holds_lines_and_the_partial_last_line() {
    let mut f = Fixture::new(&["sh", "-c", "echo line1; echo err1 >&2; printf partial"], false);
    let log = f.dir().join("c-json.log");
    f.set("log_path", json!(log));
    f.launch_ok();
    f.start();
    assert_eq!(f.call(json!({"op":"wait"}))["exit_code"], 0);
    f.assert_cleaned_up();
    let entries = log_entries(&log);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let find = |text: &str| {
        entries
            .iter()
            .find(|e| e["log"] == text)
            .unwrap_or_else(|| panic!("no entry {text:?} in {entries:?}"))
    };
    assert_eq!(find("line1\n")["stream"], "stdout");
    assert_eq!(find("err1\n")["stream"], "stderr");
    assert_eq!(find("partial")["stream"], "stdout");
    for e in &entries {
        assert!(is_rfc3339_nano_utc(e["time"].as_str().unwrap()), "{e}");
        assert_eq!(e.as_object().unwrap().len(), 3, "log, stream, time: {e}");
    }
}

#[test]
fn json_file_log_rotates_at_the_maximum_size() {
    let mut f = Fixture::new(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); done",
        ],
        false,
    );
    let log = f.dir().join("c-json.log");
    f.set("log_path", json!(log))
        .set("log_max_size", json!(400))
        .set("log_max_files", json!(3));
    f.launch_ok();
    f.start();
    assert_eq!(f.call(json!({"op":"wait"}))["exit_code"], 0);
    f.assert_cleaned_up();
    let file = |n: u32| {
        if n == 0 {
            log.clone()
        } else {
            PathBuf::from(format!("{}.{n}", log.display()))
        }
    };
    assert!(!file(3).exists(), "three files in total");
    let mut lines = Vec::new();
    for n in [2, 1, 0] {
        let size = std::fs::metadata(file(n)).unwrap().len();
        assert!(size <= 400, "{} has {size} bytes", file(n).display());
        lines.extend(
            log_entries(&file(n))
                .iter()
                .map(|e| e["log"].as_str().unwrap().to_string()),
        );
    }
    assert!(lines.len() > 3 && lines.len() < 100, "{lines:?}");
    let first: usize = lines[0].trim().strip_prefix("line-").unwrap().parse().unwrap();
    let expected: Vec<String> = (first..100).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(lines, expected, "consecutive lines up to the last one");
}

#[test]
fn resize_is_seen_inside() {
    let mut f = Fixture::new(&["sh", "-c", "read x; stty size"], true);
    f.set("open_stdin", json!(true));
    f.launch_ok();
    let (mut reader, mut writer) = f.attach(true, true, false);
    f.start();
    assert_eq!(
        f.call(json!({"op":"resize","height":40,"width":120})),
        json!({"ok": true})
    );
    writer.write_all(b"\n").unwrap();
    let (out, _) = read_frames(&mut reader);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("40 120"), "{text:?}");
    f.assert_cleaned_up();
}

/// The field of /proc/<pid>/stat after the command name, counted from the state (field 3) as 0.
fn stat_field(pid: i32, index: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(index).unwrap().parse().unwrap()
}

#[test]
fn the_monitor_keeps_the_container_when_its_starter_is_gone() {
    let mut f = Fixture::new(&["sh", "-c", "sleep 0.5; exit 7"], false);
    f.write_config();
    // The starter is a shell that runs the monitor's launcher and exits.
    let out = Command::new("/bin/sh")
        .args(["-c", "\"$0\" \"$1\""])
        .arg(monitor_bin())
        .arg(f.dir())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    f.track(&report);
    let monitor = f.monitor.0.unwrap();
    assert!(monitor.is_alive());
    let own = std::process::id() as i64;
    assert_ne!(stat_field(monitor.pid, 1), own, "not our child");
    assert_eq!(stat_field(monitor.pid, 3), monitor.pid as i64, "its own session");
    let container = report["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        stat_field(container, 1),
        monitor.pid as i64,
        "the container's init is the monitor's child"
    );
    f.start();
    assert_eq!(f.call(json!({"op":"wait"}))["exit_code"], 7);
    f.assert_cleaned_up();
}

#[test]
fn an_unstarted_container_is_deleted_after_the_start_timeout() {
    let mut f = Fixture::new(&["true"], false);
    f.set("start_timeout_ms", json!(300));
    let report = f.launch_ok();
    let container = ProcessMark::of(report["pid"].as_i64().unwrap() as i32).unwrap();
    let record = f.assert_cleaned_up();
    assert_eq!(record["exit_code"], -1);
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("not started within 300 ms"),
        "{record}"
    );
    assert!(!container.is_alive());
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[test]
fn a_create_error_reports_the_runtimes_message_and_leaves_nothing() {
    let mut f = Fixture::new(&["true"], false);
    std::fs::write(f.bundle.config_path(), b"{ this is not json").unwrap();
    let (ok, report) = f.launch();
    assert!(!ok);
    assert_eq!(report["ok"], false);
    let error = report["error"].as_str().unwrap().to_string();
    // The runtime's own message for the same bundle.
    let other = unique_id("direct");
    let direct =
        f.rt.run(&["create", "--bundle", f.bundle.path().to_str().unwrap(), &other]);
    assert!(!direct.status.success());
    let runtime_message = String::from_utf8_lossy(&direct.stderr)
        .trim()
        .trim_start_matches("berth-runtime: ")
        .to_string();
    assert!(!runtime_message.is_empty());
    assert_eq!(error, runtime_message);
    assert!(!f.rt.containers().contains(&f.id));
    for file in ["m.sock", "c.sock", "pid", "exit.json"] {
        assert!(!f.dir().join(file).exists(), "{file} left behind");
    }
    assert_eq!(
        processes_mentioning(f.dir().to_str().unwrap()),
        Vec::<i32>::new(),
        "no monitor left"
    );
}

#[test]
fn a_tty_create_error_removes_the_console_socket() {
    let mut f = Fixture::new(&["true"], true);
    // A config the runtime refuses: a relative cwd.
    f.bundle.process_mut().set_cwd("relative".into());
    f.bundle.write_config();
    let (ok, report) = f.launch();
    assert!(!ok && report["ok"] == false, "{report}");
    assert!(!report["error"].as_str().unwrap().is_empty());
    for file in ["m.sock", "c.sock", "pid"] {
        assert!(!f.dir().join(file).exists(), "{file} left behind");
    }
    assert!(!f.rt.containers().contains(&f.id));
}

#[test]
fn an_invalid_monitor_json_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(monitor_bin()).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["error"].as_str().unwrap().contains("monitor.json"),
        "{report}"
    );
    std::fs::write(dir.path().join("monitor.json"), br#"{"id":"x"}"#).unwrap();
    let out = Command::new(monitor_bin()).arg(dir.path()).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["error"].as_str().unwrap().contains("missing field"),
        "{report}"
    );
    let out = Command::new(monitor_bin()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage"));
}

fn vm_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The monitor's resident set while a container runs, once a burst of output and requests is over (the
/// monitor drops its mapped program pages after a second without events). The limit is 1 MiB for a release
/// build (`BERTH_MONITOR=target/.../release/berth-monitor`); a debug build is allowed 4 MiB. During the burst
/// a release build measured 0.9-1.05 MB here.
#[test]
fn resident_set_while_a_container_runs() {
    let mut f = Fixture::new(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do echo tick $i; i=$((i+1)); sleep 0.05; done; sleep 100",
        ],
        false,
    );
    f.set("log_path", json!(f.dir().join("c-json.log")));
    f.launch_ok();
    let (mut reader, _w) = f.attach(false, true, true);
    f.start();
    let mut frame = [0u8; 8];
    let mut seen = 0;
    while seen < 20 {
        reader.read_exact(&mut frame).unwrap();
        let len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        let mut data = vec![0u8; len];
        reader.read_exact(&mut data).unwrap();
        seen += data.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(f.call(json!({"op":"status"}))["state"], "running");
    let pid = f.monitor.0.unwrap().pid;
    eprintln!("berth-monitor VmRSS during output: {} kB", vm_rss_kb(pid));
    std::thread::sleep(Duration::from_millis(1500));
    let rss = vm_rss_kb(pid);
    let release = monitor_bin().to_string_lossy().contains("/release/");
    let limit = if release { 1024 } else { 4096 };
    eprintln!("berth-monitor VmRSS while running: {rss} kB (release build: {release})");
    assert!(rss < limit, "VmRSS {rss} kB, limit {limit} kB");
    assert!(f.rt.kill(&f.id, "KILL").status.success());
    f.assert_cleaned_up();
}
