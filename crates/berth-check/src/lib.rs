//! `berth-check`: a static binary that runs inside a container and prints what it sees as JSON.
//!
//! The library half holds the report types ([`report`]) so that tests can deserialize what the binary prints,
//! and the probes ([`probe`]) that fill them. It depends only on `serde`, `serde_json` and `libc`, so the binary
//! stays small and runs in a bare busybox rootfs (no `/etc`, no dynamic loader).
//!
//! Subcommands (the first argument; `report` when there is none):
//! - `report`: print a [`CheckReport`].
//! - `write <path>`: create or truncate `<path>` and write a line; print a [`WriteOutcome`].
//! - `sleep <seconds> [tag...]`: sleep (fractions allowed); the tags are ignored and let a test find the process
//!   by its command line.
//! - `exit <code>`: exit with `<code>`.
//! - `fds`: print an [`FdsReport`].

pub mod names;
pub mod probe;
pub mod report;

pub use report::{
    CapSet, Capabilities, CheckReport, FdsReport, MountEntry, OpenFd, Probe, Rlimit, StdioTty, WriteOutcome,
};
