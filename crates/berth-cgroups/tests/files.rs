//! What apply() writes, checked against fake trees of plain files standing in for cgroup files.

use std::collections::HashMap;
use std::path::Path;

use berth_cgroups::{Cgroup, CgroupMode, Error};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxInterfacePriorityBuilder,
    LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder, LinuxRdmaBuilder, LinuxResources,
    LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
};

fn touch(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::write(dir.join(f), "").unwrap();
    }
}

/// rmdir works on a plain directory only once its files are gone (the kernel's cgroup files do not count).
fn remove_fake_files(cg: &Cgroup) {
    for p in cg.paths() {
        for dir in [p.as_path(), p.parent().unwrap()] {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                if e.file_type().unwrap().is_file() {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

const V2_FILES: &[&str] = &[
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "memory.high",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
    "rdma.max",
];

#[test]
fn v2_apply_writes_the_converted_values() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    )
    .unwrap();
    std::fs::write(root.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
    let cg = Cgroup::with_root(root.path(), CgroupMode::V2, Some("/pod/ctr"), "ctr").unwrap();
    cg.create().unwrap();
    let dir = root.path().join("pod/ctr");
    assert!(dir.is_dir());
    // The root's missing controllers were enabled for the new subtree, in one write.
    assert_eq!(
        read(&root.path().join("cgroup.subtree_control")),
        "+cpuset +io +memory +hugetlb +pids +rdma"
    );
    touch(&dir, V2_FILES);

    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(200_000u64)
                .burst(1000u64)
                .idle(1i64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100 << 20)
                .swap(300 << 20)
                .reservation(50 << 20)
                .kernel(1 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .throttle_write_iops_device(vec![
                    LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(300u64)
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap(),
        )
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4i64 << 21)
                .build()
                .unwrap(),
        ])
        .rdma(HashMap::from([(
            "mlx5_0".to_owned(),
            LinuxRdmaBuilder::default()
                .hca_handles(3u32)
                .hca_objects(100u32)
                .build()
                .unwrap(),
        )]))
        .unified(HashMap::from([("memory.high".to_owned(), "90000000".to_owned())]))
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    let f = |name: &str| read(&dir.join(name));
    assert_eq!(f("cpu.weight"), "39"); // 1 + (1024-2)*9999/262142
    assert_eq!(f("cpu.max"), "50000 200000");
    assert_eq!(f("cpu.max.burst"), "1000");
    assert_eq!(f("cpu.idle"), "1");
    assert_eq!(f("cpuset.cpus"), "0-1");
    assert_eq!(f("cpuset.mems"), "0");
    assert_eq!(f("memory.max"), (100u64 << 20).to_string());
    assert_eq!(f("memory.swap.max"), (200u64 << 20).to_string()); // memory+swap - memory
    assert_eq!(f("memory.low"), (50u64 << 20).to_string());
    assert_eq!(f("memory.high"), "90000000");
    assert_eq!(f("pids.max"), "max");
    assert_eq!(f("io.weight"), "default 4950");
    assert_eq!(f("io.max"), "8:0 wiops=300");
    assert_eq!(f("hugetlb.2MB.max"), (4u64 << 21).to_string());
    assert_eq!(f("rdma.max"), "mlx5_0 hca_handle=3 hca_object=100");

    // Only a period: quota "max"; unlimited memory and swap.
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().period(50_000u64).build().unwrap())
        .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    cg.update(&r).unwrap();
    assert_eq!(f("cpu.max"), "max 50000");
    assert_eq!(f("memory.max"), "max");
    assert_eq!(f("memory.swap.max"), "max");

    // A missing file names itself and its controller.
    std::fs::remove_file(dir.join("pids.max")).unwrap();
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
        .build()
        .unwrap();
    let e = cg.apply(&r).unwrap_err();
    assert!(matches!(e, Error::ControllerMissing { .. }), "{e}");
    assert!(
        e.to_string().contains("pids.max") && e.to_string().contains("\"7\""),
        "{e}"
    );

    // What v2 cannot do is refused before anything is written.
    let before = f("memory.max");
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1 << 20)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = cg.apply(&r).unwrap_err();
    assert!(
        e.to_string().contains("swappiness") && e.to_string().contains("v2"),
        "{e}"
    );
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(100).swap(50).build().unwrap())
        .build()
        .unwrap();
    assert!(matches!(cg.apply(&r), Err(Error::InvalidValue { .. })));
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(10u64)
                .realtime_runtime(1000i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(cg.apply(&r).unwrap_err().to_string().contains("realtime"));
    let r = LinuxResourcesBuilder::default()
        .network(LinuxNetworkBuilder::default().class_id(1u32).build().unwrap())
        .build()
        .unwrap();
    assert!(cg.apply(&r).unwrap_err().to_string().contains("net_cls"));
    let mut r = LinuxResources::default();
    r.set_unified(Some(HashMap::from([(
        "../memory.max".to_owned(),
        "1".to_owned(),
    )])));
    assert!(cg.apply(&r).unwrap_err().to_string().contains("../memory.max"));
    assert_eq!(f("memory.max"), before);

    remove_fake_files(&cg);
    cg.destroy().unwrap();
    assert!(!root.path().join("pod").exists());
}

