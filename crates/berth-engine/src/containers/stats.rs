//! `GET /containers/{id}/stats`: a cgroup sample ([`berth_cgroups::Stats`]) turned into docker's
//! `ContainerStatsResponse`, filled as dockerd fills it for cgroup v1 and for cgroup v2 (which fields, which
//! `memory_stats.stats` keys, `read`/`write` ops), plus what dockerd adds: the host's CPU time from `/proc/stat`,
//! the online CPUs, the memory limit capped at the machine's memory, network counters from the container's
//! network namespace, and the previous sample as `precpu_stats`/`preread`.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_cgroups::{CgroupMode, Stats};
use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats,
    ContainerNetworkStats, ContainerPidsStats, ContainerStatsResponse, ContainerThrottlingData,
};

/// What dockerd writes as the time of "no sample".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// USER_HZ: `/proc/stat` counts clock ticks of 1/100 s.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// Reading host figures failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A `/proc` file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `/proc` file does not have the expected shape.
    #[error("{} is malformed: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl crate::errdefs::HasKind for StatsError {
    fn kind(&self) -> crate::errdefs::ErrorKind {
        crate::errdefs::ErrorKind::System
    }
}

/// The keys dockerd reports from a cgroup v1 `memory.stat`.
const V1_MEMORY_KEYS: &[&str] = &[
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
];

/// The keys dockerd reports from a cgroup v2 `memory.stat`.
const V2_MEMORY_KEYS: &[&str] = &[
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

/// The host figures that go with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// CPU time of the whole machine, nanoseconds (`/proc/stat`).
    pub system_cpu_usage: u64,
    /// Online CPUs (the `cpuN` lines of `/proc/stat`).
    pub online_cpus: u32,
    /// `MemTotal` in bytes (0 when unknown: no capping).
    pub machine_memory: u64,
}

impl Host {
    /// Reads `/proc/stat` and `/proc/meminfo`.
    pub fn read() -> Result<Self, StatsError> {
        let stat_path = PathBuf::from("/proc/stat");
        let stat = std::fs::read_to_string(&stat_path).map_err(|source| StatsError::Read {
            path: stat_path.clone(),
            source,
        })?;
        let (system_cpu_usage, online_cpus) =
            parse_proc_stat(&stat).ok_or_else(|| StatsError::Malformed {
                path: stat_path,
                reason: "no \"cpu\" line with 7 numbers".to_string(),
            })?;
        let machine_memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| parse_meminfo_total(&s))
            .unwrap_or(0);
        Ok(Self {
            system_cpu_usage,
            online_cpus,
            machine_memory,
        })
    }
}

/// The machine's CPU time in nanoseconds (the first 7 fields of the `cpu` line, as dockerd sums them) and the
/// number of `cpuN` lines.
pub fn parse_proc_stat(s: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0u32;
    for line in s.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let fields: Vec<u64> = rest
                .split_whitespace()
                .take(7)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if fields.len() < 7 {
                return None;
            }
            let ticks: u64 = fields.iter().sum();
            total = Some(ticks.saturating_mul(1_000_000_000 / CLOCK_TICKS_PER_SECOND));
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cpus += 1;
        }
    }
    Some((total?, cpus))
}

fn parse_meminfo_total(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Interface counters of the network namespace of process `pid` (`/proc/<pid>/net/dev`), without `lo`.
pub fn network_stats(pid: i32) -> Result<HashMap<String, ContainerNetworkStats>, StatsError> {
    let path = PathBuf::from(format!("/proc/{pid}/net/dev"));
    let s = std::fs::read_to_string(&path).map_err(|source| StatsError::Read {
        path: path.clone(),
        source,
    })?;
    parse_net_dev(&s).ok_or_else(|| StatsError::Malformed {
        path,
        reason: "an interface line does not have 16 counters".to_string(),
    })
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(s: &str) -> Option<HashMap<String, ContainerNetworkStats>> {
    let mut out = HashMap::new();
    for line in s.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if v.len() < 16 {
            return None;
        }
        out.insert(
            name.to_string(),
            ContainerNetworkStats {
                rx_bytes: Some(v[0]),
                rx_packets: Some(v[1]),
                rx_errors: Some(v[2]),
                rx_dropped: Some(v[3]),
                tx_bytes: Some(v[8]),
                tx_packets: Some(v[9]),
                tx_errors: Some(v[10]),
                tx_dropped: Some(v[11]),
                endpoint_id: None,
                instance_id: None,
            },
        );
    }
    Some(out)
}

/// One sample's inputs.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// The container id.
    pub id: &'a str,
    /// The container name as docker shows it here (`/name`).
    pub name: &'a str,
    /// The cgroup mode the stats were read in.
    pub mode: CgroupMode,
    /// The cgroup's statistics.
    pub stats: &'a Stats,
    /// When they were read, unix nanoseconds.
    pub read: i64,
    /// The host's figures at that time.
    pub host: Host,
    /// Network counters (`None`: no network namespace of its own, field omitted).
    pub networks: Option<HashMap<String, ContainerNetworkStats>>,
}

