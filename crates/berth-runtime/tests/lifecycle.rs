//! The lifecycle verbs: create, start, state, kill, delete, run, list, ps, spec, features — and that each
//! leaves nothing behind. Needs root.

use std::time::Duration;

/// An exited init counts as running until its parent reaps it; this machine's PID 1 takes about 2 s.
const STOPPED_WITHIN: Duration = Duration::from_secs(20);

use berth_test_support::{Bundle, LeakProbe, Runtime, assert_success, unique_id};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn pid_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn create_start_kill_delete() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let tag = unique_id("lifecycle-tag");
    bundle.set_check_args(&["sleep", "60", &tag]);
    let id = unique_id("life");
    let pid_file = bundle.path().join("init.pid");
    bundle.write_config();
    let out = rt.run(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert_success(&out, "create");

    let state = rt.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(
        state["ociVersion"].as_str().map(|v| v.starts_with("1.")),
        Some(true)
    );
    assert_eq!(state["bundle"].as_str(), bundle.path().to_str());
    let pid = state["pid"].as_i64().expect("pid");
    assert!(pid > 0 && pid_alive(pid));
    rt.track_pid(pid as i32);
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        pid.to_string()
    );
    // Created: the init waits, the user program has not run yet.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!cmdline.contains(&tag), "the program ran before start: {cmdline}");

    assert_success(&rt.start(&id), "start");
    assert_eq!(rt.status(&id), "running");
    let second = rt.start(&id);
    assert!(!second.status.success(), "a second start must fail");
    assert!(stderr(&second).contains("running"), "{}", stderr(&second));
    // The same pid is now the user program.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .contains(&tag)
    {
        assert!(std::time::Instant::now() < deadline, "the program did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    let out = rt.delete(&id);
    assert!(
        !out.status.success(),
        "delete of a running container needs --force"
    );
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    assert_success(&rt.kill(&id, "KILL"), "kill");
    rt.wait_for_status(&id, "stopped", STOPPED_WITHIN);
    assert_eq!(rt.state(&id)["pid"], 0);
    let out = rt.kill(&id, "KILL");
    assert!(
        !out.status.success() && stderr(&out).contains("stopped"),
        "{}",
        stderr(&out)
    );
    assert_success(&rt.delete(&id), "delete");
    assert!(rt.containers().is_empty());
    assert!(!pid_alive(pid));
    LeakProbe::new()
        .processes_with(tag)
        .root(rt.root())
        .assert_clean_within(Duration::from_secs(5));
}

#[test]
fn run_returns_the_exit_status() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle
        .set_args(&["sh", "-c", "echo out; echo err >&2; exit 7"])
        .set_terminal(false);
    let out = rt.run_capture(&unique_id("exit"), &bundle);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(stderr(&out), "err\n");
    assert!(rt.containers().is_empty(), "run deletes the container");

    // A process killed by a signal reads as 128 + the signal, as in a shell.
    bundle.set_check_args(&["sleep", "60"]);
    bundle.write_config();
    let id = unique_id("sig");
    let mut child = rt
        .command()
        .args(["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = rt.run(&["state", &id]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"running\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container did not come up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    assert_success(&rt.kill(&id, "KILL"), "kill");
    let status = child.wait().expect("wait for run");
    assert_eq!(status.code(), Some(137), "killed by SIGKILL reads as 128+9");
    assert!(rt.containers().is_empty(), "run deletes the container");
}

#[test]
fn detached_run_list_ps_and_kill_all() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let tag = unique_id("psall");
    bundle
        .set_args(&[
            "sh",
            "-c",
            &format!("/bin/berth-check sleep 60 {tag} & /bin/berth-check sleep 60 {tag}"),
        ])
        .set_terminal(false);
    bundle.write_config();
    let id = unique_id("detach");
    let out = rt.run(&[
        "run",
        "--detach",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_success(&out, "run --detach");
    let state = rt.state(&id);
    assert_eq!(state["status"], "running");
    let pid = state["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);

    let list = rt.run(&["list", "--format", "json"]);
    assert_success(&list, "list");
    let all: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(all[0]["id"], id.as_str());
    let table = rt.run(&["list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));
    let quiet = rt.run(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&quiet.stdout).trim(), id);

    // Two sleeps: the shell's child and the exec'd one (pid 1 inside). Wait until both exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let pids = loop {
        let out = rt.run(&["ps", "--format", "json", &id]);
        assert_success(&out, "ps --format json");
        let pids: Vec<i64> = serde_json::from_slice(&out.stdout).expect("pids");
        if pids.len() >= 2 {
            break pids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected two processes, got {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(pids.contains(&pid));
    let table = rt.run(&["ps", &id]);
    assert_success(&table, "ps");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().unwrap_or_default().contains("PID"));
    assert_eq!(text.lines().filter(|l| l.contains(&tag)).count(), 2, "{text}");

    assert_success(&rt.run(&["kill", "--all", &id, "SIGKILL"]), "kill --all");
    rt.wait_for_status(&id, "stopped", STOPPED_WITHIN);
    assert_success(&rt.delete(&id), "delete");
    LeakProbe::new()
        .processes_with(tag)
        .root(rt.root())
        .assert_clean_within(Duration::from_secs(5));
}

#[test]
fn delete_force_kills_a_running_container_and_a_created_one() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let tag = unique_id("force");
    bundle.set_check_args(&["sleep", "60", &tag]);
    let running = unique_id("running");
    assert_success(&rt.create(&running, &bundle), "create");
    assert_success(&rt.start(&running), "start");
    let created = unique_id("created");
    assert_success(&rt.create(&created, &bundle), "create");
    for id in [&running, &created] {
        rt.track_pid(rt.state(id)["pid"].as_i64().unwrap() as i32);
    }
    assert_success(&rt.delete_force(&running), "delete --force running");
    assert_success(&rt.delete(&created), "delete of a created container");
    assert!(rt.containers().is_empty());
    // --force on a container that does not exist succeeds, as with runc.
    assert_success(&rt.delete_force("never-existed"), "delete --force of nothing");
    LeakProbe::new()
        .processes_with(tag)
        .root(rt.root())
        .assert_clean_within(Duration::from_secs(5));
}

#[test]
fn spec_and_features() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = rt.run(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert_success(&out, "spec");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"][0], "sh");
    assert_eq!(spec["process"]["terminal"], true);
    let namespaces: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for ns in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(namespaces.contains(&ns), "{namespaces:?}");
    }
    let again = rt.run(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(
        !again.status.success() && stderr(&again).contains("exists"),
        "{}",
        stderr(&again)
    );

    let out = rt.run(&["features"]);
    assert_success(&out, "features");
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "time")
    );
    assert!(
        f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
    );
}

#[test]
fn json_log_for_containerd() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.json");
    let out = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert!(!out.status.success());
    let line = std::fs::read_to_string(&log).expect("log written");
    let entry: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).expect("json line");
    assert_eq!(entry["level"], "error");
    assert!(
        entry["msg"].as_str().unwrap().contains("does not exist"),
        "{entry}"
    );
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one line on stderr: {}",
        stderr(&out)
    );
}
