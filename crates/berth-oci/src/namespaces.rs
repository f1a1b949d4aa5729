//! namespaces (in progress).