/// The response for one sample; `previous` (the last response of the same stream) gives `precpu_stats` and
/// `preread`, as dockerd's collector does. Without one they are zero.
pub fn response(sample: &Sample<'_>, previous: Option<&ContainerStatsResponse>) -> ContainerStatsResponse {
    let st = sample.stats;
    let v2 = sample.mode == CgroupMode::V2;
    let cap = |limit: u64| {
        if sample.host.machine_memory > 0 && limit > sample.host.machine_memory {
            sample.host.machine_memory
        } else {
            limit
        }
    };
    let cpu = ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(st.cpu.usage.total),
            percpu_usage: (!v2 && !st.cpu.usage.percpu.is_empty()).then(|| st.cpu.usage.percpu.clone()),
            usage_in_kernelmode: Some(st.cpu.usage.kernel),
            usage_in_usermode: Some(st.cpu.usage.user),
        }),
        system_cpu_usage: Some(sample.host.system_cpu_usage),
        online_cpus: Some(sample.host.online_cpus),
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(st.cpu.throttling.periods),
            throttled_periods: Some(st.cpu.throttling.throttled_periods),
            throttled_time: Some(st.cpu.throttling.throttled_time),
        }),
    };
    let keys = if v2 { V2_MEMORY_KEYS } else { V1_MEMORY_KEYS };
    let raw: HashMap<String, u64> = keys
        .iter()
        .map(|k| ((*k).to_string(), st.memory.raw.get(*k).copied().unwrap_or(0)))
        .collect();
    let memory = if v2 {
        ContainerMemoryStats {
            usage: Some(st.memory.usage.usage),
            stats: Some(raw),
            limit: Some(cap(st.memory.usage.limit)),
            ..Default::default()
        }
    } else {
        ContainerMemoryStats {
            usage: Some(st.memory.usage.usage),
            max_usage: Some(st.memory.usage.max),
            stats: Some(raw),
            failcnt: Some(st.memory.usage.failcnt),
            limit: Some(cap(st.memory.usage.limit)),
            ..Default::default()
        }
    };
    let entries = |v: &[berth_cgroups::stats::BlkioEntry], lower: bool| -> Vec<ContainerBlkioStatEntry> {
        v.iter()
            .map(|e| ContainerBlkioStatEntry {
                major: Some(e.major),
                minor: Some(e.minor),
                op: Some(if lower {
                    e.op.to_ascii_lowercase()
                } else {
                    e.op.clone()
                }),
                value: Some(e.value),
            })
            .collect()
    };
    let blkio = if v2 {
        ContainerBlkioStats {
            io_service_bytes_recursive: Some(entries(&st.blkio.io_service_bytes_recursive, true)),
            ..Default::default()
        }
    } else {
        ContainerBlkioStats {
            io_service_bytes_recursive: Some(entries(&st.blkio.io_service_bytes_recursive, false)),
            io_serviced_recursive: Some(entries(&st.blkio.io_serviced_recursive, false)),
            ..Default::default()
        }
    };
    ContainerStatsResponse {
        id: Some(sample.id.to_string()),
        name: Some(sample.name.to_string()),
        os_type: Some("linux".to_string()),
        read: Some(crate::time::rfc3339_nanos(sample.read)),
        cpu_stats: Some(cpu),
        memory_stats: Some(memory),
        networks: sample.networks.clone(),
        pids_stats: Some(ContainerPidsStats {
            current: Some(st.pids.current),
            limit: Some(st.pids.limit),
        }),
        blkio_stats: Some(blkio),
        num_procs: Some(0),
        storage_stats: Some(Default::default()),
        preread: Some(
            previous
                .and_then(|p| p.read.clone())
                .unwrap_or_else(|| ZERO_TIME.to_string()),
        ),
        precpu_stats: Some(
            previous
                .and_then(|p| p.cpu_stats.clone())
                .unwrap_or_else(zero_cpu),
        ),
    }
}

fn zero_cpu() -> ContainerCpuStats {
    ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(0),
            percpu_usage: None,
            usage_in_kernelmode: Some(0),
            usage_in_usermode: Some(0),
        }),
        system_cpu_usage: None,
        online_cpus: None,
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(0),
            throttled_periods: Some(0),
            throttled_time: Some(0),
        }),
    }
}

