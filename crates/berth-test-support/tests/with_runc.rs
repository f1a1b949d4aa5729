//! The fixtures end to end, driving runc (Debian's, a reference peer) instead of berth-runtime: a busybox
//! bundle runs, `berth-check` reports from inside, the guards clean up. The same code drives berth-runtime in
//! `crates/berth-runtime/tests/`.

use std::path::Path;
use std::time::Duration;

use berth_test_support::{
    Bundle, LeakProbe, ProcessMark, Runtime, assert_success, parse_write_outcome, unique_id,
};

const RUNC: &str = "/usr/sbin/runc";

fn runc() -> Runtime {
    assert!(
        Path::new(RUNC).is_file(),
        "these tests drive runc: install Debian's runc package"
    );
    Runtime::with_binary(RUNC)
}

fn ns_inode(name: &str) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/ns/{name}")).unwrap();
    berth_check::probe::parse_ns_link(link.to_str().unwrap()).unwrap()
}

#[test]
fn check_report_from_inside_a_runc_container() {
    let runtime = runc();
    let mut bundle = Bundle::busybox();
    let probe = LeakProbe::new().mounts_under(bundle.path()).root(runtime.root());
    bundle.add_env(&["BERTH_TEST=1"]);

    let report = runtime.check_report(&mut bundle);

    assert_eq!((report.pid, report.ppid), (1, 0));
    assert_eq!((report.uid, report.gid), (0, 0));
    assert_eq!(report.hostname.as_deref(), Ok("berth"));
    assert_eq!(report.argv, ["/bin/berth-check", "report"]);
    assert_eq!(report.env_var("BERTH_TEST"), Some("1"));
    assert_eq!(report.cwd.as_deref(), Ok("/"));
    assert_eq!(report.no_new_privs, Ok(true));
    let caps = report.capabilities.as_ref().unwrap();
    for set in [&caps.bounding, &caps.effective, &caps.permitted] {
        let mut names = set.names.clone();
        names.sort();
        assert_eq!(names, ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    }
    let root = report.mount_at("/").unwrap();
    assert!(root.is_read_only(), "{root:?}");
    assert_eq!(report.mount_at("/proc").unwrap().fs_type, "proc");
    assert_eq!(report.mount_at("/dev").unwrap().fs_type, "tmpfs");
    assert!(report.mount_at("/sys").unwrap().is_read_only());
    let nofile = report.rlimits["RLIMIT_NOFILE"].as_ref().unwrap();
    assert_eq!((nofile.soft, nofile.hard), (1024, 1024));
    for ns in ["pid", "net", "mnt", "uts", "ipc", "cgroup"] {
        assert_ne!(
            report.namespaces[ns].as_ref().unwrap(),
            &ns_inode(ns),
            "{ns} namespace is the host's"
        );
    }
    assert_eq!(report.namespaces["user"].as_ref().unwrap(), &ns_inode("user"));
    assert_eq!(report.interfaces.as_deref(), Ok(&["lo".to_string()][..]));
    assert!(!report.exe_write.ok);
    assert!(!report.tty.stdout);

    // `run` deletes the container when it exits; nothing is left in the root or mounted under the bundle.
    probe.take().assert_clean();
}

#[test]
fn write_outcome_shows_a_read_only_root_and_a_writable_one() {
    let runtime = runc();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["write", "/probe-file"]);
    let out = runtime.run_capture(&unique_id("ro"), &bundle);
    assert_success(&out, "runc run (read-only root)");
    let outcome = parse_write_outcome(&out.stdout).unwrap();
    assert!(!outcome.ok);
    assert_eq!(outcome.errno.as_deref(), Some("EROFS"));

    bundle.set_readonly_root(false);
    let out = runtime.run_capture(&unique_id("rw"), &bundle);
    assert!(parse_write_outcome(&out.stdout).unwrap().ok, "{out:?}");
    let written = std::fs::read_to_string(bundle.rootfs().join("probe-file")).unwrap();
    assert_eq!(written, "written by berth-check\n");
}

#[test]
fn exit_codes_pass_through() {
    let runtime = runc();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["exit", "3"]);
    let out = runtime.run_capture(&unique_id("exit"), &bundle);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Containers the test leaves behind, created and running, are deleted and their processes killed when the
/// `Runtime` goes out of scope, and its root directory is removed.
#[test]
fn drop_guard_removes_created_and_running_containers() {
    let tag = unique_id("guard");
    let processes = LeakProbe::new().processes_with(&tag);
    let runtime = runc();
    let root = runtime.root().to_path_buf();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["sleep", "60", &tag]);

    let running = unique_id("running");
    assert_success(&runtime.create(&running, &bundle), "runc create");
    assert_success(&runtime.start(&running), "runc start");
    runtime.wait_for_status(&running, "running", Duration::from_secs(5));
    let created = unique_id("created");
    assert_success(&runtime.create(&created, &bundle), "runc create");
    assert_eq!(runtime.status(&created), "created");

    let pids: Vec<ProcessMark> = [&running, &created]
        .iter()
        .map(|id| {
            let pid = runtime.state(id)["pid"].as_i64().unwrap();
            ProcessMark::of(i32::try_from(pid).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        processes.take().processes.len(),
        1,
        "the started container runs `berth-check sleep 60 {tag}`"
    );
    let mut containers = runtime.containers();
    containers.sort();
    let mut expected = vec![running.clone(), created.clone()];
    expected.sort();
    assert_eq!(containers, expected);

    drop(runtime);

    assert!(!root.exists(), "{} is still there", root.display());
    for mark in pids {
        assert!(!mark.is_alive(), "container process {} survived", mark.pid);
    }
    processes.assert_clean_within(Duration::from_secs(5));
}

/// A command that hangs fails the test with the command line in the message instead of hanging it.
#[test]
fn a_hanging_command_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hang");
    std::fs::write(&script, "#!/bin/sh\necho started\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runtime = Runtime::with_binary(&script).with_timeout(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.run(&["state", "x"])));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        message.contains("did not finish within") && message.contains("hang --root"),
        "{message}"
    );
    assert!(
        message.contains("started"),
        "the output so far is in the message: {message}"
    );
}
