//! Mounts: parsing `-v` (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`), `--tmpfs` (`HostConfig.Tmpfs`) and
//! the image's volumes into [`MountRequest`]s, as docker's Linux parser does; turning a request whose source is
//! known into a [`ResolvedMount`]; and the spec's mount table (docker's defaults, the container's mounts, the
//! `/etc` files, `/dev/shm`, the init) with docker's read-only and privileged adjustments.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use bollard_stubs::models::{
    ContainerConfig, HostConfig, Mount as ApiMount, MountBindOptionsPropagationEnum, MountTmpfsOptions,
    MountType,
};
use oci_spec::runtime::{Mount, MountBuilder};

use super::{MountProblem, NsMode, ResolvedMount, SpecError};

/// What a mount is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host path.
    Bind {
        /// The host path.
        source: PathBuf,
    },
    /// A volume.
    Volume {
        /// The volume's name; `None` for an anonymous volume (the caller names it: 64 hex digits).
        name: Option<String>,
        /// `nocopy`: do not fill an empty volume from the image.
        no_copy: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// `size=` in bytes, when given.
        size: Option<i64>,
        /// `mode=` (permission bits), when given.
        mode: Option<u32>,
    },
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountOrigin {
    /// `HostConfig.Binds` (`-v`).
    #[default]
    Binds,
    /// `HostConfig.Mounts` (`--mount`).
    Mounts,
    /// `HostConfig.Tmpfs` (`--tmpfs`); docker does not list these in inspect's `Mounts`.
    Tmpfs,
    /// `Config.Volumes` of the request or the image: an anonymous volume.
    ConfigVolume,
}

/// Details of a request beyond the contract's fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountDetails {
    /// Where the request came from.
    pub origin: MountOrigin,
    /// `bind` instead of `rbind` (`--mount bind-nonrecursive`).
    pub non_recursive: bool,
    /// Read-only only at the top (`ro` instead of the recursive `rro`).
    pub read_only_non_recursive: bool,
    /// Fail rather than fall back when recursive read-only is impossible.
    pub read_only_force_recursive: bool,
    /// Create a missing bind source as a directory (`-v` does; `--mount` only with `CreateMountpoint`).
    pub create_mountpoint: bool,
    /// A path inside the volume to mount instead of its root.
    pub subpath: Option<String>,
    /// The volume driver asked for (`None`: local).
    pub volume_driver: Option<String>,
    /// The volume driver's options (`--mount volume-opt=...`).
    pub driver_options: HashMap<String, String>,
    /// Labels for a volume this creates.
    pub volume_labels: HashMap<String, String>,
    /// The tmpfs options after the defaults (`size=64m`, `mode=1777`, `exec`, `ro`, ...).
    pub tmpfs_options: Vec<String>,
}

/// One mount the container asks for, before volumes are created and sources resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// What it is made from.
    pub kind: MountKind,
    /// The path in the container, cleaned.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
    /// The propagation mode of a bind (`rprivate` unless given); `None` for volumes and tmpfs.
    pub propagation: Option<String>,
    /// The mode string of a `-v` (`ro,z`), empty otherwise.
    pub mode: String,
    /// The rest.
    pub details: MountDetails,
}

/// The propagation modes of a bind.
const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];
/// The default propagation of binds.
const DEFAULT_PROPAGATION: &str = "rprivate";

/// Cleans a path lexically, as Go's `path.Clean`.
pub fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn validate_target(target: &str) -> Result<(), MountProblem> {
    if clean_path(&target.replace('\\', "/")) == "/" {
        return Err(MountProblem::TargetIsRoot);
    }
    if !target.replace('\\', "/").starts_with('/') {
        return Err(MountProblem::NotAbsolute(target.replace('\\', "/")));
    }
    Ok(())
}

/// `--tmpfs` destinations: absolute and not `/`.
pub fn validate_tmpfs_destination(dest: &str) -> Result<(), SpecError> {
    validate_target(dest).map_err(SpecError::Mount)
}

fn mount_type_name(m: &ApiMount) -> String {
    m.typ.map(|t| t.to_string()).unwrap_or_default()
}

