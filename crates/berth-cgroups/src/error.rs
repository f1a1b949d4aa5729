//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while managing a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroups path leaves the hierarchy once normalised.
    #[error("cgroups path {path:?} escapes the cgroup hierarchy")]
    PathEscapes { path: String },

    /// The cgroups path names the root of the hierarchy.
    #[error("cgroups path {path:?} resolves to the root cgroup, but a container needs a cgroup of its own")]
    RootPath { path: String },

    /// A systemd-style `slice:prefix:name` path could not be mapped.
    #[error("systemd-style cgroups path {path:?} is malformed: {reason}")]
    BadSystemdPath { path: String, reason: &'static str },

    /// The container id cannot be used as a directory name.
    #[error("container id {id:?} cannot name a cgroup directory")]
    BadContainerId { id: String },

    /// No cgroup hierarchy could be found.
    #[error("no cgroup hierarchy is mounted under {path}")]
    NotMounted { path: PathBuf },

    /// The process's own cgroup could not be found for a hierarchy (relative cgroups paths).
    #[error("the runtime's own cgroup for hierarchy {hierarchy:?} is not listed in /proc/self/cgroup")]
    OwnCgroupUnknown { hierarchy: String },

    /// Reading a cgroup file or directory failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The kernel refused a value written to a cgroup file.
    #[error("writing {value:?} to {path} failed")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    /// A file of a controller is missing: the controller is not mounted, not enabled, or the kernel
    /// lacks the feature.
    #[error(
        "cannot set {value:?} in {path}: the file does not exist, so the {controller} controller or this feature is not available"
    )]
    ControllerMissing {
        controller: String,
        path: PathBuf,
        value: String,
    },

    /// A v1 hierarchy needed for a resource is not mounted.
    #[error("{what} needs the cgroup v1 {controller} hierarchy, which is not mounted")]
    HierarchyMissing {
        what: &'static str,
        controller: &'static str,
    },

    /// The resource has no equivalent in this cgroup version.
    #[error("{what} is not supported by cgroup {mode}")]
    Unsupported { what: String, mode: &'static str },

    /// A value of the runtime spec is out of range.
    #[error("{what} {value} is invalid: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A cgroup file held something this crate does not understand.
    #[error("{path} holds {content:?}, which cannot be parsed")]
    Parse { path: PathBuf, content: String },

    /// Creating a cgroup directory failed.
    #[error("cannot create cgroup directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Removing a cgroup directory failed.
    #[error("cannot remove cgroup directory {path}")]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Freezing or thawing did not complete.
    #[error("{path} did not reach the {state} state within {millis} ms")]
    FreezeTimeout {
        path: PathBuf,
        state: &'static str,
        millis: u128,
    },

    /// The kernel refused the device-filter eBPF program.
    #[error("the kernel refused the device filter eBPF program ({insns} instructions); verifier log: {log}")]
    BpfLoad {
        insns: usize,
        log: String,
        #[source]
        source: io::Error,
    },

    /// A bpf(2) operation on a cgroup failed.
    #[error("bpf {op} on cgroup {path} failed")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Signalling a process of the cgroup failed.
    #[error("cannot send signal {signal} to process {pid}")]
    Signal {
        pid: i32,
        signal: i32,
        #[source]
        source: io::Error,
    },

    /// A system call needed for OOM notification failed.
    #[error("{op} for {path} failed")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
