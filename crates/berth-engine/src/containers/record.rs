//! A container as the daemon keeps it (one JSON document per container in SQLite), and its views: inspect, the
//! `ps` summary, the status line ("Up 3 minutes", "Exited (0) 2 seconds ago").

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerConfig, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHostConfig, ContainerSummaryStateEnum, DriverData, HostConfig, MountPoint,
    NetworkSettings,
};
use serde::{Deserialize, Serialize};

use crate::time::{now_nanos, rfc3339_nanos};

/// The lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or its start failed before the program ran).
    #[default]
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Waiting to be restarted by its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Ran and ended.
    Exited,
    /// Could not be cleaned up.
    Dead,
}

impl Status {
    /// docker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// Whether a process is alive (running or paused).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// The runtime state of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The lifecycle state.
    pub status: Status,
    /// The init's host pid while running.
    pub pid: i64,
    /// The monitor's pid while running.
    #[serde(default)]
    pub monitor_pid: i64,
    /// The last exit code.
    pub exit_code: i64,
    /// Why the last start failed.
    pub error: String,
    /// The last start, unix nanos (0: never).
    pub started_at: i64,
    /// The last exit, unix nanos (0: never).
    pub finished_at: i64,
    /// The last exit was an OOM kill.
    pub oom_killed: bool,
    /// Stopped by the user (restart policies `unless-stopped`/`always` leave it stopped across daemon restarts).
    #[serde(default)]
    pub manually_stopped: bool,
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    /// Unix nanos.
    pub created: i64,
    /// The image as asked for (`busybox`).
    pub image: String,
    /// The image id (`sha256:...`).
    pub image_id: String,
    /// The configuration, merged with the image's (env, cmd, entrypoint, workdir, user, labels, ...).
    pub config: ContainerConfig,
    /// The host configuration as given.
    pub host_config: HostConfig,
    /// The program.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The state.
    pub state: State,
    /// The mounts, with volume names and host sources resolved.
    pub mounts: Vec<MountPoint>,
    /// How often the restart policy restarted it.
    pub restart_count: i64,
    /// Whether it was ever started.
    pub has_been_started: bool,
    /// The image's layer directories, top first (the lower layers of its root).
    pub lowers: Vec<std::path::PathBuf>,
    /// Its networks by name, with what it asked for and (while it runs) what it got.
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, crate::networks::EndpointConfig>,
    /// The ports published while it runs.
    #[serde(default)]
    pub ports: Vec<crate::networks::Published>,
}

