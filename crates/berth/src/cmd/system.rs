//! `version`, `info`, `events`, `system df|info|events`.

use clap::{Args, Subcommand};
use hyper::Method;

use super::util::s;
use crate::client::{self, CLIENT_API_VERSION, JsonLines};
use crate::format::{Format, go_time, human_size};
use crate::{CmdResult, Ctx, Failure};

/// `version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
}

/// `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp (unix seconds, RFC 3339, or a duration such as 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type=image, event=pull, image=NAME, ...).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
}

/// `system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a Go template, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
}

/// `system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage.
    Df(DfArgs),
    /// Display system-wide information.
    Info(InfoArgs),
    /// Get real time events from the server.
    Events(EventsArgs),
    /// Remove unused data.
    Prune(PruneArgs),
}

/// Runs a `system` subcommand.
pub async fn run(ctx: &Ctx, c: SystemCommand) -> CmdResult {
    match c {
        SystemCommand::Df(a) => df(ctx, a).await,
        SystemCommand::Info(a) => info(ctx, a).await,
        SystemCommand::Events(a) => events(ctx, a).await,
        SystemCommand::Prune(a) => prune(ctx, a).await,
    }
}

fn client_info(context: &str) -> serde_json::Value {
    serde_json::json!({
        "Platform": {"Name": "Berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": CLIENT_API_VERSION,
        "DefaultAPIVersion": CLIENT_API_VERSION,
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": go_arch(),
        "BuildTime": "",
        "Context": context,
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `version`: the client, then the server (the server part fails with exit 1 when the daemon is unreachable,
/// after the client part is printed, as docker does).
pub async fn version(ctx: &Ctx, a: VersionArgs) -> CmdResult {
    let target = ctx.target()?;
    let mut client_v = client_info(&target.context);
    let server = match ctx.client().await {
        Ok(c) => {
            client_v["ApiVersion"] = serde_json::Value::String(c.version().to_string());
            Ok(c.get_json("/version").await?)
        }
        Err(e) => Err(e),
    };
    if !a.format.is_empty() {
        let data = serde_json::json!({"Client": client_v, "Server": server.as_ref().ok()});
        let f = Format::parse(&a.format, "")?;
        println!("{}", f.render(&data)?);
        return server.map(|_| ());
    }
    let api = s(&client_v, "ApiVersion").to_string();
    let api_note = if api == CLIENT_API_VERSION {
        api
    } else {
        format!("{api} (downgraded from {CLIENT_API_VERSION})")
    };
    println!("Client:");
    println!(" Version:           {}", s(&client_v, "Version"));
    println!(" API version:       {api_note}");
    println!(" Go version:        rust");
    println!(" Git commit:        {}", s(&client_v, "GitCommit"));
    println!(" OS/Arch:           linux/{}", go_arch());
    println!(" Context:           {}", target.context);
    let server = server?;
    println!();
    println!(
        "Server: {}",
        server.get("Platform").map(|p| s(p, "Name")).unwrap_or("")
    );
    for comp in server
        .get("Components")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let d = comp.get("Details").cloned().unwrap_or_default();
        println!(" {}:", s(comp, "Name"));
        println!("  Version:          {}", s(comp, "Version"));
        if !s(&d, "ApiVersion").is_empty() {
            println!(
                "  API version:      {} (minimum version {})",
                s(&d, "ApiVersion"),
                s(&d, "MinAPIVersion")
            );
        }
        println!("  Git commit:       {}", s(&d, "GitCommit"));
        println!("  OS/Arch:          {}/{}", s(&d, "Os"), s(&d, "Arch"));
        println!("  Experimental:     {}", s(&d, "Experimental"));
    }
    Ok(())
}

/// `info`.
pub async fn info(ctx: &Ctx, a: InfoArgs) -> CmdResult {
    let target = ctx.target()?;
    let client = ctx.client().await;
    let server = match &client {
        Ok(c) => Some(c.get_json("/info").await?),
        Err(_) => None,
    };
    if !a.format.is_empty() {
        let mut data = server.clone().unwrap_or_else(|| serde_json::json!({}));
        data["ClientInfo"] = client_info(&target.context);
        let f = Format::parse(&a.format, "")?;
        println!("{}", f.render(&data)?);
        return client.map(|_| ());
    }
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Context:    {}", target.context);
    println!(" Debug Mode: {}", ctx.global.debug);
    println!();
    let Some(i) = server else {
        return client.map(|_| ());
    };
    let n = |k: &str| i.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    let b = |k: &str| i.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
    println!("Server:");
    println!(" Containers: {}", n("Containers"));
    println!("  Running: {}", n("ContainersRunning"));
    println!("  Paused: {}", n("ContainersPaused"));
    println!("  Stopped: {}", n("ContainersStopped"));
    println!(" Images: {}", n("Images"));
    println!(" Server Version: {}", s(&i, "ServerVersion"));
    println!(" Storage Driver: {}", s(&i, "Driver"));
    for pair in i
        .get("DriverStatus")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
    {
        if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
            println!("  {}: {}", k.as_str().unwrap_or(""), v.as_str().unwrap_or(""));
        }
    }
    println!(" Logging Driver: {}", s(&i, "LoggingDriver"));
    println!(" Cgroup Driver: {}", s(&i, "CgroupDriver"));
    println!(" Cgroup Version: {}", s(&i, "CgroupVersion"));
    println!(" Default Runtime: {}", s(&i, "DefaultRuntime"));
    // As docker: "name=seccomp,profile=builtin" is shown as "seccomp" with its options below it.
    if let Some(opts) = i
        .get("SecurityOptions")
        .and_then(|v| v.as_array())
        .filter(|o| !o.is_empty())
    {
        println!(" Security Options:");
        for o in opts.iter().filter_map(|o| o.as_str()) {
            let mut name = "";
            let mut rest = Vec::new();
            for kv in o.split(',') {
                match kv.split_once('=') {
                    Some(("name", n)) => name = n,
                    Some((k, v)) => rest.push((k, v)),
                    None => {}
                }
            }
            println!("  {name}");
            for (k, v) in rest {
                let mut key = k.to_string();
                if let Some(first) = key.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                println!("   {key}: {v}");
            }
        }
    }
    println!(" Kernel Version: {}", s(&i, "KernelVersion"));
    println!(" Operating System: {}", s(&i, "OperatingSystem"));
    println!(" OSType: {}", s(&i, "OSType"));
    println!(" Architecture: {}", s(&i, "Architecture"));
    println!(" CPUs: {}", n("NCPU"));
    #[allow(clippy::cast_precision_loss)]
    let gib = n("MemTotal") as f64 / (1024.0 * 1024.0 * 1024.0);
    println!(" Total Memory: {gib:.2}GiB");
    println!(" Name: {}", s(&i, "Name"));
    println!(" ID: {}", s(&i, "ID"));
    println!(" Docker Root Dir: {}", s(&i, "DockerRootDir"));
    println!(" Debug Mode: {}", b("Debug"));
    println!(" Experimental: {}", b("ExperimentalBuild"));
    let reg = i.get("RegistryConfig").cloned().unwrap_or_default();
    println!(" Insecure Registries:");
    if let Some(idx) = reg.get("IndexConfigs").and_then(|x| x.as_object()) {
        let mut names: Vec<&String> = idx
            .iter()
            .filter(|(_, v)| v.get("Secure") == Some(&serde_json::Value::Bool(false)))
            .map(|(k, _)| k)
            .collect();
        names.sort();
        for n in names {
            println!("  {n}");
        }
    }
    for c in reg
        .get("InsecureRegistryCIDRs")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        println!("  {}", c.as_str().unwrap_or(""));
    }
    println!(" Live Restore Enabled: {}", b("LiveRestoreEnabled"));
    Ok(())
}

/// `--since 10m` → unix seconds; timestamps pass through.
fn event_time(v: &str) -> Result<String, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut secs = 0u64;
    let mut num = String::new();
    let mut ok = !v.is_empty();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().unwrap_or(0);
        num.clear();
        match c {
            'h' => secs += n * 3600,
            'm' => secs += n * 60,
            's' => secs += n,
            _ => {
                ok = false;
                break;
            }
        }
    }
    if ok && num.is_empty() {
        return Ok(now.saturating_sub(secs).to_string());
    }
    Ok(v.to_string())
}

