//! `network create|ls|inspect|rm|prune|connect|disconnect`, over `/networks`, with the docker CLI's flags, output
//! and errors (docker 28: `network rm` prints each failure as it happens and ends with `exit status 1`,
//! `network prune` has no "Total reclaimed space" line and a declined prompt exits 1 quietly).

use std::collections::HashMap;
use std::net::IpAddr;

use clap::{ArgAction, Args, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::util::{self, confirm, s, short_id};
use crate::client::{self, Client, ClientError};
use crate::format::Format;
use crate::{CmdResult, Ctx, Failure};

/// `network create`.
#[derive(Debug, Args, Default, Clone)]
pub struct CreateArgs {
    /// The network's name.
    #[arg(value_name = "NETWORK")]
    pub name: String,
    /// Driver to manage the Network.
    #[arg(short = 'd', long = "driver", default_value = "bridge")]
    pub driver: String,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata on a network.
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Restrict external access to the network.
    #[arg(long = "internal")]
    pub internal: bool,
    /// Enable or disable IPv4 address assignment.
    #[arg(long = "ipv4", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub ipv4: Option<bool>,
    /// Enable or disable IPv6 address assignment.
    #[arg(long = "ipv6", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub ipv6: Option<bool>,
    /// Enable manual container attachment.
    #[arg(long = "attachable")]
    pub attachable: bool,
    /// Create swarm routing-mesh network.
    #[arg(long = "ingress")]
    pub ingress: bool,
    /// Control the network's scope.
    #[arg(long = "scope", default_value = "")]
    pub scope: String,
    /// Create a configuration only network.
    #[arg(long = "config-only")]
    pub config_only: bool,
    /// The network from which to copy the configuration.
    #[arg(long = "config-from")]
    pub config_from: Option<String>,
    /// IP Address Management Driver.
    #[arg(long = "ipam-driver", default_value = "default")]
    pub ipam_driver: String,
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long = "subnet", value_delimiter = ',')]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range.
    #[arg(long = "ip-range", value_delimiter = ',')]
    pub ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet.
    #[arg(long = "gateway", value_delimiter = ',')]
    pub gateway: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver.
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Set IPAM driver specific options.
    #[arg(long = "ipam-opt")]
    pub ipam_opt: Vec<String>,
}

/// `network ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "driver=bridge").
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, table, or json.
    #[arg(long = "format", default_value = "")]
    pub format: String,
    /// Do not truncate the output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display network IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `network inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Networks.
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
    /// Format output using a Go template, or json.
    #[arg(short = 'f', long = "format", default_value = "")]
    pub format: String,
    /// Verbose output for diagnostics.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `network rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Networks.
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
    /// Do not error if the network does not exist.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `network prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `network connect`.
#[derive(Debug, Args, Default, Clone)]
pub struct ConnectArgs {
    /// The network.
    #[arg(value_name = "NETWORK")]
    pub network: String,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// IPv4 address (e.g., "172.30.100.104").
    #[arg(long = "ip", default_value = "")]
    pub ip: String,
    /// IPv6 address (e.g., "2001:db8::33").
    #[arg(long = "ip6", default_value = "")]
    pub ip6: String,
    /// Add link to another container.
    #[arg(long = "link")]
    pub link: Vec<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "alias", value_delimiter = ',')]
    pub alias: Vec<String>,
    /// Add a link-local address for the container.
    #[arg(long = "link-local-ip", value_delimiter = ',')]
    pub link_local_ip: Vec<String>,
    /// driver options for the network.
    #[arg(long = "driver-opt", value_delimiter = ',')]
    pub driver_opt: Vec<String>,
    /// Highest gw-priority provides the default gateway. Accepts positive and negative values.
    #[arg(long = "gw-priority", default_value_t = 0, allow_hyphen_values = true)]
    pub gw_priority: i64,
}

