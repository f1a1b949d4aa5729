//! `--user name|uid[:group|gid]` and `--group-add`, resolved against the container's `/etc/passwd` and `/etc/group`
//! as docker does. The files are opened inside the root filesystem (`openat2` with `RESOLVE_IN_ROOT`), so a
//! symlink in the image cannot make the daemon read a host file.

use std::io::Read as _;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::SpecError;

/// The largest uid or gid docker accepts.
const MAX_ID: i64 = (1 << 31) - 1;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The gids of the process: the primary gid first, then the user's groups and `--group-add`.
    pub additional_gids: Vec<u32>,
    /// The home directory (`None` when the user is not in the passwd file).
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// Reads `path` (absolute inside the container) from `rootfs`; `None` when it does not exist.
fn read_in_root(rootfs: &Path, path: &'static str) -> Result<Option<String>, SpecError> {
    let fail = |source: std::io::Error| SpecError::ReadEtc {
        path,
        rootfs: rootfs.to_path_buf(),
        source,
    };
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let file = match rustix::fs::openat2(
        &root,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(file) => file,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(fail(e.into())),
    };
    let mut text = String::new();
    // The files are small; a bound keeps a hostile image from making the daemon read forever (a fifo, /dev/zero
    // is not reachable, but a huge file is).
    std::fs::File::from(file)
        .take(16 << 20)
        .read_to_string(&mut text)
        .map_err(fail)?;
    Ok(Some(text))
}

fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(fields)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(fields)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A numeric id: `Ok(Some(id))`; a name: `Ok(None)`; a number out of range: [`SpecError::IdRange`].
fn numeric(value: &str) -> Result<Option<u32>, SpecError> {
    match value.parse::<i64>() {
        Ok(id) if (0..=MAX_ID).contains(&id) => Ok(u32::try_from(id).ok()),
        Ok(_) => Err(SpecError::IdRange),
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            Err(SpecError::IdRange)
        }
        Err(_) => Ok(None),
    }
}

fn to_id(id: i64) -> Result<u32, SpecError> {
    if (0..=MAX_ID).contains(&id) {
        u32::try_from(id).map_err(|_| SpecError::IdRange)
    } else {
        Err(SpecError::IdRange)
    }
}

