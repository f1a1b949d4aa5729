//! Limits (`--memory`, `--cpus`, `--pids-limit`, blkio), devices (`--device`, `--device-cgroup-rule`,
//! `--privileged`), `--ulimit` and `--sysctl`: their checks at create and their place in the spec.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxPids,
    LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDevice,
    LinuxWeightDeviceBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
};

use super::SpecError;
use super::host::HostInfo;

/// The CFS period `--cpus` uses (100 ms).
pub const CPU_PERIOD: u64 = 100_000;

/// `--ulimit` names and their spec types.
const ULIMITS: [(&str, PosixRlimitType); 16] = [
    ("as", PosixRlimitType::RlimitAs),
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
];

/// Checks `--ulimit`: known names, soft not above hard.
pub fn check_ulimits(host: &HostConfig) -> Result<(), SpecError> {
    for u in host.ulimits.iter().flatten() {
        let name = u.name.as_deref().unwrap_or("");
        if !ULIMITS.iter().any(|(n, _)| *n == name) {
            return Err(SpecError::UlimitName(name.to_string()));
        }
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        // -1 is "unlimited" for both.
        let as_u64 = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        if as_u64(soft) > as_u64(hard) {
            return Err(SpecError::UlimitRange { soft, hard });
        }
    }
    Ok(())
}

/// `--ulimit` as the process's rlimits (negative values are unlimited).
pub fn rlimits(host: &HostConfig) -> Result<Vec<PosixRlimit>, SpecError> {
    check_ulimits(host)?;
    host.ulimits
        .iter()
        .flatten()
        .map(|u| {
            let name = u.name.as_deref().unwrap_or("");
            let typ = ULIMITS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
                .ok_or_else(|| SpecError::UlimitName(name.to_string()))?;
            Ok(PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u64::try_from(u.soft.unwrap_or(0)).unwrap_or(u64::MAX))
                .hard(u64::try_from(u.hard.unwrap_or(0)).unwrap_or(u64::MAX))
                .build()?)
        })
        .collect()
}

/// The IPC namespace's sysctls.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks `--sysctl` as runc does at start: only sysctls of a namespace the container has its own of.
pub fn check_sysctls(host: &HostConfig) -> Result<(), SpecError> {
    let net_host = host.network_mode.as_deref() == Some("host");
    let ipc_host = host.ipc_mode.as_deref() == Some("host");
    let uts_host = host.uts_mode.as_deref() == Some("host");
    for name in host.sysctls.iter().flatten().map(|(k, _)| k) {
        let fail = |reason| {
            Err(SpecError::Sysctl {
                name: name.clone(),
                reason,
            })
        };
        if IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            if ipc_host {
                return fail("is not allowed in the hosts ipc namespace");
            }
        } else if name.starts_with("net.") {
            if net_host {
                return fail("not allowed in host network namespace");
            }
        } else if name == "kernel.domainname" || name == "kernel.hostname" {
            if uts_host {
                return fail("not allowed in host UTS namespace");
            }
        } else {
            return fail("is not in a separate kernel namespace");
        }
    }
    Ok(())
}

