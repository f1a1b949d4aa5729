//! What dockerd checks when a container is created, before anything is made: the config (working directory, env,
//! stop signal, health check, hostname), the host config (restart policy, capabilities, mounts, ports, limits,
//! namespace modes, devices, ulimits, sysctls, log config, security options). Messages are dockerd's.

use std::collections::BTreeSet;

use bollard_stubs::models::{ContainerConfig, HostConfig, RestartPolicyNameEnum};

use super::SpecError;
use super::host::{HostInfo, host_info};

/// The smallest memory limit docker accepts (6 MiB).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The longest hostname the kernel takes.
const MAX_HOSTNAME: usize = 64;
/// docker's minimum health check durations (1 ms, in nanoseconds).
const MIN_DURATION_NS: i64 = 1_000_000;

/// Checks a create request as dockerd does (`verifyContainerSettings`), on this host.
pub fn validate(cfg: &ContainerConfig, host: &HostConfig) -> Result<(), SpecError> {
    validate_on(cfg, host, host_info())
}

/// [`validate`] against the given host facts.
pub fn validate_on(cfg: &ContainerConfig, host: &HostConfig, info: &HostInfo) -> Result<(), SpecError> {
    validate_config(cfg)?;
    validate_host_config(host, info)?;
    validate_network_mode(cfg, host)?;
    validate_resources(host, info)?;
    validate_namespaces(cfg, host)?;
    for mount in host.mounts.iter().flatten() {
        super::mounts::validate_mount(mount, true)?;
    }
    for dest in host.tmpfs.iter().flatten().map(|(d, _)| d) {
        super::mounts::validate_tmpfs_destination(dest)?;
    }
    super::resources::check_devices(host)?;
    super::resources::check_ulimits(host)?;
    super::resources::check_sysctls(host)?;
    log_settings(host)?;
    SecurityOptions::parse(host)?;
    Ok(())
}

fn validate_config(cfg: &ContainerConfig) -> Result<(), SpecError> {
    if let Some(wd) = cfg.working_dir.as_deref().filter(|w| !w.is_empty())
        && !wd.starts_with('/')
    {
        return Err(SpecError::WorkingDir(wd.to_string()));
    }
    if let Some(signal) = cfg.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        parse_signal(signal)?;
    }
    for env in cfg.env.iter().flatten() {
        if env.split('=').next().is_none_or(str::is_empty) {
            return Err(SpecError::Env(env.clone()));
        }
    }
    if let Some(hc) = &cfg.healthcheck {
        let short = |v: Option<i64>| v.is_some_and(|v| v != 0 && v < MIN_DURATION_NS);
        let checks = [
            ("Interval", hc.interval),
            ("Timeout", hc.timeout),
            ("StartPeriod", hc.start_period),
            ("StartInterval", hc.start_interval),
        ];
        if let Some((name, _)) = checks.iter().find(|(_, v)| short(*v)) {
            return Err(SpecError::Healthcheck(name, "less than 1ms"));
        }
        if hc.retries.is_some_and(|r| r < 0) {
            return Err(SpecError::Healthcheck("Retries", "negative"));
        }
    }
    if let Some(hostname) = cfg.hostname.as_deref()
        && hostname.len() > MAX_HOSTNAME
    {
        return Err(SpecError::HostnameTooLong(hostname.to_string()));
    }
    Ok(())
}

