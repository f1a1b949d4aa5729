//! Test fixtures (in progress).