fn is_local_subpath(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn check_mount(m: &ApiMount, check_source: bool) -> Result<(), MountProblem> {
    let typ = m.typ;
    if typ != Some(MountType::BIND) && m.bind_options.is_some() {
        return Err(MountProblem::ExtraField("BindOptions"));
    }
    if typ != Some(MountType::VOLUME) && m.volume_options.is_some() {
        return Err(MountProblem::ExtraField("VolumeOptions"));
    }
    if typ != Some(MountType::IMAGE) && m.image_options.is_some() {
        return Err(MountProblem::ExtraField("ImageOptions"));
    }
    if typ != Some(MountType::TMPFS) && m.tmpfs_options.is_some() {
        return Err(MountProblem::ExtraField("TmpfsOptions"));
    }
    let target = m.target.as_deref().unwrap_or("");
    if target.is_empty() {
        return Err(MountProblem::MissingField("Target"));
    }
    validate_target(target)?;
    let source = m.source.as_deref().unwrap_or("");
    match typ {
        Some(MountType::BIND) => {
            if source.is_empty() {
                return Err(MountProblem::MissingField("Source"));
            }
            if let Some(p) = m.bind_options.as_ref().and_then(|o| o.propagation)
                && p != MountBindOptionsPropagationEnum::EMPTY
                && !PROPAGATIONS.contains(&p.as_ref())
            {
                return Err(MountProblem::Propagation(p.to_string()));
            }
            if !source.starts_with('/') {
                return Err(MountProblem::NotAbsolute(source.to_string()));
            }
            let create = m.bind_options.as_ref().and_then(|o| o.create_mountpoint) == Some(true);
            if check_source && !create && std::fs::symlink_metadata(source).is_err() {
                return Err(MountProblem::BindSourceMissing(source.to_string()));
            }
        }
        Some(MountType::VOLUME) => {
            if let Some(sub) = m
                .volume_options
                .as_ref()
                .and_then(|o| o.subpath.as_deref())
                .filter(|s| !s.is_empty())
            {
                if source.is_empty() {
                    return Err(MountProblem::AnonymousSubpath);
                }
                if !is_local_subpath(sub) {
                    return Err(MountProblem::InvalidSubpath);
                }
            }
            if !source.is_empty() && !valid_volume_name(source) && volume_driver(m).is_none() {
                return Err(MountProblem::VolumeName(source.to_string()));
            }
        }
        Some(MountType::TMPFS) => {
            if !source.is_empty() {
                return Err(MountProblem::ExtraField("Source"));
            }
            tmpfs_api_options(m.tmpfs_options.as_ref(), m.read_only == Some(true))?;
        }
        Some(other @ (MountType::IMAGE | MountType::NPIPE | MountType::CLUSTER)) => {
            return Err(MountProblem::UnsupportedType(other.to_string()));
        }
        None => return Err(MountProblem::UnknownType),
    }
    Ok(())
}

fn volume_driver(m: &ApiMount) -> Option<String> {
    m.volume_options
        .as_ref()
        .and_then(|o| o.driver_config.as_ref())
        .and_then(|d| d.name.clone())
        .filter(|n| !n.is_empty() && n != "local")
}

/// Checks one `HostConfig.Mounts` entry as dockerd does (`ValidateMountConfig`); with `check_source`, a bind
/// source must exist unless `CreateMountpoint` is set.
pub fn validate_mount(m: &ApiMount, check_source: bool) -> Result<(), SpecError> {
    check_mount(m, check_source).map_err(|problem| SpecError::MountConfig {
        kind: mount_type_name(m),
        problem,
    })
}

/// The local driver's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// docker's `-v` mode validation: each of rw/ro, z/Z, a propagation, nocopy, and a consistency at most once.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for opt in mode.split(',') {
        let slot = match opt {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            p if PROPAGATIONS.contains(&p) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[slot] += 1;
    }
    counts.iter().all(|&c| c <= 1)
}

/// `size=`: bytes, with k/m/g suffixes (binary, as tmpfs takes them).
fn parse_tmpfs_size(value: &str) -> Option<i64> {
    let (num, mult) = match value.chars().last()? {
        'k' | 'K' => (&value[..value.len() - 1], 1i64 << 10),
        'm' | 'M' => (&value[..value.len() - 1], 1 << 20),
        'g' | 'G' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    num.parse::<i64>().ok()?.checked_mul(mult)
}

/// docker's `ConvertTmpfsOptions`: the options of a `--mount type=tmpfs`.
fn tmpfs_api_options(opts: Option<&MountTmpfsOptions>, read_only: bool) -> Result<Vec<String>, MountProblem> {
    let mut out = Vec::new();
    if read_only {
        out.push("ro".to_string());
    }
    if let Some(mode) = opts.and_then(|o| o.mode).filter(|m| *m != 0) {
        out.push(format!("mode={mode:o}"));
    }
    if let Some(size) = opts.and_then(|o| o.size_bytes).filter(|s| *s != 0) {
        let (value, suffix) = [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)]
            .iter()
            .find(|(_, d)| size % d == 0)
            .map_or((size, ""), |(s, d)| (size / d, *s));
        out.push(format!("size={value}{suffix}"));
    }
    for opt in opts.and_then(|o| o.options.as_ref()).into_iter().flatten() {
        match opt.as_slice() {
            [flag] if flag == "exec" || flag == "noexec" => out.push(flag.clone()),
            [key, value] if key == "exec" || key == "noexec" => out.push(format!("{key}={value}")),
            [] => return Err(MountProblem::TmpfsOptionLength),
            [key] | [key, _] => return Err(MountProblem::TmpfsOption(key.clone())),
            _ => return Err(MountProblem::TmpfsOptionLength),
        }
    }
    Ok(out)
}

/// The flags of mount(8) options, for [`merge_tmpfs_options`]: options with the same key override each other.
fn flag_key(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" | "rbind" | "unbindable" | "runbindable" | "private" | "rprivate" | "shared" | "rshared"
        | "slave" | "rslave" => "propagation",
        _ => return None,
    })
}

