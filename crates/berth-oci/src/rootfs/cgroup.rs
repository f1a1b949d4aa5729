//! `type: cgroup` mounts, as runc makes them: a cgroup2 mount on a unified host; on a cgroup v1 (or hybrid)
//! host a tmpfs at the destination with one mount per v1 hierarchy of this process, named after the host's
//! mount point (`cpu,cpuacct`), plus symlinks for the merged names (`cpu -> cpu,cpuacct`).

use super::RootfsError;
use super::mounts::{Ctx, bind_remount};
use super::options::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MountOptions};
use super::resolve::{Kind, ProcFd};
use oci_spec::runtime::Mount;
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One cgroup v1 hierarchy of this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// The controllers as in `/proc/self/cgroup` (`cpu,cpuacct`, `name=systemd`): the data of a fresh mount.
    pub controllers: String,
    /// The file name of the host's mount point (`cpu,cpuacct`), the directory made in the container.
    pub dir_name: String,
    /// The host directory of this process's cgroup in that hierarchy.
    pub source: PathBuf,
}

pub(crate) fn mount(ctx: &Ctx, m: &Mount, rel: &[u8], opts: &MountOptions) -> Result<(), RootfsError> {
    let unified = rustix::fs::statfs(CGROUP_ROOT).is_ok_and(|st| st.f_type == CGROUP2_SUPER_MAGIC);
    if unified {
        mount_v2(ctx, m, rel, opts)
    } else {
        mount_v1(ctx, m, rel, opts)
    }
}

fn mount_v2(ctx: &Ctx, m: &Mount, rel: &[u8], opts: &MountOptions) -> Result<(), RootfsError> {
    let destination = m.destination();
    let (target, _) = ctx.open_or_create(rel, OFlags::PATH, Kind::Dir)?;
    let container = container_of(ctx, target.as_fd(), destination)?;
    let source: &Path = m.source().as_deref().unwrap_or(Path::new("cgroup"));
    match ctx.mount_fs(
        source,
        target.as_fd(),
        "cgroup2",
        opts.flags,
        &opts.data,
        destination,
    ) {
        Ok(()) => {}
        Err(RootfsError::Mount {
            source: Errno::PERM | Errno::BUSY,
            ..
        }) => {
            // In a user namespace without its own cgroup namespace cgroup2 cannot be mounted: bind the
            // host's (the container's own cgroup when it has a cgroup namespace), as runc does.
            let mut host = PathBuf::from(CGROUP_ROOT);
            if ctx.cgroup_ns() {
                let own = read("/proc/self/cgroup")?;
                if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
                    host.push(path.trim_start_matches('/'));
                }
            }
            rustix::mount::mount_bind_recursive(&host, ProcFd::new(target.as_fd()).as_cstr()).map_err(
                |source| RootfsError::Mount {
                    what: host.display().to_string(),
                    destination: destination.to_owned(),
                    source,
                },
            )?;
            let mounted = ctx.reopen(&container)?;
            let bind = MountOptions {
                flags: opts.flags | MS_BIND | MS_REC,
                cleared: opts.cleared,
                ..Default::default()
            };
            if bind.needs_bind_remount() {
                bind_remount(mounted.as_fd(), &bind, destination)?;
            }
        }
        Err(e) => return Err(e),
    }
    drop(target);
    if opts.propagation.is_empty() && opts.rec_attr.is_empty() {
        return Ok(());
    }
    let mounted = ctx.reopen(&container)?;
    ctx.after_mount(mounted.as_fd(), opts, destination)
}