/// `network disconnect`.
#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The network.
    #[arg(value_name = "NETWORK")]
    pub network: String,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Force the container to disconnect from a network.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Create a network.
    Create(CreateArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// List networks.
    #[command(name = "ls", alias = "list")]
    Ls(ListArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
    /// Remove one or more networks.
    #[command(name = "rm", alias = "remove")]
    Rm(RmArgs),
}

/// Runs a `network` subcommand.
pub async fn run(ctx: &Ctx, c: NetworkCommand) -> CmdResult {
    match c {
        NetworkCommand::Connect(a) => connect(ctx, a).await,
        NetworkCommand::Create(a) => create(ctx, a).await,
        NetworkCommand::Disconnect(a) => disconnect(ctx, a).await,
        NetworkCommand::Inspect(a) => inspect(ctx, a).await,
        NetworkCommand::Ls(a) => list(ctx, a).await,
        NetworkCommand::Prune(a) => prune(ctx, a).await,
        NetworkCommand::Rm(a) => remove(ctx, a).await,
    }
}

fn usage(message: String) -> Failure {
    Failure { message, code: 125 }
}

/// `-o k=v` / `--ipam-opt` / `--aux-address` (docker's `MapOpts`: a value without `=` maps to "").
fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|i| {
            let (k, v) = i.split_once('=').unwrap_or((i, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// `--label` (docker's `ValidateLabel`, then `ConvertKVStringsToMap`).
fn labels(items: &[String]) -> Result<Map<String, Value>, Failure> {
    const WS: &[char] = &[' ', '\t', '\n', '\u{b}', '\u{c}', '\r'];
    for l in items {
        let key = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
        let key = key.trim_start_matches(WS);
        let why = if key.is_empty() {
            format!("invalid label '{l}': empty name")
        } else if key.contains(WS) {
            format!("label '{key}' contains whitespaces")
        } else {
            continue;
        };
        return Err(usage(format!(
            "invalid argument \"{l}\" for \"--label\" flag: {why}"
        )));
    }
    Ok(kv_map(items))
}

/// An address with a prefix length, as Go's `net.ParseCIDR` reads it (the address as written, not masked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX`; the error is Go's (`invalid CIDR address: X`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || format!("invalid CIDR address: {s}");
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
            return Err(err());
        }
        let prefix: u8 = p.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err());
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => match v.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v), 128),
                },
            }
        }
        let (net, w) = bits(self.addr);
        let (other, ow) = bits(ip);
        if w != ow {
            return false;
        }
        let prefix = u32::from(self.prefix).min(w);
        if prefix == 0 {
            return true;
        }
        let shift = w - prefix;
        (net >> shift) == (other >> shift)
    }
}

/// docker's `subnetMatches`: whether `data` (an address, or the address of a CIDR) is inside `subnet`.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, String> {
    let net = Cidr::parse(subnet).map_err(|e| format!("invalid subnet: {e}"))?;
    let ip = if data.contains('/') {
        Some(Cidr::parse(data)?.addr)
    } else {
        data.parse::<IpAddr>().ok()
    };
    Ok(ip.is_some_and(|ip| net.contains(ip)))
}