fn validate_host_config(host: &HostConfig, info: &HostInfo) -> Result<(), SpecError> {
    let policy = host.restart_policy.as_ref();
    let policy_name = policy
        .and_then(|p| p.name)
        .unwrap_or(RestartPolicyNameEnum::EMPTY);
    let restarts = !matches!(
        policy_name,
        RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO
    );
    if host.auto_remove == Some(true) && restarts {
        return Err(SpecError::AutoRemoveWithRestart);
    }
    let retries = policy.and_then(|p| p.maximum_retry_count).unwrap_or(0);
    match policy_name {
        RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED | RestartPolicyNameEnum::NO
            if retries != 0 =>
        {
            let mut msg = "maximum retry count can only be used with 'on-failure'".to_string();
            if retries < 0 {
                msg.push_str(" and cannot be negative");
            }
            return Err(SpecError::RestartPolicy(msg));
        }
        RestartPolicyNameEnum::ON_FAILURE if retries < 0 => {
            return Err(SpecError::RestartPolicy(
                "maximum retry count cannot be negative".into(),
            ));
        }
        _ => {}
    }
    for extra in host.extra_hosts.iter().flatten() {
        validate_extra_host(extra)?;
    }
    for (port, bindings) in host.port_bindings.iter().flatten() {
        validate_port(port)?;
        for binding in bindings.iter().flatten() {
            if let Some(hp) = binding.host_port.as_deref().filter(|p| !p.is_empty())
                && parse_port_range(hp).is_none()
            {
                return Err(SpecError::PortSpec(hp.to_string()));
            }
        }
    }
    super::caps::normalize(host.cap_add.as_deref().unwrap_or_default(), "CapAdd", info)?;
    super::caps::normalize(host.cap_drop.as_deref().unwrap_or_default(), "CapDrop", info)?;
    if host.annotations.iter().flatten().any(|(k, _)| k.is_empty()) {
        return Err(SpecError::AnnotationKey);
    }
    Ok(())
}

fn validate_extra_host(value: &str) -> Result<(), SpecError> {
    let sep = if value.contains('=') { '=' } else { ':' };
    let bad = || SpecError::ExtraHostFormat(value.to_string());
    let (name, ip) = value.split_once(sep).ok_or_else(bad)?;
    if name.is_empty() || ip.is_empty() {
        return Err(bad());
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(SpecError::ExtraHostIp(ip.to_string()));
    }
    Ok(())
}

fn parse_port_range(value: &str) -> Option<(u16, u16)> {
    let (start, end) = value.split_once('-').unwrap_or((value, value));
    let (start, end) = (start.parse::<u16>().ok()?, end.parse::<u16>().ok()?);
    (start <= end).then_some((start, end))
}

fn validate_port(port: &str) -> Result<(), SpecError> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let ok = matches!(proto, "tcp" | "udp" | "sctp")
        && parse_port_range(number).is_some_and(|(start, _)| start != 0);
    if ok {
        Ok(())
    } else {
        Err(SpecError::PortSpec(port.to_string()))
    }
}

/// The container a `container:<id>` mode names; `None` for other modes, `Some("")` for `container:`.
pub fn container_of(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

fn validate_network_mode(cfg: &ContainerConfig, host: &HostConfig) -> Result<(), SpecError> {
    let mode = host.network_mode.as_deref().unwrap_or("");
    let uts_host = host.uts_mode.as_deref() == Some("host");
    let hostname_set = cfg.hostname.as_deref().is_some_and(|h| !h.is_empty());
    if mode == "container" || mode.starts_with("container:") {
        if container_of(mode).is_none_or(str::is_empty) {
            return Err(SpecError::NetworkContainerFormat);
        }
        if hostname_set {
            return Err(SpecError::Conflict("hostname and the network mode"));
        }
        if host.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(SpecError::Conflict(
                "container type network can't be used with links. This would result in undefined behavior",
            ));
        }
        if host.dns.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(SpecError::Conflict("dns and the network mode"));
        }
        if host.extra_hosts.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(SpecError::Conflict(
                "custom host-to-IP mapping and the network mode",
            ));
        }
        if host.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || host.publish_all_ports == Some(true)
        {
            return Err(SpecError::Conflict(
                "port publishing and the container type network mode",
            ));
        }
        if cfg.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(SpecError::Conflict(
                "port exposing and the container type network mode",
            ));
        }
    }
    if uts_host && hostname_set {
        return Err(SpecError::Conflict("hostname and the UTS mode"));
    }
    if mode == "host" && host.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(SpecError::Conflict(
            "host type networking can't be used with links. This would result in undefined behavior",
        ));
    }
    Ok(())
}

