//! The OCI runtime spec of a container, from the create request (`ContainerConfig` + `HostConfig`) and the
//! image's config, with dockerd's semantics: what it accepts and refuses (and with which message), what
//! defaults it fills, and what the runtime is told.
//!
//! The pieces, one concern per file:
//! - [`validate()`]: every check dockerd makes at create (`verifyContainerSettings`).
//! - [`parse_mounts`] ([`mounts`]): `-v`, `--mount`, `--tmpfs` and the image's volumes as [`MountRequest`]s; the
//!   caller creates volumes and turns each request into a [`ResolvedMount`] with [`MountRequest::resolve`].
//! - [`build`]: the spec: process ([`process`]: env, command, user from the rootfs's `/etc/passwd` and
//!   `/etc/group` ([`user`])), capabilities ([`caps`]), seccomp ([`seccomp`]: Berth's own default profile),
//!   mounts, namespaces, limits, devices, ulimits and sysctls ([`resources`]), masked and read-only paths.
//! - [`exec_process`]: the process of an exec, from the container's spec.
//!
//! Everything here is a function of its inputs and of the host facts in [`host::HostInfo`] (read once), so the
//! rules are unit-tested without root.

pub mod caps;
mod error;
pub mod host;
pub mod mounts;
pub mod process;
pub mod resources;
pub mod seccomp;
pub mod user;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, HostConfigCgroupnsModeEnum};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, Process, Root, Spec};

pub use error::{MountProblem, SpecError};
pub use host::HostInfo;
pub use mounts::{MountDetails, MountKind, MountOrigin, MountRequest, parse_mounts};
pub use process::{exec_process, merge_config};
pub use seccomp::default_seccomp;
pub use validate::{LogSettings, log_settings, validate};

/// The spec version Berth writes.
pub const SPEC_VERSION: &str = "1.2.0";

/// A mount whose source is known, for [`build`] (see [`MountRequest::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMount {
    /// The path in the container.
    pub destination: String,
    /// The host path (a bind) or `tmpfs`.
    pub source: PathBuf,
    /// `bind` or `tmpfs`.
    pub kind: &'static str,
    /// Mount options: `rbind`/`bind`, `ro`/`rro`, the propagation; for tmpfs `size=`, `mode=`, `exec`, ...
    pub options: Vec<String>,
}

/// How the container gets a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsMode {
    /// A new one.
    Private,
    /// The host's (the daemon's).
    Host,
    /// Another's, by path: `container:<id>` resolved to `/proc/<pid>/ns/<x>`.
    Path(PathBuf),
    /// The container's own, made beforehand by the daemon and joined by path (the network namespace of a
    /// container on a bridge network): treated as `Private` for everything but its creation.
    Own(PathBuf),
}

/// The container's `/etc` files, bind-mounted over the rootfs's (unless a mount of the container covers them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    /// `/etc/hostname`.
    pub hostname: PathBuf,
    /// `/etc/hosts`.
    pub hosts: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container id (for messages; the spec does not carry it).
    pub id: &'a str,
    /// The hostname (with a private UTS namespace).
    pub hostname: &'a str,
    /// The container's config as requested (merging it with `image` again is harmless).
    pub config: &'a ContainerConfig,
    /// The host config.
    pub host: &'a HostConfig,
    /// The image's config (Env, Cmd, Entrypoint, WorkingDir, User, StopSignal, Volumes).
    pub image: &'a ContainerConfig,
    /// The mounted root filesystem; users and groups are resolved from its `/etc/passwd` and `/etc/group`.
    pub rootfs: &'a Path,
    /// The container's mounts, sources resolved.
    pub mounts: &'a [ResolvedMount],
    /// The `/etc` files.
    pub etc: EtcFiles,
    /// `linux.cgroupsPath`.
    pub cgroups_path: &'a str,
    /// The network namespace.
    pub net: NsMode,
    /// The IPC namespace (`HostConfig.IpcMode` `none` is read from `host`).
    pub ipc: NsMode,
    /// The PID namespace.
    pub pid: NsMode,
    /// The UTS namespace.
    pub uts: NsMode,
    /// The init (`berth-init`) to bind at `/sbin/docker-init` and run the command under; ignored unless the
    /// PID namespace is private, as in docker.
    pub init: Option<&'a Path>,
    /// A user namespace with these uid and gid mappings (the daemon's `userns-remap`), or none.
    pub userns: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
}

/// docker's default masked paths.
const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// docker's default read-only paths.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The masked paths of an unprivileged container without `HostConfig.MaskedPaths` (docker's list and this host's
/// per-CPU `thermal_throttle` directories).
pub fn default_masked_paths(info: &HostInfo) -> Vec<String> {
    MASKED_PATHS
        .iter()
        .map(|p| p.to_string())
        .chain(info.thermal_throttle.iter().cloned())
        .collect()
}

