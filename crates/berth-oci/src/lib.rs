//! `berth-oci` turns an OCI bundle into a running container.
//!
//! It is the library behind `berth-runtime`: the binary parses runc's command line and calls into
//! [`container`], which holds one module per lifecycle verb (`create`, `start`, `kill`, `delete`, ...).
//! The container's init process is forked from the runtime without a re-exec (the start path is measured
//! against crun), sets itself up in [`init`], waits on the exec fifo for `start`, and finally executes the user
//! process through a sealed in-memory trampoline ([`exe_guard`]) so that the host binary is never reachable
//! from inside the container.
//!
//! # Dependencies, and why
//! - `oci-spec`: the runtime spec's types, kept current with the spec by the youki project; we validate on top.
//! - `rustix`: direct, typed system calls (mount API, `openat2`, `pivot_root`, namespaces, ptys) without a C
//!   shim; each call returns a checked `Result`.
//! - `libc`: the few calls rustix does not wrap (`fork`, `execve`, `setgroups`, rlimits by number).
//! - `caps`: capability sets by name, including the ambient set.
//! - `serde_json`: the state file and config.json.

pub mod cgroups;
pub mod console;
pub mod container;
pub mod error;
pub mod exe_guard;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod state;
pub mod sync;

pub use error::{Error, Result};
pub use oci_spec::runtime::Spec;