fn validate_namespaces(_cfg: &ContainerConfig, host: &HostConfig) -> Result<(), SpecError> {
    let ipc = host.ipc_mode.as_deref().unwrap_or("");
    let ipc_ok = matches!(ipc, "" | "none" | "private" | "host" | "shareable")
        || container_of(ipc).is_some_and(|c| !c.is_empty());
    if !ipc_ok {
        return Err(SpecError::NamespaceMode {
            what: "IPC",
            value: ipc.to_string(),
        });
    }
    let pid = host.pid_mode.as_deref().unwrap_or("");
    if !(matches!(pid, "" | "host") || container_of(pid).is_some_and(|c| !c.is_empty())) {
        return Err(SpecError::NamespaceMode {
            what: "PID",
            value: pid.to_string(),
        });
    }
    let uts = host.uts_mode.as_deref().unwrap_or("");
    if !matches!(uts, "" | "host") {
        return Err(SpecError::NamespaceMode {
            what: "UTS",
            value: uts.to_string(),
        });
    }
    let userns = host.userns_mode.as_deref().unwrap_or("");
    if !matches!(userns, "" | "host") {
        return Err(SpecError::NamespaceMode {
            what: "userns",
            value: userns.to_string(),
        });
    }
    if host.shm_size.is_some_and(|s| s < 0) {
        return Err(SpecError::ShmSize);
    }
    if let Some(adj) = host.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(SpecError::OomScoreAdj(adj));
    }
    Ok(())
}

/// Parses a cpuset list (`0-3,5`); `None` when malformed.
pub fn parse_list(value: &str) -> Option<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    if value.trim().is_empty() {
        return Some(set);
    }
    for part in value.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                set.extend(a..=b);
            }
            None => {
                set.insert(part.parse::<u32>().ok()?);
            }
        }
    }
    Some(set)
}

fn validate_resources(host: &HostConfig, info: &HostInfo) -> Result<(), SpecError> {
    let memory = host.memory.unwrap_or(0);
    let swap = host.memory_swap.unwrap_or(0);
    let reservation = host.memory_reservation.unwrap_or(0);
    if memory != 0 && memory < MIN_MEMORY {
        return Err(SpecError::MemoryTooLow);
    }
    if memory > 0 && swap > 0 && swap < memory {
        return Err(SpecError::SwapBelowMemory);
    }
    if memory == 0 && swap > 0 {
        return Err(SpecError::SwapWithoutMemory);
    }
    if let Some(swappiness) = host.memory_swappiness
        && swappiness != -1
        && !(0..=100).contains(&swappiness)
    {
        return Err(SpecError::Swappiness(swappiness));
    }
    if reservation > 0 && reservation < MIN_MEMORY {
        return Err(SpecError::ReservationTooLow);
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return Err(SpecError::MemoryBelowReservation);
    }
    let nano = host.nano_cpus.unwrap_or(0);
    let period = host.cpu_period.unwrap_or(0);
    let quota = host.cpu_quota.unwrap_or(0);
    if nano > 0 && period > 0 {
        return Err(SpecError::NanoCpusAndPeriod);
    }
    if nano > 0 && quota > 0 {
        return Err(SpecError::NanoCpusAndQuota);
    }
    let max_nano = i64::try_from(info.ncpus)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    if nano != 0 && (nano < 0 || nano > max_nano) {
        return Err(SpecError::NanoCpusRange(info.ncpus));
    }
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return Err(SpecError::CpuPeriodRange);
    }
    if quota > 0 && quota < 1000 {
        return Err(SpecError::CpuQuotaTooLow);
    }
    if let Some(shares) = host.cpu_shares
        && shares < 0
    {
        return Err(SpecError::CpuShares(shares));
    }
    let rt_period = host.cpu_realtime_period.unwrap_or(0);
    let rt_runtime = host.cpu_realtime_runtime.unwrap_or(0);
    if (rt_period != 0 || rt_runtime != 0) && !info.cpu_rt {
        return Err(SpecError::Realtime(
            "kernel does not support CPU real-time scheduler",
        ));
    }
    if rt_period != 0 && rt_runtime != 0 && rt_runtime > rt_period {
        return Err(SpecError::Realtime(
            "cpu real-time runtime cannot be higher than cpu real-time period",
        ));
    }
    check_cpuset(
        host.cpuset_cpus.as_deref(),
        "cpus",
        "CPUs",
        &info.cpus,
        &info.cpus_text,
    )?;
    check_cpuset(
        host.cpuset_mems.as_deref(),
        "mems",
        "memory nodes",
        &info.mems,
        &info.mems_text,
    )?;
    if let Some(weight) = host.blkio_weight
        && weight > 0
        && !(10..=1000).contains(&weight)
    {
        return Err(SpecError::BlkioWeight);
    }
    if host.io_maximum_bandwidth.is_some_and(|v| v != 0) {
        return Err(SpecError::Qos("bandwidth"));
    }
    if host.io_maximum_iops.is_some_and(|v| v != 0) {
        return Err(SpecError::Qos("IOPs"));
    }
    Ok(())
}

