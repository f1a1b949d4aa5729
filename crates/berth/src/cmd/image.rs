//! Image commands: pull, push, images, inspect, history, tag, rmi, prune, save, load, import.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use base64::Engine as _;
use berth_image::reference::Reference;
use clap::{Args, Subcommand};
use hyper::Method;

use super::util::{self, confirm, errors_result, print_inspect, s, short_id};
use crate::client::{self, Client, JsonLines};
use crate::format::{Format, go_time, human_ago, human_size};
use crate::{CmdResult, Ctx, Failure};

/// `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    pub name: String,
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// NAME[:TAG]
    pub name: String,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `images`, `image ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only images of this repository (and tag).
    pub repository: Option<String>,
    /// Show all images (default hides intermediate images).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided (dangling=, label=, reference=, before=, since=).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `inspect`, `image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
    /// Only `image` is supported.
    #[arg(long = "type")]
    pub kind: Option<String>,
}

/// `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image.
    pub name: String,
    /// Print sizes and dates in human readable format.
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
}

/// `tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

/// `rmi`, `image rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Images.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Force removal of the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long = "no-prune")]
    pub no_prune: bool,
}

/// `image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=a=b").
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// `save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// file|- (a rootfs tarball, or STDIN).
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Set commit message for imported image.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
}

