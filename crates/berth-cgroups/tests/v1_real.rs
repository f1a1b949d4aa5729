//! Against the machine's real cgroup v1 hierarchies (root needed). Skipped where /sys/fs/cgroup is v2.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_cgroups::{Cgroup, CgroupMode, Error, OomEvent};
use common::{CgroupGuard, Proc, proc_state, read, unique};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNetworkBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

fn v1_machine() -> bool {
    match berth_cgroups::detect() {
        Ok(CgroupMode::V1 | CgroupMode::Hybrid) => true,
        other => {
            eprintln!("skipped: cgroup mode is {other:?}");
            false
        }
    }
}

fn v1_root(controller: &str) -> std::path::PathBuf {
    Path::new("/sys/fs/cgroup").join(controller)
}

fn dev(
    allow: bool,
    t: LinuxDeviceType,
    major: i64,
    minor: i64,
    access: &str,
) -> oci_spec::runtime::LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(t)
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .unwrap()
}

#[test]
fn limits_processes_freeze_stats_kill_destroy() {
    if !v1_machine() {
        return;
    }
    let parent = unique("limits");
    let cg = Cgroup::new(Some(&format!("/{parent}/ctr")), "ctr").unwrap();
    let mut guard = CgroupGuard::new(cg);
    guard.extra = [
        "memory", "cpu", "cpuset", "pids", "devices", "freezer", "blkio", "cpuacct", "systemd", "hugetlb",
    ]
    .iter()
    .map(|c| v1_root(c).join(&parent))
    .collect();
    let cg = &guard.cg;

    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(128 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            dev(true, LinuxDeviceType::C, 1, 3, "rwm"),
            dev(true, LinuxDeviceType::C, 1, 5, "rw"),
        ])
        .build()
        .unwrap();
    cg.setup(Some(&resources)).unwrap();

    let mem = cg.path_of("memory").unwrap();
    assert_eq!(mem, v1_root("memory").join(&parent).join("ctr"));
    assert_eq!(
        read(&mem.join("memory.limit_in_bytes")).trim(),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem.join("memory.memsw.limit_in_bytes")).trim(),
        (128u64 << 20).to_string()
    );
    let cpu = cg.path_of("cpu").unwrap();
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")).trim(), "50000");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")).trim(), "100000");
    assert_eq!(read(&cpu.join("cpu.shares")).trim(), "512");
    let cpuset = cg.path_of("cpuset").unwrap();
    assert_eq!(read(&cpuset.join("cpuset.cpus")).trim(), "0");
    assert_eq!(read(&cpuset.join("cpuset.mems")).trim(), "0");
    // The intermediate cpuset directory got its parent's cpus, or nothing could join below it.
    assert_eq!(
        read(&cpuset.parent().unwrap().join("cpuset.cpus")).trim(),
        read(&v1_root("cpuset").join("cpuset.cpus")).trim()
    );
    assert_eq!(read(&cg.path_of("pids").unwrap().join("pids.max")).trim(), "50");
    let devices = read(&cg.path_of("devices").unwrap().join("devices.list"));
    let mut lines: Vec<&str> = devices.lines().collect();
    lines.sort();
    assert_eq!(lines, ["c 1:3 rwm", "c 1:5 rw"]);

    // A process in the cgroup: it execs after the move, so its new pages are charged here.
    let mut p = Proc::shell("exec sleep 1000");
    cg.add_pid(p.pid()).unwrap();
    p.go();
    std::thread::sleep(Duration::from_millis(100));
    let own = read(Path::new(&format!("/proc/{}/cgroup", p.pid())));
    assert!(own.contains(&format!(":memory:/{parent}/ctr\n")), "{own}");
    assert_eq!(cg.pids().unwrap(), vec![p.pid()]);
    assert!(!cg.is_empty().unwrap());

    cg.freeze().unwrap();
    let freezer = cg.path_of("freezer").unwrap();
    assert_eq!(read(&freezer.join("freezer.state")).trim(), "FROZEN");
    let st = proc_state(p.pid());
    assert!(st == 'D' || st == 'T', "state of a frozen task: {st}");
    cg.thaw().unwrap();
    assert_eq!(read(&freezer.join("freezer.state")).trim(), "THAWED");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(proc_state(p.pid()), 'S');

    let stats = cg.stats().unwrap();
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert_eq!(stats.memory.usage.limit, 64 << 20);
    assert!(stats.cpu.usage.total > 0, "{stats:?}");
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 50);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["memory"]["usage"]["limit"], 64u64 << 20);

    cg.kill_all(libc::SIGKILL).unwrap();
    let status = p.wait_for_exit(Duration::from_secs(5)).expect("killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(cg.is_empty().unwrap());

    cg.destroy().unwrap();
    for dir in cg.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
        // The parent was created by this object too.
        assert!(
            !dir.parent().unwrap().exists(),
            "{} left behind",
            dir.parent().unwrap().display()
        );
    }
}

