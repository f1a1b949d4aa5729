//! The inside view: what a process in a container sees of its namespaces, rootfs and process settings,
//! reported by `berth-check`. Needs root.

use std::os::unix::fs::MetadataExt;

use berth_test_support::{Bundle, Runtime, assert_success, unique_id};
use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceType, PosixRlimitBuilder, PosixRlimitType, UserBuilder,
};

fn host_ns(name: &str) -> u64 {
    std::fs::metadata(format!("/proc/self/ns/{name}"))
        .expect("host ns")
        .ino()
}

fn run_sh(rt: &Runtime, bundle: &mut Bundle, script: &str) -> std::process::Output {
    bundle.set_args(&["sh", "-c", script]).set_terminal(false);
    rt.run_capture(&unique_id("sh"), bundle)
}

#[test]
fn namespaces_hostname_and_pid_1() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.spec_mut().set_hostname(Some("inside-test".into()));
    bundle.spec_mut().set_domainname(Some("example.test".into()));
    let r = rt.check_report(&mut bundle);
    assert_eq!(r.pid, 1, "the process is PID 1 of its own pid namespace");
    assert_eq!(r.hostname.as_deref().ok(), Some("inside-test"));
    assert_eq!(r.domainname.as_deref().ok(), Some("example.test"));
    for ns in ["pid", "net", "uts", "ipc", "mnt"] {
        let inside = r.namespaces.get(ns).and_then(|v| v.as_ref().ok()).copied();
        assert!(inside.is_some(), "no {ns} namespace in the report");
        assert_ne!(inside, Some(host_ns(ns)), "{ns} namespace is the host's");
    }
    assert_eq!(
        r.interfaces.as_ref().ok().map(|i| i.as_slice()),
        Some(&["lo".to_string()][..]),
        "a fresh network namespace has only lo"
    );
    assert_eq!(r.argv, vec!["/bin/berth-check".to_string(), "report".to_string()]);
}

#[test]
fn mounts_masked_and_readonly_paths() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let r = rt.check_report(&mut bundle);
    let fs = |at: &str| {
        r.mount_at(at)
            .map(|m| m.fs_type.clone())
            .unwrap_or_else(|| panic!("nothing mounted at {at}"))
    };
    assert_eq!(fs("/proc"), "proc");
    assert_eq!(fs("/dev"), "tmpfs");
    assert_eq!(fs("/dev/pts"), "devpts");
    assert_eq!(fs("/dev/shm"), "tmpfs");
    assert_eq!(fs("/dev/mqueue"), "mqueue");
    assert_eq!(fs("/sys"), "sysfs");
    assert!(
        r.mount_at("/").expect("root mount").is_read_only(),
        "root.readonly is true in the default spec"
    );
    assert!(
        r.mount_at("/proc/sys")
            .expect("/proc/sys is a read-only path")
            .is_read_only()
    );
    // /proc/kcore is absent on this kernel; /proc/timer_list is in the default masked list and present.
    assert!(
        r.mount_at("/proc/timer_list").is_some(),
        "/proc/timer_list is masked"
    );
    let mounts = r.mounts.as_ref().expect("mounts");
    assert!(
        !mounts
            .iter()
            .any(|m| m.mount_point.starts_with("/tmp/berth-bundle")),
        "host paths leak into the container"
    );

    // Writes: the read-only root refuses, a tmpfs accepts, masked kcore reads empty.
    let out = run_sh(
        &rt,
        &mut bundle,
        "touch /x 2>/dev/null && echo root-writable; touch /dev/shm/x && echo shm-ok; wc -c < /proc/timer_list",
    );
    assert_success(&out, "writes");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("root-writable"), "{text}");
    assert!(text.contains("shm-ok"), "{text}");
    assert_eq!(
        text.lines().last().map(str::trim),
        Some("0"),
        "masked /proc/timer_list is /dev/null: {text}"
    );
}

#[test]
fn devices_and_dev_symlinks() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let dev = LinuxDeviceBuilder::default()
        .path("/dev/berth-null")
        .typ(LinuxDeviceType::C)
        .major(1)
        .minor(3)
        .file_mode(0o640u32)
        .uid(7u32)
        .gid(8u32)
        .build()
        .expect("device");
    bundle
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_devices(Some(vec![dev]));
    let script = "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; \
        stat -c '%t %T %a %u %g' /dev/berth-null; for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; \
        echo hi > /dev/null && head -c 4 /dev/zero | wc -c";
    let out = run_sh(&rt, &mut bundle, script);
    assert_success(&out, "devices");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("missing"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1 3 640 7 8", "{text}");
    assert_eq!(
        &lines[1..6],
        [
            "/proc/self/fd",
            "/proc/self/fd/0",
            "/proc/self/fd/1",
            "/proc/self/fd/2",
            "pts/ptmx"
        ]
    );
    assert_eq!(lines[6].trim(), "4");
}