/// docker's `createIPAMConfig`: pairs every `--ip-range`, `--gateway` and `--aux-address` with the `--subnet`
/// that contains it (one entry per subnet, in the order given).
pub fn ipam_config(a: &CreateArgs) -> Result<Value, String> {
    if a.subnet.len() < a.ip_range.len() || a.subnet.len() < a.gateway.len() {
        return Err("every ip-range or gateway must have a corresponding subnet".to_string());
    }
    let mut configs: Vec<(String, Map<String, Value>)> = Vec::new();
    for sub in &a.subnet {
        for (k, _) in &configs {
            if subnet_matches(sub, k)? || subnet_matches(k, sub)? {
                return Err("multiple overlapping subnet configuration is not supported".to_string());
            }
        }
        configs.push((sub.clone(), Map::new()));
    }
    for (flag, key, values) in [
        ("range", "IPRange", &a.ip_range),
        ("gateway", "Gateway", &a.gateway),
    ] {
        for r in values {
            let mut matched = false;
            for (sub, cfg) in &mut configs {
                if flag == "range" {
                    Cidr::parse(r)?;
                }
                if !subnet_matches(sub, r)? {
                    continue;
                }
                if let Some(old) = cfg.get(key).and_then(Value::as_str) {
                    return Err(if flag == "range" {
                        format!("cannot configure multiple ranges ({r}, {old}) on the same subnet ({sub})")
                    } else {
                        format!("cannot configure multiple gateways ({r}, {old}) for the same subnet ({sub})")
                    });
                }
                cfg.insert(key.to_string(), json!(r));
                matched = true;
            }
            if !matched {
                return Err(format!("no matching subnet for {flag} {r}"));
            }
        }
    }
    for (name, addr) in kv_map(&a.aux_address) {
        let addr = addr.as_str().unwrap_or("").to_string();
        let mut matched = false;
        for (sub, cfg) in &mut configs {
            if !subnet_matches(sub, &addr)? {
                continue;
            }
            let aux = cfg.entry("AuxiliaryAddresses").or_insert_with(|| json!({}));
            if let Some(m) = aux.as_object_mut() {
                m.insert(name.clone(), json!(addr));
            }
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for aux-address {addr}"));
        }
    }
    let config: Vec<Value> = configs
        .into_iter()
        .map(|(sub, mut cfg)| {
            let mut m = Map::new();
            m.insert("Subnet".into(), json!(sub));
            m.append(&mut cfg);
            Value::Object(m)
        })
        .collect();
    Ok(json!({"Driver": a.ipam_driver, "Options": kv_map(&a.ipam_opt), "Config": config}))
}

/// The body of `POST /networks/create` (docker's `network.CreateRequest`).
pub fn create_body(a: &CreateArgs) -> Result<Value, Failure> {
    let labels = labels(&a.label)?;
    let ipam = ipam_config(a).map_err(Failure::from)?;
    let mut b = Map::new();
    b.insert("Name".into(), json!(a.name));
    b.insert("Driver".into(), json!(a.driver));
    b.insert("Scope".into(), json!(a.scope));
    if let Some(v) = a.ipv4 {
        b.insert("EnableIPv4".into(), json!(v));
    }
    if let Some(v) = a.ipv6 {
        b.insert("EnableIPv6".into(), json!(v));
    }
    b.insert("IPAM".into(), ipam);
    b.insert("Internal".into(), json!(a.internal));
    b.insert("Attachable".into(), json!(a.attachable));
    b.insert("Ingress".into(), json!(a.ingress));
    b.insert("ConfigOnly".into(), json!(a.config_only));
    b.insert(
        "ConfigFrom".into(),
        a.config_from
            .as_ref()
            .filter(|c| !c.is_empty())
            .map_or(Value::Null, |c| json!({"Network": c})),
    );
    b.insert("Options".into(), Value::Object(kv_map(&a.opt)));
    b.insert("Labels".into(), Value::Object(labels));
    Ok(Value::Object(b))
}

/// `network create`: prints the new network's ID.
pub async fn create(ctx: &Ctx, a: CreateArgs) -> CmdResult {
    let body = create_body(&a)?;
    let c = ctx.client().await?;
    let resp = c
        .call(
            Method::POST,
            "/networks/create",
            &[("content-type", "application/json".to_string())],
            client::full(body.to_string()),
        )
        .await?;
    let v = client::body_json(resp).await?;
    if let Some(w) = v.get("Warning").and_then(Value::as_str).filter(|w| !w.is_empty()) {
        eprintln!("{w}");
    }
    println!("{}", s(&v, "Id"));
    Ok(())
}

