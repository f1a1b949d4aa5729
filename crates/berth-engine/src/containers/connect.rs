//! `POST /networks/{id}/connect` and `/disconnect`: a container joins or leaves a network. A running container
//! gains (`eth<N>`) or loses the interface at once, with its hosts file and DNS names; a stopped one only has its
//! record changed and gets the interface at its next start.

use std::sync::Arc;

use bollard_stubs::models::EndpointSettings;

use super::{ContainerError, ContainerService, Result};
use crate::networks::{Member, NetworkError};

impl ContainerService {
    /// Connects container `name` to `network`.
    pub async fn connect(
        self: &Arc<Self>,
        network: &str,
        name: &str,
        settings: Option<EndpointSettings>,
    ) -> Result<()> {
        let net = self.networks.get(network)?;
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if !net.is_bridge() || mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(ContainerError::Forbidden(format!(
                "container {} cannot be connected to network {}: a container on the host network, on none or \
                 sharing another container's network namespace cannot join other networks",
                rec.name, net.name
            )));
        }
        if rec.networks.values().any(|ep| ep.network_id == net.id) || rec.networks.contains_key(&net.name) {
            return Err(ContainerError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, net.name
            )));
        }
        let ep = super::create::endpoint_config(&net, &settings.unwrap_or_default())?;
        self.networks.check_endpoint(&net, &ep)?;
        let running = rec.state.status.is_running();
        if running && rec.networks.is_empty() {
            return Err(ContainerError::Conflict(format!(
                "container {} runs without a network of its own (the daemon has no default bridge): stop it \
                 before connecting it to {}",
                rec.name, net.name
            )));
        }
        let mut ep = ep;
        if running {
            let used: Vec<String> = rec
                .networks
                .values()
                .filter_map(|ep| ep.live.as_ref().map(|a| a.ifname.clone()))
                .collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default();
            let path = self.networks.netns_path(&rec.id);
            let member = Member {
                id: &rec.id,
                name: &rec.name,
            };
            let a = self
                .networks
                .attach(&member, &path, &net, &ep, &ifname, false)
                .await?;
            ep.live = Some(a);
        }
        let snap = {
            let mut r = e.rec();
            r.networks.insert(net.name.clone(), ep);
            r.clone()
        };
        if let Err(err) = self.save(&snap) {
            if let Some(a) = snap.networks.get(&net.name).and_then(|ep| ep.live.clone()) {
                self.networks.detach(&rec.id, &net.id, Some(&a)).await;
            }
            e.rec().networks.remove(&net.name);
            return Err(err);
        }
        if running {
            self.rewrite_hosts(&snap)?;
        }
        Ok(())
    }

    /// Disconnects container `name` from `network`.
    pub async fn disconnect(self: &Arc<Self>, network: &str, name: &str, force: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let net = match self.networks.get(network) {
            Ok(n) => Some(n),
            // With force, a container can leave a network that no longer exists.
            Err(NetworkError::NotFound(_)) if force => None,
            Err(err) => return Err(err.into()),
        };
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        let key = rec
            .networks
            .iter()
            .find(|(k, ep)| match &net {
                Some(n) => ep.network_id == n.id,
                None => k.as_str() == network,
            })
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            let mode = rec.host_config.network_mode.clone().unwrap_or_default();
            if net.as_ref().is_some_and(|n| !n.is_bridge() && (n.name == mode)) {
                return Err(ContainerError::Forbidden(format!(
                    "container {} cannot be disconnected from network {}: it is its network mode",
                    rec.name, mode
                )));
            }
            return Err(ContainerError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.id,
                net.as_ref().map_or(network, |n| n.name.as_str())
            )));
        };
        let ep = rec.networks.get(&key).cloned().unwrap_or_default();
        if let Some(a) = ep.live.as_ref().filter(|_| rec.state.status.is_running()) {
            self.networks.detach(&rec.id, &ep.network_id, Some(a)).await;
        }
        let snap = {
            let mut r = e.rec();
            r.networks.remove(&key);
            r.clone()
        };
        self.save(&snap)?;
        if snap.state.status.is_running() {
            self.rewrite_hosts(&snap)?;
        }
        Ok(())
    }

    /// The hosts file and resolv.conf of a running container after its networks changed (podman rewrites
    /// resolv.conf too, so a container that joins a user-defined network can resolve its names).
    fn rewrite_hosts(&self, rec: &super::Record) -> Result<()> {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        let mut live: Vec<&crate::networks::Attached> =
            rec.networks.values().filter_map(|ep| ep.live.as_ref()).collect();
        live.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        let ips: Vec<std::net::Ipv4Addr> = live.iter().map(|a| a.ip).collect();
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let cdir = self.dirs.container(&rec.id);
        super::create::write_file(
            &cdir,
            "hosts",
            super::create::hosts_text(&hostname, &mode, &rec.host_config, &ips),
        )?;
        let mut eps: Vec<&crate::networks::EndpointConfig> =
            rec.networks.values().filter(|ep| ep.live.is_some()).collect();
        eps.sort_by_key(|ep| ep.live.as_ref().map(|a| a.ifname.clone()));
        let nets: Vec<crate::networks::NetRecord> = eps
            .iter()
            .filter_map(|ep| self.networks.get(&ep.network_id).ok())
            .collect();
        let (servers, host_resolv) = self.networks.resolv_conf(&nets);
        super::create::write_file(
            &cdir,
            "resolv.conf",
            super::create::resolv_text(&host_resolv, Some(&servers), &rec.host_config, &mode),
        )
    }
}