#[test]
fn kill_all_with_sigterm_freezes_signals_and_thaws() {
    if !v1_machine() {
        return;
    }
    let name = unique("term");
    let guard = CgroupGuard::new(Cgroup::new(Some(&format!("/{name}")), "x").unwrap());
    let cg = &guard.cg;
    cg.setup(None).unwrap();
    let mut a = Proc::shell("exec sleep 1000");
    let mut b = Proc::shell("exec sleep 1000");
    cg.add_pid(a.pid()).unwrap();
    cg.add_pid(b.pid()).unwrap();
    a.go();
    b.go();
    let mut pids = cg.pids().unwrap();
    pids.sort();
    let mut want = vec![a.pid(), b.pid()];
    want.sort();
    assert_eq!(pids, want);
    cg.kill_all(libc::SIGTERM).unwrap();
    use std::os::unix::process::ExitStatusExt;
    for p in [&mut a, &mut b] {
        let st = p.wait_for_exit(Duration::from_secs(5)).expect("terminated");
        assert_eq!(st.signal(), Some(libc::SIGTERM));
    }
    assert_eq!(
        read(&cg.path_of("freezer").unwrap().join("freezer.state")).trim(),
        "THAWED"
    );
    cg.destroy().unwrap();
    assert!(cg.paths().iter().all(|p| !p.exists()));
}

#[test]
fn oom_kill_is_reported() {
    if !v1_machine() {
        return;
    }
    let name = unique("oom");
    let guard = CgroupGuard::new(Cgroup::new(Some(&format!("/{name}")), "x").unwrap());
    let cg = &guard.cg;
    let limit = 32i64 << 20;
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.setup(Some(&resources)).unwrap();
    let mut watcher = cg.oom_events().unwrap();
    assert_eq!(cg.oom_kill_count().unwrap(), 0);
    assert_eq!(watcher.wait_timeout(Duration::from_millis(50)).unwrap(), None);

    // tail keeps everything after the last newline, and /dev/zero has none: 200 MiB in a 32 MiB cgroup.
    let mut p = Proc::shell("head -c 200m /dev/zero | tail; echo survived");
    cg.add_pid(p.pid()).unwrap();
    p.go();
    assert_eq!(
        watcher.wait_timeout(Duration::from_secs(30)).unwrap(),
        Some(OomEvent::Oom)
    );
    p.wait_for_exit(Duration::from_secs(30)).expect("shell finished");
    assert!(cg.oom_kill_count().unwrap() >= 1);
    let stats = cg.stats().unwrap();
    assert!(stats.memory.usage.max >= (limit as u64) - (1 << 20), "{stats:?}");

    // Removing the cgroup ends a wait too.
    cg.kill_all(libc::SIGKILL).unwrap();
    cg.destroy().unwrap();
    let ev = watcher.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(ev, Some(OomEvent::CgroupRemoved));
}