/// The read-only paths of an unprivileged container without `HostConfig.ReadonlyPaths`.
pub fn default_readonly_paths() -> Vec<String> {
    READONLY_PATHS.iter().map(|p| p.to_string()).collect()
}

/// Builds the container's runtime spec.
pub fn build(input: &SpecInput) -> Result<Spec, SpecError> {
    build_on(input, host::host_info())
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn push_ns(list: &mut Vec<LinuxNamespace>, typ: LinuxNamespaceType, mode: &NsMode) {
    match mode {
        NsMode::Private => list.push(namespace(typ, None)),
        NsMode::Path(p) | NsMode::Own(p) => list.push(namespace(typ, Some(p.clone()))),
        NsMode::Host => {}
    }
}

/// [`build`] against the given host facts.
pub fn build_on(input: &SpecInput, info: &HostInfo) -> Result<Spec, SpecError> {
    let host = input.host;
    validate::validate_on(input.config, host, info)?;
    let merged = merge_config(input.config, input.image)?;
    let security = validate::SecurityOptions::parse(host)?;
    let privileged = host.privileged == Some(true);
    let tty = merged.tty == Some(true);

    // Process.
    let caps = caps::effective_caps(
        host.cap_add.as_deref().unwrap_or_default(),
        host.cap_drop.as_deref().unwrap_or_default(),
        privileged,
        info,
    )?;
    let group_add = host.group_add.clone().unwrap_or_default();
    let user = user::resolve_user(input.rootfs, merged.user.as_deref().unwrap_or(""), &group_add)?;
    let mut args = process::command_line(&merged)?;
    let init = input.init.filter(|_| input.pid == NsMode::Private);
    if init.is_some() {
        args.splice(0..0, [mounts::INIT_PATH.to_string(), "--".to_string()]);
    }
    let mut proc = Process::default();
    proc.set_terminal(Some(tty));
    proc.set_console_size(if tty {
        process::console_size(host.console_size.as_ref())
    } else {
        None
    });
    proc.set_user(process::oci_user(&user));
    proc.set_args(Some(args));
    proc.set_env(Some(process::container_env(
        input.hostname,
        tty,
        merged.env.as_deref().unwrap_or_default(),
    )));
    proc.set_cwd(
        merged
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .into(),
    );
    proc.set_capabilities(Some(caps::linux_capabilities(&caps)));
    let rlimits = resources::rlimits(host)?;
    proc.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    proc.set_no_new_privileges(security.no_new_privileges.then_some(true));
    // As dockerd: only an explicit, non-zero --oom-score-adj is written (0, the clients' default, inherits).
    proc.set_oom_score_adj(
        host.oom_score_adj
            .filter(|v| *v != 0)
            .and_then(|v| i32::try_from(v).ok()),
    );
    proc.set_apparmor_profile(None);
    proc.set_selinux_label(None);

    // Root and mounts.
    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(host.readonly_rootfs == Some(true)));
    let mount_list = mounts::mount_table(&mounts::TableInput {
        user: input.mounts,
        etc: &input.etc,
        ipc: &input.ipc,
        ipc_none: host.ipc_mode.as_deref() == Some("none"),
        shm_size: host.shm_size.unwrap_or(0),
        read_only_root: host.readonly_rootfs == Some(true),
        privileged,
        writable_cgroups: security.writable_cgroups.unwrap_or(privileged),
        init,
    })?;
    let rootfs_propagation = propagation::root_propagation(input.mounts)?;

    // Namespaces.
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if input.userns.is_some() {
        namespaces.push(namespace(LinuxNamespaceType::User, None));
    }
    push_ns(&mut namespaces, LinuxNamespaceType::Network, &input.net);
    push_ns(&mut namespaces, LinuxNamespaceType::Uts, &input.uts);
    push_ns(&mut namespaces, LinuxNamespaceType::Pid, &input.pid);
    push_ns(&mut namespaces, LinuxNamespaceType::Ipc, &input.ipc);
    let cgroupns_private = match host.cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::PRIVATE) => true,
        Some(HostConfigCgroupnsModeEnum::HOST) => false,
        Some(HostConfigCgroupnsModeEnum::EMPTY) | None => info.cgroup2,
    };
    if cgroupns_private {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    // Linux.
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(input.userns.as_ref().map(|(u, _)| u.clone()));
    linux.set_gid_mappings(input.userns.as_ref().map(|(_, g)| g.clone()));
    let masked = match &host.masked_paths {
        Some(paths) => paths.clone(),
        None if privileged => Vec::new(),
        None => default_masked_paths(info),
    };
    let readonly = match &host.readonly_paths {
        Some(paths) => paths.clone(),
        None if privileged => Vec::new(),
        None => default_readonly_paths(),
    };
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    let mut res = resources::limits(host, info)?;
    let (devices, device_rules) = resources::devices(host, privileged)?;
    res.set_devices(Some(device_rules));
    linux.set_resources(Some(res));
    linux.set_devices(Some(devices));
    let sysctl = resources::sysctls(
        host,
        matches!(input.net, NsMode::Private | NsMode::Own(_)),
        input.userns.is_some(),
        info,
    )?;
    linux.set_sysctl((!sysctl.is_empty()).then_some(sysctl));
    let seccomp = match (&security.seccomp, privileged) {
        (validate::SeccompChoice::Unconfined, _) => None,
        (validate::SeccompChoice::Profile(json), _) => seccomp::load_profile(json, &caps)?,
        (validate::SeccompChoice::Default, true) => None,
        (validate::SeccompChoice::Default, false) => {
            Some(seccomp::profile_for(&caps, std::env::consts::ARCH))
        }
    };
    linux.set_seccomp(seccomp);
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    linux.set_rootfs_propagation(rootfs_propagation);

    // The spec.
    let mut spec = Spec::default();
    spec.set_version(SPEC_VERSION.to_string());
    spec.set_process(Some(proc));
    spec.set_root(Some(root));
    spec.set_hostname((input.uts == NsMode::Private).then(|| input.hostname.to_string()));
    spec.set_domainname(merged.domainname.clone().filter(|d| !d.is_empty()));
    spec.set_mounts(Some(mount_list));
    spec.set_linux(Some(linux));
    spec.set_hooks(None);
    let mut annotations: HashMap<String, String> = host.annotations.clone().unwrap_or_default();
    if !group_add.is_empty() {
        annotations.insert(
            process::GROUP_ADD_ANNOTATION.to_string(),
            serde_json::to_string(&group_add).unwrap_or_default(),
        );
    }
    spec.set_annotations((!annotations.is_empty()).then_some(annotations));
    Ok(spec)
}