/// `events`.
pub async fn events(ctx: &Ctx, a: EventsArgs) -> CmdResult {
    let c = ctx.client().await?;
    let since = a
        .since
        .as_deref()
        .map(event_time)
        .transpose()?
        .unwrap_or_default();
    let until = a
        .until
        .as_deref()
        .map(event_time)
        .transpose()?
        .unwrap_or_default();
    let filters = super::filters_json(&a.filter)?;
    let path = client::query(
        "/events",
        &[("since", &since), ("until", &until), ("filters", &filters)],
    );
    let resp = c.call(Method::GET, &path, &[], client::empty()).await?;
    let mut lines = JsonLines::new(resp);
    let fmt = if a.format.is_empty() {
        None
    } else {
        Some(Format::parse(&a.format, "")?)
    };
    while let Some(e) = lines.next().await? {
        if let Some(f) = &fmt {
            println!("{}", f.render(&e)?);
            continue;
        }
        let nanos = e.get("timeNano").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let secs = nanos.div_euclid(1_000_000_000);
        let t = go_time(secs);
        let date = t.split(' ').take(2).collect::<Vec<_>>().join("T");
        let ts = format!("{date}.{:09}Z", nanos.rem_euclid(1_000_000_000));
        let actor = e.get("Actor").cloned().unwrap_or_default();
        let mut attrs: Vec<(String, String)> = actor
            .get("Attributes")
            .and_then(|x| x.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        attrs.sort();
        let attrs: Vec<String> = attrs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tail = if attrs.is_empty() {
            String::new()
        } else {
            format!(" ({})", attrs.join(", "))
        };
        println!(
            "{ts} {} {} {}{tail}",
            s(&e, "Type"),
            s(&e, "Action"),
            s(&actor, "ID")
        );
    }
    Ok(())
}

/// `system df`.
pub async fn df(ctx: &Ctx, a: DfArgs) -> CmdResult {
    let c = ctx.client().await?;
    let d = c.get_json("/system/df").await?;
    let images = d
        .get("Images")
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default();
    let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    if a.verbose {
        println!("Images space usage:\n");
        let f = Format::parse(
            "",
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.Containers}}",
        )?;
        let rows: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                let tag = i
                    .get("RepoTags")
                    .and_then(|t| t.get(0))
                    .and_then(|t| t.as_str())
                    .unwrap_or("<none>:<none>");
                let (repo, t) = tag.rsplit_once(':').unwrap_or((tag, "<none>"));
                serde_json::json!({"Repository": repo, "Tag": t,
                    "ID": s(i, "Id").trim_start_matches("sha256:").chars().take(12).collect::<String>(),
                    "Size": human_size(n(i, "Size")), "Containers": n(i, "Containers").max(0).to_string()})
            })
            .collect();
        let h = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
        ]
        .into_iter()
        .collect();
        print!("{}", f.render_rows(&rows, &h)?);
        return Ok(());
    }
    let total: i64 = d
        .get("LayersSize")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let active = images.iter().filter(|i| n(i, "Containers") > 0).count();
    let active_size: i64 = images
        .iter()
        .filter(|i| n(i, "Containers") > 0)
        .map(|i| n(i, "Size"))
        .sum();
    let reclaim = (total - active_size).max(0);
    #[allow(clippy::cast_precision_loss)]
    let pct = if total > 0 {
        format!(" ({}%)", (reclaim as f64 * 100.0 / total as f64).round())
    } else {
        String::new()
    };
    let count = |k: &str| d.get(k).and_then(|x| x.as_array()).map_or(0, Vec::len);
    let rows = vec![
        serde_json::json!({"Type": "Images", "TotalCount": images.len().to_string(), "Active": active.to_string(),
            "Size": human_size(total), "Reclaimable": format!("{}{pct}", human_size(reclaim))}),
        serde_json::json!({"Type": "Containers", "TotalCount": count("Containers").to_string(), "Active": "0",
            "Size": "0B", "Reclaimable": "0B"}),
        serde_json::json!({"Type": "Local Volumes", "TotalCount": count("Volumes").to_string(), "Active": "0",
            "Size": "0B", "Reclaimable": "0B"}),
        serde_json::json!({"Type": "Build Cache", "TotalCount": count("BuildCache").to_string(), "Active": "0",
            "Size": "0B", "Reclaimable": "0B"}),
    ];
    let f = Format::parse(
        &a.format,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    )?;
    let h = [
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ]
    .into_iter()
    .collect();
    print!("{}", f.render_rows(&rows, &h)?);
    Ok(())
}

