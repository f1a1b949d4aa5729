//! `update`'s flags (runc's names) and the parsing of sizes and durations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

/// The flags of `update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// A JSON file with a `linux.resources` object ("-" for stdin); the flags are applied on top.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g allowed; -1 for none).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1 for none).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1 for none).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for none).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10 to 1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// The container id.
    pub id: String,
}

/// Parses `512`, `64k`, `128m`, `1g` (binary units, as runc) or `-1`.
pub fn parse_bytes(text: &str) -> Result<i64> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[digits.len()..];
    let n: f64 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a size: use bytes or a k, m, g suffix"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("{text:?} is not a size: use bytes or a k, m, g suffix"),
    };
    if n < 0.0 {
        bail!("{text:?} is not a size: it is negative");
    }
    Ok((n * mult) as i64)
}

/// Parses `5s`, `500ms`, `1m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("{text:?} is not a duration such as 5s or 500ms"),
    };
    if secs <= 0.0 {
        bail!("{text:?} is not a positive duration");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The object `obj[name]`, created when absent.
fn section<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Result<&'a mut Map<String, Value>> {
    obj.entry(name)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .with_context(|| format!("resources.{name} must be a JSON object"))
}

impl UpdateArgs {
    /// The resources: the `--resources` file (if any) with the flags applied on top.
    pub fn resources(&self) -> Result<oci_spec::runtime::LinuxResources> {
        let mut base: Value = match &self.resources {
            None => json!({}),
            Some(p) => {
                let text = if p.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .context("cannot read the resources from stdin")?
                } else {
                    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
                };
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid resources JSON", p.display()))?
            }
        };
        let obj = base
            .as_object_mut()
            .context("the resources must be a JSON object")?;
        let mem = [
            ("limit", &self.memory),
            ("reservation", &self.memory_reservation),
            ("swap", &self.memory_swap),
        ];
        for (key, value) in mem {
            if let Some(v) = value {
                section(obj, "memory")?.insert(key.into(), json!(parse_bytes(v)?));
            }
        }
        let cpu: [(&str, Option<Value>); 7] = [
            ("shares", self.cpu_shares.map(Value::from)),
            ("period", self.cpu_period.map(Value::from)),
            ("quota", self.cpu_quota.map(Value::from)),
            ("realtimePeriod", self.cpu_rt_period.map(Value::from)),
            ("realtimeRuntime", self.cpu_rt_runtime.map(Value::from)),
            ("cpus", self.cpuset_cpus.clone().map(Value::from)),
            ("mems", self.cpuset_mems.clone().map(Value::from)),
        ];
        for (key, value) in cpu {
            if let Some(v) = value {
                section(obj, "cpu")?.insert(key.into(), v);
            }
        }
        if let Some(p) = self.pids_limit {
            section(obj, "pids")?.insert("limit".into(), json!(p));
        }
        if let Some(w) = self.blkio_weight {
            section(obj, "blockIO")?.insert("weight".into(), json!(w));
        }
        serde_json::from_value(base).context("the resources are not valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("512").ok(), Some(512));
        assert_eq!(parse_bytes("64k").ok(), Some(65536));
        assert_eq!(parse_bytes("128M").ok(), Some(128 << 20));
        assert_eq!(parse_bytes("1g").ok(), Some(1 << 30));
        assert_eq!(parse_bytes("2GiB").ok(), Some(2 << 30));
        assert_eq!(parse_bytes("-1").ok(), Some(-1));
        for bad in ["", "5x", "-5m", "m"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err() && parse_duration("soon").is_err());
    }
}
