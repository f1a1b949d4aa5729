//! `context create|use|ls|rm|inspect|show`.

use std::collections::HashMap;

use clap::{Args, Subcommand};

use crate::config::{ContextMeta, DockerEndpoint};
use crate::format::Format;
use crate::{CmdResult, Ctx, DEFAULT_HOST, Failure};

/// `context create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The context name.
    pub name: String,
    /// Description of the context.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The endpoint: host=unix:///path|tcp://host:port[,ca=FILE,cert=FILE,key=FILE,skip-tls-verify=false].
    #[arg(long = "docker", value_name = "ENDPOINT")]
    pub docker: Option<String>,
    /// Create the context from an existing one.
    #[arg(long = "from", value_name = "CONTEXT")]
    pub from: Option<String>,
}

/// `context ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
    /// Only show context names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `context rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Contexts.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Force the removal of a context in use.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `context inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Contexts (default: the current one).
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
}

/// `context ...`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Create a context.
    Create(CreateArgs),
    /// Set the current context.
    Use {
        /// The context.
        name: String,
    },
    /// List contexts.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove one or more contexts.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more contexts.
    Inspect(InspectArgs),
    /// Print the name of the current context.
    Show,
}

/// Runs a `context` subcommand.
pub async fn run(ctx: &Ctx, c: ContextCommand) -> CmdResult {
    match c {
        ContextCommand::Create(a) => create(ctx, a),
        ContextCommand::Use { name } => use_context(ctx, &name),
        ContextCommand::Ls(a) => ls(ctx, a),
        ContextCommand::Rm(a) => rm(ctx, a),
        ContextCommand::Inspect(a) => inspect(ctx, a),
        ContextCommand::Show => {
            println!("{}", current(ctx)?);
            Ok(())
        }
    }
}

fn current(ctx: &Ctx) -> Result<String, Failure> {
    if let Some(c) = &ctx.global.context {
        return Ok(c.clone());
    }
    if let Some(c) = std::env::var("BERTH_CONTEXT")
        .ok()
        .or_else(|| std::env::var("DOCKER_CONTEXT").ok())
        .filter(|v| !v.is_empty())
    {
        return Ok(c);
    }
    Ok(ctx.store.current_context()?)
}

fn default_meta() -> ContextMeta {
    let mut m = ContextMeta {
        name: "default".into(),
        ..Default::default()
    };
    m.metadata.insert(
        "Description".into(),
        serde_json::Value::String("Current BERTH_HOST based configuration".into()),
    );
    let host = std::env::var("BERTH_HOST")
        .ok()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    m.endpoints.insert(
        "docker".into(),
        DockerEndpoint {
            host,
            skip_tls_verify: false,
        },
    );
    m
}

fn load(ctx: &Ctx, name: &str) -> Result<ContextMeta, Failure> {
    if name == "default" {
        Ok(default_meta())
    } else {
        Ok(ctx.store.context(name)?)
    }
}

fn create(ctx: &Ctx, a: CreateArgs) -> CmdResult {
    let mut meta = ContextMeta {
        name: a.name.clone(),
        ..Default::default()
    };
    if !a.description.is_empty() {
        meta.metadata.insert(
            "Description".into(),
            serde_json::Value::String(a.description.clone()),
        );
    }
    let mut tls_files: Vec<(&str, std::path::PathBuf)> = Vec::new();
    match (&a.docker, &a.from) {
        (Some(spec), _) => {
            let mut ep = DockerEndpoint::default();
            for part in spec.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').ok_or_else(|| Failure {
                    message: format!("invalid --docker field {part:?}: expected key=value"),
                    code: 125,
                })?;
                match k {
                    "host" => {
                        crate::client::Endpoint::parse(v).map_err(|m| Failure {
                            message: m,
                            code: 125,
                        })?;
                        ep.host = v.to_string();
                    }
                    "ca" | "cert" | "key" => tls_files.push((k, std::path::PathBuf::from(v))),
                    "skip-tls-verify" => ep.skip_tls_verify = v == "true",
                    _ => {
                        return Err(Failure {
                            message: format!("unknown --docker field {k:?}"),
                            code: 125,
                        });
                    }
                }
            }
            if ep.host.is_empty() {
                ep.host = DEFAULT_HOST.to_string();
            }
            meta.endpoints.insert("docker".into(), ep);
        }
        (None, Some(from)) => {
            let src = load(ctx, from)?;
            meta.endpoints = src.endpoints;
        }
        (None, None) => {
            // Like docker: the new context points where the current one does.
            let src = load(ctx, &current(ctx)?)?;
            meta.endpoints = src.endpoints;
        }
    }
    ctx.store.create(&meta)?;
    if !tls_files.is_empty() {
        let dir = ctx.store.tls_dir(&a.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (k, src) in tls_files {
            let dst = dir.join(format!("{k}.pem"));
            if let Err(e) = std::fs::copy(&src, &dst) {
                let _ = ctx.store.remove(&a.name);
                return Err(Failure::from(format!("cannot copy {}: {e}", src.display())));
            }
        }
    }
    println!("{}", a.name);
    eprintln!("Successfully created context \"{}\"", a.name);
    Ok(())
}

