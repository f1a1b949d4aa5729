//! Resource limits really hold (memory OOM kill, cpu quota, pids), and pause, resume, update and events work
//! through the container's cgroup; delete removes it. Needs root and a cgroup hierarchy with controllers
//! (this machine: cgroup v1).

use std::time::{Duration, Instant};

use berth_test_support::{Bundle, Runtime, assert_success, unique_id};

fn with_resources(bundle: &mut Bundle, resources: serde_json::Value) {
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    linux.set_resources(Some(serde_json::from_value(resources).unwrap()));
}

fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = entry.path().join(format!("berth-runtime-{id}"));
        if dir.exists() {
            found.push(dir);
        }
    }
    found
}

#[test]
fn memory_limit_oom_kills() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    with_resources(
        &mut bundle,
        serde_json::json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}}),
    );
    // dd allocates its 128 MiB block at once: far over the limit.
    bundle
        .set_args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"])
        .set_terminal(false);
    let out = rt.run_capture(&unique_id("oom"), &bundle);
    assert_eq!(
        out.status.code(),
        Some(137),
        "not OOM-killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Under the limit the same program runs.
    bundle.set_args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"]);
    let out = rt.run_capture(&unique_id("fits"), &bundle);
    assert_success(&out, "dd under the limit");
}

#[test]
fn cpu_quota_holds_near_half_a_cpu() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    with_resources(
        &mut bundle,
        serde_json::json!({"cpu": {"quota": 50000, "period": 100000}}),
    );
    bundle
        .set_args(&["sh", "-c", "while :; do :; done"])
        .set_terminal(false);
    let id = unique_id("cpu");
    assert_success(&rt.create(&id, &bundle), "create");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    assert_success(&rt.start(&id), "start");
    let usage = |rt: &Runtime| -> u64 {
        let out = rt.run(&["events", "--stats", &id]);
        assert_success(&out, "events --stats");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["type"], "stats");
        v["data"]["cpu"]["usage"]["total"].as_u64().expect("cpu usage")
    };
    let (u0, t0) = (usage(&rt), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (u1, t1) = (usage(&rt), Instant::now());
    let share = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    // The quota caps the share (the upper bound); a busy machine may give less than the quota (the lower bound).
    assert!(
        (0.15..=0.6).contains(&share),
        "a 50% quota gave {share:.2} of a cpu"
    );
    assert_success(&rt.delete_force(&id), "delete");
    assert!(
        cgroup_dirs(&id).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs(&id)
    );
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle
        .set_args(&[
            "sh",
            "-c",
            "for i in $(seq 1 40); do sleep 1 & done; wait; echo all-forked",
        ])
        .set_terminal(false);
    with_resources(&mut bundle, serde_json::json!({"pids": {"limit": 8}}));
    let out = rt.run_capture(&unique_id("pids"), &bundle);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("can't fork"),
        "the bomb was not stopped: {err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("all-forked"));
    // The same script under a limit that fits.
    with_resources(&mut bundle, serde_json::json!({"pids": {"limit": 100}}));
    let out = rt.run_capture(&unique_id("pids-ok"), &bundle);
    assert_success(&out, "40 forks under a limit of 100");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "all-forked\n");
}

#[test]
fn pause_resume_update_and_cleanup() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    with_resources(&mut bundle, serde_json::json!({"memory": {"limit": 256 << 20}}));
    bundle.set_check_args(&["sleep", "60"]);
    let id = unique_id("pause");
    assert_success(&rt.create(&id, &bundle), "create");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);
    assert_success(&rt.start(&id), "start");
    assert!(!cgroup_dirs(&id).is_empty(), "no cgroup made");
    let memory = std::path::PathBuf::from(format!("/sys/fs/cgroup/memory/berth-runtime-{id}"));
    let procs = std::fs::read_to_string(memory.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "the init is not in its cgroup: {procs}"
    );

    assert_success(&rt.run(&["pause", &id]), "pause");
    assert_eq!(rt.status(&id), "paused");
    let freezer =
        std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/berth-runtime-{id}/freezer.state")).unwrap();
    assert_eq!(freezer.trim(), "FROZEN");
    let again = rt.run(&["pause", &id]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("paused"));
    assert_success(&rt.run(&["resume", &id]), "resume");
    assert_eq!(rt.status(&id), "running");

    assert_success(
        &rt.run(&["update", "--memory", "128m", "--pids-limit", "50", &id]),
        "update",
    );
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (128u64 << 20).to_string());
    let pids_max =
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/berth-runtime-{id}/pids.max")).unwrap();
    assert_eq!(pids_max.trim(), "50");
    let bad = rt.run(&["update", "--memory", "5x", &id]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("5x"));

    let out = rt.run(&["events", "--stats", &id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{v}");

    // A paused container can be force-deleted, and everything goes.
    assert_success(&rt.run(&["pause", &id]), "pause");
    assert_success(&rt.delete_force(&id), "delete --force of a paused container");
    assert!(
        cgroup_dirs(&id).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs(&id)
    );
}

#[test]
fn events_report_an_oom_kill() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    with_resources(
        &mut bundle,
        serde_json::json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}}),
    );
    bundle
        .set_args(&[
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=128M count=1; sleep 30",
        ])
        .set_terminal(false);
    let id = unique_id("oomev");
    assert_success(&rt.create(&id, &bundle), "create");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    assert_success(&rt.start(&id), "start");
    let mut cmd = rt.command();
    cmd.args(["events", "--interval", "200ms", &id])
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
            if v["type"] == "oom" {
                return true;
            }
        }
        false
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(reader.join().unwrap(), "no oom event");
    assert_success(&rt.delete_force(&id), "delete");
}

#[test]
fn cgroup_paths_and_bad_resources() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["exit", "0"]);
    let name = unique_id("cgpath");
    bundle
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_cgroups_path(Some(format!("/{name}/inner").into()));
    let id = unique_id("abs");
    assert_success(&rt.create(&id, &bundle), "create with an absolute cgroupsPath");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    assert!(std::path::Path::new(&format!("/sys/fs/cgroup/pids/{name}/inner")).is_dir());
    assert_success(&rt.delete_force(&id), "delete");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/{name}")).exists(),
        "the cgroup was not removed"
    );

    for (path, resources, needle) in [
        (Some("/../../escape"), serde_json::json!({}), "escape"),
        (None, serde_json::json!({"network": {"classID": 42}}), "net_cls"),
        (None, serde_json::json!({"cpu": {"cpus": "999"}}), "999"),
    ] {
        bundle
            .spec_mut()
            .linux_mut()
            .as_mut()
            .unwrap()
            .set_cgroups_path(path.map(Into::into));
        with_resources(&mut bundle, resources);
        bundle.write_config();
        let id = unique_id("badcg");
        let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{needle}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert!(rt.containers().is_empty());
        assert!(cgroup_dirs(&id).is_empty());
    }
}
