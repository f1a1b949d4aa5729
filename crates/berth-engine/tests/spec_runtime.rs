//! A spec from `containers::spec::build`, run by `berth-runtime` on a busybox rootfs: what the container sees
//! matches docker's defaults (capabilities, seccomp filter, masked paths, hostname, limits).
//!
//! Needs root and the binaries: `cargo build -p berth-runtime -p berth-check` first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_engine::containers::spec::{self, EtcFiles, NsMode, SpecInput};
use berth_test_support::{Bundle, Runtime, assert_success, parse_report, unique_id};
use bollard_stubs::models::{ContainerConfig, HostConfig, ResourcesUlimits};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The `/etc` files the daemon would bind, in the bundle directory (removed with it).
fn etc_files(bundle: &Bundle, hostname: &str) -> EtcFiles {
    let dir = bundle.path().join("etc-files");
    std::fs::create_dir_all(&dir).unwrap();
    let files = EtcFiles {
        hostname: dir.join("hostname"),
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
    };
    std::fs::write(&files.hostname, format!("{hostname}\n")).unwrap();
    std::fs::write(
        &files.hosts,
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"),
    )
    .unwrap();
    std::fs::write(&files.resolv_conf, "nameserver 127.0.0.53\n").unwrap();
    files
}

/// Builds the spec for `cfg`/`host` on the bundle's rootfs and puts it in the bundle.
fn put_spec(
    bundle: &mut Bundle,
    id: &str,
    hostname: &str,
    cgroups_path: &str,
    cfg: &ContainerConfig,
    host: &HostConfig,
) {
    let rootfs: PathBuf = bundle.rootfs();
    let image = ContainerConfig::default();
    let input = SpecInput {
        id,
        hostname,
        config: cfg,
        host,
        image: &image,
        rootfs: &rootfs,
        mounts: &[],
        etc: etc_files(bundle, hostname),
        cgroups_path,
        net: NsMode::Private,
        ipc: NsMode::Private,
        pid: NsMode::Private,
        uts: NsMode::Private,
        init: None,
        userns: None,
    };
    let built = spec::build(&input).unwrap_or_else(|e| panic!("build: {e}"));
    *bundle.spec_mut() = built;
}

/// Removes a cgroup directory the test named, in every v1 hierarchy, if the runtime left it.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for hierarchy in [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer", "systemd", "unified",
        ] {
            let path = Path::new("/sys/fs/cgroup")
                .join(hierarchy)
                .join(self.0.trim_start_matches('/'));
            let _ = std::fs::remove_dir(&path);
            if let Some(parent) = path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

#[test]
fn default_container_sees_dockers_confinement() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let id = unique_id("spec");
    let group = unique_id("berth-spec");
    let cgroups_path = format!("/{group}/{id}");
    let _guard = CgroupGuard(cgroups_path.clone());
    let hostname = "spec-host";
    let cfg = ContainerConfig {
        cmd: Some(vec!["/bin/berth-check".into(), "report".into()]),
        env: Some(vec!["FROM_CONFIG=1".into()]),
        ..Default::default()
    };
    let host = HostConfig {
        memory: Some(64 << 20),
        pids_limit: Some(64),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(512),
            hard: Some(1024),
        }]),
        ..Default::default()
    };
    put_spec(&mut bundle, &id, hostname, &cgroups_path, &cfg, &host);
    let out = rt.run_capture(&id, &bundle);
    assert_success(&out, "berth-runtime run of a built spec");
    let report = parse_report(&out.stdout).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(report.pid, 1);
    assert_eq!(report.hostname.as_deref(), Ok(hostname));
    assert_eq!(report.env_var("HOSTNAME"), Some(hostname));
    assert_eq!(report.env_var("FROM_CONFIG"), Some("1"));
    assert_eq!(report.env_var("PATH"), Some(spec::process::DEFAULT_PATH));
    assert_eq!(report.seccomp, Ok(2), "the default seccomp filter is loaded");
    let caps = report.capabilities.as_ref().expect("capabilities");
    let mut bounding = caps.bounding.names.clone();
    bounding.sort();
    let mut expected: Vec<String> = spec::caps::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(bounding, expected);
    assert_eq!(caps.effective.names.len(), expected.len());
    assert!(!caps.bounding.contains("CAP_SYS_ADMIN"));
    // Every default masked path the kernel has (this one has no /proc/kcore) is masked.
    let masked_paths = spec::default_masked_paths(spec::host::host_info());
    let present: Vec<&String> = masked_paths.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(present.len() >= 3, "{present:?}");
    for masked in present {
        assert!(
            report.mount_at(masked).is_some(),
            "{masked} is not masked: {:?}",
            report
                .mounts
                .as_ref()
                .map(|m| m.iter().map(|e| e.mount_point.clone()).collect::<Vec<_>>())
        );
    }
    let proc_sys = report
        .mount_at("/proc/sys")
        .expect("/proc/sys is a read-only bind");
    assert!(proc_sys.is_read_only());
    let sys = report.mount_at("/sys").expect("/sys");
    assert!(sys.is_read_only(), "/sys is read-only without --privileged");
    assert!(report.mount_at("/etc/hostname").is_some() && report.mount_at("/etc/hosts").is_some());
    let shm = report.mount_at("/dev/shm").expect("/dev/shm");
    assert!(
        shm.super_options.iter().any(|o| o == "size=65536k"),
        "{:?}",
        shm.super_options
    );
    let nofile = report
        .rlimits
        .get("RLIMIT_NOFILE")
        .expect("nofile")
        .as_ref()
        .expect("nofile probe");
    assert_eq!((nofile.soft, nofile.hard), (512, 1024));
    let cgroup = report.cgroup.as_ref().expect("cgroup");
    assert!(cgroup.iter().any(|l| l.contains(&group)), "{cgroup:?}");
}

