//! Lifecycle verbs (in progress).