/// Go's `time.Time.String()` of an RFC 3339 time (`2024-01-02 03:04:05.5 +0000 UTC`), or the text unchanged
/// when it does not parse.
pub fn go_time_string(rfc3339: &str) -> String {
    let Ok(ts) = rfc3339.parse::<jiff::Timestamp>() else {
        return rfc3339.to_string();
    };
    let frac = ts.subsec_nanosecond();
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:09}").trim_end_matches('0').to_string()
    };
    format!("{}{frac} +0000 UTC", ts.strftime("%Y-%m-%d %H:%M:%S"))
}

/// A network of `GET /networks` as the row docker's formatter offers to templates.
pub fn row(n: &Value, no_trunc: bool) -> Value {
    let mut labels: Vec<String> = n
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let flag = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false).to_string();
    json!({
        "ID": short_id(s(n, "Id"), no_trunc),
        "Name": s(n, "Name"),
        "Driver": s(n, "Driver"),
        "Scope": s(n, "Scope"),
        "IPv4": n.get("EnableIPv4").and_then(Value::as_bool).unwrap_or(true).to_string(),
        "IPv6": flag("EnableIPv6"),
        "Internal": flag("Internal"),
        "Labels": labels.join(","),
        "CreatedAt": go_time_string(s(n, "Created")),
    })
}

const LS_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

/// The default `network ls` table.
pub const DEFAULT_LS_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

/// sortorder's `NaturalLess` (what docker sorts `network ls` and `port` output with): runs of digits compare
/// as numbers, digits sort before other bytes.
pub fn natural_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return da;
        }
        if !da {
            if a[i] != b[j] {
                return a[i] < b[j];
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz_a, nz_b) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (la, lb) = (i - nz_a, j - nz_b);
        if la != lb {
            return la < lb;
        }
        if a[nz_a..i] != b[nz_b..j] {
            return a[nz_a..i] < b[nz_b..j];
        }
        if nz_a != nz_b {
            return nz_a < nz_b;
        }
    }
    a.len() < b.len()
}

/// `natural_less` as an ordering for `sort_by`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if natural_less(a, b) {
        std::cmp::Ordering::Less
    } else if natural_less(b, a) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

/// The `network ls` output for the networks of `GET /networks`.
pub fn render_list(networks: &[Value], a: &ListArgs) -> Result<String, Failure> {
    let mut nets = networks.to_vec();
    nets.sort_by(|x, y| natural_cmp(s(x, "Name"), s(y, "Name")));
    let format = match a.format.as_str() {
        "" | "table" if a.quiet => "{{.ID}}",
        "" | "table" => DEFAULT_LS_FORMAT,
        other => other,
    };
    let f = Format::parse(format, DEFAULT_LS_FORMAT)?;
    let rows: Vec<Value> = nets.iter().map(|n| row(n, a.no_trunc)).collect();
    let headers: HashMap<&str, &str> = LS_HEADERS.iter().copied().collect();
    Ok(f.render_rows(&rows, &headers)?)
}

/// `network ls`.
pub async fn list(ctx: &Ctx, a: ListArgs) -> CmdResult {
    let c = ctx.client().await?;
    let filters = super::filters_json(&a.filter)?;
    let v = c
        .get_json(&client::query("/networks", &[("filters", &filters)]))
        .await?;
    let nets = v.as_array().cloned().unwrap_or_default();
    print!("{}", render_list(&nets, &a)?);
    Ok(())
}

/// `network inspect`: a template that does not parse is exit 64, as docker's.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> CmdResult {
    if !a.format.is_empty() && a.format != "json" {
        Format::parse(&a.format, "").map_err(|e| Failure {
            message: e.to_string(),
            code: 64,
        })?;
    }
    let c = ctx.client().await?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let path = client::query(
            &format!("/networks/{}", client::encode(n)),
            &[("verbose", if a.verbose { "true" } else { "" })],
        );
        match c.get_json(&path).await {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    util::print_inspect(&out, &a.format)?;
    util::errors_result(errors)
}

