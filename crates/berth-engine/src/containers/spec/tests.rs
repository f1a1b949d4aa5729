//! Tests of [`build`]: the whole spec from a request.

use std::path::Path;

use bollard_stubs::models::{ContainerConfig, HostConfig, ResourcesUlimits};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::*;

struct Fixture {
    rootfs: tempfile::TempDir,
    info: HostInfo,
}

fn fixture() -> Fixture {
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("etc")).unwrap();
    std::fs::write(
        rootfs.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.path().join("etc/group"),
        "root:x:0:\nweb:x:33:\nextra:x:99:web\n",
    )
    .unwrap();
    Fixture {
        rootfs,
        info: HostInfo::for_tests(),
    }
}

fn image() -> ContainerConfig {
    ContainerConfig {
        env: Some(vec!["PATH=/usr/bin:/bin".into(), "IMG=1".into()]),
        cmd: Some(vec!["/bin/sh".into()]),
        working_dir: Some("/srv".into()),
        ..Default::default()
    }
}

fn etc() -> EtcFiles {
    EtcFiles {
        hostname: "/d/hostname".into(),
        hosts: "/d/hosts".into(),
        resolv_conf: "/d/resolv.conf".into(),
    }
}

static IMAGE: std::sync::LazyLock<ContainerConfig> = std::sync::LazyLock::new(image);

fn build_with<'a>(
    f: &'a Fixture,
    cfg: &'a ContainerConfig,
    host: &'a HostConfig,
    tweak: impl FnOnce(&mut SpecInput<'a>),
) -> Result<Spec, SpecError> {
    let img: &'a ContainerConfig = &IMAGE;
    let mut input = SpecInput {
        id: "0123456789ab",
        hostname: "0123456789ab",
        config: cfg,
        host,
        image: img,
        rootfs: f.rootfs.path(),
        mounts: &[],
        etc: etc(),
        cgroups_path: "/berth/0123456789ab",
        net: NsMode::Private,
        ipc: NsMode::Private,
        pid: NsMode::Private,
        uts: NsMode::Private,
        init: None,
        userns: None,
    };
    tweak(&mut input);
    build_on(&input, &f.info)
}

fn ns_types(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<std::path::PathBuf>)> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

#[test]
fn default_container() {
    let f = fixture();
    let spec = build_with(&f, &ContainerConfig::default(), &HostConfig::default(), |_| {}).unwrap();
    assert_eq!(spec.version(), SPEC_VERSION);
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(
        p.env().as_deref(),
        Some(
            &[
                "PATH=/usr/bin:/bin".to_string(),
                "HOSTNAME=0123456789ab".into(),
                "IMG=1".into()
            ][..]
        )
    );
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.no_new_privileges(), None);
    let caps = caps::names_of(p.capabilities().as_ref().unwrap().effective().as_ref().unwrap());
    let mut expected: Vec<String> = caps::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(caps, expected);
    assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
    let root = spec.root().as_ref().unwrap();
    assert_eq!(
        (root.path().as_path(), root.readonly()),
        (f.rootfs.path(), Some(false))
    );
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/berth/0123456789ab"))
    );
    assert_eq!(
        ns_types(&spec).into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
        [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc
        ],
        "cgroup v1: the host's cgroup namespace, as docker"
    );
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string())
    );
    assert!(
        linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string())
    );
    assert!(linux.seccomp().is_some());
    assert_eq!(
        linux.sysctl().as_ref().unwrap()["net.ipv4.ip_unprivileged_port_start"],
        "0"
    );
    let rules = linux.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert!(!rules[0].allow());
    assert!(spec.annotations().is_none());
    // config.json round trip.
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
}

#[test]
fn tty_user_and_security() {
    let f = fixture();
    let cfg = ContainerConfig {
        tty: Some(true),
        user: Some("web".into()),
        cmd: Some(vec!["id".into()]),
        env: Some(vec!["FOO=bar".into()]),
        ..Default::default()
    };
    let host = HostConfig {
        group_add: Some(vec!["root".into()]),
        security_opt: Some(vec!["no-new-privileges".into(), "seccomp=unconfined".into()]),
        readonly_rootfs: Some(true),
        oom_score_adj: Some(500),
        console_size: Some(vec![30, 100]),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(100),
            hard: Some(200),
        }]),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(vec!["net_bind_service".into()]),
        ..Default::default()
    };
    let spec = build_with(&f, &cfg, &host, |_| {}).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(true));
    let env = p.env().clone().unwrap();
    assert!(
        env.contains(&"TERM=xterm".to_string()) && env.contains(&"FOO=bar".to_string()),
        "{env:?}"
    );
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[33, 99, 0][..]));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.oom_score_adj(), Some(500));
    assert_eq!(p.console_size().map(|b| (b.height(), b.width())), Some((30, 100)));
    assert_eq!(p.rlimits().as_ref().unwrap().len(), 1);
    assert_eq!(
        caps::names_of(p.capabilities().as_ref().unwrap().bounding().as_ref().unwrap()),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(
        spec.annotations().as_ref().unwrap()[process::GROUP_ADD_ANNOTATION],
        "[\"root\"]"
    );
}

#[test]
fn unknown_user_fails() {
    let f = fixture();
    let cfg = ContainerConfig {
        user: Some("nobody-here".into()),
        ..Default::default()
    };
    let err = build_with(&f, &cfg, &HostConfig::default(), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user nobody-here: no matching entries in passwd file"
    );
}

