//! Tests of the seccomp module.
//!
//! Validation tests only compile. Behaviour tests fork a child that sets `no_new_privs` (so they need no
//! privilege), loads a filter and makes system calls; the child reports the first failed check as its exit code,
//! or dies of the signal under test. The child only makes raw system calls after the fork.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libc::c_long;
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use oci_spec::runtime::LinuxSeccomp;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde_json::{Value, json};

use super::*;

/// Exit code of a child whose filter failed to load.
const LOAD_FAILED: i32 = 120;
/// Exit code of a child whose check panicked.
const PANICKED: i32 = 121;
/// An errno no syscall used here returns by itself, to tell the filter's answer apart.
const MARK: i32 = libc::EXFULL;

fn profile(value: Value) -> LinuxSeccomp {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test profile does not parse: {e}"))
}

fn compile_err(value: Value) -> String {
    match compile(&profile(value)) {
        Ok(filter) => panic!("the profile compiled to {filter:?} but should have been refused"),
        Err(e) => e.to_string(),
    }
}

/// A forked child, killed and reaped on drop if the test did not reap it.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks; the child sets no_new_privs if asked, loads `filter`, runs `body` and exits with its result
    /// (0 for Ok, the code for Err). `on_loaded` runs in the child right after the load with the listener fd.
    fn spawn(
        filter: Filter,
        no_new_privs: bool,
        body: impl FnOnce(Option<&OwnedFd>) -> Result<(), i32>,
    ) -> Child {
        // SAFETY: the child only makes system calls and exits with _exit; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
                if no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                    return LOAD_FAILED;
                }
                match filter.load() {
                    Ok(listener) => match body(listener.as_ref()) {
                        Ok(()) => 0,
                        Err(code) => code,
                    },
                    Err(_) => LOAD_FAILED,
                }
            }))
            .unwrap_or(PANICKED);
            // SAFETY: ends the forked child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        Child { pid, reaped: false }
    }

    /// Waits for the child and returns its wait status.
    fn wait(&mut self) -> i32 {
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if ret == self.pid {
                self.reaped = true;
                return status;
            }
            let err = io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EINTR),
                "waitpid {}: {err}",
                self.pid
            );
        }
    }

    /// Waits and asserts a clean exit.
    fn assert_success(mut self, what: &str) {
        let status = self.wait();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{what}: child {}",
            describe(status)
        );
    }

    /// Waits and asserts death by SIGSYS.
    fn assert_sigsys(mut self, what: &str) {
        let status = self.wait();
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "{what}: child {}",
            describe(status)
        );
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signals and reaps our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            LOAD_FAILED => "could not load the filter".to_owned(),
            PANICKED => "panicked".to_owned(),
            code => format!("failed check {code}"),
        }
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended with status {status:#x}")
    }
}

/// A raw system call: Ok(return value) or Err(errno).
fn sys(nr: c_long, a0: c_long, a1: c_long) -> Result<c_long, i32> {
    // SAFETY: the calls used here take integer arguments or valid C strings prepared before the fork.
    let ret = unsafe { libc::syscall(nr, a0, a1) };
    if ret < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// Ok if `cond`, otherwise fails the child with `code`.
fn check(cond: bool, code: i32) -> Result<(), i32> {
    if cond { Ok(()) } else { Err(code) }
}

fn errno_of(r: Result<c_long, i32>) -> i32 {
    r.err().unwrap_or(0)
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_else(|e| panic!("path with NUL: {e}"))
}

fn mkdir(path: &CString) -> Result<c_long, i32> {
    sys(libc::SYS_mkdir, path.as_ptr() as c_long, 0o755)
}

/// `sched_get_priority_max(policy)`: a pure query taking one integer, answered EINVAL for unknown policies.
fn prio_max(policy: c_long) -> Result<c_long, i32> {
    sys(libc::SYS_sched_get_priority_max, policy, 0)
}

// ---------------------------------------------------------------------------------------------------------------
// Validation (no privilege, no fork)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn a_simple_profile_compiles() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!filter.needs_listener());
    assert!(filter.instructions() > 5, "{filter:?}");
    assert_eq!(
        filter.load_flags(),
        (libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            | libc::SECCOMP_FILTER_FLAG_TSYNC) as u32
    );
}

