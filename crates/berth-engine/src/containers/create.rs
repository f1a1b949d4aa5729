//! `POST /containers/create`: merge the request with the image's config, check everything, then make the layers,
//! the container's files and volumes, and commit the record — the last step, so that a crash leaves nothing
//! visible (the start-up sweep removes what no record owns).

use std::sync::Arc;

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, ContainerCreateResponse, HostConfig, MountPoint,
};

use super::record::{Record, State, short};
use super::spec::{self, MountKind};
use super::{ContainerError, ContainerService, Entry, Result, layers, names, store};
use crate::networks::{EndpointConfig, NetworkError};
use crate::time::now_nanos;

impl ContainerService {
    /// Creates a container from `body`, named `name` (or a generated name).
    pub async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let mut warnings = Vec::new();
        if let Some(n) = name
            && !n.is_empty()
            && !names::valid_name(n)
        {
            return Err(ContainerError::Invalid(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let endpoints_req = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let (config, mut host) = split_body(body)?;
        // dockerd records the daemon's default log driver when the request names none.
        if host
            .log_config
            .as_ref()
            .and_then(|l| l.typ.as_deref())
            .is_none_or(str::is_empty)
        {
            let opts = host
                .log_config
                .as_ref()
                .and_then(|l| l.config.clone())
                .unwrap_or_default();
            host.log_config = Some(bollard_stubs::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(opts),
            });
        }
        let image_name = config.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(ContainerError::Invalid("No image specified".into()));
        }
        let (image_id, image_cfg, lowers) = self.images.for_container(&image_name)?;
        let image_cfg: ContainerConfig = serde_json::from_value(image_cfg).unwrap_or_default();
        spec::validate(&config, &host).map_err(|e| ContainerError::Invalid(e.to_string()))?;
        match host.userns_mode.as_deref() {
            None | Some("") | Some("host") => {}
            Some(other) => {
                return Err(ContainerError::Invalid(format!(
                    "invalid user namespace mode {other:?}: only \"host\" is supported"
                )));
            }
        }
        if self.cfg.remap.is_some()
            && host.privileged == Some(true)
            && host.userns_mode.as_deref() != Some("host")
        {
            return Err(ContainerError::Invalid(
                "privileged mode is incompatible with user namespaces. You must run the container in the host \
                 namespace (--userns=host) when running privileged mode"
                    .into(),
            ));
        }
        let mut config =
            spec::merge_config(&config, &image_cfg).map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let mut argv =
            spec::process::command_line(&config).map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let path = argv.remove(0);
        let args = argv;
        let endpoints = self.resolve_networks(&mut host, &endpoints_req, &mut warnings)?;
        let network = host.network_mode.clone().unwrap_or_default();
        if let Some(target) = network.strip_prefix("container:") {
            self.lookup(target)?;
        }
        let requests = spec::parse_mounts(&config, &host, &image_cfg)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        for r in &requests {
            if let MountKind::Bind { source } = &r.kind
                && !source.exists()
            {
                return Err(ContainerError::Invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    source.display()
                )));
            }
        }

        let _names = self.names.lock().await;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n).to_string();
                if let Ok(other) = self.lookup(&format!("/{n}"))
                    && other.rec().name == n
                {
                    return Err(ContainerError::Conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to \
                         remove (or rename) that container to be able to reuse that name.",
                        other.id()
                    )));
                }
                n
            }
            None => {
                let mut retry = 0;
                loop {
                    let n = names::generate(retry);
                    if self
                        .lookup(&format!("/{n}"))
                        .map(|e| e.rec().name != n)
                        .unwrap_or(true)
                    {
                        break n;
                    }
                    retry += 1;
                }
            }
        };
        let id = names::new_id();
        if config.hostname.as_deref().unwrap_or("").is_empty() && !network.starts_with("container:") {
            config.hostname = Some(if network == "host" {
                rustix::system::uname().nodename().to_string_lossy().into_owned()
            } else {
                short(&id).to_string()
            });
        }

        // Files: layers, the container directory, volumes. Undone on any failure.
        let ly = layers::ContainerLayers::new(&self.layers_root, &id);
        let cdir = self.dirs.container(&id);
        let undo = |svc: &ContainerService, made: &[String], referenced: &[String]| {
            let _ = ly.remove();
            let _ = std::fs::remove_dir_all(&cdir);
            for v in made.iter().chain(referenced) {
                svc.volumes.release(v, &id);
            }
            for v in made {
                let _ = svc.volumes.remove(v, true);
            }
        };
        ly.create(&lowers)?;
        let mut made_volumes = Vec::new();
        let mut referenced = Vec::new();
        let made = (|| -> Result<Vec<MountPoint>> {
            std::fs::create_dir_all(&cdir)
                .map_err(|e| ContainerError::System(format!("cannot create {}: {e}", cdir.display())))?;
            write_etc_files(
                &cdir,
                config.hostname.as_deref().unwrap_or(""),
                &network,
                &host,
                &self.networks.host_resolv_conf(),
            )?;
            if let Some(remap) = self.remap_for(&host) {
                give_to_mapped_root(&ly, &cdir, remap)?;
            }
            let mut mounts = Vec::new();
            for r in &requests {
                let mut mp = MountPoint {
                    destination: Some(r.destination.clone()),
                    mode: Some(r.mode.clone()),
                    rw: Some(!r.read_only),
                    propagation: Some(r.propagation.clone().unwrap_or_default()),
                    ..Default::default()
                };
                match &r.kind {
                    MountKind::Bind { source } => {
                        mp.typ = Some("bind".into());
                        mp.source = Some(source.display().to_string());
                        if mp.propagation.as_deref() == Some("") {
                            mp.propagation = Some("rprivate".into());
                        }
                    }
                    MountKind::Volume { name, .. } => {
                        let req = bollard_stubs::models::VolumeCreateRequest {
                            name: name.clone(),
                            ..Default::default()
                        };
                        let (v, created) = self
                            .volumes
                            .create_referenced(req, &id)
                            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
                        if created {
                            if let Some(remap) = self.remap_for(&host) {
                                // As docker: a new volume belongs to the container's root; a bind keeps its owner.
                                let (uid, gid) = remap.root();
                                let data = std::path::Path::new(&v.mountpoint);
                                std::os::unix::fs::lchown(data, Some(uid), Some(gid)).map_err(|e| {
                                    ContainerError::System(format!("cannot chown {}: {e}", data.display()))
                                })?;
                            }
                            made_volumes.push(v.name.clone());
                        } else {
                            referenced.push(v.name.clone());
                        }
                        mp.typ = Some("volume".into());
                        mp.name = Some(v.name.clone());
                        mp.driver = Some(v.driver.clone());
                        mp.source = Some(v.mountpoint.clone());
                        mp.propagation = Some(String::new());
                    }
                    MountKind::Tmpfs { .. } => {
                        mp.typ = Some("tmpfs".into());
                        mp.source = Some(String::new());
                    }
                }
                mounts.push(mp);
            }
            Ok(mounts)
        })();
        let mounts = match made {
            Ok(m) => m,
            Err(e) => {
                undo(self, &made_volumes, &referenced);
                return Err(e);
            }
        };
        let rec = Record {
            id: id.clone(),
            name,
            created: now_nanos(),
            image: image_name,
            image_id,
            config,
            host_config: host,
            path,
            args,
            state: State::default(),
            mounts,
            restart_count: 0,
            has_been_started: false,
            lowers,
            networks: endpoints,
            ports: Vec::new(),
        };
        if let Err(e) = store::insert(&self.db, &rec) {
            undo(self, &made_volumes, &referenced);
            return Err(e.into());
        }
        self.event(&rec, "create", &[]);
        self.entries_mut().insert(id.clone(), Entry::new(rec));
        // The record names the volumes now: the creation references are no longer needed.
        for v in made_volumes.iter().chain(&referenced) {
            self.volumes.release(v, &id);
        }
        Ok(ContainerCreateResponse { id, warnings })
    }
}

