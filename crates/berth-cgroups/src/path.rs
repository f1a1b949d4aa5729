//! The OCI `cgroupsPath`: absolute, relative to the runtime's own cgroup, or systemd-style.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

/// Where the container's cgroups are put when the spec has no `cgroupsPath`: `/berth-runtime-<id>`. A flat
/// name (runc uses `/<id>`) leaves nothing behind once the container's cgroup is removed, and cannot race a
/// concurrent create on a shared parent; the prefix makes leaks easy to spot.
pub const DEFAULT_PREFIX: &str = "berth-runtime-";

/// A `cgroupsPath` after parsing and normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Relative to each hierarchy's root; normalised, no leading or trailing slash, never empty.
    Absolute(String),
    /// Relative to the runtime's own cgroup in each hierarchy; normalised, may contain leading "..".
    Relative(String),
}

/// Turns the spec's `cgroupsPath` (or its absence) into a [`Resolved`] path.
pub(crate) fn resolve(cgroups_path: Option<&str>, container_id: &str) -> Result<Resolved> {
    match cgroups_path {
        None | Some("") => {
            if container_id.is_empty()
                || container_id == "."
                || container_id == ".."
                || container_id.contains(['/', '\0'])
            {
                return Err(Error::BadContainerId {
                    id: container_id.to_owned(),
                });
            }
            Ok(Resolved::Absolute(format!("{DEFAULT_PREFIX}{container_id}")))
        }
        Some(p) if is_systemd_style(p) => {
            let mapped = systemd_to_path(p)?;
            Ok(Resolved::Absolute(normalize_absolute(p, &mapped)?))
        }
        Some(p) if p.starts_with('/') => Ok(Resolved::Absolute(normalize_absolute(p, p)?)),
        Some(p) => {
            if p.contains('\0') {
                return Err(Error::PathEscapes { path: p.to_owned() });
            }
            Ok(Resolved::Relative(p.to_owned()))
        }
    }
}

/// Joins a relative cgroups path to the runtime's own cgroup `own` (as listed in /proc/self/cgroup) and
/// normalises the result; it must stay inside the hierarchy and must not be its root.
pub(crate) fn join_relative(original: &str, own: &str, rel: &str) -> Result<String> {
    let combined = format!("{own}/{rel}");
    normalize_absolute(original, &combined)
}

/// Normalises `path` ("." and empty components dropped, ".." folded). `original` names the input in errors.
pub(crate) fn normalize_absolute(original: &str, path: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::PathEscapes {
                        path: original.to_owned(),
                    });
                }
            }
            c if c.contains('\0') => {
                return Err(Error::PathEscapes {
                    path: original.to_owned(),
                });
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::RootPath {
            path: original.to_owned(),
        });
    }
    Ok(parts.join("/"))
}

/// `slice:prefix:name` with exactly two colons and no leading slash is taken as systemd's notation.
fn is_systemd_style(p: &str) -> bool {
    !p.starts_with('/') && p.bytes().filter(|&b| b == b':').count() == 2
}