#[test]
fn existing_parents_are_kept() {
    if !v1_machine() {
        return;
    }
    let parent = unique("keep");
    let mut guard = CgroupGuard::new(Cgroup::new(Some(&format!("/{parent}/child")), "x").unwrap());
    let pre = v1_root("memory").join(&parent);
    std::fs::create_dir(&pre).unwrap();
    guard.extra = [
        "memory", "cpu", "cpuset", "pids", "devices", "freezer", "blkio", "cpuacct", "systemd", "hugetlb",
    ]
    .iter()
    .map(|c| v1_root(c).join(&parent))
    .collect();
    let cg = &guard.cg;
    cg.create().unwrap();
    // A nested cgroup made by the container itself is removed with it.
    std::fs::create_dir(cg.path_of("pids").unwrap().join("nested")).unwrap();
    cg.destroy().unwrap();
    assert!(pre.exists(), "a parent that existed before was removed");
    assert!(!pre.join("child").exists());
    assert!(
        !v1_root("pids").join(&parent).exists(),
        "a parent created by create() stayed"
    );

    // An object made later (as `delete` does) removes the leaf only.
    let again = Cgroup::new(Some(&format!("/{parent}/child")), "x").unwrap();
    again.create().unwrap();
    let later = Cgroup::new(Some(&format!("/{parent}/child")), "x").unwrap();
    later.destroy().unwrap();
    assert!(later.paths().iter().all(|p| !p.exists()));
    assert!(v1_root("pids").join(&parent).exists());
}

#[test]
fn relative_paths_live_below_the_own_cgroup() {
    if !v1_machine() {
        return;
    }
    let name = unique("rel");
    let guard = CgroupGuard::new(Cgroup::new(Some(&name), "x").unwrap());
    let cg = &guard.cg;
    let own = berth_cgroups::own_cgroup_paths().unwrap();
    let mem_own = own.iter().find(|o| o.controllers == ["memory"]).unwrap();
    let want = v1_root("memory")
        .join(mem_own.path.trim_start_matches('/'))
        .join(&name);
    assert_eq!(cg.path_of("memory").unwrap(), want);
    cg.create().unwrap();
    assert!(want.is_dir());
    cg.destroy().unwrap();
    assert!(!want.exists());
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_nothing() {
    if !v1_machine() {
        return;
    }
    // A path that climbs out of the hierarchy.
    let e = Cgroup::new(Some("/a/../../etc"), "x").unwrap_err();
    assert!(matches!(e, Error::PathEscapes { .. }), "{e}");
    assert!(e.to_string().contains("/a/../../etc"), "{e}");

    let check_nothing_left = |cg: &Cgroup| {
        for p in cg.paths() {
            assert!(!p.exists(), "{} left behind", p.display());
        }
    };

    // net_cls is not mounted here (skip where it is).
    let name = unique("netcls");
    let guard = CgroupGuard::new(Cgroup::new(Some(&format!("/{name}")), "x").unwrap());
    if guard.cg.path_of("net_cls").is_none() {
        let r = LinuxResourcesBuilder::default()
            .network(
                LinuxNetworkBuilder::default()
                    .class_id(0x10001u32)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = guard.cg.setup(Some(&r)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::HierarchyMissing {
                    controller: "net_cls",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("net_cls"), "{e}");
        check_nothing_left(&guard.cg);
    }

    // unified keys need cgroup v2.
    let mut r = LinuxResources::default();
    r.set_unified(Some([("memory.high".to_owned(), "1000000".to_owned())].into()));
    let e = guard.cg.setup(Some(&r)).unwrap_err();
    assert!(
        e.to_string().contains("memory.high") && e.to_string().contains("v1"),
        "{e}"
    );
    check_nothing_left(&guard.cg);

    // A value the kernel refuses: a CPU this machine does not have.
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("999").build().unwrap())
        .build()
        .unwrap();
    let e = guard.cg.setup(Some(&r)).unwrap_err();
    assert!(matches!(e, Error::Write { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("cpuset.cpus") && msg.contains("\"999\""), "{msg}");
    check_nothing_left(&guard.cg);

    // Out of range before the kernel sees it.
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().swappiness(200u64).build().unwrap())
        .build()
        .unwrap();
    let e = guard.cg.setup(Some(&r)).unwrap_err();
    assert!(e.to_string().contains("200"), "{e}");
    check_nothing_left(&guard.cg);

    // memsw below the memory limit: the kernel says EINVAL.
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(32 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = guard.cg.setup(Some(&r)).unwrap_err();
    assert!(e.to_string().contains("memory"), "{e}");
    check_nothing_left(&guard.cg);
}
