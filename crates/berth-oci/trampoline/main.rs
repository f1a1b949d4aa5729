//! `berth-exec`: the exec trampoline of Berth's container init (see `src/exe_guard.rs`).
//!
//! The runtime copies this program into a sealed memfd and executes it with `execveat(memfd, "", ...)` as the
//! container init's last step, passing `argv = [path, argv0, argv1, ...]`. The trampoline calls
//! `execve(path, [argv0, argv1, ...], envp)`. While it runs (and for any `#!/proc/self/exe` program started
//! inside the container afterwards), `/proc/self/exe` is the sealed memfd, never the host's `berth-runtime`.
//!
//! It is a freestanding static program: no libc, no start files, raw system calls, a naked `_start`.
//! `build.rs` compiles it with `$RUSTC` and links it with `-nostartfiles -nostdlib -static`, so any call the
//! compiler would route to `memcpy`/`memset`/`memcmp` fails the link instead of slipping in: keep the code free
//! of copies of large aggregates, and of anything that can panic (bounds checks, overflow checks, `core::fmt`).
//!
//! Exit codes, like a shell's: 127 when the program does not exist (or no program was given), 126 when it
//! exists but cannot be executed. A one-line message naming the program and the error goes to stderr.

#![no_std]
#![no_main]
// Keeps LLVM from turning loops into calls to `strlen`/`memset`/... that this freestanding program lacks.
#![no_builtins]

#[cfg(not(target_os = "linux"))]
compile_error!("the berth-exec trampoline (crates/berth-oci/trampoline/main.rs) runs only on Linux");

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "the berth-exec trampoline (crates/berth-oci/trampoline/main.rs) has an entry point and system call \
     numbers only for x86_64 and aarch64; add this architecture's `_start` and `sys` module to build berth-oci"
);

use core::arch::naked_asm;

/// Raw Linux system calls; return values in `-4095..0` are negated errno values.
mod sys {
    use core::arch::asm;

    #[cfg(target_arch = "x86_64")]
    mod nr {
        pub const WRITEV: usize = 20;
        pub const EXECVE: usize = 59;
        pub const EXIT_GROUP: usize = 231;
    }

    #[cfg(target_arch = "aarch64")]
    mod nr {
        pub const WRITEV: usize = 66;
        pub const EXECVE: usize = 221;
        pub const EXIT_GROUP: usize = 94;
    }

    /// One buffer of a `writev` call (`struct iovec`).
    #[repr(C)]
    pub struct IoVec {
        pub base: *const u8,
        pub len: usize,
    }

    /// A three-argument system call.
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes arguments valid for `nr`; the kernel clobbers only rax, rcx and r11.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A three-argument system call.
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`.
    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes arguments valid for `nr`; the kernel returns in x0 and clobbers nothing else.
        unsafe {
            asm!(
                "svc 0",
                in("x8") nr,
                inlateout("x0") a as isize => ret,
                in("x1") b,
                in("x2") c,
                options(nostack),
            );
        }
        ret
    }

    /// `execve(path, argv, envp)`; returns only on failure, with the negated errno.
    ///
    /// # Safety
    /// `path` is a NUL-terminated string; `argv` and `envp` are NULL-terminated arrays of such strings.
    pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> isize {
        // SAFETY: forwarded from the caller's contract.
        unsafe { syscall3(nr::EXECVE, path as usize, argv as usize, envp as usize) }
    }

    /// Writes the buffers to stderr; errors are ignored (there is nowhere else to report them).
    pub fn write_stderr(iov: &[IoVec]) {
        // SAFETY: `iov` is a live slice of iovecs whose buffers the caller keeps alive for the call.
        unsafe {
            syscall3(nr::WRITEV, 2, iov.as_ptr() as usize, iov.len());
        }
    }

    /// Ends the process with `code`.
    pub fn exit(code: usize) -> ! {
        loop {
            // SAFETY: exit_group takes a plain integer and does not return.
            unsafe {
                syscall3(nr::EXIT_GROUP, code, 0, 0);
            }
        }
    }
}

const ENOENT: isize = 2;

/// Exit code when the program does not exist or none was given (as a shell's "command not found").
const EXIT_NOT_FOUND: usize = 127;
/// Exit code when the program exists but cannot be executed.
const EXIT_CANNOT_EXECUTE: usize = 126;

/// The process entry point: the stack holds `argc`, `argv[0..argc]`, NULL, `envp...`, NULL, auxv.
///
/// # Safety
/// Only the kernel calls this, once, on a fresh process stack.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym trampoline_main,
    )
}

/// The process entry point: the stack holds `argc`, `argv[0..argc]`, NULL, `envp...`, NULL, auxv.
///
/// # Safety
/// Only the kernel calls this, once, on a fresh process stack.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    naked_asm!(
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "bl {main}",
        "brk #0",
        main = sym trampoline_main,
    )
}

/// Executes `argv[0]` with `argv[1..]` and the inherited environment.
///
/// # Safety
/// `sp` is the initial stack pointer the kernel set up for the process.
unsafe extern "C" fn trampoline_main(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack starts with argc, followed by argc argv pointers, NULL, the envp
    // pointers and NULL; all of it stays valid for the life of the process.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const u8>();
        (argc, argv, argv.add(argc + 1))
    };
    if argc < 2 {
        // Not started by the runtime: most likely a `#!/proc/self/exe` program whose interpreter chain ran out
        // of arguments. Refuse instead of executing an empty argument list.
        let msg: &[u8] = b"berth-exec: no program to execute (this is the container runtime's exec \
            trampoline; /proc/self/exe cannot serve as an interpreter)\n";
        sys::write_stderr(&[sys::IoVec {
            base: msg.as_ptr(),
            len: msg.len(),
        }]);
        sys::exit(EXIT_NOT_FOUND);
    }
    // SAFETY: argc >= 2, so argv[0] is a NUL-terminated string and argv + 1 is a NULL-terminated array.
    let (path, err) = unsafe {
        let path = *argv;
        (path, -sys::execve(path, argv.add(1), envp))
    };
    report_failure(path, err);
    sys::exit(if err == ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    })
}