/// `system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>").
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes.
    #[arg(long)]
    pub volumes: bool,
}

/// `system prune`: stopped containers, then (with `--volumes`) unused anonymous volumes, then dangling (or with
/// `-a` unused) images, after one confirmation; the space reclaimed is the sum. Networks no running container
/// uses go after the containers, as docker's. Berth has no build cache to prune yet.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> crate::CmdResult {
    let mut warning = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
    );
    if a.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warning.push_str(if a.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    if !a.force && !super::util::confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(());
    }
    let mut total = super::container::prune(
        ctx,
        super::container::PruneArgs {
            filter: a.filter.clone(),
            force: true,
        },
        true,
    )
    .await?;
    let net_filters: Vec<String> = a
        .filter
        .iter()
        .filter(|f| f.starts_with("label") || f.starts_with("until"))
        .cloned()
        .collect();
    super::network::prune_networks(ctx, &net_filters).await?;
    if a.volumes {
        total += super::volume::prune(
            ctx,
            super::volume::PruneArgs {
                all: false,
                filter: a
                    .filter
                    .iter()
                    .filter(|f| f.starts_with("label"))
                    .cloned()
                    .collect(),
                force: true,
            },
            true,
        )
        .await?;
    }
    total += super::image::prune(
        ctx,
        super::image::PruneArgs {
            all: a.all,
            force: true,
            filter: a.filter.clone(),
        },
        true,
    )
    .await?;
    println!("Total reclaimed space: {}", human_size(total));
    Ok(())
}
