//! Against a private cgroup2 mount made by each test (root needed). This machine's cgroup2 has no
//! controllers: processes, freeze, kill and the device filter work; resource limits must fail clearly.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use berth_cgroups::{Cgroup, CgroupMode, Error};
use common::{Cgroup2Mount, CgroupGuard, Proc, proc_state, read, unique};
use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

fn v2(mount: &Cgroup2Mount, path: &str) -> CgroupGuard {
    assert_eq!(berth_cgroups::detect_at(mount.path()).unwrap(), CgroupMode::V2);
    CgroupGuard::new(Cgroup::with_root(mount.path(), CgroupMode::V2, Some(path), "x").unwrap())
}

#[test]
fn processes_freeze_kill_destroy() {
    let mount = Cgroup2Mount::new();
    let parent = unique("v2");
    let mut guard = v2(&mount, &format!("/{parent}/ctr"));
    guard.extra = vec![mount.path().join(&parent)];
    let cg = &guard.cg;
    cg.setup(None).unwrap();
    let dir = mount.path().join(&parent).join("ctr");
    assert_eq!(cg.paths(), vec![dir.clone()]);
    assert!(dir.is_dir());
    assert!(cg.dir_fd().unwrap().is_some());

    let mut p = Proc::shell("exec sleep 1000");
    cg.add_pid(p.pid()).unwrap();
    p.go();
    assert_eq!(cg.pids().unwrap(), vec![p.pid()]);
    assert!(read(&dir.join("cgroup.procs")).contains(&p.pid().to_string()));

    cg.freeze().unwrap();
    assert!(read(&dir.join("cgroup.events")).contains("frozen 1"));
    let st = proc_state(p.pid());
    assert!(st == 'D' || st == 'T' || st == 'S', "state {st}");
    cg.thaw().unwrap();
    assert!(read(&dir.join("cgroup.events")).contains("frozen 0"));

    // The stats of a controller-less cgroup2: CPU time only (cpu.stat is a core file).
    let stats = cg.stats().unwrap();
    assert!(stats.cpu.usage.total > 0, "{stats:?}");
    assert_eq!(stats.memory.usage.usage, 0);

    cg.kill_all(libc::SIGKILL).unwrap();
    let status = p
        .wait_for_exit(Duration::from_secs(5))
        .expect("killed through cgroup.kill");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(cg.is_empty().unwrap());
    cg.destroy().unwrap();
    assert!(!dir.exists());
    assert!(
        !mount.path().join(&parent).exists(),
        "the parent created by create() stayed"
    );
}

#[test]
fn kill_all_with_sigterm_and_nested_cgroups() {
    let mount = Cgroup2Mount::new();
    let name = unique("v2term");
    let guard = v2(&mount, &format!("/{name}"));
    let cg = &guard.cg;
    cg.setup(None).unwrap();
    // A child cgroup made by the container (with a process in it): pids() and kill_all() see it, destroy()
    // removes it.
    let nested = mount.path().join(&name).join("inner");
    std::fs::create_dir(&nested).unwrap();
    let mut a = Proc::shell("exec sleep 1000");
    let mut b = Proc::shell("exec sleep 1000");
    cg.add_pid(a.pid()).unwrap();
    std::fs::write(nested.join("cgroup.procs"), b.pid().to_string()).unwrap();
    a.go();
    b.go();
    let mut pids = cg.pids().unwrap();
    pids.sort();
    let mut want = vec![a.pid(), b.pid()];
    want.sort();
    assert_eq!(pids, want);
    cg.kill_all(libc::SIGTERM).unwrap();
    for p in [&mut a, &mut b] {
        let st = p.wait_for_exit(Duration::from_secs(5)).expect("terminated");
        assert_eq!(st.signal(), Some(libc::SIGTERM));
    }
    assert!(read(&mount.path().join(&name).join("cgroup.events")).contains("frozen 0"));
    cg.destroy().unwrap();
    assert!(!mount.path().join(&name).exists());
}

#[test]
fn limits_fail_clearly_without_controllers() {
    let mount = Cgroup2Mount::new();
    let name = unique("v2nolimit");
    let guard = v2(&mount, &format!("/{name}"));
    let cg = &guard.cg;
    let controllers = read(&mount.path().join("cgroup.controllers"));
    if controllers.split_whitespace().any(|c| c == "memory") {
        eprintln!("skipped: this cgroup2 has a memory controller");
        return;
    }
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(64 << 20).build().unwrap())
        .build()
        .unwrap();
    let e = cg.setup(Some(&r)).unwrap_err();
    assert!(matches!(e, Error::ControllerMissing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("memory.max") && msg.contains("memory controller"),
        "{msg}"
    );
    assert!(
        !mount.path().join(&name).exists(),
        "setup() left its directory behind"
    );

    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap();
    let e = cg.setup(Some(&r)).unwrap_err();
    assert!(e.to_string().contains("pids.max"), "{e}");
    assert!(!mount.path().join(&name).exists());

    // OOM notification needs memory.events.
    cg.create().unwrap();
    let e = cg.oom_events().err().expect("no memory controller");
    assert!(e.to_string().contains("memory.events"), "{e}");
    assert_eq!(cg.oom_kill_count().unwrap(), 0);
    cg.destroy().unwrap();
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

/// Runs a shell in the cgroup that opens /dev/null and /dev/zero for reading and says what worked.
fn probe_devices(cg: &Cgroup) -> String {
    let mut p = Proc::shell(
        "if (exec 3</dev/null); then echo null-ok; else echo null-denied; fi; \
         if (exec 4</dev/zero); then echo zero-ok; else echo zero-denied; fi",
    );
    cg.add_pid(p.pid()).unwrap();
    p.go();
    p.wait_for_exit(Duration::from_secs(5)).expect("probe finished");
    p.output()
}

#[test]
fn device_filter_is_enforced_and_replaced() {
    let mount = Cgroup2Mount::new();
    let name = unique("v2dev");
    let guard = v2(&mount, &format!("/{name}"));
    let cg = &guard.cg;
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let r = LinuxResourcesBuilder::default()
        .devices(vec![deny_all.clone(), dev(true, LinuxDeviceType::C, 1, 3, "rwm")])
        .build()
        .unwrap();
    match cg.setup(Some(&r)) {
        Ok(()) => {}
        Err(e @ Error::BpfLoad { .. }) | Err(e @ Error::Bpf { .. }) => {
            eprintln!("skipped: the kernel does not allow device filters here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let out = probe_devices(cg);
    assert!(out.contains("null-ok") && out.contains("zero-denied"), "{out}");

    // update() replaces the filter (the old one is detached, or /dev/zero would stay denied).
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            deny_all,
            dev(true, LinuxDeviceType::C, 1, 3, "rwm"),
            dev(true, LinuxDeviceType::C, 1, 5, "r"),
        ])
        .build()
        .unwrap();
    cg.update(&r).unwrap();
    let out = probe_devices(cg);
    assert!(out.contains("null-ok") && out.contains("zero-ok"), "{out}");
    cg.destroy().unwrap();
    assert!(!mount.path().join(&name).exists());
}
