//! User-namespace remapping (`--userns-remap`): which host ids the ids of every container map to.
//!
//! The value is docker's: `default` (the user `berthremap`, created with its ranges in `/etc/subuid` and
//! `/etc/subgid` when they are missing), `USER`, `USER:GROUP`, `UID` or `UID:GID`. The subordinate ranges of the
//! user are read from the subuid file (lines `NAME-OR-UID:START:COUNT`, by name or by numeric id, in file order);
//! the gid ranges from the subgid file, by the group's name or gid, or else by the user's, as docker does. Several
//! ranges are concatenated: container ids `0..` follow the file order.
//!
//! A mapping is refused when it has no range, fewer than [`MIN_IDS`] ids, ranges that overlap each other, or a
//! range that includes host id 0 (container ids must never become host root).
//!
//! The files are injectable ([`IdFiles`]) so that everything is testable on temporary files: the `useradd` and
//! `groupadd` tools are used only when the files are the system's `/etc/passwd` and `/etc/group`; otherwise the
//! entries are appended directly. Files are changed under an exclusive `flock` on a lock file next to the subuid
//! file, and every change is written atomically (a temporary file renamed over the old one, mode and owner kept).

use std::collections::HashSet;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use serde::{Deserialize, Serialize};

/// The value that asks for Berth's own remap user.
pub const DEFAULT_SPEC: &str = "default";
/// The user (and group) created for [`DEFAULT_SPEC`].
pub const DEFAULT_USER: &str = "berthremap";
/// The fewest ids a mapping must hold (docker's and podman's minimum: a full 16-bit id space).
pub const MIN_IDS: u32 = 65536;
/// The most ranges the kernel accepts in a `uid_map` (since Linux 4.15).
pub const MAX_RANGES: usize = 340;

/// Subordinate ranges created for the default user start at a multiple of [`MIN_IDS`] at or above this.
const FIRST_START: u64 = 100_000;
/// System account ids, as `useradd --system` picks them (the highest free one).
const SYSTEM_IDS: std::ops::RangeInclusive<u32> = 100..=999;
/// The size of the id space: ranges end at or below it.
const ID_SPACE: u64 = 1 << 32;
const SYSTEM_PASSWD: &str = "/etc/passwd";
const SYSTEM_GROUP: &str = "/etc/group";
const NOLOGIN: &str = "/usr/sbin/nologin";

/// Resolving a remap value failed.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The value is not one of the accepted forms.
    #[error("invalid userns-remap value {spec:?}: {reason}")]
    InvalidSpec {
        /// The value.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No user has this name.
    #[error("user {name:?} does not exist in {}", path.display())]
    UnknownUser {
        /// The user name.
        name: String,
        /// The passwd file.
        path: PathBuf,
    },
    /// No user has this uid.
    #[error("no user has uid {uid} in {}", path.display())]
    UnknownUid {
        /// The uid.
        uid: u32,
        /// The passwd file.
        path: PathBuf,
    },
    /// No group has this name.
    #[error("group {name:?} does not exist in {}", path.display())]
    UnknownGroup {
        /// The group name.
        name: String,
        /// The group file.
        path: PathBuf,
    },
    /// No group has this gid.
    #[error("no group has gid {gid} in {}", path.display())]
    UnknownGid {
        /// The gid.
        gid: u32,
        /// The group file.
        path: PathBuf,
    },
    /// A value without a group, and no group could be derived from the user.
    #[error(
        "user {user:?} has no group of its own in {}: no group is named {user:?} or has gid {gid}; give one as USER:GROUP",
        path.display()
    )]
    NoGroupForUser {
        /// The user name.
        user: String,
        /// The gid that was tried (the user's primary gid, or its uid for a numeric value).
        gid: u32,
        /// The group file.
        path: PathBuf,
    },
    /// The user (or group) has no subordinate range.
    #[error("no subordinate {kind} range for {owner} in {}", path.display())]
    NoRange {
        /// `uid` or `gid`.
        kind: &'static str,
        /// Whose ranges were looked up ("user alice", "group staff or user alice").
        owner: String,
        /// The subuid or subgid file.
        path: PathBuf,
    },
    /// The ranges hold fewer than [`MIN_IDS`] ids.
    #[error(
        "the subordinate {kind} ranges of {owner} in {} hold {total} ids, but a user namespace needs at least {MIN_IDS} ids",
        path.display()
    )]
    TooFewIds {
        /// `uid` or `gid`.
        kind: &'static str,
        /// Whose ranges they are.
        owner: String,
        /// The subuid or subgid file.
        path: PathBuf,
        /// How many ids they hold.
        total: u64,
    },
    /// Two ranges of the same owner overlap.
    #[error("the subordinate {kind} ranges {first} and {second} of {owner} in {} overlap", path.display())]
    Overlap {
        /// `uid` or `gid`.
        kind: &'static str,
        /// Whose ranges they are.
        owner: String,
        /// The subuid or subgid file.
        path: PathBuf,
        /// One range (`start-end`, inclusive).
        first: String,
        /// The other range.
        second: String,
    },
    /// A range includes host id 0.
    #[error(
        "the subordinate {kind} range {range} of {owner} in {} includes host {kind} 0: container ids must not map to host root",
        path.display()
    )]
    IncludesHostRoot {
        /// `uid` or `gid`.
        kind: &'static str,
        /// Whose range it is.
        owner: String,
        /// The subuid or subgid file.
        path: PathBuf,
        /// The range (`start-end`, inclusive).
        range: String,
    },
    /// More ranges than a `uid_map` can hold.
    #[error(
        "{owner} has {count} subordinate {kind} ranges in {}, but the kernel accepts at most {MAX_RANGES}",
        path.display()
    )]
    TooManyRanges {
        /// `uid` or `gid`.
        kind: &'static str,
        /// Whose ranges they are.
        owner: String,
        /// The subuid or subgid file.
        path: PathBuf,
        /// How many there are.
        count: usize,
    },
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `useradd` or `groupadd` failed.
    #[error("cannot create the {what} {DEFAULT_USER}: `{command}` failed: {detail}")]
    Command {
        /// `user` or `group`.
        what: &'static str,
        /// The command line.
        command: String,
        /// Its exit status and error output, or why it could not run.
        detail: String,
    },
    /// No system id is free for the default user or group.
    #[error(
        "cannot create the {what} {DEFAULT_USER} in {}: no id in {}-{} is free",
        path.display(),
        SYSTEM_IDS.start(),
        SYSTEM_IDS.end()
    )]
    NoFreeId {
        /// `user` or `group`.
        what: &'static str,
        /// The passwd or group file.
        path: PathBuf,
    },
    /// No free range of [`MIN_IDS`] ids is left for the default user.
    #[error(
        "cannot give {DEFAULT_USER} subordinate ids: no range of {MIN_IDS} ids is free in {} and {}",
        subuid.display(),
        subgid.display()
    )]
    NoFreeRange {
        /// The subuid file.
        subuid: PathBuf,
        /// The subgid file.
        subgid: PathBuf,
    },
}