#[test]
fn unknown_syscalls_and_rules_equal_to_the_default_are_skipped() {
    let empty =
        compile(&profile(json!({"defaultAction": "SCMP_ACT_ERRNO"}))).unwrap_or_else(|e| panic!("{e}"));
    let skipped = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["no_such_syscall_at_all", "another_made_up_one"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(skipped.instructions(), empty.instructions());
    // A different errno is a different action: that rule stays.
    let kept = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(kept.instructions() > empty.instructions());
}

#[test]
fn an_argument_index_above_5_is_refused() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert!(msg.contains("argument 6") && msg.contains("rule 0"), "{msg}");
}

#[test]
fn notify_needs_a_listener_path_and_cannot_be_default_or_on_write() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        msg.contains("SCMP_ACT_NOTIFY") && msg.contains("listenerPath"),
        "{msg}"
    );
    let msg = compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}));
    assert!(msg.contains("defaultAction"), "{msg}");
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(msg.contains("write"), "{msg}");
    let msg = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    assert!(msg.contains("listenerMetadata"), "{msg}");
}

#[test]
fn notify_rules_request_a_listener_with_the_listener_flags() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "meta",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(filter.needs_listener());
    assert_eq!(filter.listener_path(), Some(Path::new("/run/agent.sock")));
    assert_eq!(filter.listener_metadata(), Some("meta"));
    let expected = libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    assert_eq!(filter.load_flags(), expected as u32);
    // WAIT_KILLABLE_RECV alone is invalid for the kernel: without a listener it is not passed.
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filter.load_flags(), 0);
}

#[test]
fn errno_ret_is_checked() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS", "errnoRet": 13}]
    }));
    assert!(
        msg.contains("SCMP_ACT_KILL_PROCESS") && msg.contains("13"),
        "{msg}"
    );
    let msg = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}));
    assert!(
        msg.contains("defaultErrnoRet") && msg.contains("SCMP_ACT_ALLOW"),
        "{msg}"
    );
    let msg = compile_err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert!(msg.contains("70000"), "{msg}");
}

#[test]
fn empty_names_are_refused() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert!(msg.contains("rule 0"), "{msg}");
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}, {"names": [""], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert!(msg.contains("rule 1"), "{msg}");
}

#[test]
fn unknown_strings_are_refused_by_name_when_the_spec_is_parsed() {
    // Actions, operators, architectures and flags are enums of oci-spec: config.json with an unknown one does not
    // parse, and the parser's message names the value.
    for (value, bad) in [
        (json!({"defaultAction": "SCMP_ACT_EXPLODE"}), "SCMP_ACT_EXPLODE"),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
            "SCMP_ARCH_Z80",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}),
            "SECCOMP_FILTER_FLAG_FAST",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
            "SCMP_CMP_ABOUT",
        ),
    ] {
        match serde_json::from_value::<LinuxSeccomp>(value) {
            Ok(parsed) => panic!("{bad} was accepted: {parsed:?}"),
            Err(e) => assert!(e.to_string().contains(bad), "the error does not name {bad}: {e}"),
        }
    }
}

#[test]
fn an_architecture_the_library_lacks_is_refused_by_name() {
    // libseccomp 2.5 has no LoongArch, M68k or SuperH; 2.6 has them all. Either way the outcome is clear.
    match compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]}),
    )) {
        Ok(filter) => assert!(filter.instructions() > 0),
        Err(e) => assert!(
            e.to_string().contains("ScmpArchLoongarch64") || e.to_string().contains("LOONGARCH"),
            "{e}"
        ),
    }
}