#[test]
fn privileged() {
    let f = fixture();
    let host = HostConfig {
        privileged: Some(true),
        ..Default::default()
    };
    let spec = build_with(&f, &ContainerConfig::default(), &host, |_| {}).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
    let caps = caps::names_of(
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .as_ref()
            .unwrap(),
    );
    assert_eq!(caps.len(), f.info.caps.len());
    assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
    assert!(
        linux
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .any(|d| d.path() == Path::new("/dev/null"))
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    // Explicit masked paths are kept even when privileged.
    let host = HostConfig {
        privileged: Some(true),
        masked_paths: Some(vec!["/proc/x".into()]),
        ..Default::default()
    };
    let spec = build_with(&f, &ContainerConfig::default(), &host, |_| {}).unwrap();
    assert_eq!(
        spec.linux().as_ref().unwrap().masked_paths().as_deref(),
        Some(&["/proc/x".to_string()][..])
    );
}

#[test]
fn namespace_modes() {
    let f = fixture();
    let spec = build_with(&f, &ContainerConfig::default(), &HostConfig::default(), |i| {
        i.net = NsMode::Host;
        i.uts = NsMode::Host;
        i.pid = NsMode::Path("/proc/7/ns/pid".into());
        i.ipc = NsMode::Path("/proc/7/ns/ipc".into());
        i.init = Some(Path::new("/usr/libexec/berth-init"));
    })
    .unwrap();
    assert_eq!(
        ns_types(&spec),
        [
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Pid, Some("/proc/7/ns/pid".into())),
            (LinuxNamespaceType::Ipc, Some("/proc/7/ns/ipc".into())),
        ]
    );
    assert_eq!(spec.hostname(), &None, "the host's UTS namespace: no hostname");
    assert!(
        spec.linux().as_ref().unwrap().sysctl().is_none(),
        "no network sysctls in the host's namespace"
    );
    assert_eq!(
        spec.process().as_ref().unwrap().args().as_deref(),
        Some(&["/bin/sh".to_string()][..]),
        "no init in another container's PID namespace"
    );
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert_eq!(shm.source().as_deref(), Some(Path::new("/proc/7/root/dev/shm")));

    let host = HostConfig {
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        ipc_mode: Some("none".into()),
        ..Default::default()
    };
    let spec = build_with(&f, &ContainerConfig::default(), &host, |i| {
        i.init = Some(Path::new("/usr/libexec/berth-init"))
    })
    .unwrap();
    assert!(
        ns_types(&spec)
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::Cgroup)
    );
    assert_eq!(
        spec.process().as_ref().unwrap().args().as_deref(),
        Some(&[mounts::INIT_PATH.to_string(), "--".into(), "/bin/sh".into()][..])
    );
    let mounts = spec.mounts().as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.destination() == Path::new(mounts::INIT_PATH))
    );
    assert!(
        !mounts.iter().any(|m| m.destination() == Path::new("/dev/shm")),
        "IpcMode none: no /dev/shm"
    );
}

#[test]
fn limits_and_mounts_reach_the_spec() {
    let f = fixture();
    let host = HostConfig {
        memory: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(50),
        shm_size: Some(8 << 20),
        sysctls: Some([("kernel.shmmax".to_string(), "4096".to_string())].into()),
        ..Default::default()
    };
    let user = vec![ResolvedMount {
        destination: "/data".into(),
        source: "/srv/data".into(),
        kind: "bind",
        options: vec!["rbind".into(), "rro".into(), "rprivate".into()],
    }];
    let spec = build_with(&f, &ContainerConfig::default(), &host, |i| i.mounts = &user).unwrap();
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(res.pids().as_ref().unwrap().limit(), 50);
    assert_eq!(
        spec.linux().as_ref().unwrap().sysctl().as_ref().unwrap()["kernel.shmmax"],
        "4096"
    );
    let mounts = spec.mounts().as_ref().unwrap();
    let data = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .unwrap();
    assert_eq!(
        data.options().as_deref(),
        Some(&["rbind".to_string(), "rro".into(), "rprivate".into()][..])
    );
    let shm = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert!(
        shm.options()
            .as_ref()
            .unwrap()
            .contains(&"size=8388608".to_string())
    );
}

#[test]
fn invalid_requests_fail_the_build() {
    let f = fixture();
    let host = HostConfig {
        memory: Some(1024),
        ..Default::default()
    };
    assert!(matches!(
        build_with(&f, &ContainerConfig::default(), &host, |_| {}),
        Err(SpecError::MemoryTooLow)
    ));
    let bare = ContainerConfig {
        entrypoint: Some(vec![String::new()]),
        ..Default::default()
    };
    let img = ContainerConfig::default();
    let input = SpecInput {
        id: "x",
        hostname: "x",
        config: &bare,
        host: &HostConfig::default(),
        image: &img,
        rootfs: f.rootfs.path(),
        mounts: &[],
        etc: etc(),
        cgroups_path: "/berth/x",
        net: NsMode::Private,
        ipc: NsMode::Private,
        pid: NsMode::Private,
        uts: NsMode::Private,
        init: None,
        userns: None,
    };
    assert!(matches!(build_on(&input, &f.info), Err(SpecError::NoCommand)));
}

#[test]
fn custom_seccomp_profile() {
    let f = fixture();
    let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat","mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
    let host = HostConfig {
        security_opt: Some(vec![format!("seccomp={json}")]),
        ..Default::default()
    };
    let spec = build_with(&f, &ContainerConfig::default(), &host, |_| {}).unwrap();
    let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        s.syscalls().as_ref().unwrap()[0].names(),
        &["mkdirat".to_string(), "mkdir".into()]
    );
}