fn use_context(ctx: &Ctx, name: &str) -> CmdResult {
    if name != "default" {
        ctx.store.context(name)?;
    }
    ctx.store.set_current_context(name)?;
    println!("{name}");
    if std::env::var("BERTH_HOST").is_ok_and(|v| !v.is_empty())
        || std::env::var("DOCKER_HOST").is_ok_and(|v| !v.is_empty())
    {
        eprintln!("Warning: BERTH_HOST or DOCKER_HOST is set and overrides the active context");
    }
    eprintln!("Current context is now \"{name}\"");
    Ok(())
}

fn ls(ctx: &Ctx, a: LsArgs) -> CmdResult {
    let cur = current(ctx)?;
    let mut all = vec![default_meta()];
    all.extend(ctx.store.contexts()?);
    if a.quiet {
        for m in &all {
            println!("{}", m.name);
        }
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|m| {
            let is_cur = m.name == cur;
            serde_json::json!({
                "Name": if is_cur && a.format.is_empty() { format!("{} *", m.name) } else { m.name.clone() },
                "Current": is_cur,
                "Description": m.description(),
                "DockerEndpoint": m.host().unwrap_or(""),
                "Error": "",
            })
        })
        .collect();
    let f = Format::parse(
        &a.format,
        "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}",
    )?;
    let h: HashMap<&str, &str> = [
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("DockerEndpoint", "DOCKER ENDPOINT"),
        ("Error", "ERROR"),
        ("Current", "CURRENT"),
    ]
    .into_iter()
    .collect();
    print!("{}", f.render_rows(&rows, &h)?);
    Ok(())
}

fn rm(ctx: &Ctx, a: RmArgs) -> CmdResult {
    let cur = ctx.store.current_context()?;
    let mut errors = Vec::new();
    for n in &a.names {
        if n == "default" {
            errors.push("context \"default\" cannot be removed".to_string());
            continue;
        }
        if *n == cur && !a.force {
            errors.push(format!("context {n:?} is in use, set -f flag to force remove"));
            continue;
        }
        match ctx.store.remove(n) {
            Ok(()) => {
                if *n == cur {
                    ctx.store.set_current_context("default")?;
                }
                println!("{n}");
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::util::errors_result(errors)
}

fn inspect(ctx: &Ctx, a: InspectArgs) -> CmdResult {
    let names = if a.names.is_empty() {
        vec![current(ctx)?]
    } else {
        a.names.clone()
    };
    let mut out = Vec::new();
    for n in &names {
        let m = load(ctx, n)?;
        let tls_dir = ctx.store.tls_dir(n);
        let mut v = serde_json::to_value(&m).map_err(|e| e.to_string())?;
        v["TLSMaterial"] = serde_json::json!({});
        if tls_dir.exists() {
            let files: Vec<String> = ["ca.pem", "cert.pem", "key.pem"]
                .iter()
                .filter(|f| tls_dir.join(f).exists())
                .map(|f| (*f).to_string())
                .collect();
            v["TLSMaterial"] = serde_json::json!({ "docker": files });
        }
        v["Storage"] = serde_json::json!({"MetadataPath": ctx.store.config_file().parent().map(|p| p.join("contexts/meta").display().to_string()), "TLSPath": tls_dir.display().to_string()});
        out.push(v);
    }
    super::util::print_inspect(&out, &a.format)
}
