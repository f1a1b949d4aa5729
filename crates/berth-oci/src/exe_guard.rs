//! Executes the user process without exposing the host's `berth-runtime` binary (CVE-2019-5736 class).
//!
//! The init is forked from `berth-runtime`, so until its final `execve` its `/proc/self/exe` is the host binary.
//! The final exec goes through a tiny static trampoline held in a sealed memfd, so that a `#!/proc/self/exe`
//! program inside the container reaches only the sealed trampoline, never the host binary.
//!
//! # How
//! [`Trampoline::prepare`] copies the trampoline program ([`TRAMPOLINE`], a freestanding static ELF of a few KiB
//! built from `trampoline/main.rs` by `build.rs`) into `memfd_create("berth-exec", MFD_CLOEXEC |
//! MFD_ALLOW_SEALING | MFD_EXEC)` and seals it (`F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`, plus
//! `F_SEAL_EXEC` where the kernel has it). [`Trampoline::exec`] runs
//! `execveat(memfd, "", [path, argv...], envp, AT_EMPTY_PATH)`; the trampoline then runs
//! `execve(path, argv, envp)`. From the first of the two execs on, `/proc/self/exe` is the memfd
//! (`/memfd:berth-exec (deleted)`), which no one can write to, and the host binary is out of reach. If the user
//! program is a `#!/proc/self/exe` script, its interpreter is the trampoline again; it consumes one argument per
//! round and ends with exit code 127 once it runs out, so such a script cannot loop forever.
//!
//! The trampoline exits with 127 (program not found) or 126 (found but not executable) and a one-line message
//! on stderr if its `execve` fails.
//!
//! # Requirements on the caller
//! - Keep the memfd open until the exec: it is close-on-exec, but a "close every fd above N" step must spare
//!   [`Trampoline::as_fd`] (or run before [`Trampoline::prepare`]).
//! - A seccomp filter installed before the exec that denies `execveat` (with `EPERM` or `ENOSYS`) is tolerated:
//!   the exec then falls back to `execve("/proc/self/fd/N")`, which needs `/proc` mounted in the container.

use std::ffi::{CStr, CString, c_char};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use thiserror::Error;

/// The trampoline program: a static ELF built from `trampoline/main.rs` by the crate's build script.
pub const TRAMPOLINE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-exec"));

/// Name of the memfd; `/proc/<pid>/exe` of the trampoline reads `/memfd:berth-exec (deleted)`.
pub const MEMFD_NAME: &str = "berth-exec";

/// Seals that make the trampoline's memfd immutable.
pub const REQUIRED_SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Errors of the guarded exec.
#[derive(Debug, Error)]
pub enum ExeGuardError {
    /// `memfd_create` failed.
    #[error("creating the memfd \"{MEMFD_NAME}\" for the exec trampoline failed: {0}")]
    CreateMemfd(#[source] Errno),

    /// Writing the trampoline into the memfd failed.
    #[error("writing the {len}-byte exec trampoline into its memfd failed: {source}")]
    Write {
        /// Size of the trampoline.
        len: usize,
        /// The error of `write`.
        #[source]
        source: Errno,
    },

    /// The memfd stopped accepting bytes before the whole trampoline was in.
    #[error("the memfd of the exec trampoline accepted only {written} of its {len} bytes")]
    ShortWrite {
        /// Bytes written.
        written: usize,
        /// Size of the trampoline.
        len: usize,
    },

    /// Adding the seals failed.
    #[error("sealing the exec trampoline's memfd against changes failed: {0}")]
    Seal(#[source] Errno),

    /// The program was given no arguments at all.
    #[error("cannot execute {path}: its argument list is empty, and a program needs at least argv[0]")]
    EmptyArgv {
        /// The program.
        path: String,
    },

    /// `execveat` of the trampoline failed.
    #[error("executing {path} through the exec trampoline failed: {source}")]
    Exec {
        /// The program.
        path: String,
        /// The error of `execveat` (or of its `/proc/self/fd` fallback).
        #[source]
        source: Errno,
    },
}

/// The sealed trampoline, prepared before the container waits for `start` so that `start` stays fast.
#[derive(Debug)]
pub struct Trampoline {
    fd: OwnedFd,
    /// `/proc/self/fd/<fd>`, for the `execve` fallback; built here so that the exec path does not allocate.
    proc_path: CString,
}

impl Trampoline {
    /// Creates the sealed memfd holding the trampoline.
    pub fn prepare() -> Result<Self, ExeGuardError> {
        let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // MFD_EXEC (Linux 6.3) keeps the memfd executable even where vm.memfd_noexec=1 would default to
        // MFD_NOEXEC_SEAL; older kernels reject the unknown flag with EINVAL.
        let (fd, exec_flag) = match rustix::fs::memfd_create(MEMFD_NAME, base | MemfdFlags::EXEC) {
            Ok(fd) => (fd, true),
            Err(Errno::INVAL) => {
                let fd = rustix::fs::memfd_create(MEMFD_NAME, base).map_err(ExeGuardError::CreateMemfd)?;
                (fd, false)
            }
            Err(err) => return Err(ExeGuardError::CreateMemfd(err)),
        };

        let len = TRAMPOLINE.len();
        let mut written = 0;
        while let Some(rest) = TRAMPOLINE.get(written..).filter(|rest| !rest.is_empty()) {
            match rustix::io::write(&fd, rest) {
                Ok(0) => return Err(ExeGuardError::ShortWrite { written, len }),
                Ok(n) => written += n,
                Err(Errno::INTR) => {}
                Err(source) => return Err(ExeGuardError::Write { len, source }),
            }
        }

        // F_SEAL_EXEC (Linux 6.3, the same release as MFD_EXEC) also freezes the mode bits.
        if exec_flag {
            match rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS | SealFlags::EXEC) {
                Ok(()) => {}
                Err(Errno::INVAL) => {
                    rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS).map_err(ExeGuardError::Seal)?
                }
                Err(err) => return Err(ExeGuardError::Seal(err)),
            }
        } else {
            rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS).map_err(ExeGuardError::Seal)?;
        }

