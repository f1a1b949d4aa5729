//! state (in progress).