/// The sysctls of the spec: docker's defaults for a container with its own network namespace (unprivileged ping,
/// low ports), then `--sysctl`, which wins. In a remapped user namespace the ping range is left alone, as docker
/// does: it may only name groups the namespace maps.
pub fn sysctls(
    host: &HostConfig,
    own_net: bool,
    remapped: bool,
    info: &HostInfo,
) -> Result<HashMap<String, String>, SpecError> {
    check_sysctls(host)?;
    let mut out = HashMap::new();
    if own_net {
        if info.ping_group_range && !remapped {
            out.insert(
                "net.ipv4.ping_group_range".to_string(),
                "0 2147483647".to_string(),
            );
        }
        if info.unprivileged_port_start {
            out.insert("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string());
        }
    }
    for (k, v) in host.sysctls.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// `cgroup-permissions` of `--device`: some of r, w, m.
fn valid_permissions(p: &str) -> bool {
    !p.is_empty() && p.len() <= 3 && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

/// A parsed `--device-cgroup-rule`: `type major:minor access`.
fn parse_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup, SpecError> {
    let bad = || SpecError::DeviceCgroupRule(rule.to_string());
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    let typ = match *typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<i64, SpecError> {
        if n == "*" {
            Ok(-1)
        } else if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
            n.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    if !valid_permissions(access) {
        return Err(bad());
    }
    Ok(cgroup_rule(true, Some(typ), Some(major), Some(minor), access))
}

fn cgroup_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// Checks `--device` mappings, `--device-cgroup-rule`s and device requests (no device drivers here).
pub fn check_devices(host: &HostConfig) -> Result<(), SpecError> {
    for d in host.devices.iter().flatten() {
        let on_host = d.path_on_host.as_deref().unwrap_or("");
        let text = format!(
            "{on_host}:{}:{}",
            d.path_in_container.as_deref().unwrap_or(""),
            d.cgroup_permissions.as_deref().unwrap_or("")
        );
        if on_host.is_empty() {
            return Err(SpecError::DeviceMapping(text, "the host path is empty"));
        }
        if !on_host.starts_with('/') {
            return Err(SpecError::DeviceMapping(text, "the host path is not absolute"));
        }
        if let Some(inside) = d.path_in_container.as_deref().filter(|p| !p.is_empty())
            && !inside.starts_with('/')
        {
            return Err(SpecError::DeviceMapping(
                text,
                "the container path is not absolute",
            ));
        }
        if let Some(p) = d.cgroup_permissions.as_deref().filter(|p| !p.is_empty())
            && !valid_permissions(p)
        {
            return Err(SpecError::DeviceMapping(
                text,
                "the permissions are not a combination of r, w and m",
            ));
        }
    }
    for rule in host.device_cgroup_rules.iter().flatten() {
        parse_cgroup_rule(rule)?;
    }
    if let Some(req) = host.device_requests.iter().flatten().next() {
        return Err(SpecError::DeviceRequest(req.driver.clone().unwrap_or_default()));
    }
    Ok(())
}

/// The device at `path` (not following a final symlink), placed at `inside`; `None` if it is not a device.
fn device_at(path: &Path, inside: &Path) -> Option<LinuxDevice> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let mut dev = LinuxDevice::default();
    dev.set_path(inside.to_path_buf());
    dev.set_typ(typ);
    dev.set_major(i64::from(rustix::fs::major(rdev)));
    dev.set_minor(i64::from(rustix::fs::minor(rdev)));
    dev.set_file_mode(Some(meta.mode() & 0o7777));
    dev.set_uid(Some(meta.uid()));
    dev.set_gid(Some(meta.gid()));
    Some(dev)
}

fn walk_devices(dir: &Path, skip_dirs: &[&str], out: &mut Vec<(PathBuf, LinuxDevice)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            let name = entry.file_name();
            if !skip_dirs.iter().any(|s| name == *s) {
                walk_devices(&path, skip_dirs, out);
            }
        } else if let Some(dev) = device_at(&path, &path) {
            out.push((path, dev));
        }
    }
}

/// The devices of `--device host[:container[:perms]]`: a device node, or every device under a directory, as
/// docker's `DevicesFromPath`.
fn devices_from_path(on_host: &str, inside: &str) -> Result<Vec<LinuxDevice>, SpecError> {
    let resolved = std::fs::canonicalize(on_host).unwrap_or_else(|_| PathBuf::from(on_host));
    if let Some(dev) = device_at(&resolved, Path::new(inside)) {
        return Ok(vec![dev]);
    }
    let reason = match std::fs::metadata(&resolved) {
        Err(e) => e.to_string(),
        Ok(meta) if meta.is_dir() => {
            let mut found = Vec::new();
            walk_devices(&resolved, &[], &mut found);
            if !found.is_empty() {
                return Ok(found
                    .into_iter()
                    .map(|(path, mut dev)| {
                        let rel = path.strip_prefix(&resolved).unwrap_or(&path);
                        dev.set_path(Path::new(inside).join(rel));
                        dev
                    })
                    .collect());
            }
            "not a device node".to_string()
        }
        Ok(_) => "not a device node".to_string(),
    };
    Err(SpecError::Device {
        path: on_host.to_string(),
        reason,
    })
}

/// Every device of the host, for `--privileged` (as containerd's `HostDevices`: /dev without pts, shm, fd,
/// mqueue and console).
fn host_devices() -> Vec<LinuxDevice> {
    let mut found = Vec::new();
    walk_devices(
        Path::new("/dev"),
        &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"],
        &mut found,
    );
    found
        .into_iter()
        .filter(|(p, _)| p != Path::new("/dev/console"))
        .map(|(_, d)| d)
        .collect()
}

/// docker's default device rules: deny everything, allow the standard character devices, deny fuse.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let c = Some(LinuxDeviceType::C);
    let mut rules = vec![cgroup_rule(false, None, None, None, "rwm")];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(cgroup_rule(true, c, Some(major), Some(minor), "rwm"));
    }
    rules.push(cgroup_rule(false, c, Some(10), Some(229), "rwm"));
    rules
}