#[test]
fn sysctl_and_oom_score_adj() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    linux.set_sysctl(Some([("kernel.msgmax".to_string(), "4242".to_string())].into()));
    bundle
        .spec_mut()
        .process_mut()
        .as_mut()
        .unwrap()
        .set_oom_score_adj(Some(123));
    let out = run_sh(
        &rt,
        &mut bundle,
        "cat /proc/sys/kernel/msgmax /proc/self/oom_score_adj",
    );
    assert_success(&out, "sysctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4242\n123\n");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap().trim(),
        "4242",
        "the host's value changed"
    );
}

#[test]
fn process_user_env_cwd_rlimits_caps() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let process = bundle.spec_mut().process_mut().as_mut().unwrap();
    process.set_user(
        UserBuilder::default()
            .uid(1000u32)
            .gid(1001u32)
            .additional_gids(vec![10u32, 20])
            .umask(0o027u32)
            .build()
            .unwrap(),
    );
    process.set_cwd("/home/created-by-the-runtime".into());
    process.set_rlimits(Some(vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(512u64)
            .hard(1024u64)
            .build()
            .unwrap(),
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitCore)
            .soft(0u64)
            .hard(0u64)
            .build()
            .unwrap(),
    ]));
    bundle.add_env(&["BERTH_TEST=yes"]);
    let r = rt.check_report(&mut bundle);
    assert_eq!((r.uid, r.euid, r.gid, r.egid), (1000, 1000, 1001, 1001));
    let mut groups = r.groups.clone().expect("groups");
    groups.sort_unstable();
    assert_eq!(groups, vec![10, 20]);
    assert_eq!(r.umask.as_ref().ok(), Some(&0o027));
    assert_eq!(
        r.cwd.as_deref().ok(),
        Some("/home/created-by-the-runtime"),
        "a missing cwd is created"
    );
    assert_eq!(r.env_var("BERTH_TEST"), Some("yes"));
    assert_eq!(
        r.env_var("HOME"),
        Some("/"),
        "HOME comes from /etc/passwd or defaults to /"
    );
    let nofile = r
        .rlimits
        .get("RLIMIT_NOFILE")
        .and_then(|l| l.as_ref().ok())
        .expect("nofile");
    assert_eq!((nofile.soft, nofile.hard), (512, 1024));
    let core = r
        .rlimits
        .get("RLIMIT_CORE")
        .and_then(|l| l.as_ref().ok())
        .expect("core");
    assert_eq!((core.soft, core.hard), (0, 0));
    assert_eq!(r.no_new_privs.as_ref().ok(), Some(&true));
    // The default spec's capabilities, in all sets but ambient, even for a non-root user.
    let caps = r.capabilities.as_ref().expect("caps");
    let spec_caps = bundle
        .spec()
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    let name = |c: &oci_spec::runtime::Capability| format!("CAP_{c}");
    let want: std::collections::BTreeSet<String> =
        spec_caps.effective().as_ref().unwrap().iter().map(name).collect();
    let got: std::collections::BTreeSet<String> = caps.effective.names.iter().cloned().collect();
    assert_eq!(got, want);
    let got_bounding: std::collections::BTreeSet<String> = caps.bounding.names.iter().cloned().collect();
    let want_bounding: std::collections::BTreeSet<String> =
        spec_caps.bounding().as_ref().unwrap().iter().map(name).collect();
    assert_eq!(got_bounding, want_bounding);
    assert!(!caps.effective.contains("CAP_SYS_ADMIN"));
    let want_ambient: std::collections::BTreeSet<String> = spec_caps
        .ambient()
        .as_ref()
        .map(|a| a.iter().map(name).collect())
        .unwrap_or_default();
    assert_eq!(
        caps.ambient
            .names
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        want_ambient
    );
    assert_eq!(
        r.fd_numbers(),
        Some(vec![0, 1, 2]),
        "only stdio reaches the process"
    );
}

