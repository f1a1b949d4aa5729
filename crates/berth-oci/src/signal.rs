//! signal (in progress).