        // A formatted number holds no NUL byte; were it ever to, the empty default only disables the fallback.
        let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
        Ok(Self { fd, proc_path })
    }

    /// Builds the argument arrays for executing `path` with `argv` and `envp` through the trampoline.
    ///
    /// The returned [`PreparedExec::exec`] does not allocate, so it may run in a child forked from a
    /// multi-threaded process.
    pub fn prepare_exec<'a>(
        &'a self,
        path: &'a CStr,
        argv: &'a [CString],
        envp: &'a [CString],
    ) -> Result<PreparedExec<'a>, ExeGuardError> {
        if argv.is_empty() {
            return Err(ExeGuardError::EmptyArgv {
                path: path.to_string_lossy().into_owned(),
            });
        }
        let mut args = Vec::with_capacity(argv.len() + 2);
        args.push(path.as_ptr());
        args.extend(argv.iter().map(|arg| arg.as_ptr()));
        args.push(ptr::null());
        let mut env = Vec::with_capacity(envp.len() + 1);
        env.extend(envp.iter().map(|var| var.as_ptr()));
        env.push(ptr::null());
        Ok(PreparedExec {
            trampoline: self,
            path,
            argv: args,
            envp: env,
        })
    }

    /// Executes `path` with `argv` and `envp` through the trampoline. Returns only on failure.
    pub fn exec(&self, path: &CString, argv: &[CString], envp: &[CString]) -> ExeGuardError {
        match self.prepare_exec(path, argv, envp) {
            Ok(prepared) => {
                // Rust's runtime ignores SIGPIPE in this process; an ignored signal survives exec, and the
                // container's program must start with the default (as under runc and crun).
                // SAFETY: setting a disposition to SIG_DFL installs no handler code.
                unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
                let source = prepared.exec();
                ExeGuardError::Exec {
                    path: path.to_string_lossy().into_owned(),
                    source,
                }
            }
            Err(err) => err,
        }
    }
}

impl AsFd for Trampoline {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Trampoline {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An exec through the trampoline with its argument arrays built (see [`Trampoline::prepare_exec`]).
#[derive(Debug)]
pub struct PreparedExec<'a> {
    trampoline: &'a Trampoline,
    path: &'a CStr,
    /// `[path, argv..., NULL]`: the trampoline's own argv.
    argv: Vec<*const c_char>,
    /// `[envp..., NULL]`.
    envp: Vec<*const c_char>,
}

impl PreparedExec<'_> {
    /// The program the trampoline will execute.
    pub fn path(&self) -> &CStr {
        self.path
    }

