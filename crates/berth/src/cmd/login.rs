//! `login` and `logout`: credentials are checked by the daemon (`POST /auth`) and stored in `config.json` of the
//! config directory in docker's `auths` format.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use hyper::Method;

use crate::client;
use crate::{CmdResult, Ctx, Failure};

/// The registry docker means when none is given.
const DEFAULT_REGISTRY: &str = "docker.io";

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (default Docker Hub).
    pub server: Option<String>,
    /// Username.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (insecure on the command line; prefer --password-stdin).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
}

/// `logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default Docker Hub).
    pub server: Option<String>,
}

fn registry_of(server: Option<&str>) -> String {
    let s = server.unwrap_or(DEFAULT_REGISTRY);
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" | "" => DEFAULT_REGISTRY.to_string(),
        other => other.to_string(),
    }
}

fn prompt(label: &str) -> Result<String, Failure> {
    print!("{label}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `login`.
pub async fn login(ctx: &Ctx, a: LoginArgs) -> CmdResult {
    let registry = registry_of(a.server.as_deref());
    if a.password.is_some() && a.password_stdin {
        return Err(Failure {
            message: "--password and --password-stdin are mutually exclusive".into(),
            code: 125,
        });
    }
    let username = match &a.username {
        Some(u) => u.clone(),
        None if a.password_stdin => {
            return Err(Failure {
                message: "Must provide --username with --password-stdin".into(),
                code: 125,
            });
        }
        None => prompt("Username: ")?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::from(
                "cannot prompt for a password: stdin is not a terminal; use --password-stdin",
            ));
        }
        prompt("Password: ")?
    };
    if username.is_empty() {
        return Err(Failure::from("Error: Non-null Username Required"));
    }
    let c = ctx.client().await?;
    let body = serde_json::json!({"username": username, "password": password, "serveraddress": registry});
    c.call(
        Method::POST,
        "/auth",
        &[("content-type", "application/json".to_string())],
        client::full(body.to_string()),
    )
    .await?;
    let path = ctx.store.config_file();
    berth_image::credentials::Credentials::save(&path, &registry, &username, &password)?;
    println!("Login Succeeded");
    Ok(())
}

/// `logout`.
pub fn logout(ctx: &Ctx, a: LogoutArgs) -> CmdResult {
    let registry = registry_of(a.server.as_deref());
    let path = ctx.store.config_file();
    if berth_image::credentials::Credentials::remove(&path, &registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}