/// docker's `MergeTmpfsOptions`: later options override earlier ones with the same flag or key; `defaults` is
/// dropped; data options other than size, mode, uid, gid, nr_inodes, nr_blocks, mpol are refused.
pub fn merge_tmpfs_options(options: &[String]) -> Result<Vec<String>, SpecError> {
    let mut seen_flags = HashSet::new();
    let mut seen_data = HashSet::new();
    let mut out = Vec::new();
    for option in options.iter().rev() {
        if option == "defaults" || option.is_empty() {
            continue;
        }
        if let Some(key) = flag_key(option) {
            if seen_flags.insert(key) {
                out.push(option.clone());
            }
            continue;
        }
        let key = option.split_once('=').map(|(k, _)| k);
        match key {
            Some(k @ ("size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks" | "mpol")) => {
                if seen_data.insert(k) {
                    out.push(option.clone());
                }
            }
            _ => return Err(SpecError::TmpfsOption(key.unwrap_or(option).to_string())),
        }
    }
    out.reverse();
    Ok(out)
}

fn tmpfs_kind(options: &[String]) -> MountKind {
    let value = |key: &str| {
        options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    MountKind::Tmpfs {
        size: value("size").and_then(parse_tmpfs_size),
        mode: value("mode").and_then(|m| u32::from_str_radix(m, 8).ok()),
    }
}

/// Parses one `-v` string as docker's `ParseMountRaw`.
fn parse_bind(raw: &str, volume_driver: Option<&str>) -> Result<MountRequest, SpecError> {
    let invalid = || SpecError::VolumeSpec(raw.to_string());
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(invalid());
    }
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [_, second] if valid_mode(second) => return Err(invalid()),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(invalid()),
    };
    if !valid_mode(mode) {
        return Err(SpecError::MountMode(mode.to_string()));
    }
    let opts: Vec<&str> = if mode.is_empty() {
        Vec::new()
    } else {
        mode.split(',').collect()
    };
    let is_bind = source.starts_with('/');
    let kind_name = if is_bind { "bind" } else { "volume" };
    let fail = |problem| SpecError::VolumeSpecMount {
        spec: raw.to_string(),
        kind: kind_name,
        problem,
    };
    let propagation = opts
        .iter()
        .find(|o| PROPAGATIONS.contains(o))
        .map(|p| p.to_string());
    let no_copy = opts.contains(&"nocopy");
    if !is_bind && propagation.is_some() {
        return Err(fail(MountProblem::ExtraField("BindOptions")));
    }
    if is_bind && no_copy {
        return Err(fail(MountProblem::ExtraField("VolumeOptions")));
    }
    if target.is_empty() {
        return Err(fail(MountProblem::MissingField("Target")));
    }
    validate_target(target).map_err(fail)?;
    let driver = volume_driver.filter(|d| !d.is_empty() && *d != "local");
    if !is_bind && !source.is_empty() && driver.is_none() && !valid_volume_name(source) {
        return Err(fail(MountProblem::VolumeName(source.to_string())));
    }
    let read_only = opts.contains(&"ro");
    let destination = clean_path(target);
    let kind = if is_bind {
        MountKind::Bind {
            source: PathBuf::from(clean_path(source)),
        }
    } else {
        MountKind::Volume {
            name: (!source.is_empty()).then(|| source.to_string()),
            no_copy,
        }
    };
    Ok(MountRequest {
        kind,
        destination,
        read_only,
        propagation: is_bind.then(|| propagation.unwrap_or_else(|| DEFAULT_PROPAGATION.to_string())),
        mode: mode.to_string(),
        details: MountDetails {
            origin: MountOrigin::Binds,
            create_mountpoint: is_bind,
            volume_driver: if is_bind { None } else { driver.map(str::to_string) },
            ..Default::default()
        },
    })
}

/// Parses one `--mount` as docker's `ParseMountSpec` (the bind source must exist unless `CreateMountpoint`).
fn parse_api_mount(m: &ApiMount) -> Result<MountRequest, SpecError> {
    validate_mount(m, true)?;
    let target = m.target.as_deref().unwrap_or("");
    let source = m.source.as_deref().unwrap_or("");
    let read_only = m.read_only == Some(true);
    let destination = clean_path(target);
    let mut details = MountDetails {
        origin: MountOrigin::Mounts,
        ..Default::default()
    };
    let (kind, propagation) = match m.typ {
        Some(MountType::BIND) => {
            let opts = m.bind_options.as_ref();
            details.non_recursive = opts.and_then(|o| o.non_recursive) == Some(true);
            details.read_only_non_recursive = opts.and_then(|o| o.read_only_non_recursive) == Some(true);
            details.read_only_force_recursive = opts.and_then(|o| o.read_only_force_recursive) == Some(true);
            details.create_mountpoint = opts.and_then(|o| o.create_mountpoint) == Some(true);
            let propagation = opts
                .and_then(|o| o.propagation)
                .filter(|p| *p != MountBindOptionsPropagationEnum::EMPTY)
                .map_or_else(|| DEFAULT_PROPAGATION.to_string(), |p| p.to_string());
            (
                MountKind::Bind {
                    source: PathBuf::from(clean_path(source)),
                },
                Some(propagation),
            )
        }
        Some(MountType::VOLUME) => {
            let opts = m.volume_options.as_ref();
            details.subpath = opts.and_then(|o| o.subpath.clone()).filter(|s| !s.is_empty());
            details.volume_driver = volume_driver(m);
            details.driver_options = opts
                .and_then(|o| o.driver_config.as_ref())
                .and_then(|d| d.options.clone())
                .unwrap_or_default();
            details.volume_labels = opts.and_then(|o| o.labels.clone()).unwrap_or_default();
            (
                MountKind::Volume {
                    name: (!source.is_empty()).then(|| source.to_string()),
                    no_copy: opts.and_then(|o| o.no_copy) == Some(true),
                },
                None,
            )
        }
        Some(MountType::TMPFS) => {
            // Checked by validate_mount.
            let options = tmpfs_api_options(m.tmpfs_options.as_ref(), read_only).map_err(|problem| {
                SpecError::MountConfig {
                    kind: "tmpfs".into(),
                    problem,
                }
            })?;
            let kind = tmpfs_kind(&options);
            details.tmpfs_options = options;
            (kind, None)
        }
        _ => {
            return Err(SpecError::MountConfig {
                kind: mount_type_name(m),
                problem: MountProblem::UnknownType,
            });
        }
    };
    Ok(MountRequest {
        kind,
        destination,
        read_only,
        propagation,
        mode: String::new(),
        details,
    })
}

