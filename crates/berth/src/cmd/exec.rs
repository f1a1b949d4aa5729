//! `exec`: `POST /containers/{id}/exec`, then `POST /exec/{id}/start` (detached, or hijacked with our terminal
//! raw and resized through `POST /exec/{id}/resize`), and the exec's exit code from `GET /exec/{id}/json` as ours.

use std::io::IsTerminal as _;

use clap::Args;
use hyper::Method;
use serde_json::json;

use super::attach::{self, Ended, StreamOpts};
use super::run::{env_value, io_reason, parse_env_file};
use crate::client;
use crate::{CmdResult, Ctx, Failure};

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Give extended privileges to the command.
    #[arg(long = "privileged")]
    pub privileged: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Container.
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The `ExecConfig` body for `a`.
pub fn exec_config(
    a: &ExecArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<serde_json::Value, String> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let content = std::fs::read_to_string(f).map_err(|e| format!("open {f}: {}", io_reason(&e)))?;
        env.extend(parse_env_file(&content, lookup)?);
    }
    for e in &a.env {
        env.push(env_value(e, lookup)?);
    }
    let mut v = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.command,
    });
    if a.tty
        && !a.detach
        && let Some((h, w)) = attach::terminal_size()
    {
        v["ConsoleSize"] = json!([h, w]);
    }
    Ok(v)
}

/// `exec`.
pub async fn exec(ctx: &Ctx, a: ExecArgs) -> CmdResult {
    let config = exec_config(&a, &|k| std::env::var(k).ok()).map_err(|e| Failure {
        message: e,
        code: 125,
    })?;
    let stdin = a.interactive && !a.detach;
    if stdin && a.tty && !std::io::stdin().is_terminal() {
        return Err(Failure::from("the input device is not a TTY"));
    }
    let c = ctx.client().await?;
    let info = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let cid = info
        .get("Id")
        .and_then(|x| x.as_str())
        .unwrap_or(&a.container)
        .to_string();
    let resp = c
        .call(
            Method::POST,
            &format!("/containers/{cid}/exec"),
            &[("content-type", "application/json".to_string())],
            client::full(config.to_string()),
        )
        .await?;
    let created = client::body_json(resp).await?;
    let id = created
        .get("Id")
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Failure::from("exec ID empty"))?
        .to_string();
    let mut start = json!({"Detach": a.detach, "Tty": a.tty});
    if let Some(cs) = config.get("ConsoleSize") {
        start["ConsoleSize"] = cs.clone();
    }
    if a.detach {
        c.call(
            Method::POST,
            &format!("/exec/{id}/start"),
            &[("content-type", "application/json".to_string())],
            client::full(start.to_string()),
        )
        .await?;
        return Ok(());
    }
    let h = attach::hijack(
        &c,
        &format!("/exec/{id}/start"),
        client::full(start.to_string()),
        a.tty,
    )
    .await?;
    let resizer = if a.tty {
        attach::spawn_resizer(c.clone(), format!("/exec/{id}"))
    } else {
        None
    };
    let ended = attach::stream(
        h,
        StreamOpts {
            stdin,
            tty: a.tty,
            detach_keys: attach::detach_keys(a.detach_keys.as_deref()),
            output: true,
        },
    )
    .await;
    if let Some(r) = resizer {
        r.abort();
    }
    if ended? == Ended::Detached {
        return Ok(());
    }
    let inspect = c.get_json(&format!("/exec/{id}/json")).await?;
    let code = inspect
        .get("ExitCode")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    attach::status_failure(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_body() {
        let a = ExecArgs {
            detach: false,
            detach_keys: None,
            env: vec!["A=1".into(), "HOME".into()],
            env_file: vec![],
            interactive: true,
            privileged: false,
            tty: false,
            user: Some("1000:1000".into()),
            workdir: Some("/tmp".into()),
            container: "c".into(),
            command: vec!["sh".into(), "-c".into(), "id".into()],
        };
        let v = exec_config(&a, &|k| (k == "HOME").then(|| "/root".to_string())).unwrap();
        assert_eq!(v["Env"], json!(["A=1", "HOME=/root"]));
        assert_eq!(v["AttachStdin"], true);
        assert_eq!(v["AttachStdout"], true);
        assert_eq!(v["User"], "1000:1000");
        assert_eq!(v["WorkingDir"], "/tmp");
        assert_eq!(v["Cmd"], json!(["sh", "-c", "id"]));
        let d = ExecArgs { detach: true, ..a };
        let v = exec_config(&d, &|_| None).unwrap();
        assert_eq!(
            (v["AttachStdin"].clone(), v["AttachStdout"].clone()),
            (json!(false), json!(false))
        );
    }
}