#[test]
fn limits_reach_the_cgroup_and_seccomp_blocks_unshare() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let id = unique_id("speclim");
    let group = unique_id("berth-spec");
    let cgroups_path = format!("/{group}/{id}");
    let _guard = CgroupGuard(cgroups_path.clone());
    let cfg = ContainerConfig {
        cmd: Some(vec!["/bin/berth-check".into(), "sleep".into(), "30".into()]),
        ..Default::default()
    };
    let host = HostConfig {
        memory: Some(32 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(20),
        ..Default::default()
    };
    put_spec(&mut bundle, &id, "limits", &cgroups_path, &cfg, &host);
    assert_success(&rt.create(&id, &bundle), "create");
    if let Some(pid) = rt.state(&id)["pid"].as_i64() {
        rt.track_pid(pid as i32);
    }
    assert_success(&rt.start(&id), "start");
    let read = |controller: &str, file: &str| {
        let path = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(cgroups_path.trim_start_matches('/'))
            .join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(read("memory", "memory.limit_in_bytes"), (32u64 << 20).to_string());
        assert_eq!(read("pids", "pids.max"), "20");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    } else {
        assert_eq!(read("", "memory.max"), (32u64 << 20).to_string());
        assert_eq!(read("", "pids.max"), "20");
        assert_eq!(read("", "cpu.max"), "50000 100000");
    }
    assert_success(&rt.kill(&id, "KILL"), "kill");
    rt.wait_for_status(&id, "stopped", Duration::from_secs(10));
    assert_success(&rt.delete(&id), "delete");

    // unshare(CLONE_NEWUSER) needs no capability: only the seccomp profile refuses it, and unconfined allows it.
    for (security_opt, should_work) in [(None, false), (Some("seccomp=unconfined"), true)] {
        let mut bundle = Bundle::busybox();
        let id = unique_id("specns");
        let cgroups_path = format!("/{group}/{id}");
        let _guard = CgroupGuard(cgroups_path.clone());
        let cfg = ContainerConfig {
            cmd: Some(vec!["/usr/bin/unshare".into(), "-U".into(), "/bin/true".into()]),
            ..Default::default()
        };
        let host = HostConfig {
            security_opt: security_opt.map(|o| vec![o.to_string()]),
            ..Default::default()
        };
        put_spec(&mut bundle, &id, "ns", &cgroups_path, &cfg, &host);
        let out = rt.run_capture(&id, &bundle);
        assert_eq!(
            out.status.success(),
            should_work,
            "{security_opt:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