/// What dockerd answers for a container that is not running: its id and name, every figure zero, `read` the
/// zero time.
pub fn not_running(id: &str, name: &str) -> ContainerStatsResponse {
    ContainerStatsResponse {
        id: Some(id.to_string()),
        name: Some(name.to_string()),
        os_type: Some("linux".to_string()),
        read: Some(ZERO_TIME.to_string()),
        cpu_stats: Some(zero_cpu()),
        memory_stats: Some(ContainerMemoryStats::default()),
        networks: None,
        pids_stats: Some(ContainerPidsStats::default()),
        blkio_stats: Some(ContainerBlkioStats::default()),
        num_procs: Some(0),
        storage_stats: Some(Default::default()),
        preread: Some(ZERO_TIME.to_string()),
        precpu_stats: Some(zero_cpu()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cgroups::stats::BlkioEntry;

    fn stats() -> Stats {
        let mut s = Stats::default();
        s.cpu.usage.total = 5_000;
        s.cpu.usage.percpu = vec![2_000, 3_000];
        s.cpu.usage.kernel = 1_000;
        s.cpu.usage.user = 4_000;
        s.cpu.throttling.periods = 3;
        s.memory.usage.usage = 4096;
        s.memory.usage.max = 8192;
        s.memory.usage.limit = u64::MAX;
        s.memory.usage.failcnt = 2;
        s.memory.raw = [
            ("cache".to_string(), 7),
            ("anon".to_string(), 9),
            ("odd".to_string(), 1),
        ]
        .into_iter()
        .collect();
        s.pids.current = 3;
        s.pids.limit = 100;
        s.blkio.io_service_bytes_recursive = vec![BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".to_string(),
            value: 10,
        }];
        s.blkio.io_serviced_recursive = s.blkio.io_service_bytes_recursive.clone();
        s
    }

    fn sample<'a>(st: &'a Stats, mode: CgroupMode) -> Sample<'a> {
        Sample {
            id: "abc",
            name: "/web",
            mode,
            stats: st,
            read: 1_700_000_000_000_000_000,
            host: Host {
                system_cpu_usage: 1_000_000,
                online_cpus: 2,
                machine_memory: 1 << 30,
            },
            networks: Some(parse_net_dev(NET_DEV).unwrap()),
        }
    }

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
";

    #[test]
    fn v1_sample_as_dockerd() {
        let st = stats();
        let r = response(&sample(&st, CgroupMode::V1), None);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["id"], "abc");
        assert_eq!(j["name"], "/web");
        assert_eq!(j["read"], "2023-11-14T22:13:20Z");
        assert_eq!(j["preread"], ZERO_TIME);
        assert_eq!(j["cpu_stats"]["cpu_usage"]["percpu_usage"][1], 3000);
        assert_eq!(j["cpu_stats"]["system_cpu_usage"], 1_000_000);
        assert_eq!(j["cpu_stats"]["online_cpus"], 2);
        assert_eq!(j["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert_eq!(
            j["memory_stats"]["limit"],
            1u64 << 30,
            "capped at the machine's memory"
        );
        assert_eq!(j["memory_stats"]["max_usage"], 8192);
        assert_eq!(j["memory_stats"]["failcnt"], 2);
        assert_eq!(j["memory_stats"]["stats"]["cache"], 7);
        assert_eq!(j["memory_stats"]["stats"]["total_rss"], 0);
        assert!(j["memory_stats"]["stats"].get("odd").is_none());
        assert_eq!(j["blkio_stats"]["io_service_bytes_recursive"][0]["op"], "Read");
        assert_eq!(j["blkio_stats"]["io_serviced_recursive"][0]["value"], 10);
        assert_eq!(j["pids_stats"]["limit"], 100);
        assert_eq!(j["networks"]["eth0"]["rx_bytes"], 2000);
        assert_eq!(j["networks"]["eth0"]["tx_dropped"], 4);
        assert!(j["networks"].get("lo").is_none());

        let next = response(&sample(&st, CgroupMode::V1), Some(&r));
        assert_eq!(next.preread, r.read);
        assert_eq!(next.precpu_stats, r.cpu_stats);
    }

    #[test]
    fn v2_sample_as_dockerd() {
        let st = stats();
        let j = serde_json::to_value(response(&sample(&st, CgroupMode::V2), None)).unwrap();
        assert!(j["cpu_stats"]["cpu_usage"].get("percpu_usage").is_none());
        assert!(j["memory_stats"].get("max_usage").is_none());
        assert!(j["memory_stats"].get("failcnt").is_none());
        assert_eq!(j["memory_stats"]["stats"]["anon"], 9);
        assert!(j["memory_stats"]["stats"].get("cache").is_none());
        assert_eq!(j["blkio_stats"]["io_service_bytes_recursive"][0]["op"], "read");
        assert!(j["blkio_stats"].get("io_serviced_recursive").is_none());
        let stopped = serde_json::to_value(not_running("abc", "/web")).unwrap();
        assert_eq!(stopped["read"], ZERO_TIME);
        assert_eq!(stopped["cpu_stats"]["cpu_usage"]["total_usage"], 0);
    }

    #[test]
    fn host_figures() {
        let s = "cpu  10 20 30 40 50 60 70 80 90 100\ncpu0 1 2 3 4 5 6 7\ncpu1 1 2 3 4 5 6 7\nintr 5\n";
        assert_eq!(parse_proc_stat(s), Some((280 * 10_000_000, 2)));
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
        assert_eq!(
            parse_meminfo_total("MemTotal:  2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        let h = Host::read().unwrap();
        assert!(h.online_cpus >= 1 && h.system_cpu_usage > 0 && h.machine_memory > 0);
        let own = network_stats(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert!(!own.contains_key("lo"));
    }
}