/// `network rm`: each name printed when it went, each failure printed as it comes; any failure ends with docker
/// 28's `exit status 1`.
pub async fn remove(ctx: &Ctx, a: RmArgs) -> CmdResult {
    let c = ctx.client().await?;
    let mut failed = false;
    for n in &a.names {
        match remove_one(&c, n).await {
            Ok(()) => println!("{n}"),
            Err(ClientError::Daemon { status, .. }) if a.force && status == StatusCode::NOT_FOUND => {}
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Failure {
            message: "exit status 1".to_string(),
            code: 1,
        });
    }
    Ok(())
}

async fn remove_one(c: &Client, name: &str) -> Result<(), ClientError> {
    c.call(
        Method::DELETE,
        &format!("/networks/{}", client::encode(name)),
        &[],
        client::empty(),
    )
    .await
    .map(|_| ())
}

/// The confirmation `network prune` asks for.
pub const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";

/// `POST /networks/prune` and docker's report (`Deleted Networks:`, the names, a blank line); for `network prune`
/// and `system prune`.
pub async fn prune_networks(ctx: &Ctx, filter: &[String]) -> CmdResult {
    let c = ctx.client().await?;
    let path = client::query("/networks/prune", &[("filters", &super::filters_json(filter)?)]);
    let resp = c.call(Method::POST, &path, &[], client::empty()).await?;
    let v = client::body_json(resp).await?;
    util::print_deleted_names(&v, "NetworksDeleted", "Deleted Networks:");
    Ok(())
}

/// `network prune`: a declined prompt ends the command with exit 1 and no message, as docker's.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> CmdResult {
    if !a.force && !confirm(PRUNE_WARNING) {
        return Err(Failure {
            message: String::new(),
            code: 1,
        });
    }
    prune_networks(ctx, &a.filter).await
}

/// docker's `convertDriverOpt` for `connect --driver-opt`.
fn driver_opts(items: &[String]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for o in items {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        let k = k.trim();
        if !o.contains('=') || k.is_empty() {
            return Err("invalid key/value pair format in driver options".to_string());
        }
        m.insert(k.to_string(), json!(v.trim()));
    }
    Ok(m)
}

/// The body of `POST /networks/{id}/connect` (docker's `NetworkConnectOptions`).
pub fn connect_body(a: &ConnectArgs) -> Result<Value, Failure> {
    for l in &a.link {
        validate_link(l).map_err(|e| usage(format!("invalid argument \"{l}\" for \"--link\" flag: {e}")))?;
    }
    let opts = driver_opts(&a.driver_opt)?;
    let mut ep = Map::new();
    ep.insert(
        "IPAMConfig".into(),
        json!({"IPv4Address": a.ip, "IPv6Address": a.ip6, "LinkLocalIPs": a.link_local_ip}),
    );
    ep.insert("Links".into(), json!(a.link));
    ep.insert("Aliases".into(), json!(a.alias));
    ep.insert("DriverOpts".into(), Value::Object(opts));
    ep.insert("GwPriority".into(), json!(a.gw_priority));
    Ok(json!({"Container": a.container, "EndpointConfig": ep}))
}

/// docker's `ValidateLink`: `NAME[:ALIAS]`.
fn validate_link(l: &str) -> Result<(), String> {
    let (name, alias) = l.split_once(':').unwrap_or((l, l));
    if name.is_empty() || alias.is_empty() || alias.contains(':') {
        return Err(format!("invalid link format: {l}"));
    }
    Ok(())
}

/// `network connect`.
pub async fn connect(ctx: &Ctx, a: ConnectArgs) -> CmdResult {
    let body = connect_body(&a)?;
    let c = ctx.client().await?;
    c.call(
        Method::POST,
        &format!("/networks/{}/connect", client::encode(&a.network)),
        &[("content-type", "application/json".to_string())],
        client::full(body.to_string()),
    )
    .await?;
    Ok(())
}

/// The body of `POST /networks/{id}/disconnect`.
pub fn disconnect_body(a: &DisconnectArgs) -> Value {
    json!({"Container": a.container, "Force": a.force})
}

