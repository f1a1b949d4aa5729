//! The container lifecycle through berthd, driven by both Berth's own CLI (`berth`) and the real docker 28 CLI
//! (`/usr/local/bin/docker` with `DOCKER_HOST` at the daemon's socket), so that both clients are shown to see the same
//! daemon behaviour: run with and without a TTY (through a pty the test opens), logs, exec, stop/kill/restart/pause,
//! rm, wait, rename, update, top, stats, cp, export, diff, prune, ps, inspect, --init, limits and capabilities seen
//! from inside, mounts, users, env, restart policies, and bad input that must change nothing. One daemon per test; the
//! harness removes everything on drop.
//!
//! Every check is written once as a function of the [`Cli`]; `for_both_clis!` at the end makes it two tests,
//! `berth::<name>` and `docker::<name>`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cli, Env, cli, for_both_clis, ok};

/// The CLI as a command (for a pty or piped stdin), pointed at the daemon.
fn cli_command(d: &Env, args: &[&str]) -> Command {
    match d.cli {
        Cli::Berth => {
            let mut c = Command::new(common::berth_bin());
            c.arg("-H").arg(d.host()).args(args);
            c.env("BERTH_CONFIG", d.dir.path().join("berth-config"))
                .env_remove("BERTH_HOST")
                .env_remove("DOCKER_HOST");
            c
        }
        Cli::Docker => {
            let mut c = Command::new(common::DOCKER);
            c.args(args)
                .env("DOCKER_HOST", d.host())
                .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
                .env_remove("DOCKER_CONTEXT");
            c
        }
    }
}

/// A daemon with the busybox image `bb:latest`, driven by `cli`.
fn setup(cli: Cli) -> Env {
    let daemon = common::start(&[]);
    common::busybox_image(&daemon, "bb:latest");
    Env { daemon, cli }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts failure with `code` and a stderr containing `needle`.
fn fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(
        stderr(o).contains(needle),
        "stderr lacks {needle:?}:\n{}",
        stderr(o)
    );
}

/// `inspect --format fmt name`, trimmed.
fn inspect(d: &Env, name: &str, fmt: &str) -> String {
    ok(&cli(d, &["inspect", "--format", fmt, name]))
        .trim()
        .to_string()
}

