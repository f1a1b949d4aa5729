use thiserror::Error;

/// Errors of the rootfs setup. Each message reads as a sentence and names the path involved.
#[derive(Debug, Error)]
pub enum RootfsError {
    /// Placeholder until the rootfs module lands.
    #[error("the rootfs setup is not implemented yet")]
    NotImplemented,
}