/// `network disconnect`.
pub async fn disconnect(ctx: &Ctx, a: DisconnectArgs) -> CmdResult {
    let c = ctx.client().await?;
    c.call(
        Method::POST,
        &format!("/networks/{}/disconnect", client::encode(&a.network)),
        &[("content-type", "application/json".to_string())],
        client::full(disconnect_body(&a).to_string()),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_args(name: &str) -> CreateArgs {
        CreateArgs {
            name: name.into(),
            driver: "bridge".into(),
            ipam_driver: "default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_bodies() {
        let mut a = create_args("n1");
        a.subnet = vec!["10.5.0.0/16".into(), "10.6.0.0/24".into()];
        a.gateway = vec!["10.6.0.254".into(), "10.5.0.1".into()];
        a.ip_range = vec!["10.5.1.0/24".into()];
        a.internal = true;
        a.attachable = true;
        a.opt = vec!["com.docker.network.bridge.name=br-x".into(), "flag".into()];
        a.label = vec!["a=b".into(), "c".into()];
        let b = create_body(&a).unwrap();
        assert_eq!(
            b,
            json!({
                "Name": "n1", "Driver": "bridge", "Scope": "",
                "IPAM": {"Driver": "default", "Options": {}, "Config": [
                    {"Subnet": "10.5.0.0/16", "IPRange": "10.5.1.0/24", "Gateway": "10.5.0.1"},
                    {"Subnet": "10.6.0.0/24", "Gateway": "10.6.0.254"}]},
                "Internal": true, "Attachable": true, "Ingress": false, "ConfigOnly": false,
                "ConfigFrom": null,
                "Options": {"com.docker.network.bridge.name": "br-x", "flag": ""},
                "Labels": {"a": "b", "c": ""},
            })
        );
        // No subnet: an empty IPAM config; EnableIPv6 only when given.
        let mut a = create_args("n2");
        a.ipv6 = Some(true);
        let b = create_body(&a).unwrap();
        assert_eq!(
            b["IPAM"],
            json!({"Driver": "default", "Options": {}, "Config": []})
        );
        assert_eq!(b["EnableIPv6"], true);
        assert!(b.get("EnableIPv4").is_none());
        assert!(
            create_body(&create_args("n3"))
                .unwrap()
                .get("EnableIPv6")
                .is_none()
        );
    }

    #[test]
    fn ipam_errors_as_docker() {
        let err = |subnet: &[&str], gw: &[&str], range: &[&str]| {
            let mut a = create_args("n");
            a.subnet = subnet.iter().map(|x| x.to_string()).collect();
            a.gateway = gw.iter().map(|x| x.to_string()).collect();
            a.ip_range = range.iter().map(|x| x.to_string()).collect();
            create_body(&a).unwrap_err().message
        };
        assert_eq!(
            err(&[], &["10.0.0.1"], &[]),
            "every ip-range or gateway must have a corresponding subnet"
        );
        assert_eq!(
            err(&["10.0.0.0/8", "10.1.0.0/16"], &[], &[]),
            "multiple overlapping subnet configuration is not supported"
        );
        assert_eq!(
            err(&["bogus"], &["10.0.0.1"], &[]),
            "invalid subnet: invalid CIDR address: bogus"
        );
        assert_eq!(
            err(&["10.0.0.0/24"], &["10.1.0.1"], &[]),
            "no matching subnet for gateway 10.1.0.1"
        );
        assert_eq!(
            err(&["10.0.0.0/24"], &[], &["10.1.0.0/28"]),
            "no matching subnet for range 10.1.0.0/28"
        );
        assert_eq!(
            err(&["10.0.0.0/24"], &[], &["10.0.0.0"]),
            "invalid CIDR address: 10.0.0.0"
        );
        assert_eq!(
            err(&["10.0.0.0/24", "10.2.0.0/24"], &["10.0.0.1", "10.0.0.2"], &[]),
            "cannot configure multiple gateways (10.0.0.2, 10.0.0.1) for the same subnet (10.0.0.0/24)"
        );
        let mut a = create_args("n");
        a.label = vec!["=x".into()];
        let f = create_body(&a).unwrap_err();
        assert_eq!(f.code, 125);
        assert_eq!(
            f.message,
            "invalid argument \"=x\" for \"--label\" flag: invalid label '=x': empty name"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(
            Cidr::parse("fd00::/64")
                .unwrap()
                .contains("fd00::1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("fd00::/64")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn ls_output() {
        let nets = vec![
            json!({"Name": "net10", "Id": "c".repeat(64), "Driver": "bridge", "Scope": "local"}),
            json!({"Name": "bridge", "Id": "a".repeat(64), "Driver": "bridge", "Scope": "local"}),
            json!({"Name": "net9", "Id": "b".repeat(64), "Driver": "bridge", "Scope": "local",
                   "Labels": {"z": "1", "a": "2"}, "Internal": true,
                   "Created": "2026-01-02T03:04:05.120000000Z"}),
            json!({"Name": "host", "Id": "d".repeat(64), "Driver": "host", "Scope": "local"}),
        ];
        let args = |format: &str, quiet: bool, no_trunc: bool| ListArgs {
            filter: vec![],
            format: format.into(),
            no_trunc,
            quiet,
        };
        let out = render_list(&nets, &args("", false, false)).unwrap();
        assert_eq!(
            out,
            format!(
                "NETWORK ID     NAME      DRIVER    SCOPE\n{}   bridge    bridge    local\n{}   host      host      local\n{}   net9      bridge    local\n{}   net10     bridge    local\n",
                "a".repeat(12),
                "d".repeat(12),
                "b".repeat(12),
                "c".repeat(12)
            )
        );
        let out = render_list(&nets, &args("", true, false)).unwrap();
        assert_eq!(out.lines().collect::<Vec<_>>()[2], "b".repeat(12));
        let out = render_list(&nets, &args("", true, true)).unwrap();
        assert_eq!(out.lines().next().unwrap(), "a".repeat(64));
        let out = render_list(
            &nets,
            &args(
                "{{.Name}} {{.Labels}} {{.Internal}} {{.IPv4}} {{.CreatedAt}}",
                true,
                false,
            ),
        )
        .unwrap();
        assert_eq!(
            out.lines().nth(2).unwrap(),
            "net9 a=2,z=1 true true 2026-01-02 03:04:05.12 +0000 UTC"
        );
        assert!(natural_less("net9", "net10"));
        assert!(natural_less("a1", "ab"));
        assert!(!natural_less("net10", "net10"));
        assert!(natural_less("x01", "x001"));
    }

    #[test]
    fn connect_and_disconnect_bodies() {
        let a = ConnectArgs {
            network: "n1".into(),
            container: "c1".into(),
            ip: "10.5.0.9".into(),
            alias: vec!["web".into(), "www".into()],
            ..Default::default()
        };
        assert_eq!(
            connect_body(&a).unwrap(),
            json!({"Container": "c1", "EndpointConfig": {
                "IPAMConfig": {"IPv4Address": "10.5.0.9", "IPv6Address": "", "LinkLocalIPs": []},
                "Links": [], "Aliases": ["web", "www"], "DriverOpts": {}, "GwPriority": 0}})
        );
        let bad = ConnectArgs {
            driver_opt: vec!["x".into()],
            ..a.clone()
        };
        assert_eq!(
            connect_body(&bad).unwrap_err().message,
            "invalid key/value pair format in driver options"
        );
        let link = ConnectArgs {
            link: vec!["other:alias".into()],
            ..a
        };
        assert_eq!(
            connect_body(&link).unwrap()["EndpointConfig"]["Links"],
            json!(["other:alias"])
        );
        assert_eq!(
            disconnect_body(&DisconnectArgs {
                network: "n1".into(),
                container: "c1".into(),
                force: true
            }),
            json!({"Container": "c1", "Force": true})
        );
    }
}
