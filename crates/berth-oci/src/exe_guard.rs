//! Executes the user process without exposing the host's `berth-runtime` binary (CVE-2019-5736 class).
//!
//! The init is forked from `berth-runtime`, so until its final `execve` its `/proc/self/exe` is the host binary.
//! The final exec goes through a tiny static trampoline held in a sealed memfd, so that a `#!/proc/self/exe`
//! program inside the container reaches only the sealed trampoline, never the host binary.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use thiserror::Error;

/// Errors of the guarded exec.
#[derive(Debug, Error)]
pub enum ExeGuardError {
    /// Placeholder until the module lands.
    #[error("the guarded exec is not implemented yet")]
    NotImplemented,
}

/// The sealed trampoline, prepared before the container waits for `start` so that `start` stays fast.
#[derive(Debug)]
pub struct Trampoline {
    fd: OwnedFd,
}

impl Trampoline {
    /// Creates the sealed memfd holding the trampoline.
    pub fn prepare() -> Result<Self, ExeGuardError> {
        Err(ExeGuardError::NotImplemented)
    }

    /// Executes `path` with `argv` and `envp` through the trampoline. Returns only on failure.
    pub fn exec(&self, path: &CString, argv: &[CString], envp: &[CString]) -> ExeGuardError {
        let _ = (&self.fd, path, argv, envp);
        ExeGuardError::NotImplemented
    }
}