#[test]
fn a_bad_program_export_is_an_error() {
    assert!(parse_program(&[]).is_err());
    assert!(parse_program(&[0; 12]).is_err());
    let program = parse_program(&[0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((program[0].code, program[0].k), (0x06, 0x7fff_0000));
}

#[test]
fn the_process_state_follows_the_spec() {
    let annotations = HashMap::from([("myKey".to_owned(), "myValue".to_owned())]);
    let json = process_state_json(
        "1.2.1",
        "c1",
        Status::Creating,
        4422,
        Path::new("/containers/redis"),
        &annotations,
        Some("MKNOD=/dev/null"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let value: Value = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        value,
        json!({
            "ociVersion": "1.2.1",
            "fds": ["seccompFd"],
            "pid": 4422,
            "metadata": "MKNOD=/dev/null",
            "state": {
                "ociVersion": "1.2.1",
                "id": "c1",
                "status": "creating",
                "pid": 4422,
                "bundle": "/containers/redis",
                "annotations": {"myKey": "myValue"}
            }
        })
    );
    let bare = process_state_json(
        "1.2.1",
        "c1",
        Status::Running,
        1,
        Path::new("/b"),
        &HashMap::new(),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let value: Value = serde_json::from_slice(&bare).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        value.get("metadata").is_none() && value["state"].get("annotations").is_none(),
        "{value}"
    );
}

#[test]
fn sending_to_a_missing_agent_names_the_socket() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("nobody.sock");
    let fd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap_or_else(|e| panic!("{e}"));
    let msg = send_to_listener(&path, fd.as_fd(), b"{}")
        .map(|()| "sent".to_owned())
        .unwrap_or_else(|e| e.to_string());
    assert!(msg.contains("nobody.sock"), "{msg}");
}

fn same_program(a: &Filter, b: &Filter) -> bool {
    a.program.len() == b.program.len()
        && a.program
            .iter()
            .zip(&b.program)
            .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
}

#[test]
fn the_cache_returns_the_same_filter_and_only_for_the_same_profile() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let notify = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "m",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["getpid", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let fresh = compile(&notify).unwrap_or_else(|e| panic!("{e}"));
    let first = compile_cached(&notify, &cache).unwrap_or_else(|e| panic!("{e}"));
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one entry, no temporary files left");
    let entry = entries[0].path();
    let second = compile_cached(&notify, &cache).unwrap_or_else(|e| panic!("{e}"));
    for filter in [&first, &second] {
        assert!(same_program(filter, &fresh));
        assert_eq!(filter.load_flags(), fresh.load_flags());
        assert!(filter.needs_listener());
        assert_eq!(filter.listener_path(), Some(Path::new("/run/agent.sock")));
        assert_eq!(filter.listener_metadata(), Some("m"));
    }

    // A different profile never gets this entry, even under its name.
    let other = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let other_key = cache_key(&other).unwrap_or_else(|| panic!("no key"));
    let stored = std::fs::read(&entry).unwrap_or_else(|e| panic!("{e}"));
    assert!(decode_entry(&stored, &other_key, &other).is_none());
    assert!(same_program(
        &compile_cached(&other, &cache).unwrap_or_else(|e| panic!("{e}")),
        &compile(&other).unwrap_or_else(|e| panic!("{e}"))
    ));

    // A damaged entry is recompiled and replaced.
    std::fs::write(&entry, &stored[..stored.len() - 3]).unwrap_or_else(|e| panic!("{e}"));
    let repaired = compile_cached(&notify, &cache).unwrap_or_else(|e| panic!("{e}"));
    assert!(same_program(&repaired, &fresh));
    assert_eq!(std::fs::read(&entry).unwrap_or_else(|e| panic!("{e}")), stored);

    // An invalid profile fails every time and leaves nothing behind.
    let bad = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    let before = std::fs::read_dir(&cache).map(Iterator::count).unwrap_or(0);
    assert!(compile_cached(&bad, &cache).is_err());
    assert!(compile_cached(&bad, &cache).is_err());
    assert_eq!(
        std::fs::read_dir(&cache).map(Iterator::count).unwrap_or(0),
        before
    );

    // An unusable cache directory only costs the compilation.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap_or_else(|e| panic!("{e}"));
    assert!(same_program(
        &compile_cached(&notify, &blocked).unwrap_or_else(|e| panic!("{e}")),
        &fresh
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// Behaviour (forked children)
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn default_errno_with_an_allow_list() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid", "exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(sys(libc::SYS_getpid, 0, 0).is_ok(), 1)?;
        check(errno_of(sys(libc::SYS_getppid, 0, 0)) == libc::EPERM, 2)?;
        check(errno_of(sys(libc::SYS_getuid, 0, 0)) == libc::EPERM, 3)
    })
    .assert_success("default SCMP_ACT_ERRNO");

    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": MARK,
        "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(errno_of(sys(libc::SYS_getppid, 0, 0)) == MARK, 1)
    })
    .assert_success("defaultErrnoRet");
}