    /// Executes the trampoline, which executes the program. Returns only on failure, with the error of the
    /// exec. Does not allocate.
    pub fn exec(&self) -> Errno {
        // SAFETY: the fd is open; "" is NUL-terminated; argv and envp are NULL-terminated arrays of pointers
        // into CStrings borrowed for the life of `self`.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                self.trampoline.fd.as_raw_fd(),
                c"".as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
        }
        let err = last_errno();
        if err != Errno::NOSYS && err != Errno::PERM {
            return err;
        }
        // execveat is missing or denied (typically by a seccomp profile written with execve in mind): execute the
        // same memfd through its /proc/self/fd link.
        // SAFETY: as above; `proc_path` is a NUL-terminated string owned by the trampoline.
        unsafe {
            libc::execve(
                self.trampoline.proc_path.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        let fallback_err = last_errno();
        // Report the fallback's error unless /proc is simply absent, where the original error says more.
        if fallback_err == Errno::NOENT {
            err
        } else {
            fallback_err
        }
    }
}

/// The errno of the system call that just failed.
fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
}

#[cfg(test)]
mod tests {
    use std::ffi::{CString, c_int};
    use std::fs::{self, File};
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use rustix::io::Errno;

    use super::{MEMFD_NAME, PreparedExec, REQUIRED_SEALS, TRAMPOLINE, Trampoline};

    /// What `/proc/<pid>/exe` of a process running the trampoline reads.
    const MEMFD_EXE: &str = "/memfd:berth-exec (deleted)";

    /// Exit code a child uses when something before the exec failed.
    const CHILD_SETUP_FAILED: c_int = 120;

    fn cstr(s: &str) -> CString {
        CString::new(s).expect("test strings hold no NUL")
    }

    fn cstrs(items: &[&str]) -> Vec<CString> {
        items.iter().map(|s| cstr(s)).collect()
    }

    /// A forked child; killed and reaped on drop unless already reaped.
    struct Child {
        pid: libc::pid_t,
        reaped: bool,
    }

    impl Child {
        /// Forks and runs `f` in the child, which exits with its return value. `f` must not allocate: the
        /// test harness is multi-threaded.
        fn fork(f: impl FnOnce() -> c_int) -> Child {
            // SAFETY: the child runs only `f`, which the callers keep to async-signal-safe calls, then `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == 0 {
                let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(CHILD_SETUP_FAILED);
                // SAFETY: `_exit` ends the child without running the parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            Child { pid, reaped: false }
        }

        /// Waits for the next state change (exit, or a stop under ptrace) and returns the raw wait status.
        fn wait(&mut self) -> c_int {
            let mut status = 0;
            loop {
                // SAFETY: `status` is a valid out-pointer; `pid` is our child.
                let ret = unsafe { libc::waitpid(self.pid, &mut status, 0) };
                if ret == self.pid {
                    break;
                }
                let err = std::io::Error::last_os_error();
                assert_eq!(
                    err.raw_os_error(),
                    Some(libc::EINTR),
                    "waitpid({}) failed: {err}",
                    self.pid
                );
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.reaped = true;
            }
            status
        }

