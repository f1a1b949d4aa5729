//! Mount options of `config.json`, split into mount(2) flags, propagation changes, recursive attributes
//! (mount_setattr(2)) and the data string, the way runc splits them: an option berth does not know goes to
//! the data string for the filesystem to interpret.

use super::RootfsError;
use std::path::Path;

// The MS_* values all fit in 32 bits; rustix's MountFlags is a c_uint.
pub(crate) const MS_RDONLY: u32 = libc::MS_RDONLY as u32;
pub(crate) const MS_NOSUID: u32 = libc::MS_NOSUID as u32;
pub(crate) const MS_NODEV: u32 = libc::MS_NODEV as u32;
pub(crate) const MS_NOEXEC: u32 = libc::MS_NOEXEC as u32;
pub(crate) const MS_SYNCHRONOUS: u32 = libc::MS_SYNCHRONOUS as u32;
pub(crate) const MS_REMOUNT: u32 = libc::MS_REMOUNT as u32;
pub(crate) const MS_MANDLOCK: u32 = libc::MS_MANDLOCK as u32;
pub(crate) const MS_DIRSYNC: u32 = libc::MS_DIRSYNC as u32;
pub(crate) const MS_NOSYMFOLLOW: u32 = 256;
pub(crate) const MS_NOATIME: u32 = libc::MS_NOATIME as u32;
pub(crate) const MS_NODIRATIME: u32 = libc::MS_NODIRATIME as u32;
pub(crate) const MS_BIND: u32 = libc::MS_BIND as u32;
pub(crate) const MS_REC: u32 = libc::MS_REC as u32;
pub(crate) const MS_SILENT: u32 = libc::MS_SILENT as u32;
pub(crate) const MS_POSIXACL: u32 = libc::MS_POSIXACL as u32;
pub(crate) const MS_UNBINDABLE: u32 = libc::MS_UNBINDABLE as u32;
pub(crate) const MS_PRIVATE: u32 = libc::MS_PRIVATE as u32;
pub(crate) const MS_SLAVE: u32 = libc::MS_SLAVE as u32;
pub(crate) const MS_SHARED: u32 = libc::MS_SHARED as u32;
pub(crate) const MS_RELATIME: u32 = libc::MS_RELATIME as u32;
pub(crate) const MS_I_VERSION: u32 = libc::MS_I_VERSION as u32;
pub(crate) const MS_STRICTATIME: u32 = libc::MS_STRICTATIME as u32;
pub(crate) const MS_LAZYTIME: u32 = libc::MS_LAZYTIME as u32;

/// The flags that the kernel locks on mounts inherited into a less privileged user namespace
/// (`MNT_LOCK_*`): a bind-remount must keep them.
pub(crate) const LOCKABLE_FLAGS: u32 =
    MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_NOATIME | MS_RELATIME | MS_STRICTATIME | MS_NODIRATIME;
const ATIME_FLAGS: u32 = MS_NOATIME | MS_RELATIME | MS_STRICTATIME | MS_NODIRATIME;

// MOUNT_ATTR_* for mount_setattr(2).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR_ATIME: u64 = 0x70;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// A propagation mode: its MS_* bits and its name for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Propagation {
    pub flags: u32,
    pub name: &'static str,
}

/// Parses a propagation mode name (`rootfsPropagation` or a mount option).
pub(crate) fn propagation(name: &str) -> Option<Propagation> {
    let (flags, name) = match name {
        "private" => (MS_PRIVATE, "private"),
        "rprivate" => (MS_PRIVATE | MS_REC, "rprivate"),
        "slave" => (MS_SLAVE, "slave"),
        "rslave" => (MS_SLAVE | MS_REC, "rslave"),
        "shared" => (MS_SHARED, "shared"),
        "rshared" => (MS_SHARED | MS_REC, "rshared"),
        "unbindable" => (MS_UNBINDABLE, "unbindable"),
        "runbindable" => (MS_UNBINDABLE | MS_REC, "runbindable"),
        _ => return None,
    };
    Some(Propagation { flags, name })
}

/// `linux.rootfsPropagation`, validated. `None` when absent or empty.
pub(crate) fn root_propagation(value: Option<&String>) -> Result<Option<Propagation>, RootfsError> {
    match value.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => propagation(v)
            .map(Some)
            .ok_or_else(|| RootfsError::InvalidPropagation { value: v.to_owned() }),
    }
}

