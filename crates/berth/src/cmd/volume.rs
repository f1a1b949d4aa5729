//! `volume create|ls|inspect|rm|prune`, over `/volumes`.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::util::{self, confirm, errors_result, print_inspect, s};
use crate::client;
use crate::format::{Format, human_size};
use crate::{CmdResult, Ctx, Failure};

/// `volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The volume's name (generated when omitted).
    pub name: Option<String>,
    /// Specify volume name (the positional argument wins).
    #[arg(long = "name", hide = true)]
    pub name_flag: Option<String>,
    /// Specify volume driver name.
    #[arg(short = 'd', long = "driver", default_value = "local")]
    pub driver: String,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata for a volume.
    #[arg(long = "label")]
    pub label: Vec<String>,
}

/// `volume ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "dangling=true").
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
    /// Only display volume names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `volume inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
}

/// `volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Force the removal of one or more volumes.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `volume prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>").
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(name = "ls", alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(name = "rm", alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

/// Runs a `volume` subcommand.
pub async fn run(ctx: &Ctx, c: VolumeCommand) -> CmdResult {
    match c {
        VolumeCommand::Create(a) => create(ctx, a).await,
        VolumeCommand::Ls(a) => list(ctx, a).await,
        VolumeCommand::Inspect(a) => inspect(ctx, a).await,
        VolumeCommand::Rm(a) => remove(ctx, a).await,
        VolumeCommand::Prune(a) => prune(ctx, a, false).await.map(|_| ()),
    }
}

fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|i| {
            let (k, v) = i.split_once('=').unwrap_or((i, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// The `VolumeCreateOptions` body.
pub fn create_body(a: &CreateArgs) -> Result<Value, Failure> {
    if let (Some(p), Some(f)) = (&a.name, &a.name_flag)
        && p != f
    {
        return Err(Failure {
            message: format!(
                "conflicting options: either specify --name or provide positional arg, not both ({p} and {f})"
            ),
            code: 125,
        });
    }
    for o in &a.opt {
        if !o.contains('=') {
            return Err(Failure {
                message: format!(
                    "invalid argument {o:?} for \"-o, --opt\" flag: invalid key value pair format"
                ),
                code: 125,
            });
        }
    }
    Ok(json!({
        "Name": a.name.clone().or_else(|| a.name_flag.clone()).unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": kv_map(&a.opt),
        "Labels": kv_map(&a.label),
    }))
}

/// `volume create`.
pub async fn create(ctx: &Ctx, a: CreateArgs) -> CmdResult {
    let body = create_body(&a)?;
    let c = ctx.client().await?;
    let resp = c
        .call(
            Method::POST,
            "/volumes/create",
            &[("content-type", "application/json".to_string())],
            client::full(body.to_string()),
        )
        .await?;
    let v = client::body_json(resp).await?;
    println!("{}", v.get("Name").and_then(|n| n.as_str()).unwrap_or(""));
    Ok(())
}

/// A volume as a row of `volume ls`.
pub fn row(v: &Value) -> Value {
    let labels = v
        .get("Labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            let mut l: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            l.sort();
            l.join(",")
        })
        .unwrap_or_default();
    let size = v
        .get("UsageData")
        .and_then(|u| u.get("Size"))
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .map_or("N/A".to_string(), human_size);
    json!({
        "Name": s(v, "Name"),
        "Driver": s(v, "Driver"),
        "Scope": s(v, "Scope"),
        "Mountpoint": s(v, "Mountpoint"),
        "Labels": labels,
        "Size": size,
        "Links": "N/A",
        "CreatedAt": s(v, "CreatedAt"),
        "Availability": "N/A",
        "Group": "N/A",
    })
}

/// `volume ls`.
pub async fn list(ctx: &Ctx, a: ListArgs) -> CmdResult {
    let c = ctx.client().await?;
    let filters = super::filters_json(&a.filter)?;
    let v = c
        .get_json(&client::query("/volumes", &[("filters", &filters)]))
        .await?;
    let mut vols = v
        .get("Volumes")
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default();
    vols.sort_by(|x, y| s(x, "Name").cmp(s(y, "Name")));
    for w in v.get("Warnings").and_then(|x| x.as_array()).into_iter().flatten() {
        eprintln!("{}", w.as_str().unwrap_or(""));
    }
    let default = if a.quiet {
        "{{.Name}}"
    } else {
        "table {{.Driver}}\t{{.Name}}"
    };
    let f = Format::parse(if a.quiet { "" } else { &a.format }, default)?;
    let rows: Vec<Value> = vols.iter().map(row).collect();
    let headers: HashMap<&str, &str> = [
        ("Name", "VOLUME NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("Mountpoint", "MOUNTPOINT"),
        ("Labels", "LABELS"),
        ("Size", "SIZE"),
        ("Links", "LINKS"),
        ("CreatedAt", "CREATED AT"),
        ("Availability", "AVAILABILITY"),
        ("Group", "GROUP"),
    ]
    .into_iter()
    .collect();
    print!("{}", f.render_rows(&rows, &headers)?);
    Ok(())
}

/// `volume inspect`.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match c.get_json(&format!("/volumes/{n}")).await {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    print_inspect(&out, &a.format)?;
    errors_result(errors)
}

/// `volume rm`.
pub async fn remove(ctx: &Ctx, a: RmArgs) -> CmdResult {
    let c = ctx.client().await?;
    util::each_name(&a.names, async |n| {
        let path = client::query(
            &format!("/volumes/{n}"),
            &[("force", if a.force { "1" } else { "" })],
        );
        c.call(Method::DELETE, &path, &[], client::empty())
            .await
            .map(|_| ())
    })
    .await
}

/// `volume prune` (also part of `system prune`, which asked already: `asked`); returns the space reclaimed.
pub async fn prune(ctx: &Ctx, a: PruneArgs, asked: bool) -> Result<i64, Failure> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !asked && !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let mut filter = a.filter.clone();
    if a.all {
        filter.push("all=true".to_string());
    }
    util::prune(ctx, "/volumes/prune", &filter, asked, |v| {
        util::print_deleted_names(v, "VolumesDeleted", "Deleted Volumes:");
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_and_rows() {
        let a = CreateArgs {
            name: Some("v1".into()),
            name_flag: None,
            driver: "local".into(),
            opt: vec!["type=tmpfs".into(), "o=size=1m".into()],
            label: vec!["a=b".into(), "flag".into()],
        };
        assert_eq!(
            create_body(&a).unwrap(),
            json!({"Name": "v1", "Driver": "local", "DriverOpts": {"type": "tmpfs", "o": "size=1m"},
                   "Labels": {"a": "b", "flag": ""}})
        );
        let bad = CreateArgs {
            opt: vec!["novalue".into()],
            ..a
        };
        assert_eq!(create_body(&bad).unwrap_err().code, 125);
        let r = row(
            &json!({"Name": "v", "Driver": "local", "Labels": {"b": "2", "a": "1"},
                             "UsageData": {"Size": 2048, "RefCount": 1}}),
        );
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Size"], "2.05kB");
        assert_eq!(row(&json!({"Name": "v"}))["Size"], "N/A");
    }
}
