//! What the daemon's host offers, read once: the capabilities the daemon holds, the CPUs and memory nodes, whether
//! cgroup v2 is unified, which default sysctls exist. The rules take a [`HostInfo`] so that tests can pose as any
//! host.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use super::caps::cap_names;

/// The host facts the spec rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Capabilities the daemon holds (effective and bounding), e.g. `CAP_CHOWN`: what `--privileged` and
    /// `--cap-add ALL` give.
    pub caps: Vec<String>,
    /// Capability names the kernel knows (up to `/proc/sys/kernel/cap_last_cap`).
    pub known_caps: Vec<String>,
    /// Number of CPUs.
    pub ncpus: usize,
    /// CPUs the daemon may use (the root cpuset), for `--cpuset-cpus`.
    pub cpus: BTreeSet<u32>,
    /// The same, as the kernel prints it.
    pub cpus_text: String,
    /// Memory nodes, for `--cpuset-mems`.
    pub mems: BTreeSet<u32>,
    /// The same, as the kernel prints it.
    pub mems_text: String,
    /// `/sys/fs/cgroup` is a unified cgroup2 hierarchy.
    pub cgroup2: bool,
    /// The cpu controller has real-time settings (`cpu.rt_runtime_us`).
    pub cpu_rt: bool,
    /// The memory controller limits swap (`memory.memsw.*` on v1; v2 always can).
    pub swap_limit: bool,
    /// `net.ipv4.ping_group_range` exists.
    pub ping_group_range: bool,
    /// `net.ipv4.ip_unprivileged_port_start` exists.
    pub unprivileged_port_start: bool,
    /// Per-CPU `thermal_throttle` directories, masked as docker does.
    pub thermal_throttle: Vec<String>,
}

/// The facts of this host, read on first use.
pub fn host_info() -> &'static HostInfo {
    static HOST: OnceLock<HostInfo> = OnceLock::new();
    HOST.get_or_init(HostInfo::detect)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The capability bits of `field` (`CapEff`, `CapBnd`) in `/proc/self/status`.
fn cap_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(value.trim(), 16).ok()
    })
}

impl HostInfo {
    /// Reads the facts from /proc and /sys.
    pub fn detect() -> Self {
        let mut known_caps = cap_names();
        let last_cap = read_trimmed("/proc/sys/kernel/cap_last_cap")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(known_caps.len() - 1);
        known_caps.truncate(last_cap + 1);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = match (cap_mask(&status, "CapEff"), cap_mask(&status, "CapBnd")) {
            (Some(eff), Some(bnd)) => eff & bnd,
            (Some(one), None) | (None, Some(one)) => one,
            // As docker: when the set cannot be read, assume everything is available.
            (None, None) => u64::MAX,
        };
        let caps = known_caps
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1u64 << bit) != 0)
            .map(|(_, name)| name.clone())
            .collect();
        let ncpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpus_text = [
            "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
            "/sys/fs/cgroup/cpuset.cpus.effective",
            "/sys/devices/system/cpu/online",
        ]
        .iter()
        .find_map(|p| read_trimmed(p).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("0-{}", ncpus.saturating_sub(1)));
        let mems_text = [
            "/sys/fs/cgroup/cpuset/cpuset.effective_mems",
            "/sys/fs/cgroup/cpuset.mems.effective",
            "/sys/devices/system/node/online",
        ]
        .iter()
        .find_map(|p| read_trimmed(p).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "0".to_string());
        let cgroup2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let cpu_rt = Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
            || Path::new("/sys/fs/cgroup/cpu,cpuacct/cpu.rt_runtime_us").exists();
        let mut thermal_throttle: Vec<String> = std::fs::read_dir("/sys/devices/system/cpu")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.strip_prefix("cpu").is_some_and(|n| n.parse::<u32>().is_ok()))
            .map(|name| format!("/sys/devices/system/cpu/{name}/thermal_throttle"))
            .filter(|p| Path::new(p).exists())
            .collect();
        thermal_throttle.sort();
        let swap_limit = cgroup2 || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
        Self {
            swap_limit,
            caps,
            known_caps,
            ncpus,
            cpus: super::validate::parse_list(&cpus_text).unwrap_or_default(),
            cpus_text,
            mems: super::validate::parse_list(&mems_text).unwrap_or_default(),
            mems_text,
            cgroup2,
            cpu_rt,
            ping_group_range: Path::new("/proc/sys/net/ipv4/ping_group_range").exists(),
            unprivileged_port_start: Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start").exists(),
            thermal_throttle,
        }
    }

    /// A host with every capability but CAP_SYS_RESOURCE (as these machines), 2 CPUs, one memory node, cgroup v1,
    /// for tests.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        let known_caps = cap_names();
        Self {
            caps: known_caps
                .iter()
                .filter(|c| *c != "CAP_SYS_RESOURCE")
                .cloned()
                .collect(),
            known_caps,
            ncpus: 2,
            cpus: [0, 1].into(),
            cpus_text: "0-1".into(),
            mems: [0].into(),
            mems_text: "0".into(),
            cgroup2: false,
            cpu_rt: true,
            swap_limit: true,
            ping_group_range: true,
            unprivileged_port_start: true,
            thermal_throttle: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_masks_are_read_from_status() {
        let status = "Name:\tx\nCapEff:\t000001fffeffffff\nCapBnd:\t0000000000000021\n";
        assert_eq!(cap_mask(status, "CapEff"), Some(0x1fffeffffff));
        assert_eq!(cap_mask(status, "CapBnd"), Some(0x21));
        assert_eq!(cap_mask(status, "CapAmb"), None);
    }

    #[test]
    fn this_host_is_detected() {
        let host = HostInfo::detect();
        assert!(host.ncpus >= 1);
        assert!(!host.cpus.is_empty(), "{host:?}");
        assert!(host.known_caps.iter().any(|c| c == "CAP_CHOWN"));
        // The tests run as root: the daemon's set holds at least the default capabilities.
        if rustix::process::geteuid().is_root() {
            assert!(host.caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{host:?}");
        }
    }
}