        /// Waits for the child to end and returns its exit code; fails the test if a signal killed it.
        fn exit_code(&mut self) -> c_int {
            let status = self.wait();
            assert!(
                libc::WIFEXITED(status),
                "child {} did not exit normally: status {status:#x}",
                self.pid
            );
            libc::WEXITSTATUS(status)
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if !self.reaped {
                // SAFETY: plain system calls on our own, not yet reaped child.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                    libc::waitpid(self.pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }

    /// A close-on-exec pipe: (read end, write end).
    fn pipe() -> (File, OwnedFd) {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2");
        (File::from(read), write)
    }

    /// Output of a child.
    struct Captured {
        code: c_int,
        stdout: String,
        stderr: String,
    }

    /// Runs `f` in a child with stdout and stderr captured, and waits for it.
    fn run_captured(f: impl FnOnce() -> c_int) -> Captured {
        let (mut out_r, out_w) = pipe();
        let (mut err_r, err_w) = pipe();
        let (out_fd, err_fd) = (out_w.as_raw_fd(), err_w.as_raw_fd());
        let mut child = Child::fork(|| {
            // SAFETY: dup2 onto stdout/stderr of the child; the fds are open.
            if unsafe { libc::dup2(out_fd, 1) } < 0 || unsafe { libc::dup2(err_fd, 2) } < 0 {
                return CHILD_SETUP_FAILED;
            }
            f()
        });
        drop((out_w, err_w));
        let mut stdout = String::new();
        let mut stderr = String::new();
        out_r
            .read_to_string(&mut stdout)
            .expect("read the child's stdout");
        err_r
            .read_to_string(&mut stderr)
            .expect("read the child's stderr");
        let code = child.exit_code();
        Captured { code, stdout, stderr }
    }

    /// Runs `prepared` in a child and captures its output.
    fn run_through_trampoline(prepared: &PreparedExec<'_>) -> Captured {
        run_captured(|| prepared.exec().raw_os_error())
    }

    #[test]
    fn trampoline_is_a_tiny_static_elf() {
        assert!(
            TRAMPOLINE.starts_with(b"\x7fELF"),
            "the trampoline is not an ELF file"
        );
        assert!(
            TRAMPOLINE.len() <= 16 * 1024,
            "the trampoline takes {} bytes",
            TRAMPOLINE.len()
        );
        // No PT_INTERP: the program needs no dynamic loader, which the container may not have.
        assert!(
            !TRAMPOLINE.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"),
            "the trampoline names a dynamic loader"
        );
    }

    #[test]
    fn prepare_seals_a_copy_of_the_trampoline() {
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let seals = rustix::fs::fcntl_get_seals(&trampoline).expect("F_GET_SEALS");
        assert!(
            seals.contains(REQUIRED_SEALS),
            "seals {seals:?} lack some of {REQUIRED_SEALS:?}"
        );

        let link = fs::read_link(format!("/proc/self/fd/{}", trampoline.as_raw_fd())).expect("readlink");
        assert_eq!(link.to_string_lossy(), format!("/memfd:{MEMFD_NAME} (deleted)"));
        let flags = rustix::io::fcntl_getfd(&trampoline).expect("F_GETFD");
        assert!(
            flags.contains(rustix::io::FdFlags::CLOEXEC),
            "the memfd is not close-on-exec"
        );

        let mut content = Vec::new();
        File::open(format!("/proc/self/fd/{}", trampoline.as_raw_fd()))
            .and_then(|mut f| f.read_to_end(&mut content))
            .expect("read the memfd");
        assert!(content == TRAMPOLINE, "the memfd does not hold the trampoline");

        assert_eq!(
            rustix::io::write(&trampoline, b"x"),
            Err(Errno::PERM),
            "write to the sealed memfd"
        );
        assert_eq!(
            rustix::fs::ftruncate(&trampoline, 0),
            Err(Errno::PERM),
            "shrink the sealed memfd"
        );
        assert_eq!(
            rustix::fs::fcntl_add_seals(&trampoline, rustix::fs::SealFlags::FUTURE_WRITE),
            Err(Errno::PERM),
            "change the seals"
        );
    }

    #[test]
    fn runs_program_with_argv_and_env() {
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let path = cstr("/bin/sh");
        let argv = cstrs(&[
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s' "$0" "$1" "$#" "$BERTH_EXE_GUARD_TEST""#,
            "zero",
            "arg with spaces",
        ]);
        let envp = cstrs(&["BERTH_EXE_GUARD_TEST=from envp", "PATH=/usr/bin:/bin"]);
        let prepared = trampoline
            .prepare_exec(&path, &argv, &envp)
            .expect("prepare the exec");
        let out = run_through_trampoline(&prepared);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "zero|arg with spaces|1|from envp");
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn passes_argv0_and_exactly_the_given_environment() {
        // busybox picks its applet from argv[0], so "env" only runs if argv[0] arrives intact.
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let path = cstr("/bin/busybox");
        assert!(
            Path::new("/bin/busybox").exists(),
            "this test needs /bin/busybox (Debian: busybox-static)"
        );
        let argv = cstrs(&["env"]);
        let envp = cstrs(&["A=1", "B=two words", "EMPTY="]);
        let prepared = trampoline
            .prepare_exec(&path, &argv, &envp)
            .expect("prepare the exec");
        let out = run_through_trampoline(&prepared);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "A=1\nB=two words\nEMPTY=\n");
    }

    #[test]
    fn unprivileged_user_can_execute_the_trampoline() {
        // The init switches to the container's user before the exec; the memfd belongs to root.
        assert_eq!(rustix::process::geteuid().as_raw(), 0, "this test needs root");
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let path = cstr("/usr/bin/id");
        let argv = cstrs(&["id", "-u"]);
        let prepared = trampoline
            .prepare_exec(&path, &argv, &[])
            .expect("prepare the exec");
        let out = run_captured(|| {
            // SAFETY: plain credential system calls in the single-threaded child.
            let dropped = unsafe {
                libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(65534) == 0
                    && libc::setuid(65534) == 0
            };
            if !dropped {
                return CHILD_SETUP_FAILED;
            }
            prepared.exec().raw_os_error()
        });
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "65534\n"),
            "stderr: {}",
            out.stderr
        );
    }