#[test]
fn root_keeps_its_capabilities_and_ambient_works() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let process = bundle.spec_mut().process_mut().as_mut().unwrap();
    let mut caps = process.capabilities().clone().unwrap();
    let kill: std::collections::HashSet<oci_spec::runtime::Capability> =
        [oci_spec::runtime::Capability::Kill].into();
    caps.set_ambient(Some(kill.clone()));
    caps.set_inheritable(Some(kill));
    process.set_capabilities(Some(caps));
    let r = rt.check_report(&mut bundle);
    let c = r.capabilities.as_ref().expect("caps");
    assert_eq!(c.ambient.names, vec!["CAP_KILL".to_string()]);
    assert!(c.effective.contains("CAP_NET_BIND_SERVICE"));
}

#[test]
fn namespaces_joined_by_path() {
    let rt = Runtime::new();
    let mut first = Bundle::busybox();
    first.set_check_args(&["sleep", "30"]);
    let a = unique_id("nsa");
    assert_success(&rt.create(&a, &first), "create a");
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);

    let mut second = Bundle::busybox();
    let ns: Vec<oci_spec::runtime::LinuxNamespace> = serde_json::from_value(serde_json::json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
    ]))
    .unwrap();
    second
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_namespaces(Some(ns));
    second.spec_mut().set_hostname(None);
    let r = rt.check_report(&mut second);
    let ino = |ns: &str| std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).unwrap().ino();
    assert_eq!(
        r.namespaces["net"].as_ref().ok(),
        Some(&ino("net")),
        "joined the first container's network"
    );
    assert_eq!(r.namespaces["uts"].as_ref().ok(), Some(&ino("uts")));
    assert_ne!(r.namespaces["ipc"].as_ref().ok(), Some(&ino("ipc")), "ipc is new");
    assert_eq!(
        r.hostname.as_deref().ok(),
        Some("berth"),
        "the hostname of the joined uts namespace"
    );
    assert_success(&rt.delete_force(&a), "delete a");
}

#[test]
fn user_cgroup_and_time_namespaces() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    for extra in [r#"{"type":"user"}"#, r#"{"type":"cgroup"}"#, r#"{"type":"time"}"#] {
        let n: oci_spec::runtime::LinuxNamespace = serde_json::from_str(extra).unwrap();
        if !ns.iter().any(|x| x.typ() == n.typ()) {
            ns.push(n);
        }
    }
    linux.set_namespaces(Some(ns));
    let map: Vec<oci_spec::runtime::LinuxIdMapping> =
        serde_json::from_str(r#"[{"containerID":0,"hostID":100000,"size":65536}]"#).unwrap();
    linux.set_uid_mappings(Some(map.clone()));
    linux.set_gid_mappings(Some(map));
    // The rootfs must be reachable by the mapped root; sysfs cannot be mounted without a network owner.
    let mounts: Vec<oci_spec::runtime::Mount> = bundle
        .spec()
        .mounts()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.destination() != std::path::Path::new("/sys")
                && m.destination() != std::path::Path::new("/sys/fs/cgroup")
        })
        .collect();
    bundle.spec_mut().set_mounts(Some(mounts));
    let r = rt.check_report(&mut bundle);
    assert_eq!(r.uid, 0, "root inside");
    assert_eq!(
        r.uid_map
            .as_ref()
            .ok()
            .map(|m| m.join(" "))
            .as_deref()
            .map(|s| s.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "100000", "65536"])
    );
    for ns in ["user", "cgroup", "time"] {
        assert_ne!(
            r.namespaces[ns].as_ref().ok(),
            Some(&host_ns(ns)),
            "{ns} namespace is the host's"
        );
    }
}