/// Maps systemd's `slice:prefix:name` to the path systemd would give the unit, without asking systemd:
/// `system.slice:docker:abc` → `/system.slice/docker-abc.scope`, `a-b.slice:p:n` → `/a.slice/a-b.slice/p-n.scope`.
/// An empty slice means `system.slice`, `-.slice` the root slice; an empty prefix gives `name.scope`;
/// a name that already ends in `.scope` or `.slice` is used as it is.
pub(crate) fn systemd_to_path(p: &str) -> Result<String> {
    let bad = |reason| Error::BadSystemdPath {
        path: p.to_owned(),
        reason,
    };
    let mut it = p.splitn(3, ':');
    let (slice, prefix, name) = match (it.next(), it.next(), it.next()) {
        (Some(s), Some(pr), Some(n)) => (s, pr, n),
        _ => return Err(bad("it must have the form slice:prefix:name")),
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if [slice, prefix, name].iter().any(|s| s.contains('/')) {
        return Err(bad("no part may contain a slash"));
    }
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut path = expand_slice(slice)
        .ok_or_else(|| bad("the slice must end in .slice and have no empty dash-separated parts"))?;
    let unit = if name.ends_with(".scope") || name.ends_with(".slice") {
        name.to_owned()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push('/');
    path.push_str(&unit);
    Ok(path)
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` → `` (the root slice).
fn expand_slice(slice: &str) -> Option<String> {
    let stem = slice.strip_suffix(".slice")?;
    if stem == "-" {
        return Some(String::new());
    }
    if stem.is_empty() || stem.split('-').any(str::is_empty) {
        return None;
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push('/');
        out.push_str(&prefix);
        out.push_str(".slice");
    }
    Some(out)
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup {
    /// Hierarchy id; 0 is the cgroup v2 hierarchy.
    pub hierarchy_id: u32,
    /// Controllers of the hierarchy (`name=systemd` included as written); empty for cgroup v2.
    pub controllers: Vec<String>,
    /// The cgroup's path inside the hierarchy, as the kernel prints it (starts with '/').
    pub path: String,
}

/// Parses the runtime's own cgroups from /proc/self/cgroup.
pub fn own_cgroup_paths() -> Result<Vec<OwnCgroup>> {
    let content = fsutil::read(Path::new("/proc/self/cgroup"))?;
    Ok(parse_proc_cgroup(&content))
}

/// Parses the content of a /proc/<pid>/cgroup file; malformed lines are skipped.
pub fn parse_proc_cgroup(content: &str) -> Vec<OwnCgroup> {
    content
        .lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let id = it.next()?.parse().ok()?;
            let ctrl = it.next()?;
            let path = it.next()?;
            Some(OwnCgroup {
                hierarchy_id: id,
                controllers: ctrl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_uses_the_id() {
        assert_eq!(
            resolve(None, "abc").unwrap(),
            Resolved::Absolute("berth-runtime-abc".into())
        );
        assert!(matches!(resolve(None, "a/b"), Err(Error::BadContainerId { .. })));
        assert!(matches!(resolve(None, ".."), Err(Error::BadContainerId { .. })));
    }

    #[test]
    fn absolute_paths_are_normalised() {
        assert_eq!(
            resolve(Some("/a//b/./c/"), "x").unwrap(),
            Resolved::Absolute("a/b/c".into())
        );
        assert_eq!(
            resolve(Some("/a/../b"), "x").unwrap(),
            Resolved::Absolute("b".into())
        );
    }

    #[test]
    fn escaping_paths_are_rejected() {
        let e = resolve(Some("/../etc"), "x").unwrap_err();
        assert!(matches!(e, Error::PathEscapes { .. }));
        assert!(e.to_string().contains("/../etc"), "{e}");
        assert!(matches!(
            resolve(Some("/a/../.."), "x"),
            Err(Error::PathEscapes { .. })
        ));
        assert!(matches!(resolve(Some("/"), "x"), Err(Error::RootPath { .. })));
        assert!(matches!(resolve(Some("/a/.."), "x"), Err(Error::RootPath { .. })));
        assert!(matches!(
            join_relative("../../x", "/own", "../../x"),
            Err(Error::PathEscapes { .. })
        ));
    }

    #[test]
    fn relative_paths_join_the_own_cgroup() {
        assert_eq!(
            resolve(Some("a/b"), "x").unwrap(),
            Resolved::Relative("a/b".into())
        );
        assert_eq!(
            join_relative("a/b", "/user.slice/s", "a/b").unwrap(),
            "user.slice/s/a/b"
        );
        assert_eq!(join_relative("../c", "/p/q", "../c").unwrap(), "p/c");
        assert_eq!(join_relative("c", "/", "c").unwrap(), "c");
    }

    #[test]
    fn systemd_paths_are_mapped() {
        assert_eq!(
            resolve(Some("system.slice:docker:abc"), "x").unwrap(),
            Resolved::Absolute("system.slice/docker-abc.scope".into())
        );
        assert_eq!(
            resolve(Some("machine-a-b.slice:berth:id1"), "x").unwrap(),
            Resolved::Absolute("machine.slice/machine-a.slice/machine-a-b.slice/berth-id1.scope".into())
        );
        assert_eq!(
            resolve(Some(":crio:id"), "x").unwrap(),
            Resolved::Absolute("system.slice/crio-id.scope".into())
        );
        assert_eq!(
            resolve(Some("-.slice::n"), "x").unwrap(),
            Resolved::Absolute("n.scope".into())
        );
        assert!(matches!(
            resolve(Some("system:p:n"), "x"),
            Err(Error::BadSystemdPath { .. })
        ));
        assert!(matches!(
            resolve(Some("a--b.slice:p:n"), "x"),
            Err(Error::BadSystemdPath { .. })
        ));
        assert!(matches!(
            resolve(Some("system.slice:p:"), "x"),
            Err(Error::BadSystemdPath { .. })
        ));
        // A name of ".." cannot climb out: the unit becomes "p-...scope".
        assert_eq!(
            resolve(Some("system.slice:p:.."), "x").unwrap(),
            Resolved::Absolute("system.slice/p-...scope".into())
        );
    }

    #[test]
    fn proc_cgroup_is_parsed() {
        let v =
            parse_proc_cgroup("12:hugetlb:/\n4:memory:/a/b\n1:cpu,cpuacct:/c\n9:name=systemd:/s\n0::/x\n");
        assert_eq!(v.len(), 5);
        assert_eq!(v[1].controllers, ["memory"]);
        assert_eq!(v[1].path, "/a/b");
        assert_eq!(v[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(v[3].controllers, ["name=systemd"]);
        assert_eq!(v[4].hierarchy_id, 0);
        assert!(v[4].controllers.is_empty());
    }
}
