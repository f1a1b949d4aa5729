//! `/version`, `/info`: facts about the daemon and the host.

use std::collections::HashMap;

use bollard_stubs::models::{
    IndexInfo, LocalNodeState, PluginsInfo, RegistryServiceConfig, SwarmInfo, SystemInfo,
    SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum, SystemVersion, SystemVersionComponents,
    SystemVersionPlatform,
};

/// The Engine API version berthd speaks (docker 27's); the docker 28 CLI and docker-py 7 negotiate down to it.
pub const API_VERSION: &str = "1.47";
/// The oldest API version berthd accepts, as dockerd.
pub const MIN_API_VERSION: &str = "1.24";
/// The daemon's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Compares two `major.minor` API versions numerically; `None` when either is malformed.
pub fn compare_api_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (ma, mi) = s.split_once('.')?;
        Some((ma.parse().ok()?, mi.parse().ok()?))
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

/// The kernel release (`uname -r`).
pub fn kernel_version() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// The host name.
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Docker's name for the machine architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let pretty = get("PRETTY_NAME");
    (
        if pretty.is_empty() {
            "Linux".to_string()
        } else {
            pretty
        },
        get("VERSION_ID"),
    )
}

fn mem_total() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn cgroup_version() -> SystemInfoCgroupVersionEnum {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        SystemInfoCgroupVersionEnum::_2
    } else {
        SystemInfoCgroupVersionEnum::_1
    }
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| i64::try_from(d.count()).unwrap_or(0))
}

/// `GET /version`.
pub fn version() -> SystemVersion {
    let kernel = kernel_version();
    let details: HashMap<String, String> = [
        ("ApiVersion", API_VERSION),
        ("MinAPIVersion", MIN_API_VERSION),
        ("GitCommit", option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")),
        ("GoVersion", "rust"),
        ("Os", "linux"),
        ("Arch", go_arch()),
        ("KernelVersion", kernel.as_str()),
        ("Experimental", "false"),
        ("BuildTime", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "Berth Engine".to_string(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".to_string(),
            version: VERSION.to_string(),
            details: Some(details),
        }]),
        version: Some(VERSION.to_string()),
        api_version: Some(API_VERSION.to_string()),
        min_api_version: Some(MIN_API_VERSION.to_string()),
        git_commit: Some(option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown").to_string()),
        go_version: Some("rust".to_string()),
        os: Some("linux".to_string()),
        arch: Some(go_arch().to_string()),
        kernel_version: Some(kernel),
        experimental: Some(false),
        build_time: Some(String::new()),
    }
}

/// What `/info` needs from the rest of the engine.
#[derive(Debug, Clone, Default)]
pub struct InfoInputs {
    /// The daemon id.
    pub id: String,
    /// The data root.
    pub root_dir: String,
    /// How many images.
    pub images: i64,
    /// Containers: (total, running, paused, stopped).
    pub containers: (i64, i64, i64, i64),
    /// With `userns-remap`: how remapped containers see image layers ("idmapped mounts", "shifted unpack").
    pub userns_layers: Option<&'static str>,
    /// Debug mode.
    pub debug: bool,
    /// Registries marked insecure.
    pub insecure_registries: Vec<String>,
    /// Current `/events` subscribers.
    pub event_listeners: i64,
}

/// `GET /info`.
pub fn info(i: InfoInputs) -> SystemInfo {
    let (os, os_version) = os_release();
    let ncpu = std::thread::available_parallelism().map_or(1, |n| i64::try_from(n.get()).unwrap_or(1));
    let mut cidrs = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
    let mut index = HashMap::new();
    index.insert(
        "docker.io".to_string(),
        IndexInfo {
            name: Some("docker.io".into()),
            mirrors: Some(vec![]),
            secure: Some(true),
            official: Some(true),
        },
    );
    for r in &i.insecure_registries {
        if r.contains('/') {
            cidrs.push(r.clone());
        } else {
            index.insert(
                r.clone(),
                IndexInfo {
                    name: Some(r.clone()),
                    mirrors: Some(vec![]),
                    secure: Some(false),
                    official: Some(false),
                },
            );
        }
    }
    SystemInfo {
        id: Some(i.id),
        containers: Some(i.containers.0),
        containers_running: Some(i.containers.1),
        containers_paused: Some(i.containers.2),
        containers_stopped: Some(i.containers.3),
        images: Some(i.images),
        driver: Some("overlay2".to_string()),
        driver_status: Some(vec![
            vec!["Backing Filesystem".to_string(), "extfs".to_string()],
            vec!["Supports d_type".to_string(), "true".to_string()],
            vec!["Using metacopy".to_string(), "false".to_string()],
            vec!["Native Overlay Diff".to_string(), "true".to_string()],
            vec![
                "Userns layers".to_string(),
                i.userns_layers.unwrap_or("not remapped").to_string(),
            ],
        ]),
        docker_root_dir: Some(i.root_dir),
        plugins: Some(PluginsInfo {
            volume: Some(vec!["local".into()]),
            // Until the bridge network exists, the default network mode gives a container its own network
            // namespace with only a loopback interface; `host` and `none` work as docker's.
            network: Some(vec!["host".into(), "none".into()]),
            authorization: None,
            log: Some(vec!["json-file".into()]),
        }),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(false),
        ipv4_forwarding: Some(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1"),
        ),
        debug: Some(i.debug),
        nfd: Some(open_fds()),
        n_goroutines: Some(0),
        system_time: Some(crate::time::rfc3339_nanos(crate::time::now_nanos())),
        logging_driver: Some("json-file".to_string()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(cgroup_version()),
        n_events_listener: Some(i.event_listeners),
        kernel_version: Some(kernel_version()),
        operating_system: Some(os),
        os_version: Some(os_version),
        os_type: Some("linux".to_string()),
        architecture: Some(std::env::consts::ARCH.to_string()),
        ncpu: Some(ncpu),
        mem_total: Some(mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".to_string()),
        registry_config: Some(RegistryServiceConfig {
            insecure_registry_cidrs: Some(cidrs),
            index_configs: Some(index),
            mirrors: Some(vec![]),
        }),
        name: Some(hostname()),
        labels: Some(vec![]),
        experimental_build: Some(false),
        server_version: Some(VERSION.to_string()),
        default_runtime: Some("berth-runtime".to_string()),
        swarm: Some(SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        // Containers outlive the daemon (their monitors do), always.
        live_restore_enabled: Some(true),
        security_options: Some(
            std::iter::once("name=seccomp,profile=builtin".to_string())
                .chain(i.userns_layers.map(|_| "name=userns".to_string()))
                .collect(),
        ),
        warnings: Some(vec![]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_api_versions("1.9", "1.24"), Some(Less));
        assert_eq!(compare_api_versions("1.47", "1.47"), Some(Equal));
        assert_eq!(compare_api_versions("2.0", "1.47"), Some(Greater));
        assert_eq!(compare_api_versions("x", "1.47"), None);
        let v = serde_json::to_value(version()).unwrap();
        assert_eq!(v["ApiVersion"], API_VERSION);
        assert_eq!(v["Components"][0]["Details"]["MinAPIVersion"], MIN_API_VERSION);
    }
}