/// The spec's `linux.devices` and the device cgroup rules.
pub fn devices(
    host: &HostConfig,
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    check_devices(host)?;
    let mut devs = Vec::new();
    let mut rules = default_device_rules();
    if privileged {
        devs = host_devices();
        for d in host.devices.iter().flatten() {
            let on_host = d.path_on_host.as_deref().unwrap_or("");
            let inside = d
                .path_in_container
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(on_host);
            if on_host == inside {
                continue;
            }
            devs.extend(devices_from_path(on_host, inside)?);
        }
        rules = vec![cgroup_rule(true, None, None, None, "rwm")];
    } else {
        for d in host.devices.iter().flatten() {
            let on_host = d.path_on_host.as_deref().unwrap_or("");
            let inside = d
                .path_in_container
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(on_host);
            let perms = d
                .cgroup_permissions
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("rwm");
            for dev in devices_from_path(on_host, inside)? {
                rules.push(cgroup_rule(
                    true,
                    Some(dev.typ()),
                    Some(dev.major()),
                    Some(dev.minor()),
                    perms,
                ));
                devs.push(dev);
            }
        }
        for rule in host.device_cgroup_rules.iter().flatten() {
            rules.push(parse_cgroup_rule(rule)?);
        }
    }
    Ok((devs, rules))
}

fn stat_rdev(path: &str) -> Result<(i64, i64), SpecError> {
    let meta = std::fs::metadata(path).map_err(|source| SpecError::BlkioDevice {
        path: path.to_string(),
        source,
    })?;
    Ok((
        i64::from(rustix::fs::major(meta.rdev())),
        i64::from(rustix::fs::minor(meta.rdev())),
    ))
}