/// Resolves `spec` (`""` is root) and `group_add` in `rootfs`, as docker does: a name must be in the passwd file,
/// a number need not be; an explicit group replaces the primary gid and drops the supplementary groups; without
/// one, the groups listing the user are added.
pub fn resolve_user(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, SpecError> {
    let passwd = read_in_root(rootfs, "/etc/passwd")?.map(|t| parse_passwd(&t));
    let group = read_in_root(rootfs, "/etc/group")?.map(|t| parse_group(&t));
    resolve_with(passwd.as_deref(), group.as_deref(), spec, group_add)
}

fn resolve_with(
    passwd: Option<&[PasswdEntry]>,
    group: Option<&[GroupEntry]>,
    spec: &str,
    group_add: &[String],
) -> Result<ResolvedUser, SpecError> {
    let mut parts = spec.splitn(3, ':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_arg = numeric(user_arg)?;
    let gid_arg = numeric(group_arg)?;

    let mut uid = 0u32;
    let mut gid = 0u32;
    let mut home = None;
    let matched = passwd.unwrap_or_default().iter().find(|u| {
        if user_arg.is_empty() {
            u.uid == 0
        } else if let Some(id) = uid_arg {
            u.uid == i64::from(id)
        } else {
            u.name == user_arg
        }
    });
    let mut matched_name = None;
    if let Some(entry) = matched {
        uid = to_id(entry.uid)?;
        gid = to_id(entry.gid)?;
        home = Some(entry.home.clone());
        matched_name = Some(entry.name.as_str());
    } else if !user_arg.is_empty() {
        match uid_arg {
            Some(id) => uid = id,
            None => return Err(SpecError::UserNotFound(user_arg.to_string())),
        }
    }

    let mut sgids = Vec::new();
    let groups = group.unwrap_or_default();
    if !group_arg.is_empty() {
        let found = groups.iter().find(|g| match gid_arg {
            Some(id) => g.gid == i64::from(id),
            None => g.name == group_arg,
        });
        gid = match (found, gid_arg) {
            (Some(g), _) => to_id(g.gid)?,
            (None, Some(id)) => id,
            (None, None) => return Err(SpecError::GroupNotFound(group_arg.to_string())),
        };
    } else if let Some(name) = matched_name {
        for g in groups.iter().filter(|g| g.members.iter().any(|m| m == name)) {
            sgids.push(to_id(g.gid)?);
        }
    }

    let mut extra = Vec::new();
    for wanted in group_add {
        let id = numeric(wanted)?;
        let found = groups.iter().find(|g| match id {
            Some(id) => g.gid == i64::from(id),
            None => g.name == *wanted,
        });
        extra.push(match (found, id) {
            (Some(g), _) => to_id(g.gid)?,
            (None, Some(id)) => id,
            (None, None) => return Err(SpecError::GroupNotFound(wanted.clone())),
        });
    }

    let mut additional_gids = vec![gid];
    for g in sgids.into_iter().chain(extra) {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:app,other\n\
        audio:x:29:app\n\
        app:x:1000:\n\
        staff:x:50:\n";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        if let Some(p) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), p).unwrap();
        }
        if let Some(g) = group {
            std::fs::write(dir.path().join("etc/group"), g).unwrap();
        }
        dir
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_and_numbers() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let root = resolve_user(dir.path(), "", &[]).unwrap();
        assert_eq!(
            (root.uid, root.gid, root.additional_gids.clone()),
            (0, 0, vec![0])
        );
        assert_eq!(root.home.as_deref(), Some("/root"));

        let app = resolve_user(dir.path(), "app", &[]).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, [1000, 10, 29]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));

        let by_uid = resolve_user(dir.path(), "1000", &[]).unwrap();
        assert_eq!(by_uid, app);

        // A uid without an entry: gid 0, no home.
        let unknown = resolve_user(dir.path(), "4242", &[]).unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.home), (4242, 0, None));
    }

    #[test]
    fn explicit_groups() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let u = resolve_user(dir.path(), "app:staff", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert_eq!(
            u.additional_gids,
            [50],
            "an explicit group drops the supplementary groups"
        );
        let u = resolve_user(dir.path(), "1000:777", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 777));
        let u = resolve_user(dir.path(), "daemon:wheel", &s(&["audio", "4000", "staff"])).unwrap();
        assert_eq!((u.uid, u.gid), (1, 10));
        assert_eq!(u.additional_gids, [10, 29, 4000, 50]);
    }

    #[test]
    fn group_add_without_user() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let u = resolve_user(dir.path(), "", &s(&["wheel", "0"])).unwrap();
        assert_eq!(u.additional_gids, [0, 10]);
    }

    #[test]
    fn errors_read_as_docker() {
        let dir = rootfs(Some(PASSWD), Some(GROUP));
        let err = resolve_user(dir.path(), "ghost", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        let err = resolve_user(dir.path(), "app:ghosts", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        let err = resolve_user(dir.path(), "", &s(&["nogroup"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        for bad in ["-1", "2147483648", "99999999999999999999", "0:-5"] {
            let err = resolve_user(dir.path(), bad, &[]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "uids and gids must be in range 0-2147483647",
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_files() {
        let dir = rootfs(None, None);
        let u = resolve_user(dir.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.clone()), (0, 0, None));
        let u = resolve_user(dir.path(), "1234:99", &s(&["7"])).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1234, 99, vec![99, 7]));
        let err = resolve_user(dir.path(), "app", &[]).unwrap_err();
        assert!(matches!(err, SpecError::UserNotFound(_)), "{err}");
    }

    #[test]
    fn symlinks_stay_in_the_root() {
        // /etc/passwd -> /host-passwd is resolved inside the rootfs, never on the host.
        let dir = rootfs(None, Some(GROUP));
        std::fs::write(dir.path().join("host-passwd"), "app:x:77:88::/inside:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/host-passwd", dir.path().join("etc/passwd")).unwrap();
        let u = resolve_user(dir.path(), "app", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_deref()), (77, 88, Some("/inside")));
        // ../.. cannot leave either: a passwd file next to the rootfs is never read.
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            outer.path().join("outside-passwd"),
            "escaped:x:0:0::/escaped:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../../outside-passwd", root.join("etc/passwd")).unwrap();
        let err = resolve_user(&root, "escaped", &[]).unwrap_err();
        assert!(matches!(err, SpecError::UserNotFound(_)), "{err}");
    }
}
