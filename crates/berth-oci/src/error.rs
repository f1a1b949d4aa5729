//! The crate's error type.
use thiserror::Error;

/// Errors of `berth-oci`.
#[derive(Debug, Error)]
pub enum Error {
    /// The rootfs could not be set up.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