/// The limits of the spec (`linux.resources` without the device rules), as dockerd sets them.
pub fn limits(host: &HostConfig, info: &HostInfo) -> Result<LinuxResources, SpecError> {
    let mut resources = LinuxResources::default();

    let memory = host.memory.unwrap_or(0);
    let mut mem = LinuxMemory::default();
    let mut mem_set = false;
    if memory > 0 {
        mem.set_limit(Some(memory));
        mem_set = true;
    }
    if let Some(r) = host.memory_reservation.filter(|r| *r > 0) {
        mem.set_reservation(Some(r));
        mem_set = true;
    }
    // docker: swap defaults to twice the memory; without swap accounting it is left alone.
    let swap = match host.memory_swap.unwrap_or(0) {
        0 if memory > 0 => memory.saturating_mul(2),
        s => s,
    };
    if swap > 0 && memory > 0 && info.swap_limit {
        mem.set_swap(Some(swap));
        mem_set = true;
    }
    if let Some(s) = host.memory_swappiness.filter(|s| (0..=100).contains(s)) {
        mem.set_swappiness(u64::try_from(s).ok());
        mem_set = true;
    }
    if let Some(disable) = host.oom_kill_disable {
        mem.set_disable_oom_killer(Some(disable));
        mem_set = true;
    }
    if mem_set {
        resources.set_memory(Some(mem));
    }

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if let Some(shares) = host.cpu_shares.filter(|s| *s != 0) {
        cpu.set_shares(Some(
            u64::try_from(shares).map_err(|_| SpecError::CpuShares(shares))?,
        ));
        cpu_set = true;
    }
    if let Some(cpus) = host.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(cpus));
        cpu_set = true;
    }
    if let Some(mems) = host.cpuset_mems.clone().filter(|m| !m.is_empty()) {
        cpu.set_mems(Some(mems));
        cpu_set = true;
    }
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        let quota = i128::from(nano) * i128::from(CPU_PERIOD) / 1_000_000_000;
        cpu.set_period(Some(CPU_PERIOD));
        cpu.set_quota(Some(i64::try_from(quota).unwrap_or(i64::MAX)));
        cpu_set = true;
    }
    if let Some(period) = host.cpu_period.filter(|p| *p != 0) {
        cpu.set_period(u64::try_from(period).ok());
        cpu_set = true;
    }
    if let Some(quota) = host.cpu_quota.filter(|q| *q != 0) {
        cpu.set_quota(Some(quota));
        cpu_set = true;
    }
    if let Some(p) = host.cpu_realtime_period.filter(|p| *p != 0) {
        cpu.set_realtime_period(u64::try_from(p).ok());
        cpu_set = true;
    }
    if let Some(r) = host.cpu_realtime_runtime.filter(|r| *r != 0) {
        cpu.set_realtime_runtime(Some(r));
        cpu_set = true;
    }
    if cpu_set {
        resources.set_cpu(Some(cpu));
    }

    if let Some(limit) = host.pids_limit {
        let mut pids = LinuxPids::default();
        // docker: 0 and negative values mean unlimited, which the runtime wants as -1.
        pids.set_limit(if limit <= 0 { -1 } else { limit });
        resources.set_pids(Some(pids));
    }

    let mut blkio = LinuxBlockIo::default();
    let mut blkio_set = false;
    if let Some(w) = host.blkio_weight.filter(|w| *w > 0) {
        blkio.set_weight(Some(w));
        blkio_set = true;
    }
    let weights: Vec<LinuxWeightDevice> = host
        .blkio_weight_device
        .iter()
        .flatten()
        .map(|d| {
            let (major, minor) = stat_rdev(d.path.as_deref().unwrap_or(""))?;
            let mut w = LinuxWeightDeviceBuilder::default().major(major).minor(minor);
            if let Some(weight) = d.weight.and_then(|w| u16::try_from(w).ok()) {
                w = w.weight(weight);
            }
            Ok(w.build()?)
        })
        .collect::<Result<_, SpecError>>()?;
    if !weights.is_empty() {
        blkio.set_weight_device(Some(weights));
        blkio_set = true;
    }
    let throttle = |list: &Option<Vec<bollard_stubs::models::ThrottleDevice>>| -> Result<Option<Vec<LinuxThrottleDevice>>, SpecError> {
        let devs: Vec<LinuxThrottleDevice> = list
            .iter()
            .flatten()
            .map(|d| {
                let (major, minor) = stat_rdev(d.path.as_deref().unwrap_or(""))?;
                Ok(LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(u64::try_from(d.rate.unwrap_or(0)).unwrap_or(0))
                    .build()?)
            })
            .collect::<Result<_, SpecError>>()?;
        Ok((!devs.is_empty()).then_some(devs))
    };
    for (list, set) in [
        (
            &host.blkio_device_read_bps,
            LinuxBlockIo::set_throttle_read_bps_device as fn(&mut LinuxBlockIo, _) -> &mut LinuxBlockIo,
        ),
        (
            &host.blkio_device_write_bps,
            LinuxBlockIo::set_throttle_write_bps_device,
        ),
        (
            &host.blkio_device_read_iops,
            LinuxBlockIo::set_throttle_read_iops_device,
        ),
        (
            &host.blkio_device_write_iops,
            LinuxBlockIo::set_throttle_write_iops_device,
        ),
    ] {
        if let Some(devs) = throttle(list)? {
            set(&mut blkio, Some(devs));
            blkio_set = true;
        }
    }
    if blkio_set {
        resources.set_block_io(Some(blkio));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{DeviceMapping, DeviceRequest, ResourcesUlimits, ThrottleDevice};

    fn info() -> HostInfo {
        HostInfo::for_tests()
    }

    #[test]
    fn memory_and_swap() {
        let mb = 1 << 20;
        let r = limits(
            &HostConfig {
                memory: Some(64 * mb),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(
            (m.limit(), m.swap()),
            (Some(64 * mb), Some(128 * mb)),
            "swap defaults to twice the memory"
        );
        let r = limits(
            &HostConfig {
                memory: Some(64 * mb),
                memory_swap: Some(-1),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        assert_eq!(
            r.memory().as_ref().unwrap().swap(),
            None,
            "-1: unlimited swap, not set"
        );
        let r = limits(
            &HostConfig {
                memory: Some(64 * mb),
                memory_swap: Some(100 * mb),
                memory_reservation: Some(32 * mb),
                oom_kill_disable: Some(true),
                memory_swappiness: Some(10),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(
            (m.swap(), m.reservation(), m.disable_oom_killer(), m.swappiness()),
            (Some(100 * mb), Some(32 * mb), Some(true), Some(10))
        );
        let mut no_swap = info();
        no_swap.swap_limit = false;
        let r = limits(
            &HostConfig {
                memory: Some(64 * mb),
                ..Default::default()
            },
            &no_swap,
        )
        .unwrap();
        assert_eq!(r.memory().as_ref().unwrap().swap(), None);
        assert!(
            limits(&HostConfig::default(), &info())
                .unwrap()
                .memory()
                .is_none()
        );
    }

    #[test]
    fn cpu_and_pids() {
        let r = limits(
            &HostConfig {
                nano_cpus: Some(1_500_000_000),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0".into()),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(
            (c.period(), c.quota(), c.shares(), c.cpus().as_deref()),
            (Some(100_000), Some(150_000), Some(512), Some("0"))
        );
        let r = limits(
            &HostConfig {
                cpu_period: Some(50_000),
                cpu_quota: Some(25_000),
                cpuset_mems: Some("0".into()),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(
            (c.period(), c.quota(), c.mems().as_deref()),
            (Some(50_000), Some(25_000), Some("0"))
        );
        for (given, expected) in [(100, 100), (0, -1), (-1, -1)] {
            let r = limits(
                &HostConfig {
                    pids_limit: Some(given),
                    ..Default::default()
                },
                &info(),
            )
            .unwrap();
            assert_eq!(r.pids().as_ref().unwrap().limit(), expected);
        }
        assert!(limits(&HostConfig::default(), &info()).unwrap().pids().is_none());
    }

    #[test]
    fn blkio() {
        let r = limits(
            &HostConfig {
                blkio_weight: Some(300),
                blkio_device_read_bps: Some(vec![ThrottleDevice {
                    path: Some("/dev/null".into()),
                    rate: Some(1024),
                }]),
                ..Default::default()
            },
            &info(),
        )
        .unwrap();
        let b = r.block_io().as_ref().unwrap();
        assert_eq!(b.weight(), Some(300));
        let t = &b.throttle_read_bps_device().as_ref().unwrap()[0];
        assert_eq!((t.major(), t.minor(), t.rate()), (1, 3, 1024));
        let err = limits(
            &HostConfig {
                blkio_device_write_iops: Some(vec![ThrottleDevice {
                    path: Some("/dev/nope-berth".into()),
                    rate: Some(1),
                }]),
                ..Default::default()
            },
            &info(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("stat /dev/nope-berth: "), "{err}");
    }

    #[test]
    fn ulimits() {
        let ul = |name: &str, soft, hard| ResourcesUlimits {
            name: Some(name.into()),
            soft: Some(soft),
            hard: Some(hard),
        };
        let host = HostConfig {
            ulimits: Some(vec![ul("nofile", 1024, 2048), ul("core", -1, -1)]),
            ..Default::default()
        };
        let r = rlimits(&host).unwrap();
        assert_eq!(
            (r[0].typ(), r[0].soft(), r[0].hard()),
            (PosixRlimitType::RlimitNofile, 1024, 2048)
        );
        assert_eq!(
            (r[1].typ(), r[1].soft(), r[1].hard()),
            (PosixRlimitType::RlimitCore, u64::MAX, u64::MAX)
        );
        let bad = HostConfig {
            ulimits: Some(vec![ul("nofiles", 1, 1)]),
            ..Default::default()
        };
        assert_eq!(
            check_ulimits(&bad).unwrap_err().to_string(),
            "invalid ulimit type: nofiles"
        );
        let bad = HostConfig {
            ulimits: Some(vec![ul("nproc", 20, 10)]),
            ..Default::default()
        };
        assert_eq!(
            check_ulimits(&bad).unwrap_err().to_string(),
            "ulimit soft limit must be less than or equal to hard limit: 20 > 10"
        );
    }

    #[test]
    fn sysctl_rules() {
        let with = |pairs: &[(&str, &str)], net: Option<&str>, ipc: Option<&str>| HostConfig {
            sysctls: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            network_mode: net.map(String::from),
            ipc_mode: ipc.map(String::from),
            ..Default::default()
        };
        let s = sysctls(
            &with(
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("kernel.shmmax", "1000"),
                    ("net.ipv4.ping_group_range", "0 0"),
                ],
                None,
                None,
            ),
            true,
            false,
            &info(),
        )
        .unwrap();
        assert_eq!(s["net.ipv4.ip_forward"], "1");
        assert_eq!(
            s["net.ipv4.ping_group_range"], "0 0",
            "the request wins over the defaults"
        );
        assert_eq!(s["net.ipv4.ip_unprivileged_port_start"], "0");
        let host_net = sysctls(&HostConfig::default(), false, false, &info()).unwrap();
        let remapped = sysctls(&HostConfig::default(), true, true, &info()).unwrap();
        assert!(
            !remapped.contains_key("net.ipv4.ping_group_range"),
            "{remapped:?}"
        );
        assert!(
            host_net.is_empty(),
            "no defaults without an own network namespace"
        );
        assert_eq!(
            check_sysctls(&with(&[("net.core.somaxconn", "1")], Some("host"), None))
                .unwrap_err()
                .to_string(),
            "sysctl \"net.core.somaxconn\" not allowed in host network namespace"
        );
        assert_eq!(
            check_sysctls(&with(&[("fs.mqueue.msg_max", "1")], None, Some("host")))
                .unwrap_err()
                .to_string(),
            "sysctl \"fs.mqueue.msg_max\" is not allowed in the hosts ipc namespace"
        );
        assert_eq!(
            check_sysctls(&with(&[("vm.swappiness", "1")], None, None))
                .unwrap_err()
                .to_string(),
            "sysctl \"vm.swappiness\" is not in a separate kernel namespace"
        );
    }

    #[test]
    fn device_mappings() {
        let map = |h: &str, c: &str, p: &str| DeviceMapping {
            path_on_host: Some(h.into()),
            path_in_container: Some(c.into()),
            cgroup_permissions: Some(p.into()),
        };
        let host = HostConfig {
            devices: Some(vec![map("/dev/null", "/dev/mynull", "r")]),
            device_cgroup_rules: Some(vec!["c 42:* rmw".into()]),
            ..Default::default()
        };
        let (devs, rules) = devices(&host, false).unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(
            (
                devs[0].path().as_path(),
                devs[0].typ(),
                devs[0].major(),
                devs[0].minor()
            ),
            (Path::new("/dev/mynull"), LinuxDeviceType::C, 1, 3)
        );
        assert_eq!(devs[0].file_mode(), Some(0o666));
        assert!(
            !rules[0].allow() && rules[0].access().as_deref() == Some("rwm"),
            "deny all first"
        );
        let added = &rules[rules.len() - 2];
        assert_eq!(
            (added.major(), added.minor(), added.access().as_deref()),
            (Some(1), Some(3), Some("r"))
        );
        let last = rules.last().unwrap();
        assert_eq!(
            (last.major(), last.minor(), last.access().as_deref()),
            (Some(42), Some(-1), Some("rmw"))
        );

        // A directory of devices.
        let dir_devs = devices_from_path("/dev/pts", "/dev/hostpts").unwrap_or_default();
        assert!(dir_devs.iter().all(|d| d.path().starts_with("/dev/hostpts")));

        let err = devices(
            &HostConfig {
                devices: Some(vec![map("/dev/nope-berth", "", "")]),
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "error gathering device information while adding custom device \"/dev/nope-berth\""
            ),
            "{err}"
        );
        let err = devices(
            &HostConfig {
                devices: Some(vec![map("/etc/hostname", "", "")]),
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("not a device node"), "{err}");
        assert!(
            check_devices(&HostConfig {
                devices: Some(vec![map("/dev/null", "rel", "")]),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            check_devices(&HostConfig {
                devices: Some(vec![map("/dev/null", "/dev/n", "rx")]),
                ..Default::default()
            })
            .is_err()
        );
        for bad in ["x 1:2 r", "c 1 r", "c a:2 r", "c 1:2 q", "c 1:2"] {
            let host = HostConfig {
                device_cgroup_rules: Some(vec![bad.into()]),
                ..Default::default()
            };
            assert_eq!(
                check_devices(&host).unwrap_err().to_string(),
                format!("invalid device cgroup rule format: '{bad}'")
            );
        }
        let gpu = HostConfig {
            device_requests: Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(check_devices(&gpu).is_err());
    }

    #[test]
    fn privileged_devices() {
        let (devs, rules) = devices(&HostConfig::default(), true).unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!devs.iter().any(|d| d.path() == Path::new("/dev/console")));
        assert!(!devs.iter().any(|d| d.path().starts_with("/dev/pts")));
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow() && rules[0].typ().is_none());
    }
}