fn mount_v1(ctx: &Ctx, m: &Mount, rel: &[u8], opts: &MountOptions) -> Result<(), RootfsError> {
    let destination = m.destination();
    let hierarchies = own_hierarchies(
        &read("/proc/self/cgroup")?,
        &read("/proc/self/mountinfo")?,
        ctx.cgroup_ns(),
    )?;

    let (target, _) = ctx.open_or_create(rel, OFlags::PATH, Kind::Dir)?;
    let container = container_of(ctx, target.as_fd(), destination)?;
    ctx.mount_fs(
        Path::new("tmpfs"),
        target.as_fd(),
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "mode=755",
        destination,
    )?;
    drop(target);
    let tmpfs = ctx.reopen(&container)?;
    let tmpfs_opts = MountOptions {
        propagation: opts.propagation.clone(),
        ..Default::default()
    };
    ctx.after_mount(tmpfs.as_fd(), &tmpfs_opts, destination)?;

    let base = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    for h in &hierarchies {
        let sub_destination = destination.join(&h.dir_name);
        let dir = create_dir(tmpfs.as_fd(), &h.dir_name, &sub_destination)?;
        if ctx.cgroup_ns() {
            // In a cgroup namespace a fresh mount shows the namespace's root: this process's cgroup.
            let (source, data) = match h.controllers.strip_prefix("name=") {
                Some("systemd") => ("systemd", h.controllers.clone()),
                _ => ("cgroup", h.controllers.clone()),
            };
            let bits = base | (opts.flags & MS_RDONLY);
            ctx.mount_fs(
                Path::new(source),
                dir.as_fd(),
                "cgroup",
                bits,
                &data,
                &sub_destination,
            )?;
        } else {
            rustix::mount::mount_bind_recursive(&h.source, ProcFd::new(dir.as_fd()).as_cstr()).map_err(
                |source| RootfsError::Mount {
                    what: h.source.display().to_string(),
                    destination: sub_destination.clone(),
                    source,
                },
            )?;
            let bind = MountOptions {
                flags: opts.flags | MS_BIND | MS_REC,
                cleared: opts.cleared,
                ..Default::default()
            };
            if bind.needs_bind_remount() {
                let mounted = reopen_child(tmpfs.as_fd(), &h.dir_name, &sub_destination)?;
                bind_remount(mounted.as_fd(), &bind, &sub_destination)?;
            }
        }
        if !opts.propagation.is_empty() {
            let mounted = reopen_child(tmpfs.as_fd(), &h.dir_name, &sub_destination)?;
            ctx.after_mount(mounted.as_fd(), &tmpfs_opts, &sub_destination)?;
        }
    }
    for h in hierarchies.iter().filter(|h| h.dir_name.contains(',')) {
        for name in h.dir_name.split(',') {
            match rustix::fs::symlinkat(h.dir_name.as_str(), tmpfs.as_fd(), name) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(source) => {
                    return Err(RootfsError::Symlink {
                        path: destination.join(name),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

fn container_of(
    ctx: &Ctx,
    fd: rustix::fd::BorrowedFd<'_>,
    destination: &Path,
) -> Result<Vec<u8>, RootfsError> {
    super::resolve::container_path(fd, ctx.root_path())
        .map_err(|source| RootfsError::Resolve {
            path: destination.to_owned(),
            source,
        })?
        .ok_or_else(|| super::mounts::outside_rootfs(fd, destination, ctx.root_path()))
}

fn create_dir(
    parent: rustix::fd::BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<rustix::fd::OwnedFd, RootfsError> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(source) => {
            return Err(RootfsError::Create {
                path: path.to_owned(),
                source,
            });
        }
    }
    reopen_child(parent, name, path)
}

fn reopen_child(
    parent: rustix::fd::BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<rustix::fd::OwnedFd, RootfsError> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| RootfsError::Resolve {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &str) -> Result<String, RootfsError> {
    std::fs::read_to_string(path).map_err(|source| RootfsError::ReadProc {
        path: PathBuf::from(path),
        source,
    })
}

/// Undoes the octal escapes (`\040`) of a mountinfo field.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 hierarchies of this process: each `cgroup` mount of `mountinfo` (the first per hierarchy) matched
/// with its line of `/proc/self/cgroup`.
///
/// With `fresh_mounts` (the container has a cgroup namespace, so each hierarchy is mounted anew) the source
/// is the host's mount point and this process's place in the hierarchy does not matter.
pub(crate) fn own_hierarchies(
    cgroup: &str,
    mountinfo: &str,
    fresh_mounts: bool,
) -> Result<Vec<Hierarchy>, RootfsError> {
    // (controllers, path) of the v1 lines.
    let lines: Vec<(&str, &str)> = cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            (!controllers.is_empty()).then_some((controllers, path))
        })
        .collect();
    let mut used = vec![false; lines.len()];
    let mut out = Vec::with_capacity(lines.len());
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post_fields = post.split(' ');
        if post_fields.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post_fields.nth(1).unwrap_or("");
        let pre_fields: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(mount_point)) = (pre_fields.get(3), pre_fields.get(4)) else {
            continue;
        };
        let Some(index) = lines.iter().position(|(controllers, _)| {
            controllers
                .split(',')
                .all(|c| super_opts.split(',').any(|o| o == c))
        }) else {
            continue;
        };
        if used[index] {
            continue;
        }
        let (controllers, own) = lines[index];
        let root = unescape(root);
        let mount_point = unescape(mount_point);
        let rel = if fresh_mounts {
            // The source is not used; in a cgroup namespace mountinfo shows the host mounts' roots as
            // `/..`, which no path of this process is below.
            Some("")
        } else if root == "/" {
            Some(own)
        } else {
            own.strip_prefix(root.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        let Some(rel) = rel else {
            // This process's cgroup is not visible through this mount; a later mount may show it.
            continue;
        };
        let Some(dir_name) = Path::new(&mount_point).file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        used[index] = true;
        let mut source = PathBuf::from(&mount_point);
        source.push(rel.trim_start_matches('/'));
        out.push(Hierarchy {
            controllers: controllers.to_owned(),
            dir_name: dir_name.to_owned(),
            source,
        });
    }
    // A hierarchy listed for this process without a mount (net_cls on this host, say) is skipped, as runc
    // skips it: it iterates over the mounts.
    if out.is_empty() && !lines.is_empty() {
        return Err(RootfsError::CgroupHierarchy {
            controllers: lines.iter().map(|l| l.0).collect::<Vec<_>>().join(" "),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CGROUP: &str = "12:hugetlb:/\n11:pids:/user.slice/user-0.slice\n10:cpu,cpuacct:/user.slice\n\
                          9:net_cls,net_prio:/\n1:name=systemd:/user.slice/user-0.slice/session-1.scope\n0::/\n";
    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
37 30 0:31 /user.slice /mnt/cpu\\040dup rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hierarchies_from_proc_files() {
        let h = own_hierarchies(CGROUP, MOUNTINFO, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            h,
            vec![
                Hierarchy {
                    controllers: "name=systemd".into(),
                    dir_name: "systemd".into(),
                    source: "/sys/fs/cgroup/systemd/user.slice/user-0.slice/session-1.scope".into(),
                },
                Hierarchy {
                    controllers: "cpu,cpuacct".into(),
                    dir_name: "cpu,cpuacct".into(),
                    source: "/sys/fs/cgroup/cpu,cpuacct/user.slice".into(),
                },
                Hierarchy {
                    controllers: "pids".into(),
                    dir_name: "pids".into(),
                    source: "/sys/fs/cgroup/pids/user.slice/user-0.slice".into(),
                },
            ]
        );
    }

    #[test]
    fn hierarchies_in_a_cgroup_namespace() {
        let cgroup = "10:cpu,cpuacct:/\n11:pids:/\n0::/\n";
        let mountinfo = "35 30 0:31 /.. /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                         36 30 0:32 /../.. /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert!(own_hierarchies(cgroup, mountinfo, false).is_err());
        let h = own_hierarchies(cgroup, mountinfo, true).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = h.iter().map(|h| h.dir_name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "pids"]);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/mnt/cpu\\040dup"), "/mnt/cpu dup");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
    }
}
