//! The crate's error type: one variant per module's error, plus the lifecycle's own.
use thiserror::Error;

use crate::state::Status;

/// Errors of `berth-oci`.
#[derive(Debug, Error)]
pub enum Error {
    /// config.json is unusable.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A namespace could not be joined or made.
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    /// The rootfs could not be set up.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// The process could not be set up.
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    /// The terminal could not be set up.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// The runtime and the init lost each other.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// The guarded exec failed.
    #[error(transparent)]
    ExeGuard(#[from] crate::exe_guard::ExeGuardError),
    /// The container's cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    /// The seccomp profile is unusable or could not be applied.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// A signal name is unknown.
    #[error(transparent)]
    Signal(#[from] crate::signal::SignalError),
    /// The init failed; the text comes from the init.
    #[error("{0}")]
    Init(String),
    /// The operation needs another status.
    #[error("container {id:?} is {status}: cannot {op} it")]
    WrongStatus {
        /// The container.
        id: String,
        /// Its status.
        status: Status,
        /// The refused operation.
        op: &'static str,
    },
    /// The command line asks for something inconsistent.
    #[error("{0}")]
    Usage(String),
    /// A system call of the lifecycle failed.
    #[error("cannot {what}: {source}")]
    Sys {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// A failed system call, described by what was being done.
    pub fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