/// One contiguous piece of a mapping: container ids `container..container+size` are host ids `host..host+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// The first id inside the container.
    pub container: u32,
    /// The host id it maps to.
    pub host: u32,
    /// How many ids.
    pub size: u32,
}

impl IdRange {
    /// The host id of container id `id`, if this range holds it.
    fn to_host(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        if offset < self.size {
            self.host.checked_add(offset)
        } else {
            None
        }
    }

    fn oci(self) -> LinuxIdMapping {
        // The builder fails only on a field left unset, and every field is set (the struct also has defaults).
        LinuxIdMappingBuilder::default()
            .container_id(self.container)
            .host_id(self.host)
            .size(self.size)
            .build()
            .expect("every field of LinuxIdMapping is set")
    }
}

/// The files the ids come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdFiles {
    /// `/etc/passwd`.
    pub passwd: PathBuf,
    /// `/etc/group`.
    pub group: PathBuf,
    /// `/etc/subuid`.
    pub subuid: PathBuf,
    /// `/etc/subgid`.
    pub subgid: PathBuf,
}

impl IdFiles {
    /// The system's files in `/etc`.
    pub fn system() -> Self {
        Self::in_dir(Path::new("/etc"))
    }

    /// `passwd`, `group`, `subuid` and `subgid` in `dir` (for tests and alternative roots).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            passwd: dir.join("passwd"),
            group: dir.join("group"),
            subuid: dir.join("subuid"),
            subgid: dir.join("subgid"),
        }
    }

    /// The lock file held while the files change: `.<subuid name>.berth-lock` next to the subuid file.
    pub fn lock_path(&self) -> PathBuf {
        let name = self
            .subuid
            .file_name()
            .map_or_else(|| "subuid".into(), |n| n.to_string_lossy().into_owned());
        parent_dir(&self.subuid).join(format!(".{name}.berth-lock"))
    }

    /// Whether these are the system's account files, which only `useradd`/`groupadd` should change.
    fn are_system_accounts(&self) -> bool {
        self.passwd == Path::new(SYSTEM_PASSWD) && self.group == Path::new(SYSTEM_GROUP)
    }
}

impl Default for IdFiles {
    fn default() -> Self {
        Self::system()
    }
}

/// A resolved mapping: the user and group whose subordinate ranges make the container's ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remap {
    /// The user's name.
    pub user: String,
    /// The group's name.
    pub group: String,
    /// The uid mapping: container uids `0..` in order.
    pub uids: Vec<IdRange>,
    /// The gid mapping: container gids `0..` in order.
    pub gids: Vec<IdRange>,
}

impl Remap {
    /// Resolves a remap value: `default` (user `berthremap`, created with its ranges in the subuid and subgid
    /// files if absent), `USER`, `USER:GROUP`, `UID` or `UID:GID`. Ranges come from the subuid and subgid files,
    /// by name or by numeric id; several ranges of one user are concatenated as docker does (container ids `0..`
    /// in file order). Without a group, the group named like the user is used, else the user's primary group
    /// (for `UID`: the group whose gid equals the uid, else the primary group).
    pub fn resolve(spec: &str, files: &IdFiles) -> Result<Remap, UsernsError> {
        let spec = spec.trim();
        if spec == DEFAULT_SPEC {
            ensure_default(files)?;
            return resolve_parsed(Who::Name(DEFAULT_USER.to_string()), None, files);
        }
        let (user, group) = parse_spec(spec)?;
        resolve_parsed(user, group, files)
    }

    /// The host uid and gid of the container's root (the start of the first ranges).
    pub fn root(&self) -> (u32, u32) {
        (
            self.uids.first().map_or(0, |r| r.host),
            self.gids.first().map_or(0, |r| r.host),
        )
    }

    /// The name of this mapping's data root, `<uid>.<gid>` of the container's root (`165536.165536`).
    pub fn dir_name(&self) -> String {
        let (uid, gid) = self.root();
        format!("{uid}.{gid}")
    }

    /// The host uid that container uid `uid` is, if the mapping holds it.
    pub fn to_host_uid(&self, uid: u32) -> Option<u32> {
        self.uids.iter().find_map(|r| r.to_host(uid))
    }

    /// The host gid that container gid `gid` is, if the mapping holds it.
    pub fn to_host_gid(&self, gid: u32) -> Option<u32> {
        self.gids.iter().find_map(|r| r.to_host(gid))
    }

    /// The uid mapping as the runtime spec's `linux.uidMappings`.
    pub fn oci_uid_mappings(&self) -> Vec<LinuxIdMapping> {
        self.uids.iter().map(|r| r.oci()).collect()
    }