/// The first 12 characters of an id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// docker's human duration ("About a minute", "3 hours", "Less than a second").
pub fn human_duration(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

impl Record {
    /// Forgets what its networks gave it while it ran (addresses, ports).
    pub fn clear_network_live(&mut self) {
        for ep in self.networks.values_mut() {
            ep.live = None;
        }
        self.ports.clear();
    }

    /// docker's `Status` column.
    pub fn status_line(&self) -> String {
        let now = now_nanos();
        let s = &self.state;
        match s.status {
            Status::Running => format!("Up {}", human_duration(now - s.started_at)),
            Status::Paused => format!("Up {} (Paused)", human_duration(now - s.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                s.exit_code,
                human_duration(now - s.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Dead => "Dead".into(),
            Status::Created => "Created".into(),
            Status::Exited => {
                if s.finished_at == 0 {
                    "Created".into()
                } else {
                    format!(
                        "Exited ({}) {} ago",
                        s.exit_code,
                        human_duration(now - s.finished_at)
                    )
                }
            }
        }
    }

    /// The command as `ps` shows it.
    pub fn command_line(&self) -> String {
        std::iter::once(self.path.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, layers_root: &std::path::Path, dirs: &Dirs) -> ContainerInspectResponse {
        let s = &self.state;
        let time_or_zero = |n: i64| {
            if n == 0 {
                "0001-01-01T00:00:00Z".to_string()
            } else {
                rfc3339_nanos(n)
            }
        };
        let status = match s.status {
            Status::Created => ContainerStateStatusEnum::CREATED,
            Status::Running => ContainerStateStatusEnum::RUNNING,
            Status::Paused => ContainerStateStatusEnum::PAUSED,
            Status::Restarting => ContainerStateStatusEnum::RESTARTING,
            Status::Removing => ContainerStateStatusEnum::REMOVING,
            Status::Exited => ContainerStateStatusEnum::EXITED,
            Status::Dead => ContainerStateStatusEnum::DEAD,
        };
        let mut graph = HashMap::new();
        let upper = layers_root.join(&self.id);
        let init = layers_root.join(format!("{}-init", self.id));
        let lower: Vec<String> = std::iter::once(init.join("diff"))
            .chain(self.lowers.iter().cloned())
            .map(|p| p.display().to_string())
            .collect();
        graph.insert("LowerDir".to_string(), lower.join(":"));
        graph.insert("UpperDir".to_string(), upper.join("diff").display().to_string());
        graph.insert("WorkDir".to_string(), upper.join("work").display().to_string());
        graph.insert(
            "MergedDir".to_string(),
            upper.join("merged").display().to_string(),
        );
        let network_mode = self.host_config.network_mode.clone().unwrap_or_default();
        ContainerInspectResponse {
            id: Some(self.id.clone()),
            created: Some(rfc3339_nanos(self.created)),
            path: Some(self.path.clone()),
            args: Some(self.args.clone()),
            state: Some(ContainerState {
                status: Some(status),
                running: Some(s.status.is_running()),
                paused: Some(s.status == Status::Paused),
                restarting: Some(s.status == Status::Restarting),
                oom_killed: Some(s.oom_killed),
                dead: Some(s.status == Status::Dead),
                pid: Some(if s.status.is_running() { s.pid } else { 0 }),
                exit_code: Some(s.exit_code),
                error: Some(s.error.clone()),
                started_at: Some(time_or_zero(s.started_at)),
                finished_at: Some(time_or_zero(s.finished_at)),
                health: None,
            }),
            image: Some(self.image_id.clone()),
            resolv_conf_path: Some(dirs.file(&self.id, "resolv.conf")),
            hostname_path: Some(dirs.file(&self.id, "hostname")),
            hosts_path: Some(dirs.file(&self.id, "hosts")),
            log_path: Some(self.log_path(dirs)),
            name: Some(format!("/{}", self.name)),
            restart_count: Some(self.restart_count),
            driver: Some("overlay2".into()),
            platform: Some("linux".into()),
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: None,
            host_config: Some(self.host_config.clone()),
            graph_driver: Some(DriverData {
                name: "overlay2".into(),
                data: graph,
            }),
            mounts: Some(self.mounts.clone()),
            config: Some(self.config.clone()),
            network_settings: Some(NetworkSettings {
                sandbox_id: Some(String::new()),
                sandbox_key: Some(if s.status.is_running() && network_mode != "host" {
                    format!("/proc/{}/ns/net", s.pid)
                } else {
                    String::new()
                }),
                ports: Some(self.port_map()),
                networks: Some(self.endpoint_settings()),
            }),
            ..Default::default()
        }
    }

    /// `NetworkSettings.Networks`: each network with what the container asked for and, while it runs, its
    /// address, gateway and MAC.
    pub fn endpoint_settings(&self) -> HashMap<String, bollard_stubs::models::EndpointSettings> {
        let running = self.state.status.is_running();
        self.networks
            .iter()
            .map(|(name, ep)| {
                let live = ep.live.as_ref().filter(|_| running);
                let mut dns_names = vec![self.name.clone(), short(&self.id).to_string()];
                dns_names.extend(ep.aliases.iter().cloned());
                let v = bollard_stubs::models::EndpointSettings {
                    ipam_config: ep.ipv4.map(|ip| bollard_stubs::models::EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    links: None,
                    mac_address: Some(live.map(|a| a.mac.clone()).or(ep.mac.clone()).unwrap_or_default()),
                    aliases: (!ep.aliases.is_empty()).then(|| ep.aliases.clone()),
                    network_id: Some(ep.network_id.clone()),
                    endpoint_id: Some(live.map(|a| a.endpoint_id.clone()).unwrap_or_default()),
                    gateway: Some(live.map(|a| a.gateway.to_string()).unwrap_or_default()),
                    ip_address: Some(live.map(|a| a.ip.to_string()).unwrap_or_default()),
                    ip_prefix_len: Some(live.map_or(0, |a| i64::from(a.prefix))),
                    ipv6_gateway: Some(String::new()),
                    global_ipv6_address: Some(String::new()),
                    global_ipv6_prefix_len: Some(0),
                    dns_names: (name != "bridge").then_some(dns_names),
                    ..Default::default()
                };
                (name.clone(), v)
            })
            .collect()
    }

    /// `NetworkSettings.Ports`: published ports while it runs, exposed ones without a binding as `null`.
    pub fn port_map(&self) -> bollard_stubs::models::PortMap {
        let mut out: bollard_stubs::models::PortMap = HashMap::new();
        if !self.state.status.is_running() {
            return out;
        }
        for key in self.config.exposed_ports.clone().unwrap_or_default() {
            out.entry(key).or_insert(None);
        }
        for p in &self.ports {
            let key = format!("{}/{}", p.container_port, if p.udp { "udp" } else { "tcp" });
            out.entry(key).or_insert(None).get_or_insert_with(Vec::new).push(
                bollard_stubs::models::PortBinding {
                    host_ip: Some(
                        p.host_ip
                            .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                    ),
                    host_port: Some(p.host_port.to_string()),
                },
            );
        }
        out
    }

    /// The `Ports` of `GET /containers/json`.
    pub fn port_summaries(&self) -> Vec<bollard_stubs::models::PortSummary> {
        use bollard_stubs::models::{PortSummary, PortSummaryTypeEnum};
        let typ = |udp: bool| {
            Some(if udp {
                PortSummaryTypeEnum::UDP
            } else {
                PortSummaryTypeEnum::TCP
            })
        };
        let mut out: Vec<PortSummary> = Vec::new();
        let running = self.state.status.is_running();
        if running {
            for p in &self.ports {
                out.push(PortSummary {
                    ip: Some(
                        p.host_ip
                            .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                    ),
                    private_port: p.container_port,
                    public_port: Some(p.host_port),
                    typ: typ(p.udp),
                });
            }
        }
        for key in self.config.exposed_ports.clone().unwrap_or_default() {
            let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            let Ok(port) = port.parse::<u16>() else { continue };
            let udp = proto == "udp";
            if !out.iter().any(|p| p.private_port == port && p.typ == typ(udp)) {
                out.push(PortSummary {
                    ip: None,
                    private_port: port,
                    public_port: None,
                    typ: typ(udp),
                });
            }
        }
        out
    }

    /// The json-file log path ("" with the `none` log driver).
    pub fn log_path(&self, dirs: &Dirs) -> String {
        let driver = self
            .host_config
            .log_config
            .as_ref()
            .and_then(|l| l.typ.clone())
            .unwrap_or_default();
        if driver == "none" {
            String::new()
        } else {
            dirs.file(&self.id, &format!("{}-json.log", self.id))
        }
    }

    /// One row of `GET /containers/json`.
    pub fn summary(&self, size: Option<(i64, i64)>) -> ContainerSummary {
        let state = match self.state.status {
            Status::Created => ContainerSummaryStateEnum::CREATED,
            Status::Running => ContainerSummaryStateEnum::RUNNING,
            Status::Paused => ContainerSummaryStateEnum::PAUSED,
            Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
            Status::Removing => ContainerSummaryStateEnum::REMOVING,
            Status::Exited => ContainerSummaryStateEnum::EXITED,
            Status::Dead => ContainerSummaryStateEnum::DEAD,
        };
        ContainerSummary {
            id: Some(self.id.clone()),
            names: Some(vec![format!("/{}", self.name)]),
            image: Some(self.image.clone()),
            image_id: Some(self.image_id.clone()),
            command: Some(self.command_line()),
            created: Some(self.created / 1_000_000_000),
            ports: Some(self.port_summaries()),
            size_rw: size.map(|s| s.0),
            size_root_fs: size.map(|s| s.1),
            labels: Some(self.config.labels.clone().unwrap_or_default()),
            state: Some(state),
            status: Some(self.status_line()),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: self.host_config.network_mode.clone(),
                annotations: None,
            }),
            network_settings: Some(bollard_stubs::models::ContainerSummaryNetworkSettings {
                networks: Some(self.endpoint_settings()),
            }),
            mounts: Some(self.mounts.clone()),
            ..Default::default()
        }
    }
}

/// Where a container's files live.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `<data-root>/containers`.
    pub containers: std::path::PathBuf,
    /// `<exec-root>/c`.
    pub run: std::path::PathBuf,
}

impl Dirs {
    /// `<data-root>/containers/<id>`.
    pub fn container(&self, id: &str) -> std::path::PathBuf {
        self.containers.join(id)
    }

    /// A file in it, as a string.
    pub fn file(&self, id: &str, name: &str) -> String {
        self.container(id).join(name).display().to_string()
    }

    /// `<exec-root>/c/<id>`: the bundle and the monitor's state.
    pub fn run(&self, id: &str) -> std::path::PathBuf {
        self.run.join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dockers() {
        assert_eq!(human_duration(500_000_000), "Less than a second");
        assert_eq!(human_duration(3_000_000_000), "3 seconds");
        assert_eq!(human_duration(61_000_000_000), "About a minute");
        assert_eq!(human_duration(300_000_000_000), "5 minutes");
        assert_eq!(human_duration(3_600_000_000_000), "About an hour");
        assert_eq!(human_duration(3 * 3_600_000_000_000), "3 hours");
    }
}