/// Bind propagation: a shared or slave bind needs its source on a shared (or slave) mount, and the root's
/// propagation must let events through, as docker arranges.
mod propagation {
    use super::{ResolvedMount, SpecError};

    /// The mount point and optional fields (`shared:N`, `master:N`) of the mount holding `path`.
    fn source_mount(path: &str) -> Result<(String, String), SpecError> {
        let fail = |reason: String| SpecError::SourceMount {
            path: path.to_string(),
            reason,
        };
        let resolved = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
        let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| fail(e.to_string()))?;
        let mut best: Option<(String, String)> = None;
        for line in info.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let Some(mount_point) = fields.get(4).map(|m| unescape(m)) else {
                continue;
            };
            if !resolved.starts_with(&mount_point) {
                continue;
            }
            let optional = fields.get(6..sep).map(|o| o.join(" ")).unwrap_or_default();
            if best.as_ref().is_none_or(|(b, _)| mount_point.len() >= b.len()) {
                best = Some((mount_point, optional));
            }
        }
        best.ok_or_else(|| fail("it is on no mount".to_string()))
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\'
                && let Some(digits) = bytes.get(i + 1..i + 4)
                && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(digits), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `linux.rootfsPropagation`: `shared` when a bind is shared, `rslave` when one is a slave (and none is
    /// shared), else unset (the runtime's default).
    pub(super) fn root_propagation(mounts: &[ResolvedMount]) -> Result<Option<String>, SpecError> {
        let mut root: Option<String> = None;
        for m in mounts.iter().filter(|m| m.kind == "bind") {
            let path = m.source.to_string_lossy();
            for opt in &m.options {
                match opt.as_str() {
                    "shared" | "rshared" => {
                        let (mount_point, optional) = source_mount(&path)?;
                        if !optional.split(' ').any(|o| o.starts_with("shared:")) {
                            return Err(SpecError::NotShared {
                                path: path.into_owned(),
                                mount_point,
                            });
                        }
                        root = Some("shared".into());
                    }
                    "slave" | "rslave" => {
                        let (mount_point, optional) = source_mount(&path)?;
                        if !optional
                            .split(' ')
                            .any(|o| o.starts_with("shared:") || o.starts_with("master:"))
                        {
                            return Err(SpecError::NotSharedOrSlave {
                                path: path.into_owned(),
                                mount_point,
                            });
                        }
                        if root.is_none() {
                            root = Some("rslave".into());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(root)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mountinfo_escapes() {
            assert_eq!(unescape("/a\\040b"), "/a b");
            assert_eq!(unescape("/plain"), "/plain");
            assert_eq!(unescape("/end\\"), "/end\\");
        }

        #[test]
        fn private_binds_need_nothing() {
            let m = ResolvedMount {
                destination: "/x".into(),
                source: "/nonexistent".into(),
                kind: "bind",
                options: vec!["rbind".into(), "rprivate".into()],
            };
            assert_eq!(root_propagation(&[m]).unwrap(), None);
        }

        #[test]
        fn root_mount_is_found() {
            let (mount_point, _) = source_mount("/proc/self").unwrap();
            assert_eq!(mount_point, "/proc");
        }
    }
}

#[cfg(test)]
mod tests;