/// Parses the container's mounts: `HostConfig.Binds`, `HostConfig.Mounts`, `HostConfig.Tmpfs`, then an anonymous
/// volume for each path of `Config.Volumes` (the request's and the image's) that no other mount covers. Two
/// mounts at one destination are an error, as in docker.
pub fn parse_mounts(
    cfg: &ContainerConfig,
    host: &HostConfig,
    image: &ContainerConfig,
) -> Result<Vec<MountRequest>, SpecError> {
    let mut requests: Vec<MountRequest> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let tmpfs: Vec<(String, &String)> = {
        let mut t: Vec<(String, &String)> = host
            .tmpfs
            .iter()
            .flatten()
            .map(|(dest, data)| (clean_path(dest), data))
            .collect();
        t.sort();
        t
    };
    let tmpfs_dests: HashSet<&str> = tmpfs.iter().map(|(d, _)| d.as_str()).collect();
    let driver = host.volume_driver.as_deref();
    for raw in host.binds.iter().flatten() {
        let request = parse_bind(raw, driver)?;
        if taken.contains(&request.destination) || tmpfs_dests.contains(request.destination.as_str()) {
            return Err(SpecError::DuplicateMountPoint(request.destination));
        }
        taken.insert(request.destination.clone());
        requests.push(request);
    }
    for m in host.mounts.iter().flatten() {
        let request = parse_api_mount(m)?;
        if taken.contains(&request.destination) || tmpfs_dests.contains(request.destination.as_str()) {
            return Err(SpecError::DuplicateMountPoint(
                m.target.clone().unwrap_or_default(),
            ));
        }
        taken.insert(request.destination.clone());
        requests.push(request);
    }
    for (dest, data) in tmpfs {
        validate_tmpfs_destination(&dest)?;
        let options: Vec<String> = data
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        merge_tmpfs_options(&options)?;
        let read_only = options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro");
        taken.insert(dest.clone());
        requests.push(MountRequest {
            kind: tmpfs_kind(&options),
            destination: dest,
            read_only,
            propagation: None,
            mode: String::new(),
            details: MountDetails {
                origin: MountOrigin::Tmpfs,
                tmpfs_options: options,
                ..Default::default()
            },
        });
    }
    let mut volumes: Vec<&String> = cfg.volumes.iter().flatten().collect();
    for v in image.volumes.iter().flatten() {
        if !volumes.contains(&v) {
            volumes.push(v);
        }
    }
    for spec in volumes {
        let dest = clean_path(spec);
        validate_target(spec).map_err(SpecError::Mount)?;
        if !taken.insert(dest.clone()) {
            continue;
        }
        requests.push(MountRequest {
            kind: MountKind::Volume {
                name: None,
                no_copy: false,
            },
            destination: dest,
            read_only: false,
            propagation: None,
            mode: String::new(),
            details: MountDetails {
                origin: MountOrigin::ConfigVolume,
                volume_driver: driver
                    .filter(|d| !d.is_empty() && *d != "local")
                    .map(str::to_string),
                ..Default::default()
            },
        });
    }
    Ok(requests)
}

impl MountRequest {
    /// The mount to give [`super::build`]: `source` is the volume's directory (`D/volumes/<name>/_data`) for a
    /// volume, or a replacement for a bind's source (`None`: the request's own); tmpfs ignores it.
    pub fn resolve(&self, source: Option<&Path>) -> Result<ResolvedMount, SpecError> {
        let read_only_option = || -> Result<Option<&'static str>, SpecError> {
            if !self.read_only {
                return Ok(None);
            }
            if self.details.read_only_non_recursive {
                if self.details.read_only_force_recursive {
                    return Err(SpecError::Mount(MountProblem::ReadOnlyConflict));
                }
                return Ok(Some("ro"));
            }
            Ok(Some("rro"))
        };
        match &self.kind {
            MountKind::Bind { source: own } => {
                let mut options = vec![
                    if self.details.non_recursive {
                        "bind"
                    } else {
                        "rbind"
                    }
                    .to_string(),
                ];
                options.extend(read_only_option()?.map(str::to_string));
                options.extend(self.propagation.clone());
                Ok(ResolvedMount {
                    destination: self.destination.clone(),
                    source: source.map_or_else(|| own.clone(), Path::to_path_buf),
                    kind: "bind",
                    options,
                })
            }
            MountKind::Volume { .. } => {
                let base = source.ok_or(SpecError::Mount(MountProblem::MissingField("Source")))?;
                let source = match &self.details.subpath {
                    Some(sub) => base.join(sub),
                    None => base.to_path_buf(),
                };
                let mut options = vec!["rbind".to_string()];
                options.extend(read_only_option()?.map(str::to_string));
                Ok(ResolvedMount {
                    destination: self.destination.clone(),
                    source,
                    kind: "bind",
                    options,
                })
            }
            MountKind::Tmpfs { .. } => Ok(ResolvedMount {
                destination: self.destination.clone(),
                source: PathBuf::from("tmpfs"),
                kind: "tmpfs",
                options: self.details.tmpfs_options.clone(),
            }),
        }
    }
}