    /// The gid mapping as the runtime spec's `linux.gidMappings`.
    pub fn oci_gid_mappings(&self) -> Vec<LinuxIdMapping> {
        self.gids.iter().map(|r| r.oci()).collect()
    }
}

/// A user or group, by name or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Name(String),
    Id(u32),
}

impl Who {
    fn parse(s: &str) -> Self {
        parse_id(s).map_or_else(|| Self::Name(s.to_string()), Self::Id)
    }
}

fn parse_spec(spec: &str) -> Result<(Who, Option<Who>), UsernsError> {
    let invalid = |reason| UsernsError::InvalidSpec {
        spec: spec.to_string(),
        reason,
    };
    if spec.is_empty() {
        return Err(invalid("expected default, USER, USER:GROUP, UID or UID:GID"));
    }
    if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "user and group names cannot contain spaces or control characters",
        ));
    }
    let mut parts = spec.split(':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next();
    if parts.next().is_some() {
        return Err(invalid("expected at most one ':' (USER:GROUP or UID:GID)"));
    }
    if user.is_empty() {
        return Err(invalid("the user is empty"));
    }
    if user == DEFAULT_SPEC {
        return Err(invalid("\"default\" takes no group"));
    }
    match group {
        Some("") => Err(invalid("the group is empty")),
        Some(group) => Ok((Who::parse(user), Some(Who::parse(group)))),
        None => Ok((Who::parse(user), None)),
    }
}

/// A decimal id (digits only, no sign, fits in 32 bits).
fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    name: String,
    id: u32,
    /// The primary gid (passwd only).
    gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SubId {
    owner: String,
    start: u32,
    count: u32,
}

impl SubId {
    fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.count)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        u64::from(self.start) < end && start < self.end()
    }

    fn span(&self) -> String {
        format!("{}-{}", self.start, self.end() - 1)
    }
}

/// The meaningful lines of an account file, split at ':' (comments, blank lines and NIS `+`/`-` lines skipped).
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            return None;
        }
        Some(line.split(':').collect())
    })
}

/// passwd lines: `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped.
fn parse_passwd(text: &str) -> Vec<Account> {
    records(text)
        .filter_map(|f| {
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(Account {
                name: f[0].to_string(),
                id: parse_id(f[2])?,
                gid: parse_id(f[3])?,
            })
        })
        .collect()
}

/// group lines: `name:password:gid:members`; malformed lines are skipped.
fn parse_group(text: &str) -> Vec<Account> {
    records(text)
        .filter_map(|f| {
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            let gid = parse_id(f[2])?;
            Some(Account {
                name: f[0].to_string(),
                id: gid,
                gid,
            })
        })
        .collect()
}

/// subuid/subgid lines: `owner:start:count`; malformed lines (wrong field count, bad numbers, an empty range or
/// one past the 32-bit id space) are skipped.
fn parse_subid(text: &str) -> Vec<SubId> {
    records(text)
        .filter_map(|f| {
            if f.len() != 3 || f[0].is_empty() {
                return None;
            }
            let entry = SubId {
                owner: f[0].to_string(),
                start: parse_id(f[1])?,
                count: parse_id(f[2])?,
            };
            (entry.count > 0 && entry.end() <= ID_SPACE).then_some(entry)
        })
        .collect()
}

/// A file's text; a missing file reads as empty. Invalid UTF-8 is replaced, never fatal.
fn read_text(path: &Path) -> Result<String, UsernsError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UsernsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn resolve_parsed(user: Who, group: Option<Who>, files: &IdFiles) -> Result<Remap, UsernsError> {
    let passwd = parse_passwd(&read_text(&files.passwd)?);
    let groups = parse_group(&read_text(&files.group)?);
    let user_entry = match &user {
        Who::Name(name) => {
            passwd
                .iter()
                .find(|a| &a.name == name)
                .ok_or_else(|| UsernsError::UnknownUser {
                    name: name.clone(),
                    path: files.passwd.clone(),
                })?
        }
        Who::Id(uid) => passwd
            .iter()
            .find(|a| a.id == *uid)
            .ok_or_else(|| UsernsError::UnknownUid {
                uid: *uid,
                path: files.passwd.clone(),
            })?,
    };
    let group_entry = match &group {
        Some(Who::Name(name)) => {
            groups
                .iter()
                .find(|g| &g.name == name)
                .ok_or_else(|| UsernsError::UnknownGroup {
                    name: name.clone(),
                    path: files.group.clone(),
                })?
        }
        Some(Who::Id(gid)) => {
            groups
                .iter()
                .find(|g| g.id == *gid)
                .ok_or_else(|| UsernsError::UnknownGid {
                    gid: *gid,
                    path: files.group.clone(),
                })?
        }
        None => {
            let own = match &user {
                Who::Name(_) => groups.iter().find(|g| g.name == user_entry.name),
                Who::Id(uid) => groups.iter().find(|g| g.id == *uid),
            };
            own.or_else(|| groups.iter().find(|g| g.id == user_entry.gid))
                .ok_or_else(|| UsernsError::NoGroupForUser {
                    user: user_entry.name.clone(),
                    gid: match &user {
                        Who::Id(uid) => *uid,
                        Who::Name(_) => user_entry.gid,
                    },
                    path: files.group.clone(),
                })?
        }
    };

    let subuid = parse_subid(&read_text(&files.subuid)?);
    let user_keys = keys(user_entry);
    let uid_ranges = matching(&subuid, &user_keys);
    let uids = mapping(
        uid_ranges,
        "uid",
        &format!("user {}", user_entry.name),
        &files.subuid,
    )?;

    let subgid = parse_subid(&read_text(&files.subgid)?);
    let by_group = matching(&subgid, &keys(group_entry));
    let (gid_ranges, gid_owner) = if !by_group.is_empty() {
        (by_group, format!("group {}", group_entry.name))
    } else {
        let owner = if group_entry.name == user_entry.name {
            format!("group {}", group_entry.name)
        } else {
            format!("group {} or user {}", group_entry.name, user_entry.name)
        };
        (matching(&subgid, &user_keys), owner)
    };
    let gids = mapping(gid_ranges, "gid", &gid_owner, &files.subgid)?;

    Ok(Remap {
        user: user_entry.name.clone(),
        group: group_entry.name.clone(),
        uids,
        gids,
    })
}