#[test]
fn a_rule_returns_its_errno() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let target = dir.path().join("denied");
    let path = cstring(&target);
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| check(errno_of(mkdir(&path)) == libc::EACCES, 1))
        .assert_success("mkdir EACCES");
    assert!(!target.exists(), "mkdir went through");
}

#[test]
fn argument_operators() {
    // Each rule makes sched_get_priority_max fail with MARK when its condition holds; the policies 0..=6 are
    // otherwise valid (SCHED_OTHER, FIFO, RR, BATCH, IDLE, DEADLINE) or EINVAL (4, 7+), never MARK.
    /// (operator, value, [(argument, denied)])
    type Case = (&'static str, u64, &'static [(c_long, bool)]);
    let cases: &[Case] = &[
        ("SCMP_CMP_EQ", 3, &[(3, true), (2, false), (4, false)]),
        ("SCMP_CMP_NE", 3, &[(3, false), (2, true), (4, true)]),
        ("SCMP_CMP_LT", 3, &[(2, true), (3, false), (4, false)]),
        ("SCMP_CMP_LE", 3, &[(2, true), (3, true), (4, false)]),
        ("SCMP_CMP_GT", 3, &[(2, false), (3, false), (4, true)]),
        ("SCMP_CMP_GE", 3, &[(2, false), (3, true), (4, true)]),
    ];
    for &(op, value, calls) in cases {
        let filter = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["sched_get_priority_max"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK,
                          "args": [{"index": 0, "value": value, "op": op}]}]
        })))
        .unwrap_or_else(|e| panic!("{op}: {e}"));
        Child::spawn(filter, true, |_| {
            for (i, &(arg, denied)) in calls.iter().enumerate() {
                check((errno_of(prio_max(arg)) == MARK) == denied, i as i32 + 1)?;
            }
            Ok(())
        })
        .assert_success(op);
    }
}

#[test]
fn masked_equal() {
    // (arg & 0xf0) == 0x10
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sched_get_priority_max"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK,
                      "args": [{"index": 0, "value": 0xf0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(errno_of(prio_max(0x13)) == MARK, 1)?;
        check(errno_of(prio_max(0x10)) == MARK, 2)?;
        check(errno_of(prio_max(0x1f)) == MARK, 3)?;
        check(errno_of(prio_max(0x23)) != MARK, 4)?;
        check(prio_max(1).is_ok(), 5)
    })
    .assert_success("SCMP_CMP_MASKED_EQ");
}

#[test]
fn conditions_on_distinct_arguments_are_anded_and_on_one_argument_ored() {
    // getpriority(which, who): MARK only for which == PRIO_PROCESS and who == 999999.
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK,
                      "args": [{"index": 0, "value": libc::PRIO_PROCESS, "op": "SCMP_CMP_EQ"},
                               {"index": 1, "value": 999999, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        let process = libc::PRIO_PROCESS as c_long;
        check(errno_of(sys(libc::SYS_getpriority, process, 999999)) == MARK, 1)?;
        check(sys(libc::SYS_getpriority, process, 0).is_ok(), 2)?;
        check(
            errno_of(sys(libc::SYS_getpriority, libc::PRIO_PGRP as c_long, 999999)) != MARK,
            3,
        )
    })
    .assert_success("two arguments");

    // Two conditions on argument 0 become two rules: either value matches (one rule could never match both).
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sched_get_priority_max"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK,
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(errno_of(prio_max(1)) == MARK, 1)?;
        check(errno_of(prio_max(3)) == MARK, 2)?;
        check(prio_max(2).is_ok(), 3)
    })
    .assert_success("same argument twice");
}

#[test]
fn kill_actions_kill_with_sigsys() {
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL"] {
        let filter = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        })))
        .unwrap_or_else(|e| panic!("{action}: {e}"));
        Child::spawn(filter, true, |_| {
            let _ = sys(libc::SYS_getppid, 0, 0);
            Err(1)
        })
        .assert_sigsys(action);
    }
}

static TRAPPED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigsys(_: libc::c_int) {
    TRAPPED.store(true, Ordering::SeqCst);
}