#[test]
fn v1_apply_uses_each_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let r0 = root.path();
    // Hierarchies as directories named after their controllers; a symlink is not a second hierarchy.
    touch(&r0.join("cpu,cpuacct"), &["cpu.shares"]);
    std::os::unix::fs::symlink("cpu,cpuacct", r0.join("cpu")).unwrap();
    touch(&r0.join("cpuset"), &[]);
    std::fs::write(r0.join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    std::fs::write(r0.join("cpuset/cpuset.mems"), "0\n").unwrap();
    touch(&r0.join("net_cls,net_prio"), &[]);
    touch(&r0.join("blkio"), &[]);
    touch(&r0.join("hugetlb"), &[]);
    touch(&r0.join("systemd"), &[]);
    touch(&r0.join("memory"), &[]);

    let cg = Cgroup::with_root(r0, CgroupMode::V1, Some("/a/b"), "b").unwrap();
    let mut paths = cg.paths();
    paths.sort();
    let mut want: Vec<_> = [
        "blkio",
        "cpu,cpuacct",
        "cpuset",
        "hugetlb",
        "memory",
        "net_cls,net_prio",
        "systemd",
    ]
    .iter()
    .map(|h| r0.join(h).join("a/b"))
    .collect();
    want.sort();
    assert_eq!(paths, want);
    assert_eq!(cg.path_of("name=systemd"), Some(r0.join("systemd/a/b")));
    assert_eq!(cg.path_of("cpuacct"), Some(r0.join("cpu,cpuacct/a/b")));

    cg.create().unwrap();

    touch(
        &r0.join("cpu,cpuacct/a/b"),
        &[
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
    );
    touch(
        &r0.join("net_cls,net_prio/a/b"),
        &["net_cls.classid", "net_prio.ifpriomap"],
    );
    touch(
        &r0.join("blkio/a/b"),
        &[
            "blkio.bfq.weight",
            "blkio.bfq.weight_device",
            "blkio.throttle.read_bps_device",
        ],
    );
    touch(&r0.join("hugetlb/a/b"), &["hugetlb.1GB.limit_in_bytes"]);
    touch(
        &r0.join("memory/a/b"),
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ],
    );

    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(2048u64)
                .quota(-1i64)
                .period(100_000u64)
                .realtime_period(1_000_000u64)
                .realtime_runtime(950_000i64)
                .build()
                .unwrap(),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1 << 30)
                .reservation(1 << 29)
                .swappiness(0u64)
                .disable_oom_killer(true)
                .kernel(1 << 20) // no kmem file: skipped, as runc does
                .build()
                .unwrap(),
        )
        .network(
            LinuxNetworkBuilder::default()
                .class_id(0x0010_0001u32)
                .priorities(vec![
                    LinuxInterfacePriorityBuilder::default()
                        .name("eth0")
                        .priority(5u32)
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap(),
        )
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(300u16)
                .weight_device(vec![
                    LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(200u16)
                        .build()
                        .unwrap(),
                ])
                .throttle_read_bps_device(vec![
                    LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(16)
                        .rate(1_048_576u64)
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap(),
        )
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("1GB")
                .limit(1i64 << 30)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    let f = |h: &str, name: &str| read(&r0.join(h).join("a/b").join(name));
    assert_eq!(f("cpu,cpuacct", "cpu.shares"), "2048");
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_quota_us"), "-1");
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_period_us"), "100000");
    assert_eq!(f("cpu,cpuacct", "cpu.rt_period_us"), "1000000");
    assert_eq!(f("cpu,cpuacct", "cpu.rt_runtime_us"), "950000");
    assert_eq!(f("memory", "memory.limit_in_bytes"), (1u64 << 30).to_string());
    assert_eq!(
        f("memory", "memory.soft_limit_in_bytes"),
        (1u64 << 29).to_string()
    );
    assert_eq!(f("memory", "memory.swappiness"), "0");
    assert_eq!(f("memory", "memory.oom_control"), "1");
    assert_eq!(f("net_cls,net_prio", "net_cls.classid"), "1048577");
    assert_eq!(f("net_cls,net_prio", "net_prio.ifpriomap"), "eth0 5");
    // No blkio.weight (CFQ) here: BFQ's file takes the weight.
    assert_eq!(f("blkio", "blkio.bfq.weight"), "300");
    assert_eq!(f("blkio", "blkio.bfq.weight_device"), "8:0 200");
    assert_eq!(f("blkio", "blkio.throttle.read_bps_device"), "8:16 1048576");
    assert_eq!(
        f("hugetlb", "hugetlb.1GB.limit_in_bytes"),
        (1u64 << 30).to_string()
    );

    // Swap without the memsw file: an error naming it.
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1 << 30)
                .swap(2 << 30)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = cg.apply(&r).unwrap_err();
    assert!(e.to_string().contains("memory.memsw.limit_in_bytes"), "{e}");

    // A page size that could name another file.
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("../x")
                .limit(1i64)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    assert!(cg.apply(&r).unwrap_err().to_string().contains("../x"));

    remove_fake_files(&cg);
    cg.destroy().unwrap();
    for h in ["blkio", "cpuset", "memory", "systemd"] {
        assert!(!r0.join(h).join("a").exists(), "{h}/a left behind");
    }
}

#[test]
fn v1_create_fills_an_empty_cpuset_parent_another_process_made() {
    let root = tempfile::tempdir().unwrap();
    let r0 = root.path();
    touch(&r0.join("cpuset"), &[]);
    std::fs::write(r0.join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    std::fs::write(r0.join("cpuset/cpuset.mems"), "0\n").unwrap();
    // The parent exists already, made by another process that has not copied its cpus and mems yet.
    std::fs::create_dir_all(r0.join("cpuset/a")).unwrap();
    std::fs::write(r0.join("cpuset/a/cpuset.cpus"), "").unwrap();
    std::fs::write(r0.join("cpuset/a/cpuset.mems"), "\n").unwrap();
    // A sibling whose values were set on purpose is left alone.
    std::fs::create_dir_all(r0.join("cpuset/a/other")).unwrap();
    std::fs::write(r0.join("cpuset/a/other/cpuset.cpus"), "1\n").unwrap();

    let cg = Cgroup::with_root(r0, CgroupMode::V1, Some("/a/b"), "b").unwrap();
    cg.create().unwrap();
    let read = |p: &str| std::fs::read_to_string(r0.join("cpuset").join(p)).unwrap();
    assert_eq!(read("a/cpuset.cpus").trim(), "0-3");
    assert_eq!(read("a/cpuset.mems").trim(), "0");
    assert_eq!(read("a/other/cpuset.cpus").trim(), "1");
    cg.destroy().unwrap();
    assert!(r0.join("cpuset/a").exists(), "only what create made is removed");
}
