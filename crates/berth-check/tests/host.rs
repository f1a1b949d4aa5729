//! Runs the built `berth-check` binary on the host and checks what it prints.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output};

use berth_check::{CheckReport, FdsReport, WriteOutcome};

const BIN: &str = env!("CARGO_BIN_EXE_berth-check");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {BIN}: {e}"))
}

fn stdout_json<T: serde::de::DeserializeOwned>(out: &Output) -> T {
    assert!(out.status.success(), "berth-check failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "berth-check printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn report_describes_the_host_process() {
    let child = Command::new(BIN)
        .env("BERTH_CHECK_TEST", "value=with=equals")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report: CheckReport = stdout_json(&out);
    assert_eq!(report.pid, pid);
    assert_eq!(report.ppid, i32::try_from(std::process::id()).unwrap());
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(
        (report.uid, report.euid, report.gid, report.egid),
        (uid, uid, gid, gid)
    );
    assert_eq!(report.env_var("BERTH_CHECK_TEST"), Some("value=with=equals"));
    assert_eq!(report.argv, [BIN]);
    assert_eq!(
        report.cwd.as_deref().unwrap(),
        std::env::current_dir().unwrap().to_str().unwrap()
    );

    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(report.hostname.as_deref().unwrap(), host_hostname.trim());

    let mounts = report.mounts.as_ref().unwrap();
    assert!(
        mounts.iter().any(|m| m.mount_point == "/"),
        "no root mount in {mounts:?}"
    );
    assert_eq!(report.mount_at("/proc").map(|m| m.fs_type.as_str()), Some("proc"));

    let caps = report.capabilities.as_ref().unwrap();
    assert_eq!(caps.bounding.hex.len(), 16);
    if uid == 0 {
        assert!(caps.effective.contains("CAP_SYS_ADMIN"));
    }
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = berth_check::probe::parse_ns_link(host_ns.to_str().unwrap()).unwrap();
    assert_eq!(report.namespaces["mnt"], Ok(host_mnt));
    assert_eq!(report.namespaces.len(), berth_check::probe::NAMESPACES.len());

    let nofile = report.rlimits["RLIMIT_NOFILE"].as_ref().unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    assert_eq!(nofile.hard, limit.rlim_max);
    assert_eq!(report.rlimits.len(), 16);

    assert!(report.interfaces.as_ref().unwrap().iter().any(|i| i == "lo"));
    assert_eq!(report.no_new_privs, Ok(false));
    assert_eq!(report.seccomp, Ok(0));
    assert!(!report.exe_write.ok);
    assert_eq!(report.exe_write.errno.as_deref(), Some("ETXTBSY"));
    let fds = report.fd_numbers().unwrap();
    assert!(fds.starts_with(&[0, 1, 2]), "{fds:?}");
    assert!(!report.cgroup.as_ref().unwrap().is_empty());
    assert!(!report.uid_map.as_ref().unwrap().is_empty());

    // The same struct deserializes what it serializes.
    let again: CheckReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(again, report);
}

#[test]
fn fds_lists_an_inherited_descriptor_and_not_its_own_directory() {
    let file = tempfile::tempfile().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let target = 42;
    let mut cmd = Command::new(BIN);
    cmd.arg("fds");
    // SAFETY: dup2 is async-signal-safe; the child only moves one descriptor before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let report: FdsReport = stdout_json(&out);
    let fds = report.fds.unwrap();
    let inherited = fds
        .iter()
        .find(|f| f.fd == target)
        .unwrap_or_else(|| panic!("fd {target} missing: {fds:?}"));
    // tempfile() is an unlinked file: its link reads "/tmp/#<inode> (deleted)".
    assert!(
        inherited.target.as_ref().unwrap().ends_with("(deleted)"),
        "{inherited:?}"
    );
    assert!(
        fds.iter()
            .all(|f| !f.target.as_ref().is_ok_and(|t| t.starts_with("/proc/"))),
        "{fds:?}"
    );
}

#[test]
fn write_reports_success_and_errno() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    let ok: WriteOutcome = stdout_json(&run(&["write", path.to_str().unwrap()]));
    assert!(ok.ok && ok.errno.is_none());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "written by berth-check\n"
    );

    let missing = dir.path().join("no/such/dir");
    let failed: WriteOutcome = stdout_json(&run(&["write", missing.to_str().unwrap()]));
    assert!(!failed.ok);
    assert_eq!(failed.errno.as_deref(), Some("ENOENT"));
    assert!(failed.error.unwrap().contains("no/such/dir"));
}

#[test]
fn exit_and_sleep_and_usage() {
    assert_eq!(run(&["exit", "7"]).status.code(), Some(7));
    assert_eq!(run(&["exit", "0"]).status.code(), Some(0));
    let start = std::time::Instant::now();
    let out = run(&["sleep", "0.2", "some-tag"]);
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(start.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(run(&["sleep", "soon"]).status.code(), Some(2));
    assert_eq!(run(&["report", "extra-arg"]).status.code(), Some(2));
    let bad = run(&["frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage"));
}

/// The binary is static and needs nothing from its root: run it chrooted into a directory holding only itself.
/// Without /proc the probes that need it turn into error strings instead of aborting.
#[test]
fn runs_in_an_empty_root_and_reports_errors_as_fields() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(BIN, dir.path().join("berth-check")).unwrap();
    let root = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let mut cmd = Command::new("/berth-check");
    cmd.env_clear().arg("report");
    // SAFETY: chroot and chdir are async-signal-safe; `root` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let report: CheckReport = stdout_json(&out);
    assert!(report.env.is_empty());
    assert_eq!(report.cwd.as_deref(), Ok("/"));
    let mounts_err = report.mounts.unwrap_err();
    assert!(
        mounts_err.contains("/proc/self/mountinfo") && mounts_err.contains("ENOENT"),
        "{mounts_err}"
    );
    assert!(report.capabilities.is_err());
    assert!(report.namespaces.values().all(Result::is_err));
    assert!(report.hostname.is_ok(), "uname works without /proc");
    assert!(
        report.rlimits.values().all(Result::is_ok),
        "getrlimit works without /proc"
    );
}
