//! Loading and validating `config.json`.
//!
//! `oci-spec` does the parsing; this module adds the checks that runc and crun make before they touch the
//! kernel, so that bad input fails with a one-line error before anything is created.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

/// The versions of the runtime spec this runtime implements (major 1, any minor up to this one).
pub const OCI_VERSION_MAX: &str = "1.2.1";
/// The oldest spec version accepted.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// Errors found in a bundle's `config.json`.
#[derive(Debug, Error)]
pub enum SpecError {
    /// config.json is missing.
    #[error("{path} does not exist: the bundle has no config.json")]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// config.json could not be read or parsed.
    #[error("{path} is not a valid runtime spec: {reason}")]
    Malformed {
        /// The path of config.json.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The spec's version is not one this runtime implements.
    #[error(
        "config.json has ociVersion {0:?}, but this runtime implements {OCI_VERSION_MIN} to {OCI_VERSION_MAX}"
    )]
    UnsupportedVersion(String),
    /// A required part of the spec is absent.
    #[error("config.json has no {0}")]
    MissingField(&'static str),
    /// process.args is empty.
    #[error("config.json's process.args is empty: there is no program to run")]
    EmptyArgs,
    /// The rootfs directory does not exist.
    #[error("the rootfs {0} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    /// A namespace type appears twice.
    #[error("config.json names the {0:?} namespace twice")]
    DuplicateNamespace(LinuxNamespaceType),
    /// A namespace path does not exist.
    #[error("the {typ:?} namespace path {path} does not exist")]
    MissingNamespacePath {
        /// The namespace type.
        typ: LinuxNamespaceType,
        /// The path given.
        path: PathBuf,
    },
    /// A mount entry is unusable.
    #[error("mount {index} ({destination}) is invalid: {reason}")]
    BadMount {
        /// Index in `mounts`.
        index: usize,
        /// The destination as given.
        destination: String,
        /// Why.
        reason: &'static str,
    },
    /// A sysctl name is unusable.
    #[error("sysctl {0:?} is invalid: names are dotted and stay under /proc/sys")]
    BadSysctl(String),
    /// The hostname is set without a UTS namespace.
    #[error("config.json sets a hostname or domainname but shares the host's UTS namespace")]
    HostnameWithoutUts,
    /// The working directory is not absolute.
    #[error("process.cwd {0:?} is not an absolute path")]
    RelativeCwd(String),
    /// A new user namespace without id mappings.
    #[error("config.json asks for a new user namespace but has no {0}: nothing would be mapped")]
    NoIdMappings(&'static str),
    /// An id of the process is outside the user namespace's mappings.
    #[error("process.user {what} {id} is not mapped in the container's user namespace ({maps})")]
    UnmappedId {
        /// uid, gid or additional gid.
        what: &'static str,
        /// The id.
        id: u32,
        /// The mappings, as container:host:size.
        maps: String,
    },
    /// A feature this runtime cannot honour yet.
    #[error("config.json asks for {0}, which this runtime does not support yet")]
    Unsupported(&'static str),
}

/// A loaded, validated spec and the paths derived from it.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed spec.
    pub spec: Spec,
    /// The rootfs, absolute.
    pub rootfs: PathBuf,
}

/// Reads and validates `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Bundle, SpecError> {
    let dir = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SpecError::Missing { path }),
        Err(e) => {
            return Err(SpecError::Malformed {
                path,
                reason: e.to_string(),
            });
        }
    };
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| SpecError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let rootfs = validate(&spec, &dir)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Checks a spec and returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    check_version(spec.version())?;
    let root = spec.root().as_ref().ok_or(SpecError::MissingField("root"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(SpecError::MissingRootfs(rootfs));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or(SpecError::MissingField("process"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::EmptyArgs);
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::RelativeCwd(process.cwd().display().to_string()));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or(SpecError::MissingField("linux section"))?;
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return Err(SpecError::DuplicateNamespace(ns.typ()));
        }
        if let Some(p) = ns.path()
            && !p.exists()
        {
            return Err(SpecError::MissingNamespacePath {
                typ: ns.typ(),
                path: p.clone(),
            });
        }
    }
    if (spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_ref().is_some_and(|h| !h.is_empty()))
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(SpecError::HostnameWithoutUts);
    }
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user {
        check_mapped(
            "uid",
            &[process.user().uid()],
            linux.uid_mappings().as_deref().unwrap_or_default(),
            "uidMappings",
        )?;
        let mut gids = vec![process.user().gid()];
        gids.extend(process.user().additional_gids().as_deref().unwrap_or_default());
        check_mapped(
            "gid",
            &gids,
            linux.gid_mappings().as_deref().unwrap_or_default(),
            "gidMappings",
        )?;
    }
    for (index, m) in spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        let destination = m.destination().display().to_string();
        if !m.destination().is_absolute() {
            return Err(SpecError::BadMount {
                index,
                destination,
                reason: "the destination is not absolute",
            });
        }
        let typ = m.typ().as_deref().unwrap_or("");
        let is_bind = typ == "bind"
            || m.options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "bind" || o == "rbind");
        if is_bind && m.source().is_none() {
            return Err(SpecError::BadMount {
                index,
                destination,
                reason: "a bind mount needs a source",
            });
        }
        if !is_bind && typ.is_empty() {
            return Err(SpecError::BadMount {
                index,
                destination,
                reason: "it has neither a type nor a bind option",
            });
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for name in sysctl.keys() {
            if name.is_empty() || name.contains("..") || name.starts_with(['.', '/']) || name.contains('\0') {
                return Err(SpecError::BadSysctl(name.clone()));
            }
        }
    }
    Ok(rootfs)
}

