//! OCI hooks: each runs with the container's state JSON on stdin, its own args and env, and an optional
//! timeout, at the moment and in the namespace the runtime spec gives it:
//!
//! | hook | who runs it, when | namespace |
//! |---|---|---|
//! | `prestart` (deprecated), `createRuntime` | the runtime, during `create`, after the mounts, before pivot_root | runtime |
//! | `createContainer` | the init, right after, before pivot_root | container |
//! | `startContainer` | the init, after `start`, before the user program | container |
//! | `poststart` | the runtime, once the user program was started | runtime |
//! | `poststop` | the runtime, in `delete`, after the container is gone | runtime |
//!
//! A failing create or start hook fails the operation (and `create` cleans up); a failing `poststart` or
//! `poststop` hook is reported as a warning, as the spec says.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::{Hook, Hooks};
use thiserror::Error;

use crate::state::OciState;

/// Which hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `prestart` (deprecated).
    Prestart,
    /// `createRuntime`.
    CreateRuntime,
    /// `createContainer`.
    CreateContainer,
    /// `startContainer`.
    StartContainer,
    /// `poststart`.
    Poststart,
    /// `poststop`.
    Poststop,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        })
    }
}

/// Errors of a hook.
#[derive(Debug, Error)]
pub enum HookError {
    /// The hook could not be started.
    #[error("the {kind} hook {path} could not be started: {source}")]
    Spawn {
        /// Which hook.
        kind: Kind,
        /// Its path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The hook failed.
    #[error("the {kind} hook {path} failed ({status}){output}")]
    Failed {
        /// Which hook.
        kind: Kind,
        /// Its path.
        path: String,
        /// How it ended.
        status: String,
        /// What it printed, prefixed with ": " when anything.
        output: String,
    },
    /// The hook ran out of time and was killed.
    #[error("the {kind} hook {path} did not finish within {timeout} s and was killed")]
    Timeout {
        /// Which hook.
        kind: Kind,
        /// Its path.
        path: String,
        /// The limit in seconds.
        timeout: i64,
    },
    /// A timeout that is not positive.
    #[error("the {kind} hook {path} has timeout {timeout}: it must be positive")]
    BadTimeout {
        /// Which hook.
        kind: Kind,
        /// Its path.
        path: String,
        /// The value given.
        timeout: i64,
    },
}

/// The hooks of `kind` in `hooks`.
pub fn of(hooks: Option<&Hooks>, kind: Kind) -> &[Hook] {
    let Some(h) = hooks else { return &[] };
    #[allow(deprecated)]
    let list = match kind {
        Kind::Prestart => h.prestart(),
        Kind::CreateRuntime => h.create_runtime(),
        Kind::CreateContainer => h.create_container(),
        Kind::StartContainer => h.start_container(),
        Kind::Poststart => h.poststart(),
        Kind::Poststop => h.poststop(),
    };
    list.as_deref().unwrap_or_default()
}

/// Whether any hook of `kinds` is configured.
pub fn any(hooks: Option<&Hooks>, kinds: &[Kind]) -> bool {
    kinds.iter().any(|k| !of(hooks, *k).is_empty())
}

/// Checks the hooks before anything runs (a bad timeout fails `create` before it changes anything).
pub fn validate(hooks: Option<&Hooks>) -> Result<(), HookError> {
    for kind in [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ] {
        for hook in of(hooks, kind) {
            if let Some(t) = hook.timeout()
                && t <= 0
            {
                return Err(HookError::BadTimeout {
                    kind,
                    path: hook.path().display().to_string(),
                    timeout: t,
                });
            }
        }
    }
    Ok(())
}

/// Runs every hook of `kind` in order; the first failure stops the rest.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &OciState) -> Result<(), HookError> {
    let list = of(hooks, kind);
    if list.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).unwrap_or_default();
    for hook in list {
        run_one(hook, kind, &json)?;
    }
    Ok(())
}

fn memfd() -> std::io::Result<OwnedFd> {
    rustix::fs::memfd_create("berth-hook-output", rustix::fs::MemfdFlags::CLOEXEC).map_err(Into::into)
}

fn run_one(hook: &Hook, kind: Kind, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(argv0) = args.first() {
            cmd.arg0(argv0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = entry.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to a memory file, so a chatty hook can never block on a full pipe.
    let out = memfd().map_err(spawn_err)?;
    let out_copy = out.try_clone().map_err(spawn_err)?;
    let err_copy = out.try_clone().map_err(spawn_err)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_copy))
        .stderr(Stdio::from(err_copy));
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    let timeout = hook.timeout().map(|t| Duration::from_secs(t as u64));
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    let pidfd = pid.and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    if let (Some(limit), Some(fd)) = (timeout, pidfd.as_ref())
        && !crate::container::wait_exit(fd, limit)
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::Timeout {
            kind,
            path,
            timeout: hook.timeout().unwrap_or_default(),
        });
    }
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    let mut file = std::fs::File::from(out);
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(4096).read_to_string(&mut text);
    let text = text.trim().replace('\n', " ");
    Err(HookError::Failed {
        kind,
        path,
        status: status.to_string(),
        output: if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        serde_json::from_str(json).expect("hooks json")
    }

    fn state() -> OciState {
        OciState {
            oci_version: "1.2.1".into(),
            id: "hook-test".into(),
            status: crate::state::Status::Creating,
            pid: 42,
            bundle: "/tmp/b".into(),
            rootfs: "/tmp/b/rootfs".into(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn state_on_stdin_args_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let h = hooks(&format!(
            r#"{{"createRuntime":[{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo \" $0 $1 $HOOKVAR\" >> {0}","argzero","one"],"env":["HOOKVAR=v"]}}]}}"#,
            out.display()
        ));
        run(Some(&h), Kind::CreateRuntime, &state()).expect("hook runs");
        let text = std::fs::read_to_string(&out).expect("output");
        assert!(
            text.starts_with(
                "{\"ociVersion\":\"1.2.1\",\"id\":\"hook-test\",\"status\":\"creating\",\"pid\":42"
            ),
            "{text}"
        );
        assert!(text.ends_with(" argzero one v\n"), "{text}");
        assert!(
            run(Some(&h), Kind::Poststop, &state()).is_ok(),
            "no poststop hooks: nothing runs"
        );
    }

    #[test]
    fn failure_timeout_and_bad_timeout() {
        let h = hooks(r#"{"poststart":[{"path":"/bin/sh","args":["sh","-c","echo broken >&2; exit 3"]}]}"#);
        let err = run(Some(&h), Kind::Poststart, &state()).expect_err("fails");
        let msg = err.to_string();
        assert!(
            msg.contains("poststart hook /bin/sh failed") && msg.contains("3") && msg.ends_with(": broken"),
            "{msg}"
        );

        let h = hooks(r#"{"prestart":[{"path":"/bin/sh","args":["sh","-c","sleep 30"],"timeout":1}]}"#);
        let start = std::time::Instant::now();
        let err = run(Some(&h), Kind::Prestart, &state()).expect_err("times out");
        assert!(matches!(err, HookError::Timeout { timeout: 1, .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));

        let h = hooks(r#"{"poststop":[{"path":"/bin/true","timeout":0}]}"#);
        assert!(matches!(validate(Some(&h)), Err(HookError::BadTimeout { .. })));
        let h = hooks(r#"{"poststop":[{"path":"/nonexistent/hook"}]}"#);
        assert!(matches!(
            run(Some(&h), Kind::Poststop, &state()),
            Err(HookError::Spawn { .. })
        ));
    }
}