/// Writes `berth-exec: cannot execute PATH: REASON` to stderr.
fn report_failure(path: *const u8, errno: isize) {
    let mut digits = [0u8; 26];
    let reason = match errno_text(errno) {
        Some(text) => text,
        None => decimal(errno.unsigned_abs(), &mut digits),
    };
    let prefix: &[u8] = b"berth-exec: cannot execute ";
    let sep: &[u8] = b": ";
    let nl: &[u8] = b"\n";
    // SAFETY: `path` came from the kernel-built argv and is NUL-terminated.
    let path_len = unsafe { strlen(path) };
    sys::write_stderr(&[
        sys::IoVec {
            base: prefix.as_ptr(),
            len: prefix.len(),
        },
        sys::IoVec {
            base: path,
            len: path_len,
        },
        sys::IoVec {
            base: sep.as_ptr(),
            len: sep.len(),
        },
        sys::IoVec {
            base: reason.as_ptr(),
            len: reason.len(),
        },
        sys::IoVec {
            base: nl.as_ptr(),
            len: nl.len(),
        },
    ]);
}

/// The text of the errno values `execve` commonly fails with.
fn errno_text(errno: isize) -> Option<&'static [u8]> {
    Some(match errno {
        1 => b"Operation not permitted",
        2 => b"No such file or directory",
        7 => b"Argument list too long",
        8 => b"Exec format error",
        12 => b"Cannot allocate memory",
        13 => b"Permission denied",
        20 => b"Not a directory",
        21 => b"Is a directory",
        26 => b"Text file busy",
        36 => b"File name too long",
        40 => b"Too many levels of symbolic links",
        _ => return None,
    })
}

/// Formats `errno N` into `buf` and returns the used tail.
fn decimal(mut n: usize, buf: &mut [u8; 26]) -> &[u8] {
    // 20 digits hold any usize; `errno ` takes 6 more bytes.
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(slot) = buf.get_mut(start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in b"errno ".iter().rev() {
        start -= 1;
        if let Some(slot) = buf.get_mut(start) {
            *slot = b;
        }
    }
    buf.get(start..).unwrap_or(&[])
}

/// The length of a NUL-terminated string.
///
/// # Safety
/// `s` points to a NUL-terminated string.
unsafe fn strlen(s: *const u8) -> usize {
    let mut len = 0;
    // SAFETY: the caller guarantees a terminating NUL, so every byte up to it is readable.
    while unsafe { *s.add(len) } != 0 {
        len += 1;
    }
    len
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(EXIT_CANNOT_EXECUTE)
}