fn check_mapped(
    what: &'static str,
    ids: &[u32],
    maps: &[oci_spec::runtime::LinuxIdMapping],
    field: &'static str,
) -> Result<(), SpecError> {
    if maps.is_empty() {
        return Err(SpecError::NoIdMappings(field));
    }
    for &id in ids {
        let inside = maps.iter().any(|m| {
            id >= m.container_id() && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
        });
        if !inside {
            let maps = maps
                .iter()
                .map(|m| format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SpecError::UnmappedId { what, id, maps });
        }
    }
    Ok(())
}

fn check_version(version: &str) -> Result<(), SpecError> {
    let bad = || SpecError::UnsupportedVersion(version.to_string());
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let _patch: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() || major != 1 || minor > 2 {
        return Err(bad());
    }
    Ok(())
}

/// The spec `berth-runtime spec` writes: runc's defaults (namespaces pid, network, ipc, uts, mount, cgroup;
/// proc, /dev, devpts, shm, mqueue, sysfs and cgroup mounts; Docker's default capabilities; masked and read-only
/// paths; a terminal running `sh`).
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version("1.0.2-dev".to_string());
    spec.set_hostname(Some("berth".to_string()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(true));
    }
    spec
}

/// A rootless variant of [`default_spec`]: a user namespace mapping `uid`/`gid` to root, no network namespace.
pub fn rootless_spec(uid: u32, gid: u32) -> Spec {
    let mut spec = Spec::rootless(uid, gid);
    spec.set_version("1.0.2-dev".to_string());
    spec.set_hostname(Some("berth".to_string()));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1+dev"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2.0.0", "1.3.0", "0.9.0", "1.0", "a.b.c", "1.0.0.0"] {
            assert!(
                matches!(check_version(bad), Err(SpecError::UnsupportedVersion(_))),
                "{bad}"
            );
        }
    }

    fn bundle_with(spec: &Spec) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir rootfs");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(spec).expect("json"),
        )
        .expect("write");
        dir
    }

    #[test]
    fn default_spec_validates() {
        let dir = bundle_with(&default_spec());
        let b = load(dir.path()).expect("default spec is valid");
        assert_eq!(b.rootfs, dir.path().join("rootfs"));
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path()), Err(SpecError::Missing { .. })));
        std::fs::write(dir.path().join("config.json"), b"{not json").expect("write");
        let err = load(dir.path()).expect_err("malformed");
        assert!(err.to_string().contains("is not a valid runtime spec"), "{err}");

        let mut spec = default_spec();
        spec.set_version("7.0.0".into());
        let dir = bundle_with(&spec);
        assert!(matches!(load(dir.path()), Err(SpecError::UnsupportedVersion(_))));

        let mut spec = default_spec();
        spec.root_mut().as_mut().expect("root").set_path("nope".into());
        let dir = bundle_with(&spec);
        assert!(matches!(load(dir.path()), Err(SpecError::MissingRootfs(_))));

        let mut spec = default_spec();
        spec.process_mut()
            .as_mut()
            .expect("process")
            .set_args(Some(vec![]));
        let dir = bundle_with(&spec);
        assert!(matches!(load(dir.path()), Err(SpecError::EmptyArgs)));
    }
}