#[test]
fn trap_raises_sigsys() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    // Without a handler SIGSYS ends the process.
    Child::spawn(filter.clone(), true, |_| {
        let _ = sys(libc::SYS_getppid, 0, 0);
        Err(1)
    })
    .assert_sigsys("SCMP_ACT_TRAP");
    let parent = std::process::id() as c_long;
    // With one, the process survives: a trap, not a kill.
    Child::spawn(filter, true, |_| {
        // SAFETY: installs a handler that only stores to an atomic; the mask is emptied first.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigsys as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            check(
                libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) == 0,
                1,
            )?;
        }
        // The call is not made: it returns the rolled-back register (on x86-64, the syscall number), not the pid.
        check(sys(libc::SYS_getppid, 0, 0) != Ok(parent), 2)?;
        check(TRAPPED.load(Ordering::SeqCst), 3)
    })
    .assert_success("SCMP_ACT_TRAP with a handler");
}

#[test]
fn log_allows_and_trace_without_a_tracer_fails_with_enosys() {
    let parent = std::process::id() as c_long;
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"},
                     {"names": ["getuid"], "action": "SCMP_ACT_TRACE"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(sys(libc::SYS_getppid, 0, 0) == Ok(parent), 1)?;
        check(errno_of(sys(libc::SYS_getuid, 0, 0)) == libc::ENOSYS, 2)
    })
    .assert_success("SCMP_ACT_LOG and SCMP_ACT_TRACE");
}

#[test]
fn all_flags_load() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getppid", "socketcall", "_llseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    Child::spawn(filter, true, |_| {
        check(errno_of(sys(libc::SYS_getppid, 0, 0)) == MARK, 1)
    })
    .assert_success("all flags");
}

#[test]
fn loading_without_no_new_privs_needs_cap_sys_admin() {
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Child::spawn(filter.clone(), false, |_| {
            check(errno_of(sys(libc::SYS_getppid, 0, 0)) == MARK, 1)
        })
        .assert_success("root without no_new_privs");
    }
    // Without no_new_privs and without capabilities, the load is refused with an error that says why.
    // SAFETY: the child only makes system calls and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let header = libc_cap_header();
        let data = [[0u32; 3]; 2];
        // SAFETY: capset with a v3 header and two zeroed data records drops every capability of this process.
        let dropped = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } == 0;
        let code = match (dropped, filter.load()) {
            (false, _) => 2,
            (true, Err(SeccompError::LoadNotPermitted)) => 0,
            (true, _) => 1,
        };
        // SAFETY: ends the forked child.
        unsafe { libc::_exit(code) };
    }
    let mut child = Child { pid, reaped: false };
    let status = child.wait();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {}",
        describe(status)
    );
    assert!(
        SeccompError::LoadNotPermitted
            .to_string()
            .contains("CAP_SYS_ADMIN")
    );
}

/// `struct __user_cap_header_struct` for version 3.
fn libc_cap_header() -> [u32; 2] {
    [0x2008_0522, 0]
}

#[test]
fn notify_hands_the_listener_to_the_agent() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let socket = dir.path().join("agent.sock");
    let spoofed = dir.path().join("spoofed");
    let refused = dir.path().join("refused");
    let real = dir.path().join("real");
    let (spoofed_c, refused_c, real_c) = (cstring(&spoofed), cstring(&refused), cstring(&real));
    let filter = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "berth-test",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(filter.needs_listener());
    let listener = UnixListener::bind(&socket).unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
    let (report_r, mut report_w) = std::io::pipe().unwrap_or_else(|e| panic!("{e}"));
    let (mut go_r, go_w) = std::io::pipe().unwrap_or_else(|e| panic!("{e}"));

    let mut child = Child::spawn(filter, true, |fd| {
        let fd = fd.ok_or(1)?.as_raw_fd();
        // Report the listener's number, then wait until the runtime has passed it on.
        check(report_w.write_all(&fd.to_ne_bytes()).is_ok(), 2)?;
        let mut go = [0u8];
        check(go_r.read_exact(&mut go).is_ok(), 3)?;
        check(mkdir(&spoofed_c) == Ok(0), 4)?;
        check(
            sys(
                libc::SYS_access,
                spoofed_c.as_ptr() as c_long,
                libc::F_OK as c_long,
            )
            .is_err(),
            5,
        )?;
        check(errno_of(mkdir(&refused_c)) == libc::EXDEV, 6)?;
        check(mkdir(&real_c) == Ok(0), 7)
    });
    drop((report_w, go_r));

    let agent = std::thread::spawn(move || agent(listener));

    // The runtime's side: take the fd by number, send it with the state, let the child go on.
    let mut number = [0u8; size_of::<RawFd>()];
    report_r
        .try_clone()
        .and_then(|mut r| r.read_exact(&mut number))
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = take_listener_fd(child.pid, RawFd::from_ne_bytes(number)).unwrap_or_else(|e| panic!("{e}"));
    let state = process_state_json(
        "1.2.1",
        "notify-test",
        Status::Creating,
        child.pid,
        dir.path(),
        &HashMap::new(),
        Some("berth-test"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    send_to_listener(&socket, taken.as_fd(), &state).unwrap_or_else(|e| panic!("{e}"));
    drop(taken);
    let mut go_w = go_w;
    go_w.write_all(b"g").unwrap_or_else(|e| panic!("{e}"));

    let status = child.wait();
    let seen = agent.join().unwrap_or_else(|_| panic!("the agent panicked"));
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {}",
        describe(status)
    );
    let (state, calls) = seen.unwrap_or_else(|e| panic!("agent: {e}"));
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], json!("berth-test"));
    assert_eq!(state["pid"], json!(child.pid));
    assert_eq!(state["state"]["status"], json!("creating"));
    assert_eq!(calls, ["mkdir", "mkdir", "mkdir"]);
    assert!(!spoofed.exists() && !refused.exists() && real.is_dir());
}

