//! `exec`: another process in a running container, in its namespaces, with the flags' user, env, cwd,
//! capabilities and terminal. Needs root.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

/// An exited init counts as running until its parent reaps it; this machine's PID 1 takes about 2 s.
const STOPPED_WITHIN: Duration = Duration::from_secs(20);

use berth_test_support::{Bundle, Runtime, assert_success, parse_report, unique_id};

fn running(rt: &Runtime, bundle: &mut Bundle) -> (String, i64) {
    bundle.set_check_args(&["sleep", "60"]);
    let id = unique_id("exec");
    assert_success(&rt.create(&id, bundle), "create");
    assert_success(&rt.start(&id), "start");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);
    (id, pid)
}

fn ns(pid: &str, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn exec_joins_the_namespaces_with_the_flags_applied() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let (id, pid) = running(&rt, &mut bundle);
    let out = rt.run(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "EXEC_VAR=yes",
        "--cwd",
        "/tmp",
        "--cap",
        "CAP_SYS_PTRACE",
        "--no-new-privs",
        &id,
        "/bin/berth-check",
        "report",
    ]);
    assert_success(&out, "exec berth-check report");
    let r = parse_report(&out.stdout).expect("report");
    assert_ne!(r.pid, 1, "exec is not the init");
    assert!(r.pid > 1);
    for name in ["pid", "net", "mnt", "uts", "ipc"] {
        let inside = r.namespaces[name].as_ref().expect("ns");
        assert_eq!(format!("{name}:[{inside}]"), ns(&pid.to_string(), name), "{name}");
    }
    assert_eq!((r.uid, r.gid), (1000, 1000));
    assert_eq!(r.env_var("EXEC_VAR"), Some("yes"));
    assert!(r.env_var("PATH").is_some(), "the container's environment is kept");
    assert_eq!(r.cwd.as_deref().ok(), Some("/tmp"));
    let caps = r.capabilities.as_ref().expect("caps");
    assert!(caps.effective.contains("CAP_SYS_PTRACE") && caps.effective.contains("CAP_KILL"));
    assert_eq!(r.no_new_privs.as_ref().ok(), Some(&true));
    assert_eq!(r.fd_numbers(), Some(vec![0, 1, 2]));

    let out = rt.run(&["exec", &id, "sh", "-c", "echo in-container; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-container\n");
    assert_success(&rt.delete_force(&id), "delete");
}

#[test]
fn exec_detached_with_pid_file_and_process_json() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let (id, _) = running(&rt, &mut bundle);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("exec.pid");
    let tag = unique_id("exec-detached");
    let out = rt.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "/bin/berth-check",
        "sleep",
        "60",
        &tag,
    ]);
    assert_success(&out, "exec --detach");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    rt.track_pid(pid as i32);
    let ps = rt.run(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");

    let process = serde_json::json!({
        "args": ["sh", "-c", "echo from-process-json $FROM_JSON; id -u"],
        "env": ["PATH=/bin", "FROM_JSON=1"],
        "cwd": "/",
        "user": {"uid": 7, "gid": 7},
        "terminal": false
    });
    let file = dir.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let out = rt.run(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert_success(&out, "exec --process");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-process-json 1\n7\n");
    assert_success(&rt.delete_force(&id), "delete");
    assert!(rt.containers().is_empty());
}

#[test]
fn exec_with_a_terminal_through_the_console_socket() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let (id, _) = running(&rt, &mut bundle);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        berth_oci::console::recv_fd(conn.as_fd()).expect("pty master")
    });
    let out = rt.run(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo tty-exec",
    ]);
    assert_success(&out, "exec --tty");
    let master = receiver.join().unwrap();
    let mut file = std::fs::File::from(master);
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("/dev/pts/") && text.contains("tty-exec"), "{text}");
    assert_success(&rt.delete_force(&id), "delete");
}

#[test]
fn exec_refuses_bad_input() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let (id, _) = running(&rt, &mut bundle);
    for (args, needle) in [
        (vec!["exec", id.as_str()], "needs a command"),
        (
            vec!["exec", id.as_str(), "no-such-program"],
            "executable file not found",
        ),
        (
            vec!["exec", "--user", "root", id.as_str(), "true"],
            "must be a number",
        ),
        (vec!["exec", "--cap", "CAP_FLY", id.as_str(), "true"], "CAP_FLY"),
        (vec!["exec", "no-such-container", "true"], "does not exist"),
        (
            vec!["exec", "--tty", "--detach", id.as_str(), "sh"],
            "--console-socket",
        ),
    ] {
        let out = rt.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.trim_end().lines().count() == 1,
            "{needle:?} in {err:?}"
        );
    }
    assert_success(&rt.kill(&id, "KILL"), "kill");
    rt.wait_for_status(&id, "stopped", STOPPED_WITHIN);
    let out = rt.run(&["exec", &id, "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    assert_success(&rt.delete(&id), "delete");
}