/// A remapped container's own files belong to its mapped root: the writable layer, overlay's work directories,
/// the init layer's placeholders and the `/etc` files bind-mounted over them.
fn give_to_mapped_root(
    ly: &super::layers::ContainerLayers,
    cdir: &std::path::Path,
    remap: &crate::userns::Remap,
) -> Result<()> {
    let (uid, gid) = remap.root();
    let own = |p: &std::path::Path| {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
            .map_err(|e| ContainerError::System(format!("cannot chown {}: {e}", p.display())))
    };
    own(&ly.upper())?;
    own(&ly.dir().join("work"))?;
    own(&ly.init_dir().join("work"))?;
    super::idmap::shift_tree(&ly.init_dir().join("diff"), &remap.uids, &remap.gids)
        .map_err(|e| ContainerError::System(e.to_string()))?;
    for f in ["hostname", "hosts", "resolv.conf"] {
        own(&cdir.join(f))?;
    }
    Ok(())
}

impl ContainerService {
    /// The networks a new container joins: its network mode's network (the default `bridge` when it names
    /// none) and any other network of `NetworkingConfig.EndpointsConfig`, each with its aliases, address and
    /// MAC, all checked. `host`, `none` and `container:<id>` join none; their published ports are dropped with
    /// docker's warning.
    fn resolve_networks(
        &self,
        host: &mut HostConfig,
        requested: &std::collections::HashMap<String, bollard_stubs::models::EndpointSettings>,
        warnings: &mut Vec<String>,
    ) -> Result<std::collections::BTreeMap<String, EndpointConfig>> {
        let mut out = std::collections::BTreeMap::new();
        let mode = host.network_mode.clone().unwrap_or_default();
        let primary = match mode.as_str() {
            "host" | "none" => None,
            m if m.starts_with("container:") => None,
            "" | "default" | "bridge" => match self.networks.default_network() {
                Some(n) => Some(n),
                None if mode == "bridge" => return Err(NetworkError::NotFound("bridge".into()).into()),
                None => None,
            },
            name => Some(self.networks.get(name)?),
        };
        let primary = match primary {
            Some(n) if n.driver == "host" => {
                host.network_mode = Some("host".into());
                None
            }
            Some(n) if n.driver == "null" => {
                host.network_mode = Some("none".into());
                None
            }
            other => other,
        };
        let Some(primary) = primary else {
            let mode = host.network_mode.clone().unwrap_or_default();
            if (mode == "host" || mode == "none" || mode.starts_with("container:"))
                && host.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
            {
                warnings.push(format!(
                    "Published ports are discarded when using {mode} network mode"
                ));
                host.port_bindings = None;
            }
            if requested.keys().any(|k| k != &mode) {
                return Err(ContainerError::Invalid(format!(
                    "container cannot be connected to other networks in network mode {mode}"
                )));
            }
            return Ok(out);
        };
        if mode.is_empty() || mode == "default" {
            host.network_mode = Some("bridge".into());
        }
        let wanted = |n: &crate::networks::NetRecord, key: Option<&str>| {
            key.and_then(|k| requested.get(k))
                .or_else(|| requested.get(&n.name))
                .or_else(|| requested.get(&n.id))
                .cloned()
                .unwrap_or_default()
        };
        let first = wanted(&primary, Some(mode.as_str()));
        let ep = endpoint_config(&primary, &first)?;
        self.networks.check_endpoint(&primary, &ep)?;
        out.insert(primary.name.clone(), ep);
        for (key, settings) in requested {
            if key == &mode || key == &primary.name || key == &primary.id {
                continue;
            }
            let net = self.networks.get(key)?;
            if !net.is_bridge() {
                return Err(ContainerError::Invalid(format!(
                    "container cannot be connected to network {} ({} driver) as well as to {}",
                    net.name, net.driver, primary.name
                )));
            }
            let ep = endpoint_config(&net, settings)?;
            self.networks.check_endpoint(&net, &ep)?;
            out.insert(net.name.clone(), ep);
        }
        Ok(out)
    }
}