/// `image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(alias = "list", name = "ls")]
    Ls(ListArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Display detailed information on one or more images.
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Remove one or more images.
    #[command(alias = "remove", alias = "rmi")]
    Rm(RmArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Save one or more images to a tar archive.
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(ImportArgs),
}

/// Runs an `image` subcommand.
pub async fn run(ctx: &Ctx, c: ImageCommand) -> CmdResult {
    match c {
        ImageCommand::Ls(a) => list(ctx, a).await,
        ImageCommand::Pull(a) => pull(ctx, a).await,
        ImageCommand::Push(a) => push(ctx, a).await,
        ImageCommand::Inspect(a) => inspect(ctx, a).await,
        ImageCommand::History(a) => history(ctx, a).await,
        ImageCommand::Tag(a) => tag(ctx, a).await,
        ImageCommand::Rm(a) => remove(ctx, a).await,
        ImageCommand::Prune(a) => prune(ctx, a, false).await.map(|_| ()),
        ImageCommand::Save(a) => save(ctx, a).await,
        ImageCommand::Load(a) => load(ctx, a).await,
        ImageCommand::Import(a) => import(ctx, a).await,
    }
}

fn parse_ref(s: &str) -> Result<Reference, Failure> {
    Reference::parse_named(s).map_err(|e| Failure {
        message: format!("{e}"),
        code: 1,
    })
}

/// `X-Registry-Auth` for a registry, from the credentials `login` saved.
fn auth_header(ctx: &Ctx, registry: &str) -> Vec<(&'static str, String)> {
    let path = ctx.store.config_file();
    let Ok(creds) = berth_image::credentials::Credentials::load(&path) else {
        return Vec::new();
    };
    let Some(c) = creds.get(registry) else {
        return Vec::new();
    };
    let json = serde_json::json!({"username": c.username, "password": c.password, "serveraddress": registry});
    vec![(
        "x-registry-auth",
        base64::engine::general_purpose::URL_SAFE.encode(json.to_string()),
    )]
}

/// `pull`.
pub async fn pull(ctx: &Ctx, a: PullArgs) -> CmdResult {
    let r = parse_ref(&a.name)?;
    let c = ctx.client().await?;
    let tag = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let from = r.familiar_name();
    let platform = a.platform.clone().unwrap_or_default();
    let path = client::query(
        "/images/create",
        &[("fromImage", &from), ("tag", &tag), ("platform", &platform)],
    );
    let headers = auth_header(ctx, r.registry());
    let resp = c.call(Method::POST, &path, &headers, client::empty()).await?;
    crate::progress::show(JsonLines::new(resp), a.quiet).await?;
    let full = if r.digest().is_some() {
        format!("{}@{tag}", r.name())
    } else {
        format!("{}:{tag}", r.name())
    };
    println!("{full}");
    Ok(())
}

/// `push`.
pub async fn push(ctx: &Ctx, a: PushArgs) -> CmdResult {
    let r = parse_ref(&a.name)?;
    if r.digest().is_some() {
        return Err(Failure::from("cannot push a digest reference"));
    }
    let c = ctx.client().await?;
    let tag = r.tag().unwrap_or("latest").to_string();
    let path = client::query(&format!("/images/{}/push", r.familiar_name()), &[("tag", &tag)]);
    let mut headers = auth_header(ctx, r.registry());
    if headers.is_empty() {
        // The API requires the header; an empty object means anonymous.
        headers.push((
            "x-registry-auth",
            base64::engine::general_purpose::URL_SAFE.encode("{}"),
        ));
    }
    let resp = c.call(Method::POST, &path, &headers, client::empty()).await?;
    let out = crate::progress::show(JsonLines::new(resp), a.quiet).await?;
    if a.quiet {
        println!("{}", a.name);
    }
    let _ = out;
    Ok(())
}

fn strs(v: &serde_json::Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(|x| x.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `images`.
pub async fn list(ctx: &Ctx, a: ListArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut filter = a.filter.clone();
    if let Some(r) = &a.repository {
        filter.push(format!("reference={r}"));
    }
    let filters = super::filters_json(&filter)?;
    let path = client::query(
        "/images/json",
        &[
            ("all", if a.all { "1" } else { "" }),
            ("filters", &filters),
            ("digests", if a.digests { "1" } else { "" }),
        ],
    );
    let images = c.get_json(&path).await?;
    let images = images.as_array().cloned().unwrap_or_default();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            let id = short_id(s(i, "Id"), a.no_trunc);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in &images {
        let tags = strs(i, "RepoTags");
        let digests = strs(i, "RepoDigests");
        let size = i.get("Size").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let created = i.get("Created").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let mut pairs: Vec<(String, String)> = tags
            .iter()
            .map(|t| {
                let (repo, tag) = t
                    .rsplit_once(':')
                    .filter(|(r, _)| !r.is_empty())
                    .unwrap_or((t.as_str(), "<none>"));
                (repo.to_string(), tag.to_string())
            })
            .collect();
        if pairs.is_empty() {
            let repo = digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(r, _)| r);
            pairs.push((repo.to_string(), "<none>".to_string()));
        }
        for (repo, tag) in pairs {
            let digest = digests
                .iter()
                .find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo))
                .and_then(|d| d.split_once('@'))
                .map_or("<none>".to_string(), |(_, d)| d.to_string());
            rows.push(serde_json::json!({
                "ID": short_id(s(i, "Id"), a.no_trunc),
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": human_ago(created),
                "CreatedAt": go_time(created),
                "Size": human_size(size),
                "VirtualSize": human_size(size),
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "Containers": "N/A",
            }));
        }
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let f = Format::parse(&a.format, default)?;
    let headers: HashMap<&str, &str> = [
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("VirtualSize", "VIRTUAL SIZE"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("Containers", "CONTAINERS"),
    ]
    .into_iter()
    .collect();
    print!("{}", f.render_rows(&rows, &headers)?);
    Ok(())
}

/// `inspect`.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> CmdResult {
    if let Some(k) = &a.kind
        && k != "image"
    {
        return Err(util::invalid_type(k));
    }
    let c = ctx.client().await?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match c.get_json(&format!("/images/{n}/json")).await {
            Ok(v) => out.push(v),
            Err(crate::client::ClientError::Daemon { status, .. })
                if status == hyper::StatusCode::NOT_FOUND =>
            {
                errors.push(format!("Error: No such object: {n}"));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    print_inspect(&out, &a.format)?;
    errors_result(errors)
}

/// `history`.
pub async fn history(ctx: &Ctx, a: HistoryArgs) -> CmdResult {
    let c = ctx.client().await?;
    let h = c.get_json(&format!("/images/{}/history", a.name)).await?;
    let items = h.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for i in &items {
            println!(
                "{}",
                if s(i, "Id") == "<missing>" {
                    "<missing>".to_string()
                } else {
                    short_id(s(i, "Id"), a.no_trunc)
                }
            );
        }
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            let id = s(i, "Id");
            let created = i.get("Created").and_then(serde_json::Value::as_i64).unwrap_or(0);
            let size = i.get("Size").and_then(serde_json::Value::as_i64).unwrap_or(0);
            let by = s(i, "CreatedBy").replace(['\n', '\t'], " ");
            let by = if !a.no_trunc && by.chars().count() > 45 {
                format!("{}…", by.chars().take(44).collect::<String>())
            } else {
                by
            };
            serde_json::json!({
                "ID": if id == "<missing>" { id.to_string() } else { short_id(id, a.no_trunc) },
                "CreatedSince": if a.human { human_ago(created) } else { go_time(created) },
                "CreatedAt": go_time(created),
                "CreatedBy": by,
                "Size": if a.human { human_size(size) } else { size.to_string() },
                "Comment": s(i, "Comment"),
            })
        })
        .collect();
    let f = Format::parse(
        &a.format,
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    )?;
    let headers: HashMap<&str, &str> = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ]
    .into_iter()
    .collect();
    print!("{}", f.render_rows(&rows, &headers)?);
    Ok(())
}

/// `tag`.
pub async fn tag(ctx: &Ctx, a: TagArgs) -> CmdResult {
    let target = parse_ref(&a.target)?;
    if target.digest().is_some() {
        return Err(Failure::from(format!(
            "refusing to create a tag with a digest reference: {}",
            a.target
        )));
    }
    let c = ctx.client().await?;
    let path = client::query(
        &format!("/images/{}/tag", a.source),
        &[
            ("repo", &target.familiar_name()),
            ("tag", target.tag().unwrap_or("latest")),
        ],
    );
    c.call(Method::POST, &path, &[], client::empty()).await?;
    Ok(())
}