fn check_cpuset(
    value: Option<&str>,
    what: &'static str,
    plural: &'static str,
    available: &BTreeSet<u32>,
    available_text: &str,
) -> Result<(), SpecError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let wanted = parse_list(value).ok_or_else(|| SpecError::CpusetFormat {
        what,
        value: value.to_string(),
    })?;
    if !wanted.is_subset(available) {
        return Err(SpecError::CpusetUnavailable {
            what: plural,
            requested: value.to_string(),
            available: available_text.to_string(),
        });
    }
    Ok(())
}

/// Signals by name, as `kill -l` lists them on Linux.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// Parses a signal as docker does: a number, or a name with or without `SIG` (`TERM`, `SIGKILL`, `RTMIN+3`,
/// `IOT`, `CLD`, `POLL`).
pub fn parse_signal(value: &str) -> Result<i32, SpecError> {
    let invalid = || SpecError::Signal(value.to_string());
    if let Ok(n) = value.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = value.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let alias = match name {
        "IOT" => "ABRT",
        "CLD" => "CHLD",
        "POLL" => "IO",
        other => other,
    };
    if let Some((_, n)) = SIGNALS.iter().find(|(n, _)| *n == alias) {
        return Ok(*n);
    }
    let rt = |base: i32, offset: &str, sign: i32| -> Option<i32> {
        let off = if offset.is_empty() {
            0
        } else {
            offset.parse::<i32>().ok()?
        };
        let n = base + sign * off;
        (SIGRTMIN..=SIGRTMAX).contains(&n).then_some(n)
    };
    let parsed = if let Some(rest) = alias.strip_prefix("RTMIN") {
        rest.strip_prefix('+').map_or_else(
            || rest.is_empty().then(|| rt(SIGRTMIN, "", 1)).flatten(),
            |o| rt(SIGRTMIN, o, 1),
        )
    } else if let Some(rest) = alias.strip_prefix("RTMAX") {
        rest.strip_prefix('-').map_or_else(
            || rest.is_empty().then(|| rt(SIGRTMAX, "", 1)).flatten(),
            |o| rt(SIGRTMAX, o, -1),
        )
    } else {
        None
    };
    parsed.ok_or_else(invalid)
}

/// The logging settings of a container, for the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `json-file` or `none`.
    pub driver: String,
    /// Rotate before the file exceeds this many bytes; 0: never.
    pub max_size: u64,
    /// Files kept in total (the live one included), at least 1.
    pub max_files: u32,
}

/// Parses a size as docker's `units.FromHumanSize` (decimal: `10k` is 10,000 bytes; `b`, `kb`, `KiB` accepted).
pub fn parse_human_size(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let scale = match unit {
        "" => 1e0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && (0.0..1.8e19).contains(&bytes)).then_some(bytes as u64)
}