/// The mount table's inputs besides the container's own mounts.
pub(crate) struct TableInput<'a> {
    pub user: &'a [ResolvedMount],
    pub etc: &'a super::EtcFiles,
    pub ipc: &'a NsMode,
    pub ipc_none: bool,
    pub shm_size: i64,
    pub read_only_root: bool,
    pub privileged: bool,
    pub writable_cgroups: bool,
    pub init: Option<&'a Path>,
}

/// Where docker mounts the init.
pub const INIT_PATH: &str = "/sbin/docker-init";
/// The default size of /dev/shm (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn opts_of(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

/// The spec's mounts, in docker's order: the defaults not overridden, then the container's mounts sorted so that
/// parents come before children.
pub(crate) fn mount_table(input: &TableInput) -> Result<Vec<Mount>, SpecError> {
    let shm_size = if input.shm_size > 0 {
        input.shm_size
    } else {
        DEFAULT_SHM_SIZE
    };
    let shm_opt = format!("size={shm_size}");
    let mut defaults = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        )?,
    ];

    // The container's mounts, then the daemon's (IPC, /etc files, init), which a container mount at the same
    // destination replaces.
    let mut own: Vec<Mount> = Vec::new();
    for m in input.user {
        let options = if m.kind == "tmpfs" {
            let mut all: Vec<String> = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]
                .map(String::from)
                .to_vec();
            all.extend(m.options.iter().cloned());
            merge_tmpfs_options(&all)?
        } else {
            m.options.clone()
        };
        own.push(
            MountBuilder::default()
                .destination(m.destination.as_str())
                .typ(m.kind)
                .source(m.source.clone())
                .options(options)
                .build()?,
        );
    }
    let user_dests: HashSet<String> = own
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    let mut daemon: Vec<Mount> = Vec::new();
    if !input.ipc_none && !user_dests.contains("/dev/shm") {
        let shm_source = match input.ipc {
            NsMode::Host => Some(PathBuf::from("/dev/shm")),
            NsMode::Path(p) => p
                .to_str()
                .and_then(|s| s.strip_suffix("/ns/ipc"))
                .map(|proc_dir| PathBuf::from(format!("{proc_dir}/root/dev/shm"))),
            NsMode::Private | NsMode::Own(_) => None,
        };
        if let Some(source) = shm_source {
            daemon.push(
                MountBuilder::default()
                    .destination("/dev/shm")
                    .typ("bind")
                    .source(source)
                    .options(vec!["rbind".to_string(), "rprivate".to_string()])
                    .build()?,
            );
        }
    }
    let etc_mode: &[&str] = if input.read_only_root {
        &["rbind", "ro", "rprivate"]
    } else {
        &["rbind", "rprivate"]
    };
    for (dest, source) in [
        ("/etc/resolv.conf", &input.etc.resolv_conf),
        ("/etc/hostname", &input.etc.hostname),
        ("/etc/hosts", &input.etc.hosts),
    ] {
        if !user_dests.contains(dest) {
            daemon.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("bind")
                    .source(source.clone())
                    .options(etc_mode.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                    .build()?,
            );
        }
    }
    if let Some(init) = input.init
        && !user_dests.contains(INIT_PATH)
    {
        daemon.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init)
                .options(vec!["bind".to_string(), "ro".to_string()])
                .build()?,
        );
    }
    let mut extra: Vec<Mount> = own.into_iter().chain(daemon).collect();
    // Parents before children (docker sorts by the number of path elements).
    extra.sort_by_key(|m| m.destination().components().count());
    let extra_dests: HashSet<PathBuf> = extra.iter().map(|m| m.destination().clone()).collect();

    let dev_replaced = extra_dests.contains(Path::new("/dev"));
    defaults.retain(|m| {
        let dest = m.destination();
        if extra_dests.contains(dest) {
            return false;
        }
        if dev_replaced && dest.starts_with("/dev") && dest != Path::new("/dev") {
            return false;
        }
        !(input.ipc_none && dest == Path::new("/dev/shm"))
    });

    if input.read_only_root {
        for m in &mut defaults {
            let keep_rw = ["/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"];
            if keep_rw.iter().any(|p| m.destination() == Path::new(p)) {
                continue;
            }
            let mut options = opts_of(m);
            if !options.iter().any(|o| o == "ro") {
                options.push("ro".into());
                m.set_options(Some(options));
            }
        }
    }
    for m in &mut defaults {
        let clear = (input.privileged && m.destination() == Path::new("/sys"))
            || (input.writable_cgroups && m.typ().as_deref() == Some("cgroup"));
        if clear {
            let options: Vec<String> = opts_of(m).into_iter().filter(|o| o != "ro").collect();
            m.set_options(Some(options));
        }
    }
    defaults.extend(extra);
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{MountBindOptions, MountVolumeOptions};

    fn binds(list: &[&str]) -> HostConfig {
        HostConfig {
            binds: Some(list.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn parse(host: &HostConfig) -> Result<Vec<MountRequest>, SpecError> {
        parse_mounts(&ContainerConfig::default(), host, &ContainerConfig::default())
    }

    fn err(host: HostConfig) -> String {
        parse(&host).unwrap_err().to_string()
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/a/b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("//a//./b"), "/a/b");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn bind_strings() {
        let m = parse(&binds(&[
            "/src/dir/:/data/:ro,rshared",
            "vol:/v:nocopy",
            "/anon",
            "named:/n",
        ]))
        .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0].kind,
            MountKind::Bind {
                source: "/src/dir".into()
            }
        );
        assert_eq!(m[0].destination, "/data");
        assert!(m[0].read_only);
        assert_eq!(m[0].propagation.as_deref(), Some("rshared"));
        assert_eq!(m[0].mode, "ro,rshared");
        assert!(m[0].details.create_mountpoint);
        assert_eq!(
            m[1].kind,
            MountKind::Volume {
                name: Some("vol".into()),
                no_copy: true
            }
        );
        assert_eq!(m[1].propagation, None);
        assert_eq!(
            m[2].kind,
            MountKind::Volume {
                name: None,
                no_copy: false
            }
        );
        assert_eq!(m[2].destination, "/anon");
        assert_eq!(m[3].propagation, None);
        assert!(!m[3].read_only);
        let plain = parse(&binds(&["/x:/y"])).unwrap();
        assert_eq!(plain[0].propagation.as_deref(), Some("rprivate"));
    }

    #[test]
    fn bind_string_errors() {
        assert_eq!(err(binds(&[":/x"])), "invalid volume specification: ':/x'");
        assert_eq!(
            err(binds(&["/foo:rw"])),
            "invalid volume specification: '/foo:rw'"
        );
        assert_eq!(
            err(binds(&["a:b:c:d"])),
            "invalid volume specification: 'a:b:c:d'"
        );
        assert_eq!(err(binds(&["/a:/b:bogus"])), "invalid mode: bogus");
        assert_eq!(err(binds(&["/a:/b:ro,rw"])), "invalid mode: ro,rw");
        assert_eq!(
            err(binds(&["/a:rel"])),
            "invalid volume specification: '/a:rel': invalid mount config for type \"bind\": invalid mount path: \
             'rel' mount path must be absolute"
        );
        assert_eq!(
            err(binds(&["/a:/"])),
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: \
             destination can't be '/'"
        );
        assert_eq!(
            err(binds(&["vol:/x:rshared"])),
            "invalid volume specification: 'vol:/x:rshared': invalid mount config for type \"volume\": field \
             BindOptions must not be specified"
        );
        assert!(err(binds(&["./rel:/x"])).contains("includes invalid characters for a local volume name"));
        assert_eq!(err(binds(&["/a:/x", "/b:/x/"])), "Duplicate mount point: /x");
    }

    #[test]
    fn api_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().to_str().unwrap().to_string();
        let host = HostConfig {
            mounts: Some(vec![
                ApiMount {
                    target: Some("/b".into()),
                    source: Some(src.clone()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    bind_options: Some(MountBindOptions {
                        propagation: Some(MountBindOptionsPropagationEnum::RSLAVE),
                        non_recursive: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ApiMount {
                    target: Some("/v".into()),
                    source: Some("data".into()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        no_copy: Some(true),
                        subpath: Some("sub/dir".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ApiMount {
                    target: Some("/t".into()),
                    typ: Some(MountType::TMPFS),
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: Some(64 << 20),
                        mode: Some(0o1770),
                        options: Some(vec![vec!["exec".into()]]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let m = parse(&host).unwrap();
        assert_eq!(m[0].propagation.as_deref(), Some("rslave"));
        assert!(m[0].details.non_recursive && !m[0].details.create_mountpoint);
        let r = m[0].resolve(None).unwrap();
        assert_eq!(
            (r.kind, r.options.clone()),
            ("bind", vec!["bind".into(), "rro".into(), "rslave".into()])
        );
        assert_eq!(r.source, PathBuf::from(&src));
        assert_eq!(
            m[1].kind,
            MountKind::Volume {
                name: Some("data".into()),
                no_copy: true
            }
        );
        let r = m[1]
            .resolve(Some(Path::new("/var/lib/berth/volumes/data/_data")))
            .unwrap();
        assert_eq!(
            r.source,
            PathBuf::from("/var/lib/berth/volumes/data/_data/sub/dir")
        );
        assert_eq!(r.options, ["rbind"]);
        assert_eq!(
            m[2].kind,
            MountKind::Tmpfs {
                size: Some(64 << 20),
                mode: Some(0o1770)
            }
        );
        assert_eq!(m[2].details.tmpfs_options, ["mode=1770", "size=64m", "exec"]);
    }

    #[test]
    fn api_mount_errors() {
        let one = |m: ApiMount| {
            err(HostConfig {
                mounts: Some(vec![m]),
                ..Default::default()
            })
        };
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::BIND),
                source: Some("/nonexistent-berth-src".into()),
                target: Some("/x".into()),
                ..Default::default()
            }),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::BIND),
                target: Some("/x".into()),
                ..Default::default()
            }),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::TMPFS),
                source: Some("x".into()),
                target: Some("/x".into()),
                ..Default::default()
            }),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::VOLUME),
                target: Some("/x".into()),
                bind_options: Some(MountBindOptions::default()),
                ..Default::default()
            }),
            "invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::VOLUME),
                target: Some("/x".into()),
                volume_options: Some(MountVolumeOptions {
                    subpath: Some("a".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "invalid mount config for type \"volume\": must not set Subpath when using anonymous volumes"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::VOLUME),
                source: Some("v".into()),
                target: Some("/x".into()),
                volume_options: Some(MountVolumeOptions {
                    subpath: Some("../a".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "invalid mount config for type \"volume\": subpath must be a relative path within the volume"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::VOLUME),
                source: Some("v".into()),
                ..Default::default()
            }),
            "invalid mount config for type \"volume\": field Target must not be empty"
        );
        assert_eq!(
            one(ApiMount {
                typ: Some(MountType::TMPFS),
                target: Some("/t".into()),
                tmpfs_options: Some(MountTmpfsOptions {
                    options: Some(vec![vec!["uid".into(), "1".into()]]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "invalid mount config for type \"tmpfs\": invalid option: uid"
        );
        assert_eq!(
            one(ApiMount {
                typ: None,
                target: Some("/t".into()),
                ..Default::default()
            }),
            "invalid mount config for type \"\": mount type unknown"
        );
        let conflict = MountRequest {
            kind: MountKind::Bind { source: "/a".into() },
            destination: "/b".into(),
            read_only: true,
            propagation: None,
            mode: String::new(),
            details: MountDetails {
                read_only_non_recursive: true,
                read_only_force_recursive: true,
                ..Default::default()
            },
        };
        assert_eq!(
            conflict.resolve(None).unwrap_err().to_string(),
            "mount options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive"
        );
    }

    #[test]
    fn tmpfs_map_and_duplicates() {
        let host = HostConfig {
            tmpfs: Some(HashMap::from([(
                "/run/".to_string(),
                "rw,exec,size=65536k,mode=700".to_string(),
            )])),
            ..Default::default()
        };
        let m = parse(&host).unwrap();
        assert_eq!(m[0].destination, "/run");
        assert_eq!(
            m[0].kind,
            MountKind::Tmpfs {
                size: Some(65536 << 10),
                mode: Some(0o700)
            }
        );
        assert_eq!(m[0].details.origin, MountOrigin::Tmpfs);
        assert!(!m[0].read_only);
        let r = m[0].resolve(None).unwrap();
        assert_eq!((r.kind, r.source.clone()), ("tmpfs", PathBuf::from("tmpfs")));

        let mut dup = binds(&["/a:/run"]);
        dup.tmpfs = host.tmpfs.clone();
        assert_eq!(err(dup), "Duplicate mount point: /run");
        let bad = HostConfig {
            tmpfs: Some(HashMap::from([("rel".to_string(), String::new())])),
            ..Default::default()
        };
        assert_eq!(err(bad), "invalid mount path: 'rel' mount path must be absolute");
        let bad = HostConfig {
            tmpfs: Some(HashMap::from([("/t".to_string(), "bogus=1".to_string())])),
            ..Default::default()
        };
        assert_eq!(err(bad), "invalid tmpfs option \"bogus\"");
    }

    #[test]
    fn tmpfs_option_merge() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            merge_tmpfs_options(&v(&[
                "noexec", "nosuid", "nodev", "rprivate", "exec", "size=1m", "size=2m", "defaults"
            ]))
            .unwrap(),
            v(&["nosuid", "nodev", "rprivate", "exec", "size=2m"])
        );
        assert_eq!(merge_tmpfs_options(&v(&["ro", "rw"])).unwrap(), v(&["rw"]));
        assert!(merge_tmpfs_options(&v(&["weird"])).is_err());
    }

    #[test]
    fn image_volumes() {
        let image = ContainerConfig {
            volumes: Some(vec!["/data".into(), "/logs/".into()]),
            ..Default::default()
        };
        let cfg = ContainerConfig {
            volumes: Some(vec!["/extra".into()]),
            ..Default::default()
        };
        let host = binds(&["/host:/data"]);
        let m = parse_mounts(&cfg, &host, &image).unwrap();
        let dests: Vec<&str> = m.iter().map(|r| r.destination.as_str()).collect();
        assert_eq!(
            dests,
            ["/data", "/extra", "/logs"],
            "the bind covers the image's /data"
        );
        assert_eq!(m[2].details.origin, MountOrigin::ConfigVolume);
        assert_eq!(
            m[2].kind,
            MountKind::Volume {
                name: None,
                no_copy: false
            }
        );
        let bad = ContainerConfig {
            volumes: Some(vec!["/".into()]),
            ..Default::default()
        };
        assert!(parse_mounts(&bad, &HostConfig::default(), &ContainerConfig::default()).is_err());
    }

    fn etc() -> super::super::EtcFiles {
        super::super::EtcFiles {
            hostname: "/c/hostname".into(),
            hosts: "/c/hosts".into(),
            resolv_conf: "/c/resolv.conf".into(),
        }
    }

    static ETC: std::sync::LazyLock<super::super::EtcFiles> = std::sync::LazyLock::new(etc);

    fn table<'a>(user: &'a [ResolvedMount], f: impl FnOnce(&mut TableInput<'a>)) -> Vec<Mount> {
        let mut input = TableInput {
            user,
            etc: &ETC,
            ipc: &NsMode::Private,
            ipc_none: false,
            shm_size: 0,
            read_only_root: false,
            privileged: false,
            writable_cgroups: false,
            init: None,
        };
        f(&mut input);
        mount_table(&input).unwrap()
    }

    fn find<'a>(mounts: &'a [Mount], dest: &str) -> Option<&'a Mount> {
        mounts.iter().find(|m| m.destination() == Path::new(dest))
    }

    #[test]
    fn default_table() {
        let t = table(&[], |_| {});
        let dests: Vec<String> = t.iter().map(|m| m.destination().display().to_string()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/etc/hosts"
            ]
        );
        assert_eq!(t.len(), 10);
        let shm = find(&t, "/dev/shm").unwrap();
        assert!(opts_of(shm).contains(&"size=67108864".to_string()));
        assert!(opts_of(find(&t, "/sys").unwrap()).contains(&"ro".to_string()));
        assert_eq!(opts_of(find(&t, "/etc/hosts").unwrap()), ["rbind", "rprivate"]);
        assert_eq!(
            find(&t, "/etc/hosts").unwrap().source().as_deref(),
            Some(Path::new("/c/hosts"))
        );
    }

    #[test]
    fn table_adjustments() {
        let ro = table(&[], |i| {
            i.read_only_root = true;
            i.shm_size = 1 << 20;
        });
        assert!(opts_of(find(&ro, "/etc/hosts").unwrap()).contains(&"ro".to_string()));
        assert!(!opts_of(find(&ro, "/dev/shm").unwrap()).contains(&"ro".to_string()));
        assert!(opts_of(find(&ro, "/dev/shm").unwrap()).contains(&"size=1048576".to_string()));
        assert!(!opts_of(find(&ro, "/proc").unwrap()).contains(&"ro".to_string()));

        let privileged = table(&[], |i| {
            i.privileged = true;
            i.writable_cgroups = true;
        });
        assert!(!opts_of(find(&privileged, "/sys").unwrap()).contains(&"ro".to_string()));
        assert!(!opts_of(find(&privileged, "/sys/fs/cgroup").unwrap()).contains(&"ro".to_string()));

        let none = table(&[], |i| i.ipc_none = true);
        assert!(find(&none, "/dev/shm").is_none());
        let host_ipc = table(&[], |i| i.ipc = &NsMode::Host);
        assert_eq!(
            find(&host_ipc, "/dev/shm").unwrap().typ().as_deref(),
            Some("bind")
        );
        let joined = NsMode::Path("/proc/42/ns/ipc".into());
        let shared = table(&[], |i| i.ipc = &joined);
        assert_eq!(
            find(&shared, "/dev/shm").unwrap().source().as_deref(),
            Some(Path::new("/proc/42/root/dev/shm"))
        );

        let init = table(&[], |i| i.init = Some(Path::new("/usr/lib/berth/berth-init")));
        assert_eq!(opts_of(find(&init, INIT_PATH).unwrap()), ["bind", "ro"]);
    }

    #[test]
    fn user_mounts_replace_defaults_and_sort() {
        let user = vec![
            ResolvedMount {
                destination: "/a/b".into(),
                source: "/h/ab".into(),
                kind: "bind",
                options: vec!["rbind".into()],
            },
            ResolvedMount {
                destination: "/dev".into(),
                source: "/h/dev".into(),
                kind: "bind",
                options: vec!["rbind".into()],
            },
            ResolvedMount {
                destination: "/etc/hosts".into(),
                source: "/h/hosts".into(),
                kind: "bind",
                options: vec!["rbind".into()],
            },
            ResolvedMount {
                destination: "/tmp".into(),
                source: "tmpfs".into(),
                kind: "tmpfs",
                options: vec!["exec".into(), "size=1m".into()],
            },
        ];
        let t = table(&user, |i| i.read_only_root = true);
        assert!(
            find(&t, "/dev/pts").is_none()
                && find(&t, "/dev/shm").is_none()
                && find(&t, "/dev/mqueue").is_none()
        );
        assert_eq!(
            find(&t, "/etc/hosts").unwrap().source().as_deref(),
            Some(Path::new("/h/hosts"))
        );
        assert_eq!(
            opts_of(find(&t, "/etc/hosts").unwrap()),
            ["rbind"],
            "user mounts are not made read-only"
        );
        assert_eq!(
            opts_of(find(&t, "/tmp").unwrap()),
            ["nosuid", "nodev", "rprivate", "exec", "size=1m"]
        );
        let pos = |d: &str| t.iter().position(|m| m.destination() == Path::new(d)).unwrap();
        assert!(pos("/dev") < pos("/a/b"));
        assert!(pos("/tmp") < pos("/a/b"));
    }
}