/// A seccomp agent: accepts one connection, receives the state and the listener, and answers three
/// notifications: a spoofed success, an EXDEV, and "continue". Returns the state and the syscall names seen.
fn agent(listener: UnixListener) -> Result<(Value, Vec<String>), String> {
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut json = Vec::new();
    let mut fds = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if msg.bytes == 0 {
            break;
        }
        json.extend_from_slice(&buf[..msg.bytes]);
    }
    let state: Value = serde_json::from_slice(&json).map_err(|e| format!("state: {e}"))?;
    let [fd]: [OwnedFd; 1] = fds
        .try_into()
        .map_err(|fds: Vec<OwnedFd>| format!("{} fds received", fds.len()))?;

    let mut calls = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for answer in 0..3 {
        let mut pfd = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::event::Timespec::try_from(left).map_err(|e| format!("timeout: {e}"))?;
        let ready = rustix::event::poll(&mut pfd, Some(&timeout)).map_err(|e| format!("poll: {e}"))?;
        if ready == 0 || !pfd[0].revents().contains(rustix::event::PollFlags::IN) {
            return Err(format!(
                "no notification {answer} (revents {:?})",
                pfd[0].revents()
            ));
        }
        let req = ScmpNotifReq::receive(fd.as_raw_fd()).map_err(|e| format!("receive: {e}"))?;
        calls.push(req.data.syscall.get_name().map_err(|e| format!("name: {e}"))?);
        let resp = match answer {
            0 => ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::empty()),
            1 => ScmpNotifResp::new_error(req.id, -libc::EXDEV, ScmpNotifRespFlags::empty()),
            _ => ScmpNotifResp::new_continue(req.id, ScmpNotifRespFlags::empty()),
        };
        resp.respond(fd.as_raw_fd())
            .map_err(|e| format!("respond: {e}"))?;
    }
    Ok((state, calls))
}

// ---------------------------------------------------------------------------------------------------------------
// A profile of Docker's size, and its cost
// ---------------------------------------------------------------------------------------------------------------

/// A profile shaped like Docker's default: ERRNO by default, three architectures, an allow list of every x86-64
/// system call libseccomp knows except a few (about 350 names, Docker lists ~370), plus rules with conditions.
fn docker_sized_profile() -> LinuxSeccomp {
    let denied = [
        "getppid",
        "ptrace",
        "kexec_load",
        "reboot",
        "mount",
        "umount2",
        "personality",
        "clone",
        "clone3",
    ];
    let mut names: Vec<String> = (0..600)
        .filter_map(|nr| {
            ScmpSyscall::from(nr)
                .get_name_by_arch(libseccomp::ScmpArch::X8664)
                .ok()
        })
        .filter(|name| !denied.contains(&name.as_str()))
        .collect();
    // Names of other architectures and of nothing, as real profiles have.
    names.extend(
        [
            "socketcall",
            "_llseek",
            "_newselect",
            "arm_fadvise64_64",
            "no_such_call",
        ]
        .map(String::from),
    );
    profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131080, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}
        ]
    }))
}