    #[test]
    fn exec_failure_inside_the_trampoline_exits_like_a_shell() {
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let missing = cstr("/nonexistent/berth-exe-guard-test");
        let argv = cstrs(&["x"]);
        let prepared = trampoline
            .prepare_exec(&missing, &argv, &[])
            .expect("prepare the exec");
        let out = run_through_trampoline(&prepared);
        assert_eq!(out.code, 127);
        assert_eq!(
            out.stderr,
            "berth-exec: cannot execute /nonexistent/berth-exe-guard-test: No such file or directory\n"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let not_exec = dir.path().join("not-executable");
        fs::write(&not_exec, b"#!/bin/sh\n").expect("write the file");
        fs::set_permissions(&not_exec, fs::Permissions::from_mode(0o644)).expect("chmod");
        let not_exec = cstr(not_exec.to_str().expect("utf-8 temp path"));
        let prepared = trampoline
            .prepare_exec(&not_exec, &argv, &[])
            .expect("prepare the exec");
        let out = run_through_trampoline(&prepared);
        assert_eq!(out.code, 126);
        assert_eq!(
            out.stderr,
            format!(
                "berth-exec: cannot execute {}: Permission denied\n",
                not_exec.to_string_lossy()
            )
        );
    }

    #[test]
    fn empty_argv_is_refused_before_exec() {
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let err = trampoline.exec(&cstr("/bin/true"), &[], &[]);
        assert!(matches!(err, super::ExeGuardError::EmptyArgv { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot execute /bin/true: its argument list is empty, and a program needs at least argv[0]"
        );
    }

    /// A forked child under ptrace: it stops after each successful exec, where the parent can inspect it as an
    /// attacker inside the container would.
    struct Traced {
        child: Child,
        stderr: File,
    }

    /// One exec stop of a traced child.
    struct ExecStop {
        exe: String,
        cmdline: Vec<u8>,
    }

    impl Traced {
        /// Forks a child that asks to be traced and runs `f` (an exec).
        fn start(f: impl FnOnce() -> c_int) -> Traced {
            let (err_r, err_w) = pipe();
            let err_fd = err_w.as_raw_fd();
            let child = Child::fork(|| {
                // SAFETY: PTRACE_TRACEME takes no pointers; dup2 onto stderr with an open fd.
                let ok = unsafe {
                    libc::ptrace(
                        libc::PTRACE_TRACEME,
                        0,
                        std::ptr::null_mut::<u8>(),
                        std::ptr::null_mut::<u8>(),
                    )
                } == 0
                    && unsafe { libc::dup2(err_fd, 2) } >= 0;
                if !ok {
                    return CHILD_SETUP_FAILED;
                }
                f()
            });
            drop(err_w);
            Traced { child, stderr: err_r }
        }

        /// Runs the child to its end, calling `on_stop` at each exec stop (at most `max_stops`, then the child is
        /// killed and the test fails). Returns the stops and the exit code.
        fn run(
            mut self,
            max_stops: usize,
            mut on_stop: impl FnMut(&ExecStop),
        ) -> (Vec<ExecStop>, c_int, String) {
            let mut stops = Vec::new();
            let code = loop {
                let status = self.child.wait();
                if libc::WIFEXITED(status) {
                    break libc::WEXITSTATUS(status);
                }
                assert!(
                    !libc::WIFSIGNALED(status),
                    "traced child killed by signal {}",
                    libc::WTERMSIG(status)
                );
                assert!(libc::WIFSTOPPED(status), "unexpected wait status {status:#x}");
                let mut deliver = 0;
                if libc::WSTOPSIG(status) == libc::SIGTRAP {
                    let pid = self.child.pid;
                    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink /proc/<pid>/exe");
                    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("read /proc/<pid>/cmdline");
                    let stop = ExecStop {
                        exe: exe.to_string_lossy().into_owned(),
                        cmdline,
                    };
                    on_stop(&stop);
                    stops.push(stop);
                    assert!(
                        stops.len() <= max_stops,
                        "more than {max_stops} execs: the exec chain does not end"
                    );
                } else {
                    deliver = libc::WSTOPSIG(status);
                }
                // SAFETY: the child is stopped under our trace; the data argument is the signal to deliver.
                let ret = unsafe {
                    libc::ptrace(
                        libc::PTRACE_CONT,
                        self.child.pid,
                        std::ptr::null_mut::<u8>(),
                        deliver as usize,
                    )
                };
                assert_eq!(ret, 0, "PTRACE_CONT: {}", std::io::Error::last_os_error());
            };
            let mut stderr = String::new();
            self.stderr
                .read_to_string(&mut stderr)
                .expect("read the child's stderr");
            (stops, code, stderr)
        }
    }

    /// Writes an executable `#!/proc/self/exe` script into `dir`.
    fn proc_self_exe_script(dir: &Path) -> CString {
        let script = dir.join("evil");
        let mut file = File::create(&script).expect("create the script");
        file.write_all(b"#!/proc/self/exe\n").expect("write the script");
        drop(file);
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the script");
        cstr(script.to_str().expect("utf-8 temp path"))
    }

    /// Does what a CVE-2019-5736 attacker inside the container does with `/proc/<pid>/exe` of a process: opens it
    /// for writing (must fail), and for reading (returned, to retry writing once the process is gone). Checks
    /// that it is the sealed trampoline and not the host binary.
    fn open_exe_as_attacker(pid: libc::pid_t) -> File {
        let exe = format!("/proc/{pid}/exe");
        let err = fs::OpenOptions::new()
            .write(true)
            .open(&exe)
            .expect_err("opening the running exe for writing");
        let errno = err.raw_os_error();
        assert!(
            errno == Some(libc::ETXTBSY) || errno == Some(libc::EPERM),
            "opening {exe} for writing failed with {err}, expected ETXTBSY or EPERM"
        );

        let mut file = File::open(&exe).expect("open the exe for reading");
        let seals = rustix::fs::fcntl_get_seals(&file).expect("F_GET_SEALS on the exe");
        assert!(
            seals.contains(REQUIRED_SEALS),
            "the exe's seals {seals:?} lack some of {REQUIRED_SEALS:?}"
        );
        let mut content = Vec::new();
        file.read_to_end(&mut content).expect("read the exe");
        assert!(content == TRAMPOLINE, "the exe is not the trampoline");
        let host = fs::metadata("/proc/self/exe").expect("stat the test binary");
        let meta = file.metadata().expect("fstat the exe");
        assert!(
            (meta.dev(), meta.ino()) != (host.dev(), host.ino()),
            "the exe is the host binary"
        );
        file
    }

    /// Reopens `file` for writing through `/proc/self/fd` (as the attack does once the exe stopped running) and
    /// checks that neither writing nor truncating gets through. Returns whether the reopen itself succeeded.
    fn assert_reopen_cannot_modify(file: &File) -> bool {
        let reopen = format!("/proc/self/fd/{}", file.as_raw_fd());
        let opened = match fs::OpenOptions::new().read(true).write(true).open(&reopen) {
            Ok(mut rw) => {
                let err = rw
                    .write(b"\x7fELF")
                    .expect_err("writing into the sealed trampoline");
                assert_eq!(
                    err.raw_os_error(),
                    Some(libc::EPERM),
                    "write into the sealed trampoline: {err}"
                );
                let err = rw.set_len(0).expect_err("truncating the sealed trampoline");
                assert_eq!(
                    err.raw_os_error(),
                    Some(libc::EPERM),
                    "truncate the sealed trampoline: {err}"
                );
                true
            }
            Err(err) => {
                let errno = err.raw_os_error();
                assert!(
                    errno == Some(libc::ETXTBSY) || errno == Some(libc::EPERM),
                    "reopen for writing: {err}"
                );
                false
            }
        };
        let mut content = Vec::new();
        File::open(&reopen)
            .and_then(|mut f| f.read_to_end(&mut content))
            .expect("read the exe again");
        assert!(content == TRAMPOLINE, "the trampoline's bytes changed");
        opened
    }

    #[test]
    fn proc_self_exe_script_reaches_only_the_sealed_trampoline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = proc_self_exe_script(dir.path());
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let argv = vec![script.clone()];
        let prepared = trampoline
            .prepare_exec(&script, &argv, &[])
            .expect("prepare the exec");

        let traced = Traced::start(|| prepared.exec().raw_os_error());
        let pid = traced.child.pid;
        let mut interpreter_exe = None;
        let (stops, code, stderr) = traced.run(8, |stop| {
            assert_eq!(stop.exe, MEMFD_EXE, "/proc/<pid>/exe at an exec stop");
            // The stop where the kernel ran the script's interpreter, /proc/self/exe.
            if stop.cmdline.starts_with(b"/proc/self/exe\0") && interpreter_exe.is_none() {
                let file = open_exe_as_attacker(pid);
                assert_reopen_cannot_modify(&file);
                interpreter_exe = Some(file);
            }
        });
        let exe = interpreter_exe
            .unwrap_or_else(|| panic!("the script's interpreter never ran ({} execs)", stops.len()));
        // The process is gone now, so nothing holds the file busy: only the seals stand in the way.
        assert!(
            assert_reopen_cannot_modify(&exe),
            "reopening the exited trampoline for writing failed early"
        );
        // The interpreter chain runs out of arguments and ends, instead of looping.
        assert_eq!(code, 127, "stderr: {stderr}");
        assert!(
            stderr.contains("berth-exec: no program to execute"),
            "stderr: {stderr}"
        );
    }

    #[test]
    fn without_trampoline_the_script_reaches_the_host_binary() {
        // The control experiment: the same script executed directly from a process forked from this test
        // binary runs the test binary itself. This is the hole the trampoline closes.
        let dir = tempfile::tempdir().expect("tempdir");
        let script = proc_self_exe_script(dir.path());
        let argv = [script.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        let host = fs::read_link("/proc/self/exe").expect("readlink /proc/self/exe");

        let traced = Traced::start(|| {
            // SAFETY: NUL-terminated path, NULL-terminated argv and envp arrays, alive in the child.
            unsafe { libc::execve(script.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            CHILD_SETUP_FAILED
        });
        let pid = traced.child.pid;
        let mut child = traced.child;
        let status = child.wait();
        assert!(
            libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP,
            "status {status:#x}"
        );
        let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink /proc/<pid>/exe");
        assert_eq!(exe, host, "the script's interpreter");
        // `child` kills and reaps the stopped process (before it runs a single instruction) on drop.
    }

    /// A seccomp filter that makes `execveat` fail with EPERM and allows everything else.
    fn deny_execveat_filter() -> Vec<libc::sock_filter> {
        #[cfg(target_arch = "x86_64")]
        const AUDIT_ARCH: u32 = 0xc000_003e;
        #[cfg(target_arch = "aarch64")]
        const AUDIT_ARCH: u32 = 0xc000_00b7;
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        vec![
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4), // seccomp_data.arch
            jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH, 0, 3),
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_execveat as u32,
                0,
                1,
            ),
            stmt(
                libc::BPF_RET | libc::BPF_K,
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ]
    }

    #[test]
    fn seccomp_denying_execveat_falls_back_to_proc_self_fd() {
        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let path = cstr("/bin/sh");
        let argv = cstrs(&["sh", "-c", "echo ran >&2"]);
        let prepared = trampoline
            .prepare_exec(&path, &argv, &[])
            .expect("prepare the exec");
        let mut filter = deny_execveat_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };

        let traced = Traced::start(|| {
            // SAFETY: prctl with integer arguments, and a pointer to a live sock_fprog.
            let installed = unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                    && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) == 0
            };
            if !installed {
                return CHILD_SETUP_FAILED;
            }
            // The filter must really deny execveat, or this test proves nothing.
            // SAFETY: execveat with an invalid fd and NULL arrays fails before touching memory.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    -1,
                    c"".as_ptr(),
                    0usize,
                    0usize,
                    libc::AT_EMPTY_PATH,
                )
            };
            if ret != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                return CHILD_SETUP_FAILED + 1;
            }
            prepared.exec().raw_os_error()
        });
        let (stops, code, stderr) = traced.run(4, |_| {});
        assert_eq!((code, stderr.as_str()), (0, "ran\n"));
        let exes: Vec<&str> = stops.iter().map(|stop| stop.exe.as_str()).collect();
        let shell = fs::canonicalize("/bin/sh").expect("resolve /bin/sh");
        assert_eq!(
            exes,
            [MEMFD_EXE, &shell.to_string_lossy()],
            "the execs: trampoline, then the program"
        );
        let first = &stops[0];
        assert!(
            first.cmdline.starts_with(b"/bin/sh\0sh\0-c\0"),
            "trampoline argv {:?}",
            first.cmdline
        );
    }

    /// Time of one fork + `exec` + wait.
    fn time_fork_exec(exec: &dyn Fn() -> c_int) -> Duration {
        let start = Instant::now();
        let mut child = Child::fork(exec);
        assert_eq!(child.exit_code(), 0, "the benchmark program failed");
        start.elapsed()
    }

    /// Time of one `posix_spawn` (glibc: clone with CLONE_VM | CLONE_VFORK, so no copy of this big, multi-
    /// threaded test process's page tables blurs the exec) + wait.
    fn time_spawn(path: &CString, argv: &[*const libc::c_char]) -> Duration {
        let envp = [std::ptr::null::<libc::c_char>()];
        let start = Instant::now();
        let mut pid = 0;
        // SAFETY: NUL-terminated path; NULL-terminated argv and envp arrays that outlive the call.
        let ret = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                argv.as_ptr().cast(),
                envp.as_ptr().cast(),
            )
        };
        assert_eq!(
            ret,
            0,
            "posix_spawn {path:?}: {}",
            std::io::Error::from_raw_os_error(ret)
        );
        let mut child = Child { pid, reaped: false };
        assert_eq!(child.exit_code(), 0, "the benchmark program failed");
        start.elapsed()
    }

    fn median(mut times: Vec<Duration>) -> Duration {
        times.sort();
        times[times.len() / 2]
    }

    fn micros(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }

    /// Measures the cost of the trampoline: `cargo test -p berth-oci --release exe_guard::tests::measure --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark; run explicitly"]
    fn measure_exec_overhead() {
        const RUNS: usize = 1000;
        let path = cstr("/bin/busybox");
        let argv = cstrs(&["true"]);
        let direct_argv = [argv[0].as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];

        let start = Instant::now();
        for _ in 0..RUNS {
            drop(Trampoline::prepare().expect("prepare the trampoline"));
        }
        let prepare = start.elapsed() / RUNS as u32;

        let trampoline = Trampoline::prepare().expect("prepare the trampoline");
        let prepared = trampoline
            .prepare_exec(&path, &argv, &[])
            .expect("prepare the exec");
        let direct_exec = || {
            // SAFETY: NUL-terminated path, NULL-terminated argv and envp arrays, alive in the child.
            unsafe { libc::execve(path.as_ptr(), direct_argv.as_ptr(), envp.as_ptr()) };
            CHILD_SETUP_FAILED
        };
        let guarded_exec = || prepared.exec().raw_os_error();
        let memfd_path = trampoline.proc_path.clone();
        let guarded_argv = [path.as_ptr(), argv[0].as_ptr(), std::ptr::null()];

        // Warm-up, then interleaved runs, so that drift in the machine's speed hits both sides alike.
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for round in 0..RUNS + 20 {
            let times = [
                time_fork_exec(&direct_exec),
                time_fork_exec(&guarded_exec),
                time_spawn(&path, &direct_argv),
                time_spawn(&memfd_path, &guarded_argv),
            ];
            if round >= 20 {
                for (sample, time) in samples.iter_mut().zip(times) {
                    sample.push(time);
                }
            }
        }
        let [fork_direct, fork_guarded, spawn_direct, spawn_guarded] = samples.map(median);
        println!(
            "trampoline: {} bytes; prepare(): {:.1} us\n\
             fork + exec + wait of busybox true (median of {RUNS}): direct {:.1} us, through the trampoline \
             {:.1} us, overhead {:.1} us\n\
             posix_spawn + wait of busybox true: direct {:.1} us, through the trampoline {:.1} us, \
             overhead {:.1} us",
            TRAMPOLINE.len(),
            micros(prepare),
            micros(fork_direct),
            micros(fork_guarded),
            micros(fork_guarded) - micros(fork_direct),
            micros(spawn_direct),
            micros(spawn_guarded),
            micros(spawn_guarded) - micros(spawn_direct),
        );
    }
}
