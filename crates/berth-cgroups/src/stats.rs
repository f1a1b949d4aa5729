//! Resource usage, shaped like the `data` of runc's `events --stats` JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil::{self, keyed_value, parse_flat_keyed, read_opt, read_u64_opt};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// All statistics of a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size as the kernel names it ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// CPU time and throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Usage, peak, limit and failures of one memory counter. `u64::MAX` is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Memory counters; `raw` is memory.stat as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub raw: HashMap<String, u64>,
}

/// Number of tasks and their limit (0 = no limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One per-device block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Block I/O per device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    #[serde(
        default,
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Huge page usage of one page size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// The huge page sizes of this kernel, named as cgroup files name them ("2MB", "1GB").
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------- cgroup v1

/// USER_HZ: cpuacct.stat counts in clock ticks of 1/100 s.
const NANOS_PER_TICK: u64 = 10_000_000;

pub(crate) fn v1_cpu(cpu: Option<&Path>, cpuacct: Option<&Path>, out: &mut Cpu) -> Result<()> {
    if let Some(dir) = cpuacct {
        out.usage.total = read_u64_opt(&dir.join("cpuacct.usage"))?.unwrap_or(0);
        out.usage.percpu = read_list(&dir.join("cpuacct.usage_percpu"))?;
        out.usage.percpu_kernel = read_list(&dir.join("cpuacct.usage_percpu_sys"))?;
        out.usage.percpu_user = read_list(&dir.join("cpuacct.usage_percpu_user"))?;
        if let Some(s) = read_opt(&dir.join("cpuacct.stat"))? {
            out.usage.user = keyed_value(&s, "user").unwrap_or(0) * NANOS_PER_TICK;
            out.usage.kernel = keyed_value(&s, "system").unwrap_or(0) * NANOS_PER_TICK;
        }
    }
    if let Some(dir) = cpu
        && let Some(s) = read_opt(&dir.join("cpu.stat"))?
    {
        out.throttling.periods = keyed_value(&s, "nr_periods").unwrap_or(0);
        out.throttling.throttled_periods = keyed_value(&s, "nr_throttled").unwrap_or(0);
        out.throttling.throttled_time = keyed_value(&s, "throttled_time").unwrap_or(0);
    }
    Ok(())
}

fn read_list(path: &Path) -> Result<Vec<u64>> {
    let Some(s) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    s.split_whitespace().map(|v| fsutil::parse_u64(path, v)).collect()
}

fn v1_mem_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    let f = |name: &str| read_u64_opt(&dir.join(format!("{prefix}.{name}")));
    Ok(MemoryEntry {
        limit: f("limit_in_bytes")?.unwrap_or(0),
        usage: f("usage_in_bytes")?.unwrap_or(0),
        max: f("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: f("failcnt")?.unwrap_or(0),
    })
}

pub(crate) fn v1_memory(dir: &Path, out: &mut Memory) -> Result<()> {
    out.usage = v1_mem_entry(dir, "memory")?;
    out.swap = v1_mem_entry(dir, "memory.memsw")?;
    out.kernel = v1_mem_entry(dir, "memory.kmem")?;
    out.kernel_tcp = v1_mem_entry(dir, "memory.kmem.tcp")?;
    if let Some(s) = read_opt(&dir.join("memory.stat"))? {
        out.raw = parse_flat_keyed(&s).map(|(k, v)| (k.to_owned(), v)).collect();
        out.cache = out
            .raw
            .get("total_cache")
            .or(out.raw.get("cache"))
            .copied()
            .unwrap_or(0);
    }
    Ok(())
}

pub(crate) fn pids(dir: &Path, out: &mut Pids) -> Result<()> {
    out.current = read_u64_opt(&dir.join("pids.current"))?.unwrap_or(0);
    out.limit = match read_u64_opt(&dir.join("pids.max"))? {
        Some(u64::MAX) | None => 0,
        Some(v) => v,
    };
    Ok(())
}

/// v1 blkio files hold "MAJ:MIN Op value" lines (and a "Total" line).
fn v1_blkio_file(path: &Path) -> Result<Vec<BlkioEntry>> {
    let Some(s) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    Ok(s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            let op = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_owned(),
                value,
            })
        })
        .collect())
}

pub(crate) fn v1_blkio(dir: &Path, out: &mut Blkio) -> Result<()> {
    // CFQ's files first, then BFQ's, then the throttling layer's (which counts every I/O), like runc.
    for prefix in ["blkio", "blkio.bfq", "blkio.throttle"] {
        let bytes = v1_blkio_file(&dir.join(format!("{prefix}.io_service_bytes_recursive")))?;
        let ios = v1_blkio_file(&dir.join(format!("{prefix}.io_serviced_recursive")))?;
        if !bytes.is_empty() || !ios.is_empty() {
            out.io_service_bytes_recursive = bytes;
            out.io_serviced_recursive = ios;
            break;
        }
    }
    Ok(())
}