/// `rmi`: every image is tried; the exit code is 1 when any failed.
pub async fn remove(ctx: &Ctx, a: RmArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut errors = Vec::new();
    for n in &a.names {
        let path = client::query(
            &format!("/images/{n}"),
            &[
                ("force", if a.force { "1" } else { "" }),
                ("noprune", if a.no_prune { "1" } else { "" }),
            ],
        );
        match c.call(Method::DELETE, &path, &[], client::empty()).await {
            Ok(resp) => print_deleted(&client::body_json(resp).await?),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors_result(errors)
}

fn print_deleted(v: &serde_json::Value) {
    for item in v.as_array().into_iter().flatten() {
        if let Some(u) = item.get("Untagged").and_then(|x| x.as_str()) {
            println!("Untagged: {u}");
        }
        if let Some(d) = item.get("Deleted").and_then(|x| x.as_str()) {
            println!("Deleted: {d}");
        }
    }
}

/// `image prune` (also part of `system prune`, which asked already: `asked`); returns the space reclaimed.
pub async fn prune(ctx: &Ctx, a: PruneArgs, asked: bool) -> Result<i64, Failure> {
    let mut filter = a.filter.clone();
    if a.all {
        filter.push("dangling=false".to_string());
    }
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !asked && !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    util::prune(ctx, "/images/prune", &filter, asked, |v| {
        let deleted = v
            .get("ImagesDeleted")
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default();
        if !deleted.is_empty() {
            println!("Deleted Images:");
            for item in &deleted {
                if let Some(u) = item.get("Untagged").and_then(|x| x.as_str()) {
                    println!("untagged: {u}");
                }
                if let Some(d) = item.get("Deleted").and_then(|x| x.as_str()) {
                    println!("deleted: {d}");
                }
            }
            println!();
        }
    })
    .await
}

/// `save`: to `-o FILE` (written whole, then renamed into place) or to STDOUT when it is not a terminal.
pub async fn save(ctx: &Ctx, a: SaveArgs) -> CmdResult {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::from(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let c = ctx.client().await?;
    let params: Vec<(&str, &str)> = a.names.iter().map(|n| ("names", n.as_str())).collect();
    let path = client::query("/images/get", &params);
    let resp = c.call(Method::GET, &path, &[], client::empty()).await?;
    util::write_body(resp, a.output.as_deref(), "save", "save").await
}

async fn open_input(path: Option<&std::path::Path>) -> Result<client::ReqBody, Failure> {
    match path {
        Some(p) if p != std::path::Path::new("-") => {
            let f = tokio::fs::File::open(p)
                .await
                .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            Ok(client::reader_body(f))
        }
        _ => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::from(
                    "requested load from stdin, but stdin is empty (a terminal); use -i or redirect",
                ));
            }
            Ok(client::reader_body(tokio::io::stdin()))
        }
    }
}

/// `load`.
pub async fn load(ctx: &Ctx, a: LoadArgs) -> CmdResult {
    let body = open_input(a.input.as_deref()).await?;
    let c = ctx.client().await?;
    let path = client::query("/images/load", &[("quiet", if a.quiet { "1" } else { "" })]);
    let resp = c
        .call(
            Method::POST,
            &path,
            &[("content-type", "application/x-tar".to_string())],
            body,
        )
        .await?;
    crate::progress::show(JsonLines::new(resp), a.quiet).await?;
    Ok(())
}

/// `import`.
pub async fn import(ctx: &Ctx, a: ImportArgs) -> CmdResult {
    let (repo, tag) = match &a.reference {
        Some(r) => {
            let r = parse_ref(r)?;
            if r.digest().is_some() {
                return Err(Failure::from("cannot import with a digest reference"));
            }
            (r.familiar_name(), r.tag().unwrap_or("latest").to_string())
        }
        None => (String::new(), String::new()),
    };
    let body = open_input(if a.file == "-" {
        None
    } else {
        Some(std::path::Path::new(&a.file))
    })
    .await?;
    let c: Client = ctx.client().await?;
    let mut params: Vec<(&str, &str)> = vec![
        ("fromSrc", "-"),
        ("repo", &repo),
        ("tag", &tag),
        ("message", a.message.as_deref().unwrap_or("")),
        ("platform", a.platform.as_deref().unwrap_or("")),
    ];
    for ch in &a.change {
        params.push(("changes", ch));
    }
    let path = client::query("/images/create", &params);
    let resp = c
        .call(
            Method::POST,
            &path,
            &[("content-type", "application/x-tar".to_string())],
            body,
        )
        .await?;
    let mut lines = JsonLines::new(resp);
    while let Some(m) = lines.next().await? {
        if let Some(e) = m
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(|x| x.as_str())
        {
            return Err(Failure::from(e.to_string()));
        }
        if let Some(st) = m.get("status").and_then(|x| x.as_str()) {
            println!("{st}");
        }
    }
    Ok(())
}
