use rustix::io::Errno;
use std::path::PathBuf;
use thiserror::Error;

/// Errors of the rootfs setup. Each message reads as a sentence and names the path involved.
#[derive(Debug, Error)]
pub enum RootfsError {
    /// `linux.rootfsPropagation` holds an unknown mode.
    #[error(
        "the rootfs propagation {value:?} is not one of private, rprivate, slave, rslave, shared, rshared, \
         unbindable or runbindable"
    )]
    InvalidPropagation { value: String },

    /// A mount option that berth does not implement.
    #[error("the mount option {option:?} of the mount on {destination} is not supported")]
    UnsupportedOption { destination: PathBuf, option: String },

    /// A bind mount without a source.
    #[error("the bind mount on {destination} has no source")]
    MissingSource { destination: PathBuf },

    /// The propagation of a mount could not be changed.
    #[error("could not make the mount at {path} {mode}")]
    Propagation {
        path: PathBuf,
        mode: &'static str,
        source: Errno,
    },

    /// The rootfs could not be bind-mounted onto itself.
    #[error("could not bind-mount the rootfs {path} onto itself")]
    BindRootfs { path: PathBuf, source: Errno },

    /// The rootfs directory could not be opened.
    #[error("could not open the rootfs {path}")]
    OpenRootfs { path: PathBuf, source: Errno },

    /// A path inside the rootfs could not be resolved.
    #[error("could not resolve {path} inside the rootfs")]
    Resolve { path: PathBuf, source: Errno },

    /// A path inside the rootfs could not be created.
    #[error("could not create {path} inside the rootfs")]
    Create { path: PathBuf, source: Errno },

    /// Resolving a path needed too many symlinks.
    #[error("resolving {path} inside the rootfs needed too many symlinks")]
    TooManySymlinks { path: PathBuf },

    /// The resolved destination is not inside the rootfs (should be impossible with `RESOLVE_IN_ROOT`).
    #[error("the mount destination {path} resolved to {resolved}, which is outside the rootfs {rootfs}")]
    OutsideRootfs {
        path: PathBuf,
        resolved: String,
        rootfs: String,
    },

    /// A mount over the root of the container.
    #[error("the mount destination {path} would cover the root of the container")]
    OnRoot { path: PathBuf },

    /// A mount inside `/proc` that is not on the allow-list.
    #[error("{path} cannot be mounted because it resolves to {resolved}, which is inside /proc")]
    InsideProc { path: PathBuf, resolved: String },

    /// A mount over `/proc` that is not a procfs.
    #[error("{path} cannot be mounted over /proc because it is not of type proc")]
    NotProc { path: PathBuf },

    /// proc and sysfs must be mounted on real directories.
    #[error("{typ} must be mounted on an ordinary directory, and {path} is a symlink or not a directory")]
    NotDirectory { path: PathBuf, typ: String },

    /// The source of a bind mount cannot be inspected.
    #[error("the bind-mount source {path} cannot be accessed")]
    BindSource { path: PathBuf, source: Errno },

    /// A mount(2) call failed.
    #[error("could not mount {what} on {destination}")]
    Mount {
        what: String,
        destination: PathBuf,
        source: Errno,
    },

    /// The flags of a new mount could not be applied.
    #[error("could not apply the mount options to {destination}")]
    Remount { destination: PathBuf, source: Errno },

    /// The user asked to clear a flag that is locked on the source mount.
    #[error("the mount options of {destination} clear flags ({flags:#x}) that are locked on its source")]
    LockedFlags { destination: PathBuf, flags: u32 },

    /// `/proc/self/cgroup` or `/proc/self/mountinfo` could not be read.
    #[error("could not read {path}")]
    ReadProc { path: PathBuf, source: std::io::Error },

    /// A cgroup hierarchy of this process could not be located.
    #[error("the cgroup hierarchy {controllers} of this process has no mount point")]
    CgroupHierarchy { controllers: String },

    /// A device node could not be created.
    #[error("could not create the device {path}")]
    Device { path: PathBuf, source: Errno },

    /// A device of a type that cannot be created.
    #[error("the device {path} has type {typ:?}, which is not one of c, b, u or p")]
    DeviceType { path: PathBuf, typ: String },

    /// A device path that is not a file name below a directory.
    #[error("the device path {path} does not name a file")]
    DevicePath { path: PathBuf },

    /// A symlink could not be created.
    #[error("could not create the symlink {path}")]
    Symlink { path: PathBuf, source: Errno },

    /// `pivot_root` or one of the calls around it failed.
    #[error("could not {step} while pivoting into {path}")]
    PivotRoot {
        step: &'static str,
        path: PathBuf,
        source: Errno,
    },

    /// The no-pivot fallback failed.
    #[error("could not {step} while moving the rootfs {path} onto /")]
    MoveRoot {
        step: &'static str,
        path: PathBuf,
        source: Errno,
    },

    /// A masked path could not be masked.
    #[error("could not mask {path}")]
    Mask { path: PathBuf, source: Errno },

    /// `/dev/null` in the container is something else.
    #[error("the container's /dev/null is not the null device, so paths cannot be masked with it")]
    DevNull,

    /// A read-only path could not be made read-only.
    #[error("could not make {path} read-only")]
    ReadonlyPath { path: PathBuf, source: Errno },

    /// A mount could not be remounted read-only.
    #[error("could not remount {path} read-only")]
    RemountReadonly { path: PathBuf, source: Errno },

    /// The propagation of `/` could not be set at the end.
    #[error("could not make the container's root {mode}")]
    RootPropagation { mode: &'static str, source: Errno },
    /// What runs between the mounts and the pivot (the create hooks) failed.
    #[error(transparent)]
    BeforePivot(Box<crate::Error>),
}