/// What a container asks of one network, from the API's endpoint settings.
pub(crate) fn endpoint_config(
    net: &crate::networks::NetRecord,
    s: &bollard_stubs::models::EndpointSettings,
) -> Result<EndpointConfig> {
    let ipv4 = match s
        .ipam_config
        .as_ref()
        .and_then(|c| c.ipv4_address.as_deref())
        .filter(|a| !a.is_empty())
    {
        Some(a) => Some(a.parse::<std::net::Ipv4Addr>().map_err(|_| {
            ContainerError::Invalid(format!("invalid IPv4 address {a:?} for network {}", net.name))
        })?),
        None => None,
    };
    if s.ipam_config
        .as_ref()
        .and_then(|c| c.ipv6_address.as_deref())
        .is_some_and(|a| !a.is_empty())
    {
        return Err(ContainerError::Invalid(
            "IPv6 addresses are not supported by Berth".into(),
        ));
    }
    let mut aliases: Vec<String> = Vec::new();
    for a in s.aliases.clone().unwrap_or_default() {
        if !aliases.contains(&a) {
            aliases.push(a);
        }
    }
    Ok(EndpointConfig {
        network_id: net.id.clone(),
        aliases,
        ipv4,
        mac: s.mac_address.clone().filter(|m| !m.is_empty()),
        live: None,
    })
}