/// The names a subordinate file may list an account under: its name and its id.
fn keys(account: &Account) -> [String; 2] {
    [account.name.clone(), account.id.to_string()]
}

fn matching<'a>(entries: &'a [SubId], keys: &[String]) -> Vec<&'a SubId> {
    entries.iter().filter(|e| keys.contains(&e.owner)).collect()
}

/// Checks an owner's ranges and concatenates them into a mapping.
fn mapping(
    ranges: Vec<&SubId>,
    kind: &'static str,
    owner: &str,
    path: &Path,
) -> Result<Vec<IdRange>, UsernsError> {
    if ranges.is_empty() {
        return Err(UsernsError::NoRange {
            kind,
            owner: owner.to_string(),
            path: path.to_path_buf(),
        });
    }
    if ranges.len() > MAX_RANGES {
        return Err(UsernsError::TooManyRanges {
            kind,
            owner: owner.to_string(),
            path: path.to_path_buf(),
            count: ranges.len(),
        });
    }
    if let Some(r) = ranges.iter().find(|r| r.start == 0) {
        return Err(UsernsError::IncludesHostRoot {
            kind,
            owner: owner.to_string(),
            path: path.to_path_buf(),
            range: r.span(),
        });
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| (r.start, r.count));
    if let Some(pair) = sorted
        .windows(2)
        .find(|w| w[1].overlaps(u64::from(w[0].start), w[0].end()))
    {
        return Err(UsernsError::Overlap {
            kind,
            owner: owner.to_string(),
            path: path.to_path_buf(),
            first: pair[0].span(),
            second: pair[1].span(),
        });
    }
    let total: u64 = ranges.iter().map(|r| u64::from(r.count)).sum();
    if total < u64::from(MIN_IDS) {
        return Err(UsernsError::TooFewIds {
            kind,
            owner: owner.to_string(),
            path: path.to_path_buf(),
            total,
        });
    }
    // Disjoint ranges inside the 32-bit id space hold at most 2^32 ids together, so every range starts at a
    // container id below 2^32.
    let mut next: u64 = 0;
    Ok(ranges
        .iter()
        .map(|r| {
            let range = IdRange {
                container: u32::try_from(next).unwrap_or(u32::MAX),
                host: r.start,
                size: r.count,
            };
            next += u64::from(r.count);
            range
        })
        .collect())
}

/// An exclusive `flock`, released when dropped (the file is closed).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path) -> Result<Self, UsernsError> {
        let err = |source| UsernsError::Lock {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(err(e.into())),
            }
        }
        Ok(Self { _file: file })
    }
}

