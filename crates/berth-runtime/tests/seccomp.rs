//! Seccomp from config.json: a blocked syscall gets its errno, with and without no_new_privs; `exec` is
//! filtered too; a notify rule hands the listener to the agent at listenerPath; bad profiles fail cleanly.
//! Needs root.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use berth_test_support::{Bundle, LeakProbe, Runtime, assert_success, unique_id};

fn with_seccomp(bundle: &mut Bundle, profile: serde_json::Value) {
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    linux.set_seccomp(Some(serde_json::from_value(profile).unwrap()));
}

fn block_mkdir() -> serde_json::Value {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 255, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

fn tmpfs_tmp(bundle: &mut Bundle) {
    let mut mounts = bundle.spec().mounts().clone().unwrap();
    mounts.push(serde_json::from_str(r#"{"destination":"/tmp","type":"tmpfs","source":"tmpfs"}"#).unwrap());
    bundle.spec_mut().set_mounts(Some(mounts));
}

#[test]
fn blocked_syscall_gets_its_errno_with_and_without_no_new_privs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    tmpfs_tmp(&mut bundle);
    with_seccomp(&mut bundle, block_mkdir());
    for nnp in [true, false] {
        bundle
            .spec_mut()
            .process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(nnp));
        bundle
            .set_args(&["sh", "-c", "mkdir /tmp/x; touch /tmp/file && echo touch-ok"])
            .set_terminal(false);
        let out = rt.run_capture(&unique_id("seccomp"), &bundle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Permission denied"),
            "nnp={nnp}: mkdir was not blocked: {err}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "touch-ok\n",
            "nnp={nnp}: other syscalls work"
        );
        let r = rt.check_report(&mut bundle);
        assert_eq!(r.seccomp.as_ref().ok(), Some(&2), "nnp={nnp}: filter mode");
    }
}

#[test]
fn exec_is_filtered_too() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    tmpfs_tmp(&mut bundle);
    with_seccomp(&mut bundle, block_mkdir());
    bundle.set_check_args(&["sleep", "60"]);
    let id = unique_id("secexec");
    assert_success(&rt.create(&id, &bundle), "create");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    assert_success(&rt.start(&id), "start");
    let out = rt.run(&["exec", &id, "mkdir", "/tmp/y"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert_success(&rt.delete_force(&id), "delete");
}

#[test]
fn notify_hands_the_listener_to_the_agent() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    tmpfs_tmp(&mut bundle);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    with_seccomp(
        &mut bundle,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "berth-test",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    bundle
        .set_args(&["sh", "-c", "mkdir /tmp/agent-said-no; echo done"])
        .set_terminal(false);
    // The agent: receives the state and the listener, then answers the one mkdir with EXDEV.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut buf = vec![0u8; 65536];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = rustix::net::recvmsg(
            &conn,
            &mut iov,
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fd = None;
        for m in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = m {
                fd = fds.next();
            }
        }
        let mut rest = Vec::new();
        let mut conn = conn;
        let _ = conn.read_to_end(&mut rest);
        let mut text = buf[..msg.bytes].to_vec();
        text.extend(rest);
        let state: serde_json::Value = serde_json::from_slice(&text).expect("state json");
        let fd = fd.expect("a listener fd");
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).expect("a notification");
        libseccomp::ScmpNotifResp::new_error(req.id, -libc::EXDEV, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .expect("respond");
        state
    });
    let out = rt.run_capture(&unique_id("notify"), &bundle);
    let state = agent.join().expect("agent");
    assert_eq!(state["fds"][0], "seccompFd");
    assert_eq!(state["metadata"], "berth-test");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");
    assert!(
        state["state"]["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("notify"),
        "{state}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Invalid cross-device link") || err.contains("cross-device"),
        "the agent's answer did not arrive: {err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
}

#[test]
fn invalid_profiles_fail_before_anything_is_made() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["exit", "0"]);
    for (profile, needle) in [
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "9",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
    ] {
        with_seccomp(&mut bundle, profile);
        bundle.write_config();
        let id = unique_id("badsec");
        let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.trim_end().lines().count() == 1,
            "{needle:?} not in {err:?}"
        );
        assert!(rt.containers().is_empty());
        LeakProbe::new()
            .processes_with(&id)
            .root(rt.root())
            .assert_clean_within(Duration::from_secs(5));
    }
    // An unknown action is refused when config.json is read.
    let mut spec: serde_json::Value = serde_json::to_value(bundle.spec()).unwrap();
    spec["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_EXPLODE"});
    std::fs::write(bundle.config_path(), spec.to_string()).unwrap();
    let out = rt.run(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &unique_id("badsec"),
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("SCMP_ACT_EXPLODE"));
}

/// A profile in the shape of Docker's classic default: everything denied except a list, which predates
/// close_range. Without no_new_privs the filter is loaded before the user and capability changes; what the
/// runtime does after that must be on the list, so nothing else may be needed.
#[test]
fn deny_by_default_profile_without_no_new_privs() {
    const ALLOWED: &[&str] = &[
        "access",
        "arch_prctl",
        "brk",
        "capget",
        "capset",
        "chdir",
        "clock_gettime",
        "clock_nanosleep",
        "clone",
        "clone3",
        "close",
        "dup",
        "dup2",
        "dup3",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "faccessat",
        "faccessat2",
        "fchdir",
        "fcntl",
        "fstat",
        "fstatfs",
        "futex",
        "getcwd",
        "getdents64",
        "getegid",
        "geteuid",
        "getgid",
        "getgroups",
        "getpgid",
        "getpgrp",
        "getpid",
        "getppid",
        "getrandom",
        "getresgid",
        "getresuid",
        "getrlimit",
        "getsid",
        "gettid",
        "gettimeofday",
        "getuid",
        "ioctl",
        "kill",
        "lseek",
        "lstat",
        "madvise",
        "mmap",
        "mprotect",
        "munmap",
        "nanosleep",
        "newfstatat",
        "open",
        "openat",
        "pipe",
        "pipe2",
        "poll",
        "prctl",
        "pread64",
        "prlimit64",
        "read",
        "readlink",
        "readlinkat",
        "readv",
        "rseq",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "set_robust_list",
        "set_tid_address",
        "setgid",
        "setgroups",
        "setpgid",
        "setresgid",
        "setresuid",
        "setsid",
        "setuid",
        "sigaltstack",
        "stat",
        "statfs",
        "statx",
        "tgkill",
        "umask",
        "uname",
        "vfork",
        "wait4",
        "waitid",
        "write",
        "writev",
    ];
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    tmpfs_tmp(&mut bundle);
    with_seccomp(
        &mut bundle,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}]
        }),
    );
    bundle
        .spec_mut()
        .process_mut()
        .as_mut()
        .unwrap()
        .set_no_new_privileges(Some(false));
    bundle
        .set_args(&["sh", "-c", "echo allowed; mkdir /tmp/denied"])
        .set_terminal(false);
    let out = rt.run_capture(&unique_id("denyall"), &bundle);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "allowed\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
}