/// Recursive attributes for mount_setattr(2) (`rro`, `rnosuid`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecAttr {
    pub set: u64,
    pub clr: u64,
}

impl RecAttr {
    pub(crate) fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }
}

/// One mount's options, parsed once.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// MS_* flags to set.
    pub flags: u32,
    /// MS_* flags the options explicitly clear (`rw`, `suid`, `dev`, ...).
    pub cleared: u32,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<Propagation>,
    /// Recursive attributes, applied after the mount.
    pub rec_attr: RecAttr,
    /// Options for the filesystem, comma separated.
    pub data: String,
}

enum Opt {
    Set(u32),
    Clear(u32),
    RecSet(u64, u64),
    RecClear(u64),
    Propagation(Propagation),
    Unsupported,
    Data,
}

fn classify(option: &str) -> Opt {
    use Opt::*;
    if let Some(p) = propagation(option) {
        return Propagation(p);
    }
    match option {
        "acl" => Set(MS_POSIXACL),
        "async" => Clear(MS_SYNCHRONOUS),
        "atime" => Clear(MS_NOATIME),
        "bind" => Set(MS_BIND),
        "defaults" => Set(0),
        "dev" => Clear(MS_NODEV),
        "diratime" => Clear(MS_NODIRATIME),
        "dirsync" => Set(MS_DIRSYNC),
        "exec" => Clear(MS_NOEXEC),
        "iversion" => Set(MS_I_VERSION),
        "lazytime" => Set(MS_LAZYTIME),
        "loud" => Clear(MS_SILENT),
        "mand" => Set(MS_MANDLOCK),
        "noacl" => Clear(MS_POSIXACL),
        "noatime" => Set(MS_NOATIME),
        "nodev" => Set(MS_NODEV),
        "nodiratime" => Set(MS_NODIRATIME),
        "noexec" => Set(MS_NOEXEC),
        "noiversion" => Clear(MS_I_VERSION),
        "nolazytime" => Clear(MS_LAZYTIME),
        "nomand" => Clear(MS_MANDLOCK),
        "norelatime" => Clear(MS_RELATIME),
        "nostrictatime" => Clear(MS_STRICTATIME),
        "nosuid" => Set(MS_NOSUID),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "rbind" => Set(MS_BIND | MS_REC),
        "relatime" => Set(MS_RELATIME),
        "remount" => Set(MS_REMOUNT),
        "ro" => Set(MS_RDONLY),
        "rw" => Clear(MS_RDONLY),
        "silent" => Set(MS_SILENT),
        "strictatime" => Set(MS_STRICTATIME),
        "suid" => Clear(MS_NOSUID),
        "sync" => Set(MS_SYNCHRONOUS),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "rro" => RecSet(MOUNT_ATTR_RDONLY, 0),
        "rrw" => RecClear(MOUNT_ATTR_RDONLY),
        "rnosuid" => RecSet(MOUNT_ATTR_NOSUID, 0),
        "rsuid" => RecClear(MOUNT_ATTR_NOSUID),
        "rnodev" => RecSet(MOUNT_ATTR_NODEV, 0),
        "rdev" => RecClear(MOUNT_ATTR_NODEV),
        "rnoexec" => RecSet(MOUNT_ATTR_NOEXEC, 0),
        "rexec" => RecClear(MOUNT_ATTR_NOEXEC),
        "rnodiratime" => RecSet(MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => RecClear(MOUNT_ATTR_NODIRATIME),
        "rrelatime" => RecSet(MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME),
        "rnorelatime" => RecClear(MOUNT_ATTR_ATIME),
        "rnoatime" => RecSet(MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME),
        "ratime" => RecClear(MOUNT_ATTR_NOATIME),
        "rstrictatime" => RecSet(MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME),
        "rnostrictatime" => RecClear(MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => RecSet(MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => RecClear(MOUNT_ATTR_NOSYMFOLLOW),
        // Extensions of runc/crun that change how the mount is made; berth does not implement them, and
        // passing them to the filesystem would only produce a confusing EINVAL.
        "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" | "src-nofollow" => Unsupported,
        // crun's explicit "do not copy up": that is berth's behaviour anyway.
        "notmpcopyup" => Set(0),
        _ => Data,
    }
}

/// Parses the options of the mount on `destination`.
pub(crate) fn parse(options: &[String], destination: &Path) -> Result<MountOptions, RootfsError> {
    let mut out = MountOptions::default();
    for option in options {
        match classify(option) {
            Opt::Set(f) => {
                out.flags |= f;
                out.cleared &= !f;
            }
            Opt::Clear(f) => {
                out.flags &= !f;
                out.cleared |= f;
            }
            Opt::RecSet(set, clr) => {
                out.rec_attr.set |= set;
                out.rec_attr.clr |= clr;
                out.rec_attr.clr &= !set | clr;
            }
            Opt::RecClear(clr) => {
                out.rec_attr.set &= !clr;
                out.rec_attr.clr |= clr;
            }
            Opt::Propagation(p) => out.propagation.push(p),
            Opt::Unsupported => {
                return Err(RootfsError::UnsupportedOption {
                    destination: destination.to_owned(),
                    option: option.clone(),
                });
            }
            Opt::Data => {
                if !out.data.is_empty() {
                    out.data.push(',');
                }
                out.data.push_str(option);
            }
        }
    }
    Ok(out)
}

/// Only the MS_* flags of `options` (what `finalize` needs to remount a tmpfs read-only), without
/// building the data string.
pub(crate) fn flags_only(options: &[String]) -> u32 {
    let mut flags = 0;
    for option in options {
        match classify(option) {
            Opt::Set(f) => flags |= f,
            Opt::Clear(f) => flags &= !f,
            _ => {}
        }
    }
    flags
}

impl MountOptions {
    /// Whether a bind mount needs a bind-remount to apply per-mount flags (runc's rule: any flag besides
    /// bind/rec/remount set, or any flag explicitly cleared).
    pub(crate) fn needs_bind_remount(&self) -> bool {
        self.flags & !(MS_BIND | MS_REC | MS_REMOUNT) != 0 || self.cleared != 0
    }

    /// The flags for a bind-remount when the first attempt failed with EPERM because the source mount has
    /// locked flags: keep the source's lockable flags, unless the options clear one of them (an error) or
    /// ask for a different atime mode (an error, as the kernel would silently keep the old one).
    pub(crate) fn with_locked(&self, source_flags: u32) -> Result<u32, u32> {
        let cannot_clear = source_flags & self.cleared & LOCKABLE_FLAGS;
        if cannot_clear != 0 {
            return Err(cannot_clear);
        }
        let wanted_atime = self.flags & ATIME_FLAGS;
        if wanted_atime != 0 && wanted_atime != source_flags & ATIME_FLAGS {
            return Err(source_flags & ATIME_FLAGS);
        }
        Ok(self.flags | (source_flags & LOCKABLE_FLAGS))
    }
}

/// Converts `statfs.f_flags` (ST_*) to MS_* flags. The ST_* values of the lockable flags equal the MS_*
/// ones, except the atime modes; a mount without an atime flag in statfs is strictatime.
pub(crate) fn statfs_to_mount_flags(st_flags: u64) -> u32 {
    const ST_RDONLY: u64 = 0x1;
    const ST_NOSUID: u64 = 0x2;
    const ST_NODEV: u64 = 0x4;
    const ST_NOEXEC: u64 = 0x8;
    const ST_NOATIME: u64 = 0x400;
    const ST_NODIRATIME: u64 = 0x800;
    const ST_RELATIME: u64 = 0x1000;
    const ST_NOSYMFOLLOW: u64 = 0x2000;
    let pairs = [
        (ST_RDONLY, MS_RDONLY),
        (ST_NOSUID, MS_NOSUID),
        (ST_NODEV, MS_NODEV),
        (ST_NOEXEC, MS_NOEXEC),
        (ST_NOATIME, MS_NOATIME),
        (ST_NODIRATIME, MS_NODIRATIME),
        (ST_RELATIME, MS_RELATIME),
        (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
    ];
    let mut flags = 0;
    for (st, ms) in pairs {
        if st_flags & st != 0 {
            flags |= ms;
        }
    }
    if flags & (MS_NOATIME | MS_RELATIME) == 0 {
        flags |= MS_STRICTATIME;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        let v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        parse(&v, Path::new("/x")).unwrap_or_else(|e| panic!("parse {list:?}: {e}"))
    }

    #[test]
    fn flags_and_data_are_split() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MS_NOSUID | MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
        assert!(o.rec_attr.is_empty());

        let o = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MS_NOSUID | MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = opts(&["ro", "rw"]);
        assert_eq!(o.flags, 0);
        assert_eq!(o.cleared, MS_RDONLY);
        let o = opts(&["rw", "ro"]);
        assert_eq!(o.flags, MS_RDONLY);
        assert_eq!(o.cleared, 0);
    }

    #[test]
    fn bind_options() {
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert_eq!(o.flags, MS_BIND | MS_REC | MS_RDONLY);
        assert_eq!(
            o.propagation,
            vec![propagation("rprivate").unwrap_or_else(|| unreachable!())]
        );
        assert!(o.needs_bind_remount());
        assert!(!opts(&["rbind", "rslave"]).needs_bind_remount());
        assert!(!opts(&["bind"]).needs_bind_remount());
        assert!(opts(&["bind", "suid"]).needs_bind_remount());
    }

    #[test]
    fn propagation_names() {
        for (name, flags) in [
            ("private", MS_PRIVATE),
            ("rprivate", MS_PRIVATE | MS_REC),
            ("slave", MS_SLAVE),
            ("rslave", MS_SLAVE | MS_REC),
            ("shared", MS_SHARED),
            ("rshared", MS_SHARED | MS_REC),
            ("unbindable", MS_UNBINDABLE),
            ("runbindable", MS_UNBINDABLE | MS_REC),
        ] {
            assert_eq!(propagation(name).map(|p| p.flags), Some(flags), "{name}");
        }
        assert!(propagation("rsharedx").is_none());
        assert!(root_propagation(None).unwrap_or_else(|e| panic!("{e}")).is_none());
        assert!(
            root_propagation(Some(&String::new()))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let err = root_propagation(Some(&"sideways".to_owned())).err();
        assert!(matches!(err, Some(RootfsError::InvalidPropagation { ref value }) if value == "sideways"));
    }

    #[test]
    fn recursive_attributes() {
        let o = opts(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            o.rec_attr.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.rec_attr.clr, MOUNT_ATTR_ATIME);
        let o = opts(&["rro", "rrw"]);
        assert_eq!(o.rec_attr.set, 0);
        assert_eq!(o.rec_attr.clr, MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn unsupported_extensions_are_errors() {
        let v = vec!["tmpcopyup".to_owned()];
        let err = parse(&v, Path::new("/tmp")).err();
        assert!(
            matches!(err, Some(RootfsError::UnsupportedOption { ref option, .. }) if option == "tmpcopyup")
        );
    }

    #[test]
    fn flags_only_matches_parse() {
        let list: Vec<String> = ["nosuid", "nodev", "ro", "mode=755", "rprivate"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let full = parse(&list, Path::new("/x")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flags_only(&list), full.flags);
    }

    #[test]
    fn locked_flags_are_kept_or_refused() {
        // Source is nosuid,nodev,relatime; the user asks for ro: keep the locked ones.
        let src = MS_NOSUID | MS_NODEV | MS_RELATIME;
        let o = opts(&["bind", "ro"]);
        assert_eq!(o.with_locked(src), Ok(MS_BIND | MS_RDONLY | src));
        // Clearing a locked flag is refused.
        let o = opts(&["bind", "suid"]);
        assert_eq!(o.with_locked(src), Err(MS_NOSUID));
        // A different atime mode is refused.
        let o = opts(&["bind", "noatime"]);
        assert_eq!(o.with_locked(src), Err(MS_RELATIME));
    }

    #[test]
    fn statfs_flags() {
        assert_eq!(
            statfs_to_mount_flags(0x1 | 0x2 | 0x1000),
            MS_RDONLY | MS_NOSUID | MS_RELATIME
        );
        assert_eq!(
            statfs_to_mount_flags(0x4 | 0x8),
            MS_NODEV | MS_NOEXEC | MS_STRICTATIME
        );
    }
}