/// `HostConfig.LogConfig`, checked as dockerd checks it: `json-file` (default) with `max-size`, `max-file`,
/// `compress` and the common attribute options, or `none`.
pub fn log_settings(host: &HostConfig) -> Result<LogSettings, SpecError> {
    let config = host.log_config.as_ref();
    let driver = config
        .and_then(|c| c.typ.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("json-file")
        .to_string();
    let opts = config.and_then(|c| c.config.as_ref());
    match driver.as_str() {
        "none" => {
            if let Some(key) = opts.and_then(|o| o.keys().next()) {
                return Err(SpecError::LogOpt(format!(
                    "unknown log opt '{key}' for none log driver"
                )));
            }
            return Ok(LogSettings {
                driver,
                max_size: 0,
                max_files: 1,
            });
        }
        "json-file" => {}
        other => return Err(SpecError::LogDriver(other.to_string())),
    }
    let mut max_size = 0;
    let mut max_files = 1;
    let mut compress = false;
    for (key, value) in opts.into_iter().flatten() {
        match key.as_str() {
            "env" | "env-regex" | "labels" | "labels-regex" | "tag" => {}
            "max-size" => {
                let size = parse_human_size(value)
                    .ok_or_else(|| SpecError::LogOpt(format!("invalid size: '{value}'")))?;
                if size == 0 {
                    return Err(SpecError::LogOpt("max-size must be a positive number".into()));
                }
                max_size = size;
            }
            "max-file" => {
                let files: i64 = value.parse().map_err(|_| {
                    SpecError::LogOpt(format!("strconv.Atoi: parsing {value:?}: invalid syntax"))
                })?;
                if files < 1 {
                    return Err(SpecError::LogOpt("max-file cannot be less than 1".into()));
                }
                max_files = u32::try_from(files).unwrap_or(u32::MAX);
            }
            "compress" => {
                compress = parse_bool(value).ok_or_else(|| {
                    SpecError::LogOpt(format!("strconv.ParseBool: parsing {value:?}: invalid syntax"))
                })?;
            }
            other => {
                return Err(SpecError::LogOpt(format!(
                    "unknown log opt '{other}' for json-file log driver"
                )));
            }
        }
    }
    if compress && (max_files == 1 || max_size == 0) {
        return Err(SpecError::LogOpt(
            "compress cannot be true when max-file is less than 2 or max-size is not set".into(),
        ));
    }
    Ok(LogSettings {
        driver,
        max_size,
        max_files,
    })
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The seccomp choice of `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompChoice {
    /// Berth's default profile (unless privileged).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile in docker's JSON format.
    Profile(String),
}

/// `HostConfig.SecurityOpt`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityOptions {
    /// `no-new-privileges[:true]`.
    pub no_new_privileges: bool,
    /// `seccomp=...`.
    pub seccomp: SeccompChoice,
    /// `writable-cgroups[=bool]`.
    pub writable_cgroups: Option<bool>,
}

impl SecurityOptions {
    /// Parses the options as dockerd does; AppArmor and SELinux labels are accepted and ignored (this host has
    /// neither, and dockerd ignores them too when the LSM is absent).
    pub fn parse(host: &HostConfig) -> Result<Self, SpecError> {
        let mut out = Self::default();
        for opt in host.security_opt.iter().flatten() {
            match opt.as_str() {
                "no-new-privileges" => {
                    out.no_new_privileges = true;
                    continue;
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(true);
                    continue;
                }
                "disable" => continue,
                _ => {}
            }
            let (key, value) = if opt.contains('=') {
                opt.split_once('=')
            } else {
                opt.split_once(':')
            }
            .ok_or_else(|| SpecError::SecurityOpt {
                level: 1,
                opt: opt.clone(),
            })?;
            let invalid = || SpecError::SecurityOpt {
                level: 2,
                opt: opt.clone(),
            };
            match key {
                "label" | "apparmor" => {}
                "seccomp" => {
                    out.seccomp = match value {
                        "unconfined" => SeccompChoice::Unconfined,
                        "builtin" | "" => SeccompChoice::Default,
                        profile => SeccompChoice::Profile(profile.to_string()),
                    };
                }
                "no-new-privileges" => out.no_new_privileges = parse_bool(value).ok_or_else(invalid)?,
                "writable-cgroups" => out.writable_cgroups = Some(parse_bool(value).ok_or_else(invalid)?),
                _ => return Err(invalid()),
            }
        }
        if let SeccompChoice::Profile(json) = &out.seccomp {
            // Checked now, so that a bad profile fails the create and not the start.
            super::seccomp::load_profile(json, &[])?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{HealthConfig, HostConfigLogConfig, RestartPolicy};
    use std::collections::HashMap;

    fn check(cfg: ContainerConfig, host: HostConfig) -> Result<(), SpecError> {
        validate_on(&cfg, &host, &HostInfo::for_tests())
    }

    fn host_err(host: HostConfig) -> String {
        check(ContainerConfig::default(), host).unwrap_err().to_string()
    }

    fn cfg_err(cfg: ContainerConfig) -> String {
        check(cfg, HostConfig::default()).unwrap_err().to_string()
    }

    #[test]
    fn empty_request_is_valid() {
        check(ContainerConfig::default(), HostConfig::default()).unwrap();
    }

    #[test]
    fn memory_rules() {
        let mb = 1024 * 1024;
        assert_eq!(
            host_err(HostConfig {
                memory: Some(5 * mb),
                ..Default::default()
            }),
            "Minimum memory limit allowed is 6MB"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                memory: Some(6 * mb),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                memory: Some(64 * mb),
                memory_swap: Some(32 * mb),
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                memory: Some(64 * mb),
                memory_swap: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                memory_swap: Some(64 * mb),
                ..Default::default()
            }),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        assert_eq!(
            host_err(HostConfig {
                memory_swappiness: Some(101),
                ..Default::default()
            }),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert_eq!(
            host_err(HostConfig {
                memory_reservation: Some(mb),
                ..Default::default()
            }),
            "Minimum memory reservation allowed is 6MB"
        );
        assert_eq!(
            host_err(HostConfig {
                memory: Some(10 * mb),
                memory_reservation: Some(20 * mb),
                ..Default::default()
            }),
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        );
    }

    #[test]
    fn cpu_rules() {
        assert_eq!(
            host_err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_period: Some(100_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        assert_eq!(
            host_err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_quota: Some(50_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            host_err(HostConfig {
                nano_cpus: Some(3_000_000_000),
                ..Default::default()
            }),
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                nano_cpus: Some(1_500_000_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                cpu_period: Some(999),
                ..Default::default()
            }),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
        assert_eq!(
            host_err(HostConfig {
                cpu_quota: Some(999),
                ..Default::default()
            }),
            "CPU cfs quota can not be less than 1ms (i.e. 1000)"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                cpu_quota: Some(-1),
                cpu_period: Some(100_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                cpu_shares: Some(-2),
                ..Default::default()
            }),
            "invalid CPU shares (-2): value must be a positive integer"
        );
        assert_eq!(
            host_err(HostConfig {
                cpuset_cpus: Some("0-a".into()),
                ..Default::default()
            }),
            "Invalid value 0-a for cpuset cpus: invalid format: 0-a"
        );
        assert_eq!(
            host_err(HostConfig {
                cpuset_cpus: Some("1,3".into()),
                ..Default::default()
            }),
            "Requested CPUs are not available - requested 1,3, available: 0-1"
        );
        assert_eq!(
            host_err(HostConfig {
                cpuset_mems: Some("1".into()),
                ..Default::default()
            }),
            "Requested memory nodes are not available - requested 1, available: 0"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                cpuset_cpus: Some("0-1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                cpu_realtime_period: Some(1000),
                cpu_realtime_runtime: Some(2000),
                ..Default::default()
            }),
            "cpu real-time runtime cannot be higher than cpu real-time period"
        );
        assert_eq!(
            host_err(HostConfig {
                blkio_weight: Some(5),
                ..Default::default()
            }),
            "Range of blkio weight is from 10 to 1000"
        );
    }

    #[test]
    fn cpuset_lists() {
        assert_eq!(parse_list("0-2,5"), Some([0, 1, 2, 5].into()));
        assert_eq!(parse_list(""), Some(BTreeSet::new()));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("1,,2"), None);
        assert_eq!(parse_list("x"), None);
    }

    #[test]
    fn namespace_modes() {
        assert_eq!(
            host_err(HostConfig {
                ipc_mode: Some("bogus".into()),
                ..Default::default()
            }),
            "invalid IPC mode: bogus"
        );
        assert_eq!(
            host_err(HostConfig {
                pid_mode: Some("container:".into()),
                ..Default::default()
            }),
            "invalid PID mode: container:"
        );
        assert_eq!(
            host_err(HostConfig {
                uts_mode: Some("private".into()),
                ..Default::default()
            }),
            "invalid UTS mode: private"
        );
        for ok in ["", "none", "private", "host", "shareable", "container:abc"] {
            check(
                ContainerConfig::default(),
                HostConfig {
                    ipc_mode: Some(ok.into()),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        check(
            ContainerConfig::default(),
            HostConfig {
                pid_mode: Some("container:abc".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                network_mode: Some("container:".into()),
                ..Default::default()
            }),
            "invalid network mode: invalid container format container:<name|id>"
        );
        let cfg = ContainerConfig {
            hostname: Some("h".into()),
            ..Default::default()
        };
        let err = check(
            cfg.clone(),
            HostConfig {
                network_mode: Some("container:x".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflicting options: hostname and the network mode"
        );
        let err = check(
            cfg,
            HostConfig {
                uts_mode: Some("host".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "conflicting options: hostname and the UTS mode");
        assert_eq!(
            host_err(HostConfig {
                shm_size: Some(-1),
                ..Default::default()
            }),
            "SHM size can not be less than 0"
        );
        assert_eq!(
            host_err(HostConfig {
                oom_score_adj: Some(1001),
                ..Default::default()
            }),
            "Invalid value 1001, range for oom score adj is [-1000, 1000]"
        );
    }

    #[test]
    fn config_rules() {
        assert_eq!(
            cfg_err(ContainerConfig {
                working_dir: Some("rel/dir".into()),
                ..Default::default()
            }),
            "the working directory 'rel/dir' is invalid, it needs to be an absolute path"
        );
        assert_eq!(
            cfg_err(ContainerConfig {
                env: Some(vec!["=x".into()]),
                ..Default::default()
            }),
            "invalid environment variable: =x"
        );
        check(
            ContainerConfig {
                env: Some(vec!["A=".into(), "B".into()]),
                ..Default::default()
            },
            HostConfig::default(),
        )
        .unwrap();
        assert_eq!(
            cfg_err(ContainerConfig {
                stop_signal: Some("SIGNOPE".into()),
                ..Default::default()
            }),
            "Invalid signal: SIGNOPE"
        );
        let long = "h".repeat(65);
        assert_eq!(
            cfg_err(ContainerConfig {
                hostname: Some(long.clone()),
                ..Default::default()
            }),
            format!("hostname {long:?} is too long (maximum 64 bytes)")
        );
        let hc = HealthConfig {
            interval: Some(10),
            ..Default::default()
        };
        assert_eq!(
            cfg_err(ContainerConfig {
                healthcheck: Some(hc),
                ..Default::default()
            }),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        let hc = HealthConfig {
            retries: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            cfg_err(ContainerConfig {
                healthcheck: Some(hc),
                ..Default::default()
            }),
            "Retries in Healthcheck cannot be negative"
        );
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(parse_signal("RTMAX-1").unwrap(), 63);
        assert_eq!(parse_signal("SIGIOT").unwrap(), 6);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("RTMIN+40").is_err());
    }

    #[test]
    fn restart_and_auto_remove() {
        let policy = |name, count| {
            Some(RestartPolicy {
                name: Some(name),
                maximum_retry_count: count,
            })
        };
        assert_eq!(
            host_err(HostConfig {
                auto_remove: Some(true),
                restart_policy: policy(RestartPolicyNameEnum::ALWAYS, None),
                ..Default::default()
            }),
            "can't create 'AutoRemove' container with restart policy"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                auto_remove: Some(true),
                restart_policy: policy(RestartPolicyNameEnum::NO, None),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            host_err(HostConfig {
                restart_policy: policy(RestartPolicyNameEnum::ALWAYS, Some(3)),
                ..Default::default()
            }),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert_eq!(
            host_err(HostConfig {
                restart_policy: policy(RestartPolicyNameEnum::ON_FAILURE, Some(-1)),
                ..Default::default()
            }),
            "invalid restart policy: maximum retry count cannot be negative"
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                restart_policy: policy(RestartPolicyNameEnum::ON_FAILURE, Some(5)),
                ..Default::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn caps_ports_hosts_annotations() {
        assert_eq!(
            host_err(HostConfig {
                cap_add: Some(vec!["NOPE".into()]),
                ..Default::default()
            }),
            "invalid CapAdd: unknown capability: \"CAP_NOPE\""
        );
        assert_eq!(
            host_err(HostConfig {
                extra_hosts: Some(vec!["db:not-an-ip".into()]),
                ..Default::default()
            }),
            "invalid IP address in add-host: \"not-an-ip\""
        );
        check(
            ContainerConfig::default(),
            HostConfig {
                extra_hosts: Some(vec![
                    "db:10.0.0.1".into(),
                    "gw:host-gateway".into(),
                    "v6:::1".into(),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
        let ports = HashMap::from([("0/tcp".to_string(), None)]);
        assert_eq!(
            host_err(HostConfig {
                port_bindings: Some(ports),
                ..Default::default()
            }),
            "invalid port specification: \"0/tcp\""
        );
        let ann = HashMap::from([(String::new(), "x".to_string())]);
        assert_eq!(
            host_err(HostConfig {
                annotations: Some(ann),
                ..Default::default()
            }),
            "invalid Annotations: the empty string is not permitted as an annotation key"
        );
    }

    #[test]
    fn log_config() {
        let log = |typ: &str, opts: &[(&str, &str)]| HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some(typ.into()),
                config: Some(opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            }),
            ..Default::default()
        };
        let s = log_settings(&log("json-file", &[("max-size", "10m"), ("max-file", "3")])).unwrap();
        assert_eq!(
            (s.driver.as_str(), s.max_size, s.max_files),
            ("json-file", 10_000_000, 3)
        );
        assert_eq!(log_settings(&HostConfig::default()).unwrap().max_files, 1);
        assert_eq!(log_settings(&log("none", &[])).unwrap().driver, "none");
        assert_eq!(
            host_err(log("syslog", &[])),
            "logger: no log driver named 'syslog' is registered"
        );
        assert_eq!(
            host_err(log("json-file", &[("max-bogus", "1")])),
            "unknown log opt 'max-bogus' for json-file log driver"
        );
        assert_eq!(
            host_err(log("json-file", &[("max-file", "0")])),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            host_err(log("json-file", &[("max-size", "0")])),
            "max-size must be a positive number"
        );
        assert_eq!(
            host_err(log("json-file", &[("max-size", "5x")])),
            "invalid size: '5x'"
        );
        assert_eq!(
            host_err(log("json-file", &[("compress", "true")])),
            "compress cannot be true when max-file is less than 2 or max-size is not set"
        );
        assert_eq!(parse_human_size("1.5k"), Some(1500));
        assert_eq!(parse_human_size("2MiB"), Some(2_000_000));
        assert_eq!(parse_human_size("7"), Some(7));
    }

    #[test]
    fn security_options() {
        let sec = |opts: &[&str]| HostConfig {
            security_opt: Some(opts.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let parsed = SecurityOptions::parse(&sec(&[
            "no-new-privileges",
            "seccomp=unconfined",
            "label=disable",
            "apparmor=unconfined",
        ]))
        .unwrap();
        assert!(parsed.no_new_privileges);
        assert_eq!(parsed.seccomp, SeccompChoice::Unconfined);
        let parsed = SecurityOptions::parse(&sec(&["no-new-privileges:false"])).unwrap();
        assert!(!parsed.no_new_privileges);
        assert!(
            SecurityOptions::parse(&sec(&["no-new-privileges=true"]))
                .unwrap()
                .no_new_privileges
        );
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let parsed = SecurityOptions::parse(&sec(&[&format!("seccomp={json}")])).unwrap();
        assert_eq!(parsed.seccomp, SeccompChoice::Profile(json.to_string()));
        assert_eq!(host_err(sec(&["bogus"])), "invalid --security-opt 1: \"bogus\"");
        assert_eq!(
            host_err(sec(&["bogus=1"])),
            "invalid --security-opt 2: \"bogus=1\""
        );
        assert_eq!(
            host_err(sec(&["no-new-privileges=maybe"])),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        assert!(host_err(sec(&["seccomp={bad json"])).starts_with("Decoding seccomp profile failed"));
    }
}