/// Every container the daemon knows (API, all=1).
fn count(d: &Env) -> usize {
    let (s, v) = d.json("GET", "/containers/json?all=1", b"");
    assert_eq!(s, 200, "{v}");
    v.as_array().map_or(0, Vec::len)
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `secs` seconds.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `secs` seconds for `name` to have exited.
fn wait_exited(d: &Env, name: &str, secs: u64) {
    wait_until(secs, &format!("{name} to exit"), || {
        inspect(d, name, "{{.State.Status}}") == "exited"
    });
}

/// Waits up to 10 s for the file `path` to exist in the running container `name`.
fn wait_file(d: &Env, name: &str, path: &str) {
    wait_until(10, &format!("{path} in {name}"), || {
        cli(d, &["exec", name, "test", "-f", path]).status.success()
    });
}

/// Status, exit code and end time of `name`: what a refused verb on a stopped container must leave alone.
fn end_state(d: &Env, name: &str) -> String {
    inspect(
        d,
        name,
        "{{.State.Status}} {{.State.ExitCode}} {{.State.FinishedAt}}",
    )
}

/// `run -d` with a name; returns the full id.
fn run_detached(d: &Env, name: &str, args: &[&str]) -> String {
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(args);
    let id = ok(&cli(d, &a)).trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
    id
}

/// `run --rm args` (in the foreground).
fn run_rm(d: &Env, args: &[&str]) -> Output {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    cli(d, &a)
}

/// `run --rm opts bb:latest sh -c script` (in the foreground).
fn run_rm_script(d: &Env, opts: &[&str], script: &str) -> Output {
    let mut a = opts.to_vec();
    a.extend(["bb:latest", "sh", "-c", script]);
    run_rm(d, &a)
}

/// `run -d --name name opts bb:latest sh -c script`; returns the full id.
fn run_script(d: &Env, name: &str, opts: &[&str], script: &str) -> String {
    let mut a = opts.to_vec();
    a.extend(["bb:latest", "sh", "-c", script]);
    run_detached(d, name, &a)
}

/// A shell in `name` that sets `trap` (`'action' SIGNAL`), says "ready" and loops; returns once the trap is set.
fn run_with_trap(d: &Env, name: &str, trap: &str) {
    run_script(
        d,
        name,
        &[],
        &format!("trap {trap}; echo ready; while :; do sleep 0.1; done"),
    );
    wait_until(20, "the trap to be set", || log_lines(d, name) == ["ready"]);
}

fn log_lines(d: &Env, name: &str) -> Vec<String> {
    ok(&cli(d, &["logs", name])).lines().map(str::to_string).collect()
}

/// The CLI with `args` (which start a shell) on a new 24 x 80 pty; returns the session and the output length after
/// the first prompt.
fn shell_on_a_pty(d: &Env, args: &[&str]) -> (pty::Session, usize) {
    let s = pty::Session::spawn(cli_command(d, args), 24, 80);
    let at = s.expect("# ", 30);
    (s, at)
}

/// A hex capability mask from /proc/self/status output.
fn cap_mask(status: &str, field: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(v.trim(), 16).expect("hex capability mask")
}

/// A pty opened by the test; the CLI runs with the slave as its controlling terminal.
mod pty {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    use rustix::termios::Winsize;

    pub struct Session {
        master: File,
        out: Arc<Mutex<Vec<u8>>>,
        child: Option<Child>,
    }

    fn winsize(rows: u16, cols: u16) -> Winsize {
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }

    impl Session {
        /// Spawns `cmd` on a new pty of `rows` x `cols`.
        pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Session {
            let master: OwnedFd =
                rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                    .expect("openpt");
            rustix::pty::grantpt(&master).expect("grantpt");
            rustix::pty::unlockpt(&master).expect("unlockpt");
            let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
            rustix::termios::tcsetwinsize(&master, winsize(rows, cols)).expect("set the pty size");
            let slave: OwnedFd = rustix::fs::open(
                name.as_c_str(),
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("open the pty slave");
            let s1 = slave.try_clone().expect("dup the slave");
            let s2 = slave.try_clone().expect("dup the slave");
            cmd.stdin(Stdio::from(slave))
                .stdout(Stdio::from(s1))
                .stderr(Stdio::from(s2));
            // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe system
            // calls (setsid, ioctl) without allocating.
            unsafe {
                cmd.pre_exec(|| {
                    rustix::process::setsid()?;
                    rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("spawn the CLI on the pty");
            // The parent's copies of the slave are closed with `cmd`.
            drop(cmd);
            let master = File::from(master);
            let out = Arc::new(Mutex::new(Vec::new()));
            let mut reader = master.try_clone().expect("dup the master");
            let sink = Arc::clone(&out);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink.lock().expect("pty buffer").extend_from_slice(&buf[..n]),
                    }
                }
            });
            Session {
                master,
                out,
                child: Some(child),
            }
        }

        /// Everything read from the master so far.
        pub fn output(&self) -> String {
            String::from_utf8_lossy(&self.out.lock().expect("pty buffer")).into_owned()
        }

        /// Waits until the output (after byte `from`) contains `needle`; returns the output length after it.
        pub fn expect_from(&self, from: usize, needle: &str, secs: u64) -> usize {
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                {
                    let out = self.out.lock().expect("pty buffer");
                    let tail = String::from_utf8_lossy(&out[from.min(out.len())..]).into_owned();
                    if let Some(p) = tail.find(needle) {
                        return from + p + needle.len();
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no {needle:?} on the terminal within {secs} s; output:\n{}",
                    self.output()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        pub fn expect(&self, needle: &str, secs: u64) -> usize {
            self.expect_from(0, needle, secs)
        }

        /// Bytes received so far.
        pub fn len(&self) -> usize {
            self.out.lock().expect("pty buffer").len()
        }

        /// Types `bytes` on the terminal.
        pub fn send(&mut self, bytes: &[u8]) {
            self.master.write_all(bytes).expect("write to the pty");
        }

        /// Resizes the terminal (the CLI gets SIGWINCH).
        pub fn resize(&self, rows: u16, cols: u16) {
            rustix::termios::tcsetwinsize(&self.master, winsize(rows, cols)).expect("resize the pty");
        }

        /// Waits for the CLI to exit.
        pub fn wait(&mut self, secs: u64) -> ExitStatus {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let child = self.child.as_mut().expect("a child");
            loop {
                if let Some(s) = child.try_wait().expect("wait for the CLI") {
                    self.child = None;
                    return s;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.child = None;
                    panic!("the CLI did not exit within {secs} s; output:\n{}", self.output());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// run without and with a TTY

fn run_without_tty_hostname_is_short_id_pid1_is_the_command_and_exit_code_propagates(c: Cli) {
    let d = setup(c);
    let o = cli(
        &d,
        &[
            "run",
            "--name",
            "plain",
            "bb:latest",
            "sh",
            "-c",
            "hostname; cat /etc/hostname; tty; ps -o pid,args; echo to-$((1))-stderr >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    let id = inspect(&d, "plain", "{{.Id}}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], &id[..12], "hostname is the short id: {out}");
    assert_eq!(lines[1], &id[..12], "/etc/hostname holds the short id: {out}");
    assert_eq!(lines[2], "not a tty", "{out}");
    let pid1 = lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in ps: {out}"));
    assert!(pid1.contains("sh -c hostname"), "PID 1 is the command: {pid1}");
    assert_eq!(stderr(&o), "to-1-stderr\n", "stderr is separate");
    assert!(!out.contains("to-1-stderr"), "{out}");
    assert_eq!(
        inspect(&d, "plain", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 3"
    );
}

fn run_with_tty_sees_a_terminal_of_the_callers_size(c: Cli) {
    let d = setup(c);
    let mut s = pty::Session::spawn(
        cli_command(
            &d,
            &[
                "run",
                "-t",
                "--rm",
                "bb:latest",
                "sh",
                "-c",
                "tty; stty size; exit 5",
            ],
        ),
        30,
        100,
    );
    s.expect("/dev/pts/", 30);
    s.expect("30 100", 30);
    assert_eq!(s.wait(30).code(), Some(5), "{}", s.output());
    wait_until(10, "the --rm container to go", || count(&d) == 0);
}

fn run_it_shell_reads_typed_commands_and_exits_with_their_code(c: Cli) {
    let d = setup(c);
    let (mut s, at) = shell_on_a_pty(&d, &["run", "-it", "--rm", "bb:latest", "sh"]);
    s.send(b"echo typed-$((6*7))\r");
    let at = s.expect_from(at, "typed-42", 20);
    s.send(b"exit 3\r");
    s.expect_from(at, "exit 3", 10);
    assert_eq!(s.wait(30).code(), Some(3), "{}", s.output());
}

fn run_it_resize_reaches_the_container(c: Cli) {
    let d = setup(c);
    let (mut s, at) = shell_on_a_pty(&d, &["run", "-it", "--rm", "bb:latest", "sh"]);
    s.send(b"stty size\r");
    let at = s.expect_from(at, "24 80", 20);
    s.resize(40, 120);
    // The CLI forwards SIGWINCH asynchronously: ask until the new size shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut from = at;
    loop {
        s.send(b"stty size\r");
        std::thread::sleep(Duration::from_millis(300));
        if s.output()[from..].contains("40 120") {
            break;
        }
        from = s.len();
        assert!(
            Instant::now() < deadline,
            "the new size never arrived:\n{}",
            s.output()
        );
    }
    s.send(b"exit\r");
    assert_eq!(s.wait(30).code(), Some(0), "{}", s.output());
}

fn run_it_detach_keys_leave_the_container_running(c: Cli) {
    let d = setup(c);
    let (mut s, _) = shell_on_a_pty(&d, &["run", "-it", "--name", "det", "bb:latest", "sh"]);
    s.send(b"\x10\x11");
    assert_eq!(s.wait(20).code(), Some(0), "detach exits 0: {}", s.output());
    // Docker never closes a TTY container's stdin when an attach ends: the shell must keep running.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(inspect(&d, "det", "{{.State.Status}}"), "running");
    let o = ok(&cli(&d, &["exec", "det", "echo", "still-here"]));
    assert_eq!(o.trim(), "still-here");
}

// ---------------------------------------------------------------------------------------------------------------
// run -d and logs

fn logs_tail_and_timestamps(c: Cli) {
    let d = setup(c);
    run_script(
        &d,
        "lg",
        &[],
        "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2",
    );
    wait_exited(&d, "lg", 20);
    let all = ok(&cli(&d, &["logs", "lg"]));
    assert_eq!(all, "line1\nline2\nline3\nline4\nline5\n");
    let o = cli(&d, &["logs", "lg"]);
    assert_eq!(stderr(&o), "err\n", "stderr is replayed on stderr");
    let o = cli(&d, &["logs", "--tail", "2", "lg"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("line5\n", "err\n"),
        "the last two lines of both streams"
    );
    let t = ok(&cli(&d, &["logs", "-t", "--tail", "3", "lg"]));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2, "tail counts lines of both streams: {t}");
    let (ts, text) = lines[1].split_once(' ').expect("a timestamp then the text");
    assert_eq!(text, "line5");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') && ts.ends_with('Z'),
        "RFC 3339 timestamp: {ts:?}"
    );
}

fn logs_since_skips_earlier_lines(c: Cli) {
    let d = setup(c);
    run_script(&d, "since", &[], "echo early; sleep 3; echo late; sleep 1000");
    wait_until(20, "the first line", || log_lines(&d, "since") == ["early"]);
    std::thread::sleep(Duration::from_millis(500));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    wait_until(20, "the second line", || log_lines(&d, "since").len() == 2);
    let o = ok(&cli(&d, &["logs", "--since", &since, "since"]));
    assert_eq!(o, "late\n");
}

fn logs_follow_ends_when_the_container_exits(c: Cli) {
    let d = setup(c);
    run_script(&d, "fol", &[], "echo one; sleep 2; echo two; sleep 1; echo three");
    let t = Instant::now();
    let o = ok(&cli(&d, &["logs", "-f", "fol"]));
    assert_eq!(o, "one\ntwo\nthree\n");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "follow waited for the output"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(inspect(&d, "fol", "{{.State.Status}}"), "exited");
}

// ---------------------------------------------------------------------------------------------------------------
// exec

fn exec_with_tty_through_a_pty(c: Cli) {
    let d = setup(c);
    run_detached(&d, "ex", &["bb:latest", "sleep", "1000"]);
    let (mut s, at) = shell_on_a_pty(&d, &["exec", "-it", "ex", "sh"]);
    s.send(b"tty; echo ppid-$PPID\r");
    let at = s.expect_from(at, "/dev/pts/", 20);
    s.expect_from(at, "ppid-0", 20);
    s.send(b"exit 4\r");
    assert_eq!(s.wait(30).code(), Some(4), "{}", s.output());
    assert_eq!(inspect(&d, "ex", "{{.State.Running}}"), "true");
}

fn exec_interactive_reads_piped_stdin(c: Cli) {
    let d = setup(c);
    run_detached(&d, "exi", &["bb:latest", "sleep", "1000"]);
    let mut c = cli_command(
        &d,
        &[
            "exec",
            "-i",
            "exi",
            "sh",
            "-c",
            "read a; read b; echo got:$a:$b; cat",
        ],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn exec -i");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"hello\nworld\nrest of input\n")
        .expect("write stdin");
    drop(stdin);
    let o = child.wait_with_output().expect("exec -i output");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got:hello:world\nrest of input\n");
}

fn exec_exit_codes_propagate(c: Cli) {
    // Each exec checked several times: the exit code must never be read before the process has exited.
    let d = setup(c);
    run_detached(&d, "exc", &["bb:latest", "sleep", "1000"]);
    for i in 0..6 {
        let o = cli(&d, &["exec", "exc", "sh", "-c", "exit 5"]);
        assert_eq!(o.status.code(), Some(5), "attempt {i}: {}", stderr(&o));
    }
    let o = cli(&d, &["exec", "exc", "true"]);
    assert_eq!(o.status.code(), Some(0));
    let o = cli(&d, &["exec", "exc", "sh", "-c", "kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "killed by SIGKILL: {}", stderr(&o));
}

fn exec_of_a_missing_command_fails_with_126(c: Cli) {
    // dockerd records 126 for an exec whose process cannot be started.
    let d = setup(c);
    run_detached(&d, "exn", &["bb:latest", "sleep", "1000"]);
    for _ in 0..3 {
        let o = cli(&d, &["exec", "exn", "nosuchcmd"]);
        fails(&o, 126, "nosuchcmd");
    }
    assert_eq!(inspect(&d, "exn", "{{.State.Running}}"), "true");
}

fn exec_sets_user_workdir_and_env(c: Cli) {
    let d = setup(c);
    run_detached(&d, "exu", &["bb:latest", "sleep", "1000"]);
    let o = ok(&cli(
        &d,
        &[
            "exec",
            "-u",
            "user",
            "-w",
            "/tmp",
            "-e",
            "Q=42",
            "exu",
            "sh",
            "-c",
            "id -u; pwd; echo $Q",
        ],
    ));
    assert_eq!(o, "1000\n/tmp\n42\n");
}

fn exec_into_a_stopped_container_fails(c: Cli) {
    let d = setup(c);
    run_detached(&d, "exs", &["bb:latest", "sleep", "1000"]);
    ok(&cli(&d, &["stop", "-t", "0", "exs"]));
    let before = end_state(&d, "exs");
    let o = cli(&d, &["exec", "exs", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    assert_eq!(end_state(&d, "exs"), before);
}

// ---------------------------------------------------------------------------------------------------------------
// stop, kill, restart, pause

fn stop_sends_the_stop_signal_first(c: Cli) {
    let d = setup(c);
    run_with_trap(&d, "st", "'echo got-term; exit 0' TERM");
    let t = Instant::now();
    ok(&cli(&d, &["stop", "-t", "20", "st"]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the signal stopped it, not the timeout"
    );
    assert_eq!(
        inspect(&d, "st", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert_eq!(log_lines(&d, "st"), ["ready", "got-term"]);
}

fn stop_kills_after_the_timeout(c: Cli) {
    let d = setup(c);
    run_with_trap(&d, "stk", "'' TERM");
    let t = Instant::now();
    ok(&cli(&d, &["stop", "-t", "2", "stk"]));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "stop waited for the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "then killed: {took:?}");
    assert_eq!(
        inspect(&d, "stk", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
}

fn stopping_a_stopped_container_changes_nothing(c: Cli) {
    let d = setup(c);
    run_detached(&d, "sts", &["bb:latest", "sleep", "1000"]);
    ok(&cli(&d, &["stop", "-t", "0", "sts"]));
    let before = end_state(&d, "sts");
    let o = cli(&d, &["stop", "sts"]);
    assert!(
        o.status.success(),
        "docker's CLIs treat 304 as success: {}",
        stderr(&o)
    );
    let (s, _, _) = d.request("POST", "/containers/sts/stop", b"");
    assert_eq!(s, 304);
    assert_eq!(end_state(&d, "sts"), before);
}

fn kill_sends_sigkill_or_the_given_signal(c: Cli) {
    let d = setup(c);
    run_detached(&d, "k1", &["bb:latest", "sleep", "1000"]);
    ok(&cli(&d, &["kill", "k1"]));
    wait_exited(&d, "k1", 10);
    assert_eq!(inspect(&d, "k1", "{{.State.ExitCode}}"), "137");
    let o = cli(&d, &["kill", "k1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));

    run_with_trap(&d, "k2", "'echo usr1; exit 9' USR1");
    ok(&cli(&d, &["kill", "-s", "USR1", "k2"]));
    wait_exited(&d, "k2", 10);
    assert_eq!(inspect(&d, "k2", "{{.State.ExitCode}}"), "9");
    assert_eq!(log_lines(&d, "k2"), ["ready", "usr1"]);
}

fn restart_runs_the_command_again(c: Cli) {
    let d = setup(c);
    run_script(&d, "rs", &[], "echo started; sleep 1000");
    wait_until(20, "the first start", || log_lines(&d, "rs").len() == 1);
    let pid1 = inspect(&d, "rs", "{{.State.Pid}}");
    ok(&cli(&d, &["restart", "-t", "0", "rs"]));
    assert_eq!(inspect(&d, "rs", "{{.State.Running}}"), "true");
    let pid2 = inspect(&d, "rs", "{{.State.Pid}}");
    assert_ne!(pid1, pid2, "a new process");
    wait_until(20, "the second start", || {
        log_lines(&d, "rs") == ["started", "started"]
    });
}

fn a_paused_container_does_not_advance(c: Cli) {
    let d = setup(c);
    run_script(
        &d,
        "pz",
        &[],
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done",
    );
    wait_until(20, "the counter", || log_lines(&d, "pz").len() >= 3);
    ok(&cli(&d, &["pause", "pz"]));
    assert_eq!(
        inspect(&d, "pz", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    std::thread::sleep(Duration::from_millis(400));
    let a = log_lines(&d, "pz").len();
    std::thread::sleep(Duration::from_millis(1200));
    let b = log_lines(&d, "pz").len();
    assert_eq!(a, b, "the counter advanced while paused");
    ok(&cli(&d, &["unpause", "pz"]));
    assert_eq!(
        inspect(&d, "pz", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    wait_until(10, "the counter to go on", || log_lines(&d, "pz").len() > b + 3);
}

// ---------------------------------------------------------------------------------------------------------------
// rm, --rm, wait, rename, update, top, stats

fn rm_of_a_running_container_needs_force(c: Cli) {
    let d = setup(c);
    run_detached(&d, "rmr", &["bb:latest", "sleep", "1000"]);
    let o = cli(&d, &["rm", "rmr"]);
    fails(&o, 1, "stop the container before removing or force remove");
    assert_eq!(count(&d), 1);
    assert_eq!(inspect(&d, "rmr", "{{.State.Running}}"), "true");
    ok(&cli(&d, &["rm", "-f", "rmr"]));
    assert_eq!(count(&d), 0);
    let o = cli(&d, &["inspect", "rmr"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("No such"), "{}", stderr(&o));
}

fn rm_v_removes_anonymous_volumes_but_not_named_ones(c: Cli) {
    let d = setup(c);
    run_detached(
        &d,
        "rmv",
        &["-v", "/anon", "-v", "keepme:/named", "bb:latest", "sleep", "1000"],
    );
    let vols = ok(&cli(&d, &["volume", "ls", "-q"]));
    let mut vols: Vec<&str> = vols.lines().collect();
    vols.sort();
    assert_eq!(vols.len(), 2, "{vols:?}");
    let anon = vols
        .iter()
        .find(|v| v.len() == 64)
        .expect("an anonymous volume")
        .to_string();
    ok(&cli(&d, &["rm", "-f", "-v", "rmv"]));
    let left = ok(&cli(&d, &["volume", "ls", "-q"]));
    assert_eq!(left.trim(), "keepme");
    assert!(!d.data.join("volumes").join(&anon).exists());
}

fn run_rm_removes_the_container_and_its_anonymous_volumes(c: Cli) {
    let d = setup(c);
    let o = ok(&run_rm_script(
        &d,
        &["-v", "/anon"],
        "echo bye > /anon/f; echo done",
    ));
    assert_eq!(o, "done\n");
    wait_until(10, "the container to go", || count(&d) == 0);
    assert!(ok(&cli(&d, &["volume", "ls", "-q"])).trim().is_empty());
}

fn wait_prints_the_exit_code(c: Cli) {
    let d = setup(c);
    run_script(&d, "wt", &[], "sleep 1; exit 9");
    let o = ok(&cli(&d, &["wait", "wt"]));
    assert_eq!(o.trim(), "9");
    assert_eq!(inspect(&d, "wt", "{{.State.Status}}"), "exited");
    let o = ok(&cli(&d, &["wait", "wt"]));
    assert_eq!(o.trim(), "9", "an exited container answers at once");
}

fn rename_changes_the_name_and_refuses_one_in_use(c: Cli) {
    let d = setup(c);
    let id = run_detached(&d, "old", &["bb:latest", "sleep", "1000"]);
    run_detached(&d, "other", &["bb:latest", "sleep", "1000"]);
    ok(&cli(&d, &["rename", "old", "new"]));
    assert_eq!(inspect(&d, "new", "{{.Id}} {{.Name}}"), format!("{id} /new"));
    assert!(!cli(&d, &["inspect", "old"]).status.success());
    let o = cli(&d, &["rename", "new", "other"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert_eq!(inspect(&d, "new", "{{.Id}}"), id);
    let mut names: Vec<String> = ok(&cli(&d, &["ps", "--format", "{{.Names}}"]))
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, ["new", "other"]);
}

fn update_memory_limit_is_visible_inside(c: Cli) {
    let d = setup(c);
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("skipped: no cgroup v1 memory controller");
        return;
    }
    run_detached(&d, "up", &["-m", "64m", "bb:latest", "sleep", "1000"]);
    let read = || {
        ok(&cli(
            &d,
            &["exec", "up", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        ))
    };
    assert_eq!(read().trim(), "67108864");
    ok(&cli(&d, &["update", "-m", "32m", "--memory-swap", "64m", "up"]));
    assert_eq!(read().trim(), "33554432");
    assert_eq!(inspect(&d, "up", "{{.HostConfig.Memory}}"), "33554432");
}

fn top_lists_the_container_processes(c: Cli) {
    let d = setup(c);
    run_script(&d, "tp", &[], "sleep 1001 & sleep 1002; true");
    wait_until(20, "both sleeps", || {
        ok(&cli(&d, &["top", "tp"])).contains("sleep 1001")
    });
    let o = ok(&cli(&d, &["top", "tp"]));
    let header = o.lines().next().expect("a header");
    assert!(header.contains("PID") && header.contains("CMD"), "{o}");
    assert!(o.contains("sleep 1002"), "{o}");
    assert!(o.contains("sh -c sleep 1001"), "{o}");
}

fn stats_no_stream_prints_one_sample(c: Cli) {
    let d = setup(c);
    run_detached(&d, "sta", &["-m", "64m", "bb:latest", "sleep", "1000"]);
    let o = ok(&cli(&d, &["stats", "--no-stream", "sta"]));
    let lines: Vec<&str> = o.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "a header and one row: {o}");
    assert!(
        lines[0].contains("MEM USAGE / LIMIT") && lines[0].contains("PIDS"),
        "{o}"
    );
    assert!(lines[1].contains("sta"), "{o}");
    assert!(lines[1].contains("/ 64MiB"), "the limit shows: {o}");
    assert_eq!(lines[1].split_whitespace().last(), Some("1"), "one process: {o}");
}

// ---------------------------------------------------------------------------------------------------------------
// cp, export, diff, prune, ps, inspect

fn cp_copies_both_ways(c: Cli) {
    let d = setup(c);
    run_script(&d, "cpc", &[], "echo made-inside > /root/inside; sleep 1000");
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("host.txt");
    std::fs::write(&src, "from-host\n").expect("write");
    ok(&cli(&d, &["cp", &src.display().to_string(), "cpc:/tmp/"]));
    assert_eq!(
        ok(&cli(&d, &["exec", "cpc", "cat", "/tmp/host.txt"])),
        "from-host\n"
    );
    wait_file(&d, "cpc", "/root/inside");
    let dst = tmp.path().join("out.txt");
    ok(&cli(&d, &["cp", "cpc:/root/inside", &dst.display().to_string()]));
    assert_eq!(
        std::fs::read_to_string(&dst).expect("copied file"),
        "made-inside\n"
    );
    let o = cli(
        &d,
        &["cp", "cpc:/no/such/file", &tmp.path().display().to_string()],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such/file"), "{}", stderr(&o));
}

fn export_writes_the_whole_filesystem(c: Cli) {
    let d = setup(c);
    run_script(&d, "exp", &[], "echo x > /root/new; sleep 1000");
    wait_file(&d, "exp", "/root/new");
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("fs.tar");
    ok(&cli(&d, &["export", "-o", &tar.display().to_string(), "exp"]));
    let list = Command::new("tar").arg("-tf").arg(&tar).output().expect("tar -t");
    let list = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = list.lines().map(|l| l.trim_start_matches("./")).collect();
    for want in ["bin/busybox", "etc/passwd", "root/new", "etc/hostname"] {
        assert!(names.contains(&want), "{want} missing from the export: {names:?}");
    }
}

fn diff_lists_added_changed_and_deleted_paths(c: Cli) {
    let d = setup(c);
    run_script(&d, "df", &[], "echo x > /root/added; rm /etc/group; sleep 1000");
    wait_file(&d, "df", "/root/added");
    let o = ok(&cli(&d, &["diff", "df"]));
    let lines: Vec<&str> = o.lines().collect();
    for want in ["A /root/added", "C /root", "D /etc/group", "C /etc"] {
        assert!(lines.contains(&want), "{want} missing from diff: {o}");
    }
}

fn container_prune_removes_only_stopped_containers(c: Cli) {
    let d = setup(c);
    let done = run_detached(&d, "pr1", &["bb:latest", "true"]);
    run_detached(&d, "pr2", &["bb:latest", "sleep", "1000"]);
    wait_exited(&d, "pr1", 20);
    let o = ok(&cli(&d, &["container", "prune", "-f"]));
    assert!(o.contains(&done), "{o}");
    assert_eq!(count(&d), 1);
    assert_eq!(inspect(&d, "pr2", "{{.State.Running}}"), "true");
}

fn ps_all_quiet_filter_and_format(c: Cli) {
    let d = setup(c);
    let up = run_detached(&d, "psup", &["bb:latest", "sleep", "1000"]);
    let down = run_detached(&d, "psdown", &["bb:latest", "true"]);
    wait_exited(&d, "psdown", 20);
    let o = ok(&cli(&d, &["ps"]));
    assert!(
        o.lines().next().is_some_and(|h| h.starts_with("CONTAINER ID")),
        "{o}"
    );
    assert!(o.contains("psup") && !o.contains("psdown"), "{o}");
    let o = ok(&cli(&d, &["ps", "-a"]));
    assert!(
        o.contains("psup") && o.contains("psdown") && o.contains("Exited (0)"),
        "{o}"
    );
    let mut q: Vec<String> = ok(&cli(&d, &["ps", "-a", "-q"]))
        .lines()
        .map(str::to_string)
        .collect();
    q.sort();
    let mut want = vec![up[..12].to_string(), down[..12].to_string()];
    want.sort();
    assert_eq!(q, want);
    let o = ok(&cli(
        &d,
        &["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"],
    ));
    assert_eq!(o, "psdown\n");
    let o = ok(&cli(&d, &["ps", "--format", "{{.Names}}"]));
    assert_eq!(o, "psup\n");
    let o = ok(&cli(
        &d,
        &["ps", "-a", "-q", "--filter", "name=psup", "--no-trunc"],
    ));
    assert_eq!(o.trim(), up);
}

fn inspect_format_reads_fields(c: Cli) {
    let d = setup(c);
    let id = run_detached(
        &d,
        "ins",
        &["-e", "K=V", "--label", "l=1", "bb:latest", "sleep", "1000"],
    );
    let o = inspect(
        &d,
        "ins",
        "{{.Id}}|{{.Name}}|{{.Config.Image}}|{{.State.Running}}|{{.Config.Labels.l}}",
    );
    assert_eq!(o, format!("{id}|/ins|bb:latest|true|1"));
    let o = inspect(&d, "ins", "{{json .Config.Cmd}}");
    assert_eq!(o, r#"["sleep","1000"]"#);
    let o = inspect(&d, "ins", "{{.State.Pid}}");
    let pid: u32 = o.parse().expect("a pid");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("the container's init runs");
    assert_eq!(comm.trim(), "sleep");
    let full = ok(&cli(&d, &["inspect", "ins"]));
    let v: serde_json::Value = serde_json::from_str(&full).expect("inspect prints JSON");
    assert_eq!(v[0]["Id"], id.as_str());
    assert!(
        v[0]["Config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "K=V"))
    );
}

// ---------------------------------------------------------------------------------------------------------------
// --init, limits, capabilities, mounts, user, env, entrypoint

fn init_is_pid1_and_the_command_is_its_child(c: Cli) {
    let d = setup(c);
    let o = run_rm(&d, &["--init", "bb:latest", "ps", "-o", "pid,ppid,args"]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status.code(),
        out,
        stderr(&o)
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let pid1 = rows
        .iter()
        .find(|r| r[0] == "1")
        .unwrap_or_else(|| panic!("no PID 1: {out}"));
    assert!(pid1[2].ends_with("docker-init"), "PID 1 is the init: {out}");
    let ps = rows
        .iter()
        .find(|r| r[2] == "ps")
        .unwrap_or_else(|| panic!("no ps: {out}"));
    assert_eq!(ps[1], "1", "the command is the init's child: {out}");
    assert_ne!(ps[0], "1");
}

fn init_forwards_the_stop_signal_and_exits_with_the_status(c: Cli) {
    let d = setup(c);
    run_script(
        &d,
        "ini",
        &["--init"],
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    );
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    ok(&cli(&d, &["stop", "-t", "20", "ini"]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the init forwarded SIGTERM"
    );
    assert_eq!(inspect(&d, "ini", "{{.State.ExitCode}}"), "7");
}

fn limits_are_visible_inside(c: Cli) {
    let d = setup(c);
    let mut checks: Vec<(&str, &str, &str, &str)> = Vec::new();
    if std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        checks.push((
            "-m",
            "64m",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "67108864",
        ));
    }
    if std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
        checks.push(("--cpus", "0.5", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000"));
    }
    if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        checks.push(("--pids-limit", "42", "/sys/fs/cgroup/pids/pids.max", "42"));
    }
    if checks.is_empty() {
        eprintln!("skipped: no cgroup v1 controllers on this host");
        return;
    }
    let mut args = vec!["run", "--rm"];
    for (flag, value, _, _) in &checks {
        args.push(flag);
        args.push(value);
    }
    let files: Vec<&str> = checks.iter().map(|c| c.2).collect();
    args.extend(["bb:latest", "cat"]);
    args.extend(&files);
    let o = ok(&cli(&d, &args));
    let got: Vec<&str> = o.lines().collect();
    let want: Vec<&str> = checks.iter().map(|c| c.3).collect();
    assert_eq!(got, want, "{files:?}");
}

fn cap_drop_and_cap_add_are_visible_in_proc_status(c: Cli) {
    const NET_RAW: u64 = 1 << 13;
    const SYS_ADMIN: u64 = 1 << 21;
    const CHOWN: u64 = 1;
    let d = setup(c);
    let def = ok(&run_rm(&d, &["bb:latest", "cat", "/proc/self/status"]));
    let eff = cap_mask(&def, "CapEff:");
    assert_ne!(eff & NET_RAW, 0, "NET_RAW is a default: {eff:x}");
    assert_eq!(eff & SYS_ADMIN, 0, "SYS_ADMIN is not: {eff:x}");
    assert_eq!(eff, 0xa80425fb, "docker's default set");
    let o = ok(&run_rm(
        &d,
        &[
            "--cap-drop",
            "NET_RAW",
            "--cap-drop",
            "chown",
            "--cap-add",
            "SYS_ADMIN",
            "bb:latest",
            "cat",
            "/proc/self/status",
        ],
    ));
    for field in ["CapEff:", "CapBnd:", "CapPrm:"] {
        let m = cap_mask(&o, field);
        assert_eq!(m & NET_RAW, 0, "{field} {m:x}");
        assert_eq!(m & CHOWN, 0, "{field} {m:x}");
        assert_ne!(m & SYS_ADMIN, 0, "{field} {m:x}");
    }
}

fn read_only_root_with_a_tmpfs(c: Cli) {
    let d = setup(c);
    let o = run_rm_script(
        &d,
        &["--read-only", "--tmpfs", "/scratch"],
        "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-ok; grep ' /scratch ' /proc/mounts",
    );
    let out = ok(&o);
    assert!(!out.contains("root-writable"), "{out}");
    assert!(out.contains("tmpfs-ok"), "{out}");
    assert!(out.contains("tmpfs /scratch tmpfs rw"), "{out}");
}

fn bind_mount_is_shared_with_the_host(c: Cli) {
    let d = setup(c);
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("in"), "host-data\n").expect("write");
    let spec = format!("{}:/b", host.path().display());
    let o = ok(&run_rm_script(
        &d,
        &["-v", &spec],
        "cat /b/in; echo inside > /b/out",
    ));
    assert_eq!(o, "host-data\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).expect("written inside"),
        "inside\n"
    );
    let ro = format!("{}:/b:ro", host.path().display());
    let o = ok(&run_rm_script(
        &d,
        &["-v", &ro],
        "echo x > /b/ro 2>/dev/null || echo refused",
    ));
    assert_eq!(o, "refused\n");
    assert!(!host.path().join("ro").exists());
}

fn named_volume_is_prefilled_from_the_image_and_persists(c: Cli) {
    let d = setup(c);
    let o = ok(&run_rm_script(
        &d,
        &["-v", "vol1:/etc"],
        "cat /etc/group | head -1; echo kept > /etc/mine",
    ));
    assert_eq!(o, "root:x:0:\n", "the volume was filled from the image's /etc");
    let o = ok(&run_rm(
        &d,
        &["-v", "vol1:/data", "bb:latest", "cat", "/data/mine"],
    ));
    assert_eq!(o, "kept\n", "content persists across containers");
    let mp = ok(&cli(
        &d,
        &["volume", "inspect", "--format", "{{.Mountpoint}}", "vol1"],
    ));
    let mp = std::path::PathBuf::from(mp.trim());
    assert!(mp.join("passwd").is_file(), "copied on the host side too");
    assert_eq!(
        std::fs::read_to_string(mp.join("mine")).expect("volume file"),
        "kept\n"
    );
}

fn user_and_workdir(c: Cli) {
    let d = setup(c);
    let o = ok(&run_rm_script(&d, &["-u", "user", "-w", "/tmp"], "id; pwd"));
    assert_eq!(o, "uid=1000(user) gid=1000(user) groups=1000(user)\n/tmp\n");
    let o = ok(&run_rm_script(&d, &["-u", "1000:0"], "id -u; id -g"));
    assert_eq!(o, "1000\n0\n");
    let o = ok(&run_rm(&d, &["-w", "/made/by/workdir", "bb:latest", "pwd"]));
    assert_eq!(
        o, "/made/by/workdir\n",
        "a missing working directory is created, as docker does"
    );
    let o = run_rm(&d, &["-u", "nosuchuser", "bb:latest", "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unable to find user nosuchuser"),
        "{}",
        stderr(&o)
    );
    assert_eq!(count(&d), 0);
}

fn env_and_env_file(c: Cli) {
    let d = setup(c);
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("env");
    std::fs::write(&f, "# a comment\nA=1\n\nB=two words\n").expect("write");
    let o = ok(&run_rm(
        &d,
        &[
            "-e",
            "X=y",
            "--env-file",
            &f.display().to_string(),
            "bb:latest",
            "env",
        ],
    ));
    let mut env: Vec<&str> = o.lines().filter(|l| !l.starts_with("HOSTNAME=")).collect();
    env.sort();
    assert_eq!(
        env,
        [
            "A=1",
            "B=two words",
            "HOME=/root",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "X=y"
        ]
    );
}

fn entrypoint_overrides_and_takes_the_command_as_arguments(c: Cli) {
    let d = setup(c);
    let o = ok(&run_rm(
        &d,
        &["--entrypoint", "echo", "bb:latest", "hello", "there"],
    ));
    assert_eq!(o, "hello there\n");
    let o = ok(&run_rm(
        &d,
        &["--entrypoint", "/bin/cat", "bb:latest", "/etc/hostname"],
    ));
    assert_eq!(o.len(), 13, "the short id and a newline: {o:?}");
}

fn arguments_after_the_image_belong_to_the_command_even_with_dashes(c: Cli) {
    // docker stops parsing its own flags at the image: `-c` here is the shell's, not --cpu-shares.
    let d = setup(c);
    let o = ok(&run_rm(
        &d,
        &["--entrypoint", "/bin/sh", "bb:latest", "-c", "echo $0"],
    ));
    assert_eq!(o, "/bin/sh\n");
    let o = ok(&run_rm(&d, &["bb:latest", "ls", "-d", "/etc"]));
    assert_eq!(o, "/etc\n");
}

// ---------------------------------------------------------------------------------------------------------------
// restart policies

fn restart_on_failure_stops_after_the_maximum(c: Cli) {
    let d = setup(c);
    run_script(&d, "of", &["--restart", "on-failure:2"], "echo run; exit 3");
    wait_until(30, "two restarts", || {
        inspect(&d, "of", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        inspect(
            &d,
            "of",
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
        ),
        "2 exited 3"
    );
    assert_eq!(
        log_lines(&d, "of"),
        ["run", "run", "run"],
        "ran once plus two restarts"
    );
}

fn restart_always_restarts_after_a_clean_exit_until_stopped(c: Cli) {
    let d = setup(c);
    run_script(&d, "al", &["--restart", "always"], "echo run; sleep 0.3");
    wait_until(30, "two restarts", || {
        inspect(&d, "al", "{{.RestartCount}}").parse::<u32>().unwrap_or(0) >= 2
    });
    wait_until(10, "every run to log", || log_lines(&d, "al").len() >= 3);
    ok(&cli(&d, &["stop", "-t", "1", "al"]));
    let n = inspect(&d, "al", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        inspect(&d, "al", "{{.RestartCount}} {{.State.Status}}"),
        format!("{n} exited")
    );
}

fn restart_always_shows_restarting_between_runs(c: Cli) {
    // dockerd reports State.Restarting (status "restarting") while a restart waits for its back-off delay.
    let d = setup(c);
    run_script(&d, "alr", &["--restart", "always"], "sleep 0.2");
    let mut seen = Vec::new();
    wait_until(20, "a restarting state", || {
        let s = inspect(&d, "alr", "{{.State.Status}}/{{.State.Restarting}}");
        let hit = s == "restarting/true";
        seen.push(s);
        hit
    });
    assert!(
        !seen.iter().any(|s| s.starts_with("exited")),
        "an exited state between restarts: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// bad input: a clear error and nothing changed

fn unknown_image_from_an_unreachable_registry(c: Cli) {
    let d = setup(c);
    let images = ok(&cli(&d, &["images", "-q"]));
    let o = run_rm(&d, &["127.0.0.1:1/none:latest", "true"]);
    fails(&o, 125, "127.0.0.1:1");
    assert_eq!(count(&d), 0);
    assert_eq!(ok(&cli(&d, &["images", "-q"])), images);
    let o = run_rm(&d, &["--pull", "never", "nosuchimage:1"]);
    fails(&o, 125, "No such image");
    assert_eq!(count(&d), 0);
}

fn invalid_memory_value(c: Cli) {
    let d = setup(c);
    let o = run_rm(&d, &["--memory", "5x", "bb:latest", "true"]);
    fails(&o, 125, "5x");
    assert_eq!(count(&d), 0);
    let (s, v) = d.json(
        "POST",
        "/containers/create",
        br#"{"Image":"bb:latest","Cmd":["true"],"HostConfig":{"Memory":1024}}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("6MB")), "{v}");
    assert_eq!(count(&d), 0);
}

fn a_name_in_use_is_refused(c: Cli) {
    let d = setup(c);
    let id = run_detached(&d, "taken", &["bb:latest", "sleep", "1000"]);
    let o = cli(&d, &["run", "--name", "taken", "bb:latest", "true"]);
    fails(&o, 125, "is already in use");
    assert!(stderr(&o).contains(&id), "{}", stderr(&o));
    assert_eq!(count(&d), 1);
    assert_eq!(
        inspect(&d, "taken", "{{.Id}} {{.State.Running}}"),
        format!("{id} true")
    );
}

fn a_missing_bind_source_is_refused(c: Cli) {
    let d = setup(c);
    let o = run_rm(&d, &["-v", "/nonexistent/berth-src:/x", "bb:latest", "true"]);
    fails(&o, 125, "bind source path does not exist: /nonexistent/berth-src");
    let o = run_rm(
        &d,
        &[
            "--mount",
            "type=bind,source=/nonexistent/berth-src,target=/x",
            "bb:latest",
            "true",
        ],
    );
    fails(&o, 125, "bind source path does not exist");
    assert_eq!(count(&d), 0);
    assert!(
        !std::path::Path::new("/nonexistent/berth-src").exists(),
        "nothing created on the host"
    );
}

fn a_command_not_in_the_image_exits_127(c: Cli) {
    let d = setup(c);
    let o = run_rm(&d, &["bb:latest", "nosuchcmd"]);
    fails(&o, 127, "executable file not found");
    wait_until(10, "no container left", || count(&d) == 0);
    // Without --rm docker keeps the container, created, with exit code 127 and the error.
    let o = cli(&d, &["run", "--name", "nf", "bb:latest", "nosuchcmd"]);
    fails(&o, 127, "\"nosuchcmd\"");
    assert_eq!(
        inspect(&d, "nf", "{{.State.Running}} {{.State.ExitCode}}"),
        "false 127"
    );
    assert!(inspect(&d, "nf", "{{.State.Error}}").contains("executable file not found"));
}

fn a_non_executable_command_exits_126(c: Cli) {
    let d = setup(c);
    let o = run_rm(&d, &["bb:latest", "/etc/passwd"]);
    fails(&o, 126, "/etc/passwd");
    wait_until(10, "no container left", || count(&d) == 0);
}

#[test]
fn a_malformed_api_body_is_a_400() {
    // The API alone: no CLI takes part, so this runs once.
    let d = setup(Cli::Berth);
    for body in [
        &b"{not json"[..],
        br#"{"Image":5}"#,
        br#"{"Image":"bb:latest","HostConfig":[]}"#,
    ] {
        let (s, _, b) = common::raw_request(
            &d.sock,
            "POST",
            "/v1.47/containers/create",
            &[("Content-Type", "application/json")],
            body,
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null);
        assert_eq!(s, 400, "{}: {v}", String::from_utf8_lossy(body));
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    assert_eq!(count(&d), 0);
    assert!(
        !d.data.join("containers").exists()
            || std::fs::read_dir(d.data.join("containers")).expect("dir").count() == 0
    );
}

// ---------------------------------------------------------------------------------------------------------------
// every check above, once per CLI

for_both_clis! {
    run_without_tty_hostname_is_short_id_pid1_is_the_command_and_exit_code_propagates,
    run_with_tty_sees_a_terminal_of_the_callers_size,
    run_it_shell_reads_typed_commands_and_exits_with_their_code,
    run_it_resize_reaches_the_container,
    run_it_detach_keys_leave_the_container_running,
    logs_tail_and_timestamps,
    logs_since_skips_earlier_lines,
    logs_follow_ends_when_the_container_exits,
    exec_with_tty_through_a_pty,
    exec_interactive_reads_piped_stdin,
    exec_exit_codes_propagate,
    exec_of_a_missing_command_fails_with_126,
    exec_sets_user_workdir_and_env,
    exec_into_a_stopped_container_fails,
    stop_sends_the_stop_signal_first,
    stop_kills_after_the_timeout,
    stopping_a_stopped_container_changes_nothing,
    kill_sends_sigkill_or_the_given_signal,
    restart_runs_the_command_again,
    a_paused_container_does_not_advance,
    rm_of_a_running_container_needs_force,
    rm_v_removes_anonymous_volumes_but_not_named_ones,
    run_rm_removes_the_container_and_its_anonymous_volumes,
    wait_prints_the_exit_code,
    rename_changes_the_name_and_refuses_one_in_use,
    update_memory_limit_is_visible_inside,
    top_lists_the_container_processes,
    stats_no_stream_prints_one_sample,
    cp_copies_both_ways,
    export_writes_the_whole_filesystem,
    diff_lists_added_changed_and_deleted_paths,
    container_prune_removes_only_stopped_containers,
    ps_all_quiet_filter_and_format,
    inspect_format_reads_fields,
    init_is_pid1_and_the_command_is_its_child,
    init_forwards_the_stop_signal_and_exits_with_the_status,
    limits_are_visible_inside,
    cap_drop_and_cap_add_are_visible_in_proc_status,
    read_only_root_with_a_tmpfs,
    bind_mount_is_shared_with_the_host,
    named_volume_is_prefilled_from_the_image_and_persists,
    user_and_workdir,
    env_and_env_file,
    entrypoint_overrides_and_takes_the_command_as_arguments,
    arguments_after_the_image_belong_to_the_command_even_with_dashes,
    restart_on_failure_stops_after_the_maximum,
    restart_always_restarts_after_a_clean_exit_until_stopped,
    restart_always_shows_restarting_between_runs,
    unknown_image_from_an_unreachable_registry,
    invalid_memory_value,
    a_name_in_use_is_refused,
    a_missing_bind_source_is_refused,
    a_command_not_in_the_image_exits_127,
    a_non_executable_command_exits_126,
}