pub(crate) fn v1_hugetlb(dir: &Path, out: &mut BTreeMap<String, Hugetlb>) -> Result<()> {
    for size in hugepage_sizes() {
        let f = |name: &str| read_u64_opt(&dir.join(format!("hugetlb.{size}.{name}")));
        let Some(usage) = f("usage_in_bytes")? else {
            continue;
        };
        let h = Hugetlb {
            usage,
            max: f("max_usage_in_bytes")?.unwrap_or(0),
            failcnt: f("failcnt")?.unwrap_or(0),
        };
        out.insert(size, h);
    }
    Ok(())
}

// ---------------------------------------------------------------- cgroup v2

pub(crate) fn v2(dir: &Path) -> Result<Stats> {
    let mut st = Stats::default();
    if let Some(s) = read_opt(&dir.join("cpu.stat"))? {
        let k = |key| keyed_value(&s, key).unwrap_or(0);
        st.cpu.usage.total = k("usage_usec") * 1000;
        st.cpu.usage.user = k("user_usec") * 1000;
        st.cpu.usage.kernel = k("system_usec") * 1000;
        st.cpu.throttling.periods = k("nr_periods");
        st.cpu.throttling.throttled_periods = k("nr_throttled");
        st.cpu.throttling.throttled_time = k("throttled_usec") * 1000;
    }
    let f = |name: &str| read_u64_opt(&dir.join(name));
    if let Some(usage) = f("memory.current")? {
        let events = read_opt(&dir.join("memory.events"))?;
        st.memory.usage = MemoryEntry {
            limit: f("memory.max")?.unwrap_or(u64::MAX),
            usage,
            max: f("memory.peak")?.unwrap_or(0),
            failcnt: events.as_deref().and_then(|e| keyed_value(e, "max")).unwrap_or(0),
        };
        if let Some(swap) = f("memory.swap.current")? {
            // runc reports swap as memory+swap, as v1's memsw does.
            st.memory.swap = MemoryEntry {
                limit: f("memory.swap.max")?.unwrap_or(u64::MAX),
                usage: swap.saturating_add(usage),
                max: f("memory.swap.peak")?.unwrap_or(0),
                failcnt: 0,
            };
        }
        if let Some(s) = read_opt(&dir.join("memory.stat"))? {
            st.memory.raw = parse_flat_keyed(&s).map(|(k, v)| (k.to_owned(), v)).collect();
            st.memory.cache = st.memory.raw.get("file").copied().unwrap_or(0);
            st.memory.kernel.usage = st.memory.raw.get("kernel").copied().unwrap_or(0);
        }
    }
    pids(dir, &mut st.pids)?;
    if let Some(s) = read_opt(&dir.join("io.stat"))? {
        for line in s.lines() {
            let mut it = line.split_whitespace();
            let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else { continue };
                let (list, op) = match k {
                    "rbytes" => (&mut st.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut st.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut st.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut st.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_owned(),
                    value,
                });
            }
        }
    }
    for size in hugepage_sizes() {
        let Some(usage) = f(&format!("hugetlb.{size}.current"))? else {
            continue;
        };
        let events = read_opt(&dir.join(format!("hugetlb.{size}.events")))?;
        st.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage,
                max: 0,
                failcnt: events.as_deref().and_then(|e| keyed_value(e, "max")).unwrap_or(0),
            },
        );
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_stats_from_files() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, c: &str| std::fs::write(d.path().join(n), c).unwrap();
        w(
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
        );
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.peak", "8192\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("memory.stat", "anon 100\nfile 200\nkernel 50\n");
        w("pids.current", "2\n");
        w("pids.max", "max\n");
        w(
            "io.stat",
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let st = v2(d.path()).unwrap();
        assert_eq!(st.cpu.usage.total, 1_500_000);
        assert_eq!(st.cpu.usage.kernel, 500_000);
        assert_eq!(st.cpu.throttling.throttled_time, 30_000);
        assert_eq!(st.memory.usage.usage, 4096);
        assert_eq!(st.memory.usage.limit, u64::MAX);
        assert_eq!(st.memory.usage.failcnt, 3);
        assert_eq!(st.memory.cache, 200);
        assert_eq!(st.pids.current, 2);
        assert_eq!(st.pids.limit, 0);
        assert_eq!(st.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(st.blkio.io_serviced_recursive[1].op, "Write");
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["cpu"]["usage"]["total"], 1_500_000);
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(json["memory"]["usage"]["usage"], 4096);
        assert_eq!(json["memory"]["raw"]["anon"], 100);
        assert_eq!(json["pids"]["current"], 2);
        assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
    }
}
