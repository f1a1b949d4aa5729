//! The per-container monitor of Berth (`berth-monitor`) and the container init `berth-init`.
//!
//! # berth-monitor
//! `berth-monitor <state-dir>` reads `<state-dir>/monitor.json` ([`config::MonitorConfig`]), forks, and the
//! forked monitor (its own session, a child subreaper, stdio on /dev/null) runs `berth-runtime create` with the
//! container's stdio (pipes, or a pty received through `--console-socket`), reports the outcome to the process
//! that started it (which prints it as one JSON line and exits: [`launch`]), then serves `<state-dir>/m.sock`
//! ([`server`], protocol in [`protocol`]): `start`, `attach` (Docker's multiplexed frames, [`frame`]), `resize`,
//! `wait`, `status`. It writes the container's output to a json-file log ([`log`]), reaps the container's init,
//! records the exit in `<state-dir>/exit.json` ([`exit`]), deletes the container with the runtime
//! ([`runtime`]) and exits. It outlives the daemon that started it.
//!
//! The monitor stays synchronous and small (well under 1 MB RSS while a container runs): one `poll` loop,
//! no threads, no async runtime; buffers are bounded (16 KiB per partial log line, 1 MiB per attach client,
//! 64 KiB of pending container stdin).
//!
//! ## Start timeout
//! A container that is created but not started within 60 s is deleted and the monitor exits (exit.json says
//! why). `monitor.json` may set `"start_timeout_ms"` to another value; tests use it to make the timeout short.
//!
//! # berth-init
//! Docker's `--init` ([`init`]): runs its arguments as a child, forwards signals to it, reaps every zombie and
//! exits with the child's status (128 + signal when it was killed).
//!
//! # Dependencies, and why
//! - `rustix`: typed, checked system calls without a C shim for poll, sockets (SCM_RIGHTS to receive the pty
//!   master), pipes, waitpid, setsid, the child-subreaper prctl and TIOCSWINSZ; already the project's choice.
//! - `libc`: the calls rustix does not wrap: `fork`, `signalfd` and the signal-mask calls, `kill` with a raw
//!   signal number, `setpgid`/`tcsetpgrp` in berth-init's child.
//! - `serde` and `serde_json`: monitor.json, the socket protocol's JSON lines, exit.json and the json-file log
//!   (Docker's format), with the escaping done right.
//! - `thiserror`: one error enum per module whose messages are sentences naming the path or value.
//! - `jiff`: RFC 3339 timestamps with nanoseconds in UTC for the log and the exit record, as the rest of the
//!   workspace formats them (no hand-written calendar code).
//! - `berth-cgroups`: the container cgroup's OOM kill count, read before the runtime deletes the cgroup
//!   (synchronous, so it fits the monitor).

pub mod config;
pub mod exit;
pub mod frame;
pub mod init;
pub mod launch;
pub mod log;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod sys;
pub mod time;