#[test]
fn rootfs_propagation_and_no_pivot() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_rootfs_propagation(Some("shared".into()));
    let r = rt.check_report(&mut bundle);
    let root = r.mount_at("/").expect("root mount");
    assert!(
        root.propagation.iter().any(|p| p.starts_with("shared:")),
        "{:?}",
        root.propagation
    );

    bundle
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_rootfs_propagation(None);
    bundle.set_check_args(&["report"]);
    bundle.write_config();
    let id = unique_id("nopivot");
    let out = rt.run(&[
        "run",
        "--no-pivot",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_success(&out, "run --no-pivot");
    let r = berth_test_support::parse_report(&out.stdout).expect("report");
    assert_eq!(r.pid, 1);
    assert!(r.mount_at("/proc").is_some());
}

#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let out = run_sh(&rt, &mut bundle, "cat /sys/class/net/lo/flags");
    assert_success(&out, "read lo's flags");
    let flags = u32::from_str_radix(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex flags");
    assert_eq!(
        flags & libc::IFF_UP as u32,
        libc::IFF_UP as u32,
        "lo is down: flags {flags:#x}"
    );
}

/// A user namespace with mappings over a rootfs owned by the mapped ids: root inside is 100000 outside, /proc
/// and /sys are mounted, time offsets apply, and the mapped root cannot write a host-owned directory. A second
/// container joins the first one's user namespace by path.
#[test]
fn user_namespace_mapped_root_and_joined_by_path() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        host_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(bundle.rootfs())
        .status()
        .unwrap();
    assert!(status.success(), "chown the rootfs to the mapped ids");
    bundle.set_readonly_root(false);
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(serde_json::from_str(r#"{"type":"user"}"#).unwrap());
    ns.push(serde_json::from_str(r#"{"type":"time"}"#).unwrap());
    linux.set_namespaces(Some(ns));
    let map: Vec<oci_spec::runtime::LinuxIdMapping> =
        serde_json::from_str(r#"[{"containerID":0,"hostID":100000,"size":65536}]"#).unwrap();
    linux.set_uid_mappings(Some(map.clone()));
    linux.set_gid_mappings(Some(map));
    linux.set_time_offsets(Some(
        serde_json::from_str(r#"{"boottime":{"secs":864000}}"#).unwrap(),
    ));
    let mut mounts = bundle.spec().mounts().clone().unwrap();
    mounts.push(
        serde_json::from_value(serde_json::json!({"destination": "/hostdir", "type": "bind", "source": host_dir.path(), "options": ["rbind"]}))
            .unwrap(),
    );
    bundle.spec_mut().set_mounts(Some(mounts));
    let script = "id -u; cat /proc/self/uid_map; mount | grep -c -E ' on /(proc|sys) '; cut -d. -f1 /proc/uptime; \
        touch /hostdir/x 2>&1; touch /own-file && echo rootfs-writable";
    let out = run_sh(&rt, &mut bundle, script);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("0"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(lines[2], "2", "/proc and /sys are mounted inside");
    assert!(
        lines[3].parse::<u64>().unwrap() >= 864000,
        "the boottime offset: {}",
        lines[3]
    );
    assert!(
        lines[4].contains("Permission denied"),
        "mapped root wrote a host-owned directory: {text}"
    );
    assert_eq!(lines[5], "rootfs-writable");
    assert!(!host_dir.path().join("x").exists());

    // Join that user namespace (and the network) from a second container.
    bundle.set_check_args(&["sleep", "30"]);
    let a = unique_id("usera");
    assert_success(&rt.create(&a, &bundle), "create a");
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);
    let mut second = Bundle::busybox();
    let status = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(second.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let ns: Vec<oci_spec::runtime::LinuxNamespace> = serde_json::from_value(serde_json::json!([
        {"type": "user", "path": format!("/proc/{pid}/ns/user")},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}
    ]))
    .unwrap();
    second
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_namespaces(Some(ns));
    let r = rt.check_report(&mut second);
    let user_ino = std::fs::metadata(format!("/proc/{pid}/ns/user")).unwrap().ino();
    assert_eq!(
        r.namespaces["user"].as_ref().ok(),
        Some(&user_ino),
        "joined the first container's user namespace"
    );
    assert_eq!(
        r.uid_map
            .as_ref()
            .ok()
            .map(|m| m.join(" "))
            .map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>()),
        Some(vec!["0".to_string(), "100000".to_string(), "65536".to_string()])
    );
    // A create that fails after joining the user namespace (the host's IPC namespace cannot get an mqueue
    // mount from inside it) leaves no cgroup behind: the runtime cannot remove it from there, its janitor does.
    let mut third = Bundle::busybox();
    let ns: Vec<oci_spec::runtime::LinuxNamespace> = serde_json::from_value(serde_json::json!([
        {"type": "user", "path": format!("/proc/{pid}/ns/user")}, {"type": "pid"}, {"type": "mount"}
    ]))
    .unwrap();
    third
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_namespaces(Some(ns));
    third.spec_mut().set_hostname(None);
    third.set_check_args(&["exit", "0"]);
    let c = unique_id("userc");
    let out = rt.create(&c, &third);
    assert!(!out.status.success(), "expected the mqueue mount to fail");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/berth-runtime-{c}")).exists(),
        "cgroup left behind"
    );
    assert_eq!(rt.containers(), vec![a.clone()]);
    assert_success(&rt.delete_force(&a), "delete a");
}
