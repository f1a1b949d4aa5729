//! Error categories, as docker's `errdefs`: the API layer maps each to an HTTP status.

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404.
    NotFound,
    /// 400.
    InvalidParameter,
    /// 409.
    Conflict,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 502/500: something the daemon depends on failed (a registry).
    Unavailable,
    /// 500.
    System,
}

impl ErrorKind {
    /// The HTTP status code dockerd uses for this kind.
    pub fn status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::InvalidParameter => 400,
            Self::Conflict => 409,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::Unavailable | Self::System => 500,
        }
    }
}

/// Errors that know their category.
pub trait HasKind {
    /// The category.
    fn kind(&self) -> ErrorKind;
}
