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
        let network = host.network_mode.clone().unwrap_or_default();
        if network == "bridge" {
            warnings.push(
                "the bridge network is not implemented yet: the container gets its own network namespace with \
                 only a loopback interface"
                    .to_string(),
            );
        }
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
        if config.hostname.as_deref().unwrap_or("").is_empty() {
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
            write_etc_files(&cdir, config.hostname.as_deref().unwrap_or(""), &network, &host)?;
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
/// and the host's resolvers minus loopback addresses (which would point into the container itself).
fn write_etc_files(dir: &std::path::Path, hostname: &str, network: &str, host: &HostConfig) -> Result<()> {
    let write = |name: &str, data: String| {
        let p = dir.join(name);
        std::fs::write(&p, data)
            .map_err(|e| ContainerError::System(format!("cannot write {}: {e}", p.display())))
    };
    write("hostname", format!("{hostname}\n"))?;
    let mut hosts = if network == "host" {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    };
    for h in host.extra_hosts.clone().unwrap_or_default() {
        if let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    write("hosts", hosts)?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut resolv = String::new();
    let dns = host.dns.clone().unwrap_or_default();
    let search = host.dns_search.clone().unwrap_or_default();
    let opts = host.dns_options.clone().unwrap_or_default();
    for line in host_resolv.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns.starts_with("127.") || ns == "::1";
            if !dns.is_empty() || (loopback && network != "host") {
                continue;
            }
        }
        if (!search.is_empty() && t.starts_with("search")) || (!opts.is_empty() && t.starts_with("options")) {
            continue;
        }
        resolv.push_str(line);
        resolv.push('\n');
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
    write("resolv.conf", resolv)?;
    Ok(())
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
        write_etc_files(t.path(), "abc", "none", &host).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("hostname")).unwrap(),
            "abc\n"
        );
        let hosts = std::fs::read_to_string(t.path().join("hosts")).unwrap();
        assert!(hosts.contains("10.0.0.2\tdb"), "{hosts}");
        let resolv = std::fs::read_to_string(t.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
        assert!(!resolv.contains("nameserver 127."), "{resolv}");
    }
}
