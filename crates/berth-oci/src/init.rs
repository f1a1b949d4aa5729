//! init (in progress).
