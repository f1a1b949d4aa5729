//! sync (in progress).