#[test]
fn a_docker_sized_profile_compiles_loads_and_filters() {
    let profile = docker_sized_profile();
    let names = profile
        .syscalls()
        .as_ref()
        .map_or(0, |rules| rules[0].names().len());
    assert!(names > 300, "only {names} names");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let compiled = compile_cached(&profile, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let cached = compile_cached(&profile, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(same_program(&compiled, &cached));
    Child::spawn(cached, true, |_| {
        check(sys(libc::SYS_getpid, 0, 0).is_ok(), 1)?;
        check(errno_of(sys(libc::SYS_getppid, 0, 0)) == libc::EPERM, 2)?;
        check(sys(libc::SYS_personality, 0xffff_ffff, 0).is_ok(), 3)?;
        check(
            errno_of(sys(libc::SYS_personality, 0x0040_0000, 0)) == libc::EPERM,
            4,
        )?;
        check(errno_of(sys(libc::SYS_clone3, 0, 0)) == libc::ENOSYS, 5)
    })
    .assert_success("Docker-sized profile");
}

/// Prints the cost of compile() and load() for the Docker-sized profile:
/// `cargo test -p berth-oci --release --lib seccomp::tests::cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn cost() {
    const ROUNDS: usize = 200;
    let profile = docker_sized_profile();
    let mut compile_us = Vec::with_capacity(ROUNDS);
    let mut load_us = Vec::with_capacity(ROUNDS);
    let mut cached_us = Vec::with_capacity(ROUNDS);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    compile_cached(&profile, cache.path()).unwrap_or_else(|e| panic!("{e}"));
    // Each phase on its own: a fork between rounds would charge copy-on-write faults to the next round.
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let hit = compile_cached(&profile, cache.path()).unwrap_or_else(|e| panic!("{e}"));
        cached_us.push(start.elapsed().as_secs_f64() * 1e6);
        drop(hit);
    }
    let mut filters = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let filter = compile(&profile).unwrap_or_else(|e| panic!("{e}"));
        compile_us.push(start.elapsed().as_secs_f64() * 1e6);
        filters.push(filter);
    }
    let instructions = filters[0].instructions();
    for filter in filters {
        let (mut r, w) = std::io::pipe().unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: the child only makes system calls and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain prctl; the monotonic clock reads into valid timespecs; write sends 8 bytes of a local.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let (mut t0, mut t1) = (std::mem::zeroed(), std::mem::zeroed());
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t0);
                let loaded = filter.load().is_ok();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t1);
                let ns: i64 = if loaded {
                    (t1.tv_sec - t0.tv_sec) * 1_000_000_000 + (t1.tv_nsec - t0.tv_nsec)
                } else {
                    -1
                };
                libc::write(w.as_raw_fd(), (&raw const ns).cast(), size_of::<i64>());
                libc::_exit(0);
            }
        }
        let mut child = Child { pid, reaped: false };
        drop(w);
        let mut buf = [0u8; 8];
        r.read_exact(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        let ns = i64::from_ne_bytes(buf);
        assert!(ns >= 0, "the child could not load the filter");
        load_us.push(ns as f64 / 1e3);
        let status = child.wait();
        assert!(libc::WIFEXITED(status), "child {}", describe(status));
    }
    compile_us.sort_by(f64::total_cmp);
    cached_us.sort_by(f64::total_cmp);
    load_us.sort_by(f64::total_cmp);
    println!(
        "Docker-sized profile ({instructions} BPF instructions), {ROUNDS} rounds: compile median {:.0} us (p10 {:.0}, p90 {:.0}); cached compile median {:.0} us (p10 {:.0}, p90 {:.0}); load median {:.1} us (p10 {:.1}, p90 {:.1})",
        compile_us[ROUNDS / 2],
        compile_us[ROUNDS / 10],
        compile_us[ROUNDS * 9 / 10],
        cached_us[ROUNDS / 2],
        cached_us[ROUNDS / 10],
        cached_us[ROUNDS * 9 / 10],
        load_us[ROUNDS / 2],
        load_us[ROUNDS / 10],
        load_us[ROUNDS * 9 / 10],
    );
}