/// Splits the create body into docker's `Config` and `HostConfig`.
pub(crate) fn split_body(body: ContainerCreateBody) -> Result<(ContainerConfig, HostConfig)> {
    let host = body.host_config.clone().unwrap_or_default();
    let mut v = serde_json::to_value(&body).map_err(|e| ContainerError::Invalid(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("HostConfig");
        o.remove("NetworkingConfig");
    }
    let config: ContainerConfig =
        serde_json::from_value(v).map_err(|e| ContainerError::Invalid(e.to_string()))?;
    Ok((config, host))
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` for the container, bind-mounted over the init layer's
/// placeholders. With the host's network they are the host's (resolv.conf copied); otherwise a private hosts file
/// and the host's resolvers minus loopback addresses (which would point into the container itself). A container
/// on a bridge network gets both rewritten at each start, with its addresses and the networks' DNS servers.
fn write_etc_files(
    dir: &std::path::Path,
    hostname: &str,
    network: &str,
    host: &HostConfig,
    host_resolv: &str,
) -> Result<()> {
    write_file(dir, "hostname", format!("{hostname}\n"))?;
    write_file(dir, "hosts", hosts_text(hostname, network, host, &[]))?;
    write_file(dir, "resolv.conf", resolv_text(host_resolv, None, host, network))
}

pub(crate) fn write_file(dir: &std::path::Path, name: &str, data: String) -> Result<()> {
    let p = dir.join(name);
    // Written in place (same inode): the file may be bind-mounted into a running container.
    std::fs::write(&p, data).map_err(|e| ContainerError::System(format!("cannot write {}: {e}", p.display())))
}

/// The hosts file: the host's with the host network, else loopback names and the container's own addresses
/// (`127.0.1.1` when it has none) under its hostname, then `--add-host` entries.
pub(crate) fn hosts_text(
    hostname: &str,
    network: &str,
    host: &HostConfig,
    own: &[std::net::Ipv4Addr],
) -> String {
    let mut hosts = if network == "host" {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let mut h = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        if own.is_empty() {
            h.push_str(&format!("127.0.1.1\t{hostname}\n"));
        }
        for ip in own {
            h.push_str(&format!("{ip}\t{hostname}\n"));
        }
        h
    };
    for h in host.extra_hosts.clone().unwrap_or_default() {
        if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    hosts
}

/// The resolv.conf: the host's (`host_resolv`) with `nameservers` in place of its own when given (a bridge
/// network's DNS servers), loopback resolvers dropped outside the host network, then `--dns`, `--dns-search`,
/// `--dns-option`.
pub(crate) fn resolv_text(
    host_resolv: &str,
    nameservers: Option<&[String]>,
    host: &HostConfig,
    network: &str,
) -> String {
    let mut resolv = String::new();
    let dns = host.dns.clone().unwrap_or_default();
    let search = host.dns_search.clone().unwrap_or_default();
    let opts = host.dns_options.clone().unwrap_or_default();
    for line in host_resolv.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns.starts_with("127.") || ns == "::1";
            if !dns.is_empty() || nameservers.is_some() || (loopback && network != "host") {
                continue;
            }
        }
        if (!search.is_empty() && t.starts_with("search")) || (!opts.is_empty() && t.starts_with("options")) {
            continue;
        }
        resolv.push_str(line);
        resolv.push('\n');
    }
    if dns.is_empty() {
        for ns in nameservers.unwrap_or_default() {
            resolv.push_str(&format!("nameserver {ns}\n"));
        }
    }
    for ns in &dns {
        resolv.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        resolv.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !opts.is_empty() {
        resolv.push_str(&format!("options {}\n", opts.join(" ")));
    }
    resolv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_splits_into_config_and_host_config() {
        let body: ContainerCreateBody = serde_json::from_value(serde_json::json!({
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1048576000}
        }))
        .unwrap();
        let (c, h) = split_body(body).unwrap();
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(h.memory, Some(1048576000));
    }

    #[test]
    fn etc_files_drop_loopback_resolvers_and_add_hosts() {
        let t = tempfile::tempdir().unwrap();
        let host: HostConfig = serde_json::from_value(serde_json::json!({
            "ExtraHosts": ["db:10.0.0.2"], "Dns": ["192.0.2.53"]
        }))
        .unwrap();
        write_etc_files(
            t.path(),
            "abc",
            "none",
            &host,
            "nameserver 127.0.0.53\nnameserver 192.0.2.1\n",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("hostname")).unwrap(),
            "abc\n"
        );
        let hosts = std::fs::read_to_string(t.path().join("hosts")).unwrap();
        assert!(hosts.contains("10.0.0.2\tdb"), "{hosts}");
        let resolv = std::fs::read_to_string(t.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
        assert!(!resolv.contains("nameserver 127."), "{resolv}");
        assert!(
            !resolv.contains("192.0.2.1"),
            "--dns replaces the host's: {resolv}"
        );
    }

    #[test]
    fn a_bridge_container_gets_its_addresses_and_the_network_dns() {
        let host = HostConfig::default();
        let hosts = hosts_text("abc", "bridge", &host, &["172.18.0.2".parse().unwrap()]);
        assert!(hosts.contains("172.18.0.2\tabc\n"), "{hosts}");
        assert!(!hosts.contains("127.0.1.1"), "{hosts}");
        let resolv = resolv_text(
            "search example.org\nnameserver 10.0.0.1\noptions ndots:2\n",
            Some(&["172.18.0.1".to_string()]),
            &host,
            "net",
        );
        assert_eq!(
            resolv,
            "search example.org\noptions ndots:2\nnameserver 172.18.0.1\n"
        );
    }
}