/// Creates the default user, its group and its subordinate ranges where they are missing, under the lock.
/// Returns whether anything changed.
fn ensure_default(files: &IdFiles) -> Result<bool, UsernsError> {
    let _lock = FileLock::acquire(&files.lock_path())?;
    let mut changed = ensure_default_account(files)?;

    let passwd = parse_passwd(&read_text(&files.passwd)?);
    let groups = parse_group(&read_text(&files.group)?);
    let user = passwd
        .iter()
        .find(|a| a.name == DEFAULT_USER)
        .ok_or_else(|| UsernsError::UnknownUser {
            name: DEFAULT_USER.to_string(),
            path: files.passwd.clone(),
        })?;
    let user_keys = keys(user);
    let mut gid_keys = user_keys.to_vec();
    if let Some(group) = groups.iter().find(|g| g.name == DEFAULT_USER) {
        gid_keys.extend(keys(group));
    }

    let subuid = parse_subid(&read_text(&files.subuid)?);
    let subgid = parse_subid(&read_text(&files.subgid)?);
    let have_uids = subuid.iter().find(|e| user_keys.contains(&e.owner));
    let have_gids = subgid.iter().find(|e| gid_keys.contains(&e.owner));
    let line = |start: u64| format!("{DEFAULT_USER}:{start}:{MIN_IDS}");
    let no_free = || UsernsError::NoFreeRange {
        subuid: files.subuid.clone(),
        subgid: files.subgid.clone(),
    };
    match (have_uids, have_gids) {
        (Some(_), Some(_)) => {}
        (None, None) => {
            let all: Vec<&SubId> = subuid.iter().chain(&subgid).collect();
            let start = free_start(&all).ok_or_else(no_free)?;
            append_line(&files.subuid, &line(start))?;
            append_line(&files.subgid, &line(start))?;
            changed = true;
        }
        (Some(uids), None) => {
            let start = same_or_free(uids.start, &subgid).ok_or_else(no_free)?;
            append_line(&files.subgid, &line(start))?;
            changed = true;
        }
        (None, Some(gids)) => {
            let start = same_or_free(gids.start, &subuid).ok_or_else(no_free)?;
            append_line(&files.subuid, &line(start))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// `start` when `MIN_IDS` ids from it are free in `entries`, else the first free aligned start.
fn same_or_free(start: u32, entries: &[SubId]) -> Option<u64> {
    let start = u64::from(start);
    let end = start + u64::from(MIN_IDS);
    let all: Vec<&SubId> = entries.iter().collect();
    if start > 0 && end <= ID_SPACE && !all.iter().any(|e| e.overlaps(start, end)) {
        return Some(start);
    }
    free_start(&all)
}

/// The first multiple of [`MIN_IDS`] at or above [`FIRST_START`] whose [`MIN_IDS`] ids overlap no entry.
fn free_start(entries: &[&SubId]) -> Option<u64> {
    let step = u64::from(MIN_IDS);
    let mut start = FIRST_START.div_ceil(step) * step;
    while start + step <= ID_SPACE {
        let end = start + step;
        match entries
            .iter()
            .filter(|e| e.overlaps(start, end))
            .map(|e| e.end())
            .max()
        {
            None => return Some(start),
            // Jump past the blocking ranges to the next aligned start.
            Some(blocked_until) => start = blocked_until.div_ceil(step) * step,
        }
    }
    None
}

/// Creates the default user and group where missing: with `useradd`/`groupadd` for the system's files when the
/// tools exist, else by appending the entries.
fn ensure_default_account(files: &IdFiles) -> Result<bool, UsernsError> {
    let passwd = parse_passwd(&read_text(&files.passwd)?);
    let groups = parse_group(&read_text(&files.group)?);
    let user = passwd.iter().find(|a| a.name == DEFAULT_USER);
    let group = groups.iter().find(|g| g.name == DEFAULT_USER);
    if user.is_some() && group.is_some() {
        return Ok(false);
    }
    if files.are_system_accounts() {
        let useradd = find_tool("useradd");
        let groupadd = find_tool("groupadd");
        match (user, group, useradd, groupadd) {
            (None, None, Some(tool), _) => {
                run_tool("user", &tool, &["--user-group"])?;
                return Ok(true);
            }
            (None, Some(_), Some(tool), _) => {
                run_tool("user", &tool, &["--gid", DEFAULT_USER])?;
                return Ok(true);
            }
            (Some(_), None, _, Some(tool)) => {
                run_tool("group", &tool, &[])?;
                return Ok(true);
            }
            _ => {}
        }
    }

    // Append the entries: the group first, so that the user's primary gid exists.
    let gid = match group {
        Some(g) => g.id,
        None => {
            let used: HashSet<u32> = groups.iter().map(|g| g.id).collect();
            let also: HashSet<u32> = if user.is_none() {
                passwd.iter().map(|a| a.id).collect()
            } else {
                HashSet::new()
            };
            let gid = pick_id(user.map(|u| u.id), &used, &also).ok_or_else(|| UsernsError::NoFreeId {
                what: "group",
                path: files.group.clone(),
            })?;
            append_line(&files.group, &format!("{DEFAULT_USER}:x:{gid}:"))?;
            gid
        }
    };
    if user.is_none() {
        let used: HashSet<u32> = passwd.iter().map(|a| a.id).collect();
        let uid = pick_id(Some(gid), &used, &HashSet::new()).ok_or_else(|| UsernsError::NoFreeId {
            what: "user",
            path: files.passwd.clone(),
        })?;
        append_line(
            &files.passwd,
            &format!("{DEFAULT_USER}:x:{uid}:{gid}:Berth userns-remap:/nonexistent:{NOLOGIN}"),
        )?;
    }
    Ok(true)
}

/// `preferred` when it is a free system id, else the highest free system id (as `useradd --system` picks).
fn pick_id(preferred: Option<u32>, used: &HashSet<u32>, also_used: &HashSet<u32>) -> Option<u32> {
    let free = |id: &u32| !used.contains(id) && !also_used.contains(id);
    preferred
        .filter(|id| SYSTEM_IDS.contains(id) && free(id))
        .or_else(|| SYSTEM_IDS.rev().find(free))
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Runs `useradd`/`groupadd` for the default user with the system-account options plus `extra`.
fn run_tool(what: &'static str, tool: &Path, extra: &[&str]) -> Result<(), UsernsError> {
    let mut args: Vec<&str> = vec!["--system"];
    if what == "user" {
        args.extend(["--no-create-home", "--shell", NOLOGIN]);
    }
    args.extend(extra);
    args.push(DEFAULT_USER);
    let command = format!("{} {}", tool.display(), args.join(" "));
    let output = Command::new(tool)
        .args(&args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| UsernsError::Command {
            what,
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(UsernsError::Command {
        what,
        command,
        detail: format!("{}: {}", output.status, stderr.trim()),
    })
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Appends `line` to `path` (creating it with mode 0644), atomically.
fn append_line(path: &Path, line: &str) -> Result<(), UsernsError> {
    let write_err = |source| UsernsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (mut bytes, mode, owner) = match std::fs::read(path) {
        Ok(bytes) => {
            let meta = std::fs::metadata(path).map_err(|source| UsernsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            (bytes, meta.mode() & 0o7777, Some((meta.uid(), meta.gid())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0o644, None),
        Err(source) => {
            return Err(UsernsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    write_atomic(path, &bytes, mode, owner).map_err(write_err)
}

/// Writes `bytes` to a temporary file next to `path` with `mode` and `owner`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.berth-tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = write_and_rename(&tmp, path, dir, bytes, mode, owner);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_and_rename(
    tmp: &Path,
    path: &Path,
    dir: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(bytes)?;
    if let Some((uid, gid)) = owner {
        let meta = file.metadata()?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    // After fchown, which may clear set-id bits.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.sync_all()?;
    std::fs::rename(tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        files: IdFiles,
    }

    const PASSWD: &str = "\
# a comment
root:x:0:0:root:/root:/bin/bash

alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:100:Bob:/home/bob:/bin/sh
this line is malformed
carol:x:notanumber:1002::/home/carol:/bin/sh
+nisuser::::::
dave:x:1003:1003
";

    const GROUP: &str = "\
root:x:0:
users:x:100:bob
alice:x:1000:
# staff below
staff:x:50:alice,bob

broken
dave:x:1003:
";

    fn fixture(subuid: &str, subgid: &str) -> Fixture {
        fixture_with(PASSWD, GROUP, subuid, subgid)
    }

    fn fixture_with(passwd: &str, group: &str, subuid: &str, subgid: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = IdFiles::in_dir(dir.path());
        std::fs::write(&files.passwd, passwd).expect("write passwd");
        std::fs::write(&files.group, group).expect("write group");
        std::fs::write(&files.subuid, subuid).expect("write subuid");
        std::fs::write(&files.subgid, subgid).expect("write subgid");
        Fixture { _dir: dir, files }
    }

    fn range(container: u32, host: u32, size: u32) -> IdRange {
        IdRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn user_alone_uses_its_group_and_ranges() {
        let f = fixture(
            "# comment\n\nbob:200000:65536\nalice:100000:65536\ngarbage\nalice:x:65536\n",
            "alice:300000:65536\n",
        );
        let remap = Remap::resolve("alice", &f.files).expect("resolve alice");
        assert_eq!(remap.user, "alice");
        assert_eq!(remap.group, "alice");
        assert_eq!(remap.uids, vec![range(0, 100_000, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 300_000, 65536)]);
        assert_eq!(remap.root(), (100_000, 300_000));
    }

    #[test]
    fn user_without_own_group_uses_primary_group() {
        let f = fixture("bob:200000:65536\n", "bob:200000:65536\n");
        let remap = Remap::resolve("bob", &f.files).expect("resolve bob");
        assert_eq!(remap.group, "users");
        // No subgid range for the group "users": the user's is used, as docker does.
        assert_eq!(remap.gids, vec![range(0, 200_000, 65536)]);
    }

    #[test]
    fn user_and_group() {
        let f = fixture("alice:100000:65536\n", "alice:100000:65536\nstaff:400000:65536\n");
        let remap = Remap::resolve("alice:staff", &f.files).expect("resolve alice:staff");
        assert_eq!(remap.user, "alice");
        assert_eq!(remap.group, "staff");
        assert_eq!(remap.uids, vec![range(0, 100_000, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 400_000, 65536)]);
        assert_eq!(remap.dir_name(), "100000.400000");
    }

    #[test]
    fn numeric_uid_and_gid() {
        let f = fixture("alice:100000:65536\n", "alice:100000:65536\nstaff:400000:65536\n");
        let remap = Remap::resolve("1000:50", &f.files).expect("resolve 1000:50");
        assert_eq!(remap.user, "alice");
        assert_eq!(remap.group, "staff");
        assert_eq!(remap.uids, vec![range(0, 100_000, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 400_000, 65536)]);

        let remap = Remap::resolve("1000", &f.files).expect("resolve 1000");
        assert_eq!(remap.group, "alice");
        assert_eq!(remap.gids, vec![range(0, 100_000, 65536)]);

        let err = Remap::resolve("4242", &f.files).expect_err("unknown uid");
        assert!(matches!(err, UsernsError::UnknownUid { uid: 4242, .. }), "{err}");
        let err = Remap::resolve("1000:4242", &f.files).expect_err("unknown gid");
        assert!(matches!(err, UsernsError::UnknownGid { gid: 4242, .. }), "{err}");
    }

    #[test]
    fn ranges_listed_by_name_or_numeric_id() {
        // dave is listed by uid in subuid and by gid in subgid.
        let f = fixture("1003:500000:65536\n", "1003:600000:65536\n");
        let remap = Remap::resolve("dave", &f.files).expect("resolve dave");
        assert_eq!(remap.uids, vec![range(0, 500_000, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 600_000, 65536)]);
        // By name and by id together: both, in file order.
        let f = fixture("dave:500000:65536\n1003:700000:1000\n", "dave:600000:65536\n");
        let remap = Remap::resolve("1003", &f.files).expect("resolve 1003");
        assert_eq!(
            remap.uids,
            vec![range(0, 500_000, 65536), range(65536, 700_000, 1000)]
        );
    }

    #[test]
    fn several_ranges_are_concatenated_in_file_order() {
        let f = fixture(
            "alice:300000:1000\nbob:1000000:65536\nalice:100000:64536\nalice:900000:10\n",
            "alice:100000:65536\n",
        );
        let remap = Remap::resolve("alice", &f.files).expect("resolve alice");
        assert_eq!(
            remap.uids,
            vec![
                range(0, 300_000, 1000),
                range(1000, 100_000, 64536),
                range(65536, 900_000, 10)
            ]
        );
        assert_eq!(remap.root(), (300_000, 100_000));
        assert_eq!(remap.to_host_uid(0), Some(300_000));
        assert_eq!(remap.to_host_uid(999), Some(300_999));
        assert_eq!(remap.to_host_uid(1000), Some(100_000));
        assert_eq!(remap.to_host_uid(65535), Some(164_535));
        assert_eq!(remap.to_host_uid(65545), Some(900_009));
        assert_eq!(remap.to_host_uid(65546), None);
    }

    #[test]
    fn no_range_is_an_error() {
        let f = fixture("bob:200000:65536\n", "alice:100000:65536\n");
        let err = Remap::resolve("alice", &f.files).expect_err("no subuid range");
        assert!(matches!(err, UsernsError::NoRange { kind: "uid", .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "no subordinate uid range for user alice in {}",
                f.files.subuid.display()
            )
        );

        let f = fixture("alice:100000:65536\n", "bob:200000:65536\n");
        let err = Remap::resolve("alice:staff", &f.files).expect_err("no subgid range");
        assert!(matches!(err, UsernsError::NoRange { kind: "gid", .. }), "{err}");
        assert!(err.to_string().contains("group staff or user alice"), "{err}");

        // A missing subuid file is no range, not an I/O failure.
        std::fs::remove_file(&f.files.subuid).expect("remove subuid");
        let err = Remap::resolve("alice", &f.files).expect_err("no subuid file");
        assert!(matches!(err, UsernsError::NoRange { kind: "uid", .. }), "{err}");
    }

    #[test]
    fn too_few_ids_is_an_error() {
        let f = fixture("alice:100000:30000\nalice:200000:35535\n", "alice:100000:65536\n");
        let err = Remap::resolve("alice", &f.files).expect_err("too small");
        assert!(
            matches!(
                err,
                UsernsError::TooFewIds {
                    kind: "uid",
                    total: 65535,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("needs at least 65536 ids"), "{err}");
        assert!(err.to_string().contains("user alice"), "{err}");
    }

    #[test]
    fn overlapping_ranges_are_an_error() {
        let f = fixture("alice:100000:65536\nalice:150000:65536\n", "alice:100000:65536\n");
        let err = Remap::resolve("alice", &f.files).expect_err("overlap");
        match &err {
            UsernsError::Overlap { first, second, .. } => {
                assert_eq!(first, "100000-165535");
                assert_eq!(second, "150000-215535");
            }
            other => panic!("expected an overlap, got {other}"),
        }
        // Adjacent ranges do not overlap.
        let f = fixture("alice:100000:32768\nalice:132768:32768\n", "alice:100000:65536\n");
        let remap = Remap::resolve("alice", &f.files).expect("adjacent ranges");
        assert_eq!(remap.uids.len(), 2);
    }

    #[test]
    fn range_including_host_root_is_an_error() {
        let f = fixture("alice:100000:65536\n", "alice:0:65536\n");
        let err = Remap::resolve("alice", &f.files).expect_err("host root");
        assert!(
            matches!(&err, UsernsError::IncludesHostRoot { kind: "gid", range, .. } if range == "0-65535"),
            "{err}"
        );
        assert!(err.to_string().contains("host gid 0"), "{err}");
    }

    #[test]
    fn unknown_names_and_bad_values() {
        let f = fixture("alice:100000:65536\n", "alice:100000:65536\n");
        let err = Remap::resolve("nobody-here", &f.files).expect_err("unknown user");
        assert!(matches!(err, UsernsError::UnknownUser { .. }), "{err}");
        assert!(err.to_string().contains("\"nobody-here\""), "{err}");
        let err = Remap::resolve("alice:nogroup", &f.files).expect_err("unknown group");
        assert!(matches!(err, UsernsError::UnknownGroup { .. }), "{err}");
        // carol's line is malformed (uid not a number): she does not exist.
        let err = Remap::resolve("carol", &f.files).expect_err("malformed user");
        assert!(matches!(err, UsernsError::UnknownUser { .. }), "{err}");
        for bad in ["", "a:b:c", ":staff", "alice:", "default:staff", "al ice"] {
            let err = Remap::resolve(bad, &f.files).expect_err(bad);
            assert!(matches!(err, UsernsError::InvalidSpec { .. }), "{bad}: {err}");
        }
        // A user without a same-named group whose primary gid has no group.
        let f = fixture_with(
            "erin:x:1004:7777::/:/bin/sh\n",
            "users:x:100:\n",
            "erin:100000:65536\n",
            "erin:100000:65536\n",
        );
        let err = Remap::resolve("erin", &f.files).expect_err("no group");
        assert!(
            matches!(err, UsernsError::NoGroupForUser { gid: 7777, .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_subid_lines_are_skipped() {
        let entries = parse_subid(
            "alice:100000\nalice:1:2:3\nalice:-5:65536\nalice:100000:0\nalice:4294967295:2\n\
             :100000:65536\nalice: 100000:65536\nalice:4294901760:65536\r\n  # indented comment\n",
        );
        assert_eq!(
            entries,
            vec![SubId {
                owner: "alice".into(),
                start: 4_294_901_760,
                count: 65536
            }]
        );
        assert!(parse_passwd("\u{0}\u{ff}::::\n:::\n").is_empty());
        assert!(parse_group("x\n::\n").is_empty());
    }

    #[test]
    fn default_creates_user_and_ranges_once() {
        let f = fixture_with(
            "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/:/usr/sbin/nologin\n",
            "root:x:0:\nsvc:x:999:\n",
            // Taken: 131072 (by 100000-165535) and 196608 (by 165536-231071), and 262144 in subgid.
            "alice:100000:65536\nbob:165536:65536\n",
            "alice:100000:65536\nbob:165536:65536\ncarl:300000:10\n",
        );
        let remap = Remap::resolve("default", &f.files).expect("resolve default");
        assert_eq!(remap.user, DEFAULT_USER);
        assert_eq!(remap.group, DEFAULT_USER);
        assert_eq!(remap.uids, vec![range(0, 327_680, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 327_680, 65536)]);
        assert_eq!(remap.dir_name(), "327680.327680");

        let passwd = std::fs::read_to_string(&f.files.passwd).expect("read passwd");
        let group = std::fs::read_to_string(&f.files.group).expect("read group");
        let subuid = std::fs::read_to_string(&f.files.subuid).expect("read subuid");
        let subgid = std::fs::read_to_string(&f.files.subgid).expect("read subgid");
        assert!(
            passwd.ends_with("berthremap:x:998:998:Berth userns-remap:/nonexistent:/usr/sbin/nologin\n"),
            "{passwd}"
        );
        assert!(group.ends_with("svc:x:999:\nberthremap:x:998:\n"), "{group}");
        assert!(
            subuid.ends_with("bob:165536:65536\nberthremap:327680:65536\n"),
            "{subuid}"
        );
        assert!(
            subgid.ends_with("carl:300000:10\nberthremap:327680:65536\n"),
            "{subgid}"
        );
        assert!(f.files.lock_path().exists());
        assert_eq!(f.files.lock_path().parent(), f.files.subuid.parent());

        // The second call changes nothing: same contents, same inodes (nothing was rewritten).
        let inodes = |files: &IdFiles| {
            [&files.passwd, &files.group, &files.subuid, &files.subgid]
                .map(|p| std::fs::metadata(p).expect("stat").ino())
        };
        let before = inodes(&f.files);
        assert!(!ensure_default(&f.files).expect("ensure again"));
        let again = Remap::resolve("default", &f.files).expect("resolve default again");
        assert_eq!(again, remap);
        assert_eq!(inodes(&f.files), before);
        assert_eq!(std::fs::read_to_string(&f.files.passwd).expect("passwd"), passwd);
        assert_eq!(std::fs::read_to_string(&f.files.group).expect("group"), group);
        assert_eq!(std::fs::read_to_string(&f.files.subuid).expect("subuid"), subuid);
        assert_eq!(std::fs::read_to_string(&f.files.subgid).expect("subgid"), subgid);
        // No temporary file is left behind.
        let dir = f.files.passwd.parent().expect("dir");
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("berth-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn default_keeps_mode_and_completes_what_is_missing() {
        // The user exists with a uid range but without a group or a gid range; files lack a final newline.
        let f = fixture_with(
            "root:x:0:0:root:/root:/bin/bash\nberthremap:x:990:990::/:/usr/sbin/nologin",
            "root:x:0:",
            "berthremap:500000:65536",
            "",
        );
        std::fs::set_permissions(&f.files.subuid, Permissions::from_mode(0o640)).expect("chmod");
        std::fs::set_permissions(&f.files.subgid, Permissions::from_mode(0o604)).expect("chmod");
        let remap = Remap::resolve("default", &f.files).expect("resolve default");
        // The gid range takes the same start as the uid range when it is free.
        assert_eq!(remap.uids, vec![range(0, 500_000, 65536)]);
        assert_eq!(remap.gids, vec![range(0, 500_000, 65536)]);
        assert_eq!(remap.group, DEFAULT_USER);
        assert_eq!(
            std::fs::read_to_string(&f.files.group).expect("group"),
            "root:x:0:\nberthremap:x:990:\n"
        );
        assert_eq!(
            std::fs::read_to_string(&f.files.subuid).expect("subuid"),
            "berthremap:500000:65536"
        );
        assert_eq!(
            std::fs::read_to_string(&f.files.subgid).expect("subgid"),
            "berthremap:500000:65536\n"
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&f.files.subuid), 0o640);
        assert_eq!(mode(&f.files.subgid), 0o604);
    }

    #[test]
    fn default_in_missing_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = IdFiles::in_dir(dir.path());
        let remap = Remap::resolve("default", &files).expect("resolve default");
        assert_eq!(remap.root(), (131_072, 131_072));
        let mode = std::fs::metadata(&files.subuid).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            std::fs::read_to_string(&files.passwd).expect("passwd"),
            "berthremap:x:999:999:Berth userns-remap:/nonexistent:/usr/sbin/nologin\n"
        );
    }

    #[test]
    fn default_concurrent_callers_create_once() {
        let f = fixture_with("root:x:0:0::/:/bin/sh\n", "root:x:0:\n", "", "");
        let files = f.files.clone();
        let remaps: Vec<Remap> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Remap::resolve("default", &files)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("resolve"))
                .collect()
        });
        assert!(remaps.windows(2).all(|w| w[0] == w[1]));
        let subuid = std::fs::read_to_string(&files.subuid).expect("subuid");
        assert_eq!(subuid, "berthremap:131072:65536\n");
        let passwd = std::fs::read_to_string(&files.passwd).expect("passwd");
        assert_eq!(passwd.matches("berthremap").count(), 1, "{passwd}");
    }

    #[test]
    fn free_start_skips_taken_ranges() {
        let taken = [
            SubId {
                owner: "a".into(),
                start: 131_072,
                count: 1,
            },
            SubId {
                owner: "b".into(),
                start: 196_607,
                count: 2,
            },
        ];
        let refs: Vec<&SubId> = taken.iter().collect();
        assert_eq!(free_start(&refs), Some(262_144));
        assert_eq!(free_start(&[]), Some(131_072));
        let full = SubId {
            owner: "all".into(),
            start: 1,
            count: u32::MAX,
        };
        assert_eq!(free_start(&[&full]), None);
    }

    #[test]
    fn oci_mappings_and_lookups() {
        let remap = Remap {
            user: "u".into(),
            group: "g".into(),
            uids: vec![range(0, 165_536, 65536), range(65536, 300_000, 100)],
            gids: vec![range(0, 200_000, 65536)],
        };
        let uids = remap.oci_uid_mappings();
        assert_eq!(uids.len(), 2);
        assert_eq!(
            (uids[1].container_id(), uids[1].host_id(), uids[1].size()),
            (65536, 300_000, 100)
        );
        let json = serde_json::to_value(remap.oci_gid_mappings()).expect("json");
        assert_eq!(
            json,
            serde_json::json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }])
        );
        assert_eq!(remap.root(), (165_536, 200_000));
        assert_eq!(remap.dir_name(), "165536.200000");
        assert_eq!(remap.to_host_uid(0), Some(165_536));
        assert_eq!(remap.to_host_uid(65535), Some(231_071));
        assert_eq!(remap.to_host_uid(65536), Some(300_000));
        assert_eq!(remap.to_host_uid(65636), None);
        assert_eq!(remap.to_host_gid(1000), Some(201_000));
        assert_eq!(remap.to_host_gid(65536), None);
        assert_eq!(remap.to_host_gid(u32::MAX), None);
    }

    #[test]
    fn system_files_are_etc() {
        let files = IdFiles::system();
        assert_eq!(files.subgid, Path::new("/etc/subgid"));
        assert!(files.are_system_accounts());
        assert_eq!(files.lock_path(), Path::new("/etc/.subuid.berth-lock"));
        assert!(!IdFiles::in_dir(Path::new("/tmp/x")).are_system_accounts());
        assert_eq!(
            IdFiles::in_dir(Path::new("")).lock_path(),
            Path::new("./.subuid.berth-lock")
        );
    }
}
