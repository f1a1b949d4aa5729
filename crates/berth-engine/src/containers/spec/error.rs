//! Why a container's settings were refused or its spec could not be written. The messages are dockerd's, so that
//! clients (and their users) see what they would see against Docker; they reach the user as 400 errors unless the
//! variant says otherwise.

use std::path::PathBuf;

use crate::errdefs::{ErrorKind, HasKind};

/// What is wrong with one mount (`-v`, `--mount`, `--tmpfs` or an image volume).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountProblem {
    /// A required field is empty.
    #[error("field {0} must not be empty")]
    MissingField(&'static str),
    /// A field that this mount type does not take is set.
    #[error("field {0} must not be specified")]
    ExtraField(&'static str),
    /// The destination is `/`.
    #[error("invalid specification: destination can't be '/'")]
    TargetIsRoot,
    /// A path that must be absolute is not.
    #[error("invalid mount path: '{0}' mount path must be absolute")]
    NotAbsolute(String),
    /// The bind source does not exist (and `CreateMountpoint` is not set).
    #[error("bind source path does not exist: {0}")]
    BindSourceMissing(String),
    /// The propagation mode is not one of `[r]private`, `[r]shared`, `[r]slave`.
    #[error("invalid propagation mode: {0}")]
    Propagation(String),
    /// The mount type is not one Berth knows.
    #[error("mount type unknown")]
    UnknownType,
    /// The mount type exists in the API but Berth does not implement it.
    #[error("mount type {0:?} is not supported")]
    UnsupportedType(String),
    /// A subpath on an anonymous volume.
    #[error("must not set Subpath when using anonymous volumes")]
    AnonymousSubpath,
    /// A subpath that leaves the volume.
    #[error("subpath must be a relative path within the volume")]
    InvalidSubpath,
    /// A `TmpfsOptions.Options` entry is not a 1- or 2-element array.
    #[error("invalid option array length")]
    TmpfsOptionLength,
    /// A `TmpfsOptions.Options` entry is not allowed.
    #[error("invalid option: {0}")]
    TmpfsOption(String),
    /// A read-only bind is asked to be both recursive and non-recursive.
    #[error("mount options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive")]
    ReadOnlyConflict,
    /// A volume name the local driver refuses.
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" \
         are allowed. If you intended to pass a host directory, use absolute path"
    )]
    VolumeName(String),
}

/// A container's settings are invalid, or its runtime spec cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A `-v` string that cannot be parsed.
    #[error("invalid volume specification: '{0}'")]
    VolumeSpec(String),
    /// A `-v` string whose mount is invalid.
    #[error("invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": {problem}")]
    VolumeSpecMount {
        /// The string given.
        spec: String,
        /// The mount type it denotes.
        kind: &'static str,
        /// What is wrong.
        problem: MountProblem,
    },
    /// The options of a `-v` string are invalid.
    #[error("invalid mode: {0}")]
    MountMode(String),
    /// A `--mount` is invalid.
    #[error("invalid mount config for type \"{kind}\": {problem}")]
    MountConfig {
        /// The mount type.
        kind: String,
        /// What is wrong.
        problem: MountProblem,
    },
    /// A mount problem outside `-v` and `--mount` (a `--tmpfs` destination, an image volume).
    #[error(transparent)]
    Mount(#[from] MountProblem),
    /// Two mounts have the same destination.
    #[error("Duplicate mount point: {0}")]
    DuplicateMountPoint(String),
    /// A `--tmpfs` option that tmpfs does not take.
    #[error("invalid tmpfs option {0:?}")]
    TmpfsOption(String),
    /// A bind with shared propagation whose source is not on a shared mount.
    #[error("path {path} is mounted on {mount_point} but it is not a shared mount")]
    NotShared {
        /// The bind source.
        path: String,
        /// The mount it is on.
        mount_point: String,
    },
    /// A bind with slave propagation whose source is on a private mount.
    #[error("path {path} is mounted on {mount_point} but it is not a shared or slave mount")]
    NotSharedOrSlave {
        /// The bind source.
        path: String,
        /// The mount it is on.
        mount_point: String,
    },
    /// The mount of a bind source cannot be found in the daemon's mount table.
    #[error("cannot find the mount point of {path}: {reason}")]
    SourceMount {
        /// The bind source.
        path: String,
        /// Why.
        reason: String,
    },

    /// `--memory` below 6 MB.
    #[error("Minimum memory limit allowed is 6MB")]
    MemoryTooLow,
    /// `--memory-swap` below `--memory`.
    #[error("Minimum memoryswap limit should be larger than memory limit, see usage")]
    SwapBelowMemory,
    /// `--memory-swap` without `--memory`.
    #[error("You should always set the Memory limit when using Memoryswap limit, see usage")]
    SwapWithoutMemory,
    /// `--memory-swappiness` out of range.
    #[error("Invalid value: {0}, valid memory swappiness range is 0-100")]
    Swappiness(i64),
    /// `--memory-reservation` below 6 MB.
    #[error("Minimum memory reservation allowed is 6MB")]
    ReservationTooLow,
    /// `--memory` below `--memory-reservation`.
    #[error("Minimum memory limit can not be less than memory reservation limit, see usage")]
    MemoryBelowReservation,
    /// `--cpus` together with `--cpu-period`.
    #[error("Conflicting options: Nano CPUs and CPU Period cannot both be set")]
    NanoCpusAndPeriod,
    /// `--cpus` together with `--cpu-quota`.
    #[error("Conflicting options: Nano CPUs and CPU Quota cannot both be set")]
    NanoCpusAndQuota,
    /// `--cpus` out of range.
    #[error("range of CPUs is from 0.01 to {0}.00, as there are only {0} CPUs available")]
    NanoCpusRange(usize),
    /// `--cpu-period` out of range.
    #[error("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")]
    CpuPeriodRange,
    /// `--cpu-quota` below 1 ms.
    #[error("CPU cfs quota can not be less than 1ms (i.e. 1000)")]
    CpuQuotaTooLow,
    /// `--cpu-shares` negative.
    #[error("invalid CPU shares ({0}): value must be a positive integer")]
    CpuShares(i64),
    /// The real-time scheduler settings cannot be honoured.
    #[error("{0}")]
    Realtime(&'static str),
    /// `--cpuset-cpus` / `--cpuset-mems` is not a list of numbers and ranges.
    #[error("Invalid value {value} for cpuset {what}: invalid format: {value}")]
    CpusetFormat {
        /// `cpus` or `mems`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// `--cpuset-cpus` / `--cpuset-mems` names CPUs or nodes the host does not have.
    #[error("Requested {what} are not available - requested {requested}, available: {available}")]
    CpusetUnavailable {
        /// `CPUs` or `memory nodes`.
        what: &'static str,
        /// The value given.
        requested: String,
        /// What the host has.
        available: String,
    },
    /// `--blkio-weight` out of range.
    #[error("Range of blkio weight is from 10 to 1000")]
    BlkioWeight,
    /// Windows-only IO limits.
    #[error("invalid option: QoS maximum {0} configuration is not supported on linux")]
    Qos(&'static str),
    /// `--oom-score-adj` out of range.
    #[error("Invalid value {0}, range for oom score adj is [-1000, 1000]")]
    OomScoreAdj(i64),
    /// `--shm-size` negative.
    #[error("SHM size can not be less than 0")]
    ShmSize,

    /// A namespace mode that does not exist.
    #[error("invalid {what} mode: {value}")]
    NamespaceMode {
        /// `IPC`, `PID`, `UTS`, `cgroup namespace`, `userns` or `network`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// Options that cannot go together.
    #[error("conflicting options: {0}")]
    Conflict(&'static str),
    /// `container:` without a container.
    #[error("invalid network mode: invalid container format container:<name|id>")]
    NetworkContainerFormat,
    /// The hostname is longer than the kernel allows.
    #[error("hostname {0:?} is too long (maximum 64 bytes)")]
    HostnameTooLong(String),
    /// `--rm` with a restart policy.
    #[error("can't create 'AutoRemove' container with restart policy")]
    AutoRemoveWithRestart,
    /// An invalid restart policy.
    #[error("invalid restart policy: {0}")]
    RestartPolicy(String),
    /// An invalid health check.
    #[error("{0} in Healthcheck cannot be {1}")]
    Healthcheck(&'static str, &'static str),
    /// An `--add-host` that is not `name:ip`.
    #[error("bad format for add-host: {0:?}")]
    ExtraHostFormat(String),
    /// An `--add-host` whose address is not an IP address.
    #[error("invalid IP address in add-host: {0:?}")]
    ExtraHostIp(String),
    /// A published port that is not a port.
    #[error("invalid port specification: {0:?}")]
    PortSpec(String),
    /// An annotation with an empty key.
    #[error("invalid Annotations: the empty string is not permitted as an annotation key")]
    AnnotationKey,
    /// The working directory is relative.
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    WorkingDir(String),
    /// An environment variable without a name.
    #[error("invalid environment variable: {0}")]
    Env(String),
    /// A stop signal that does not exist.
    #[error("Invalid signal: {0}")]
    Signal(String),
    /// Neither the request nor the image gives a command.
    #[error("no command specified")]
    NoCommand,
    /// An exec without a command.
    #[error("No exec command specified")]
    NoExecCommand,

    /// A capability name that does not exist.
    #[error("invalid {field}: unknown capability: {name:?}")]
    UnknownCapability {
        /// `CapAdd` or `CapDrop`.
        field: &'static str,
        /// The normalized name.
        name: String,
    },
    /// A capability the daemon does not hold (CAP_SYS_RESOURCE on these machines).
    #[error(
        "invalid {field}: capability not supported by your kernel or not available in the current environment: {name:?}"
    )]
    UnavailableCapability {
        /// `CapAdd` or `CapDrop`.
        field: &'static str,
        /// The normalized name.
        name: String,
    },

    /// A `--device` that is not `host[:container[:permissions]]`.
    #[error("invalid device mapping {0:?}: {1}")]
    DeviceMapping(String, &'static str),
    /// A `--device` whose host path is neither a device nor a directory of devices.
    #[error("error gathering device information while adding custom device {path:?}: {reason}")]
    Device {
        /// The host path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A `--device-cgroup-rule` that is not `type major:minor access`.
    #[error("invalid device cgroup rule format: '{0}'")]
    DeviceCgroupRule(String),
    /// A `--blkio-*-device` whose path cannot be stat'ed.
    #[error("stat {path}: {source}")]
    BlkioDevice {
        /// The device path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `--gpus` and other device requests.
    #[error("could not select device driver {0:?} with capabilities: []")]
    DeviceRequest(String),

    /// A `--ulimit` whose name is not a resource limit.
    #[error("invalid ulimit type: {0}")]
    UlimitName(String),
    /// A `--ulimit` whose soft limit exceeds its hard limit.
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    UlimitRange {
        /// The soft limit.
        soft: i64,
        /// The hard limit.
        hard: i64,
    },
    /// A `--sysctl` the container cannot set.
    #[error("sysctl {name:?} {reason}")]
    Sysctl {
        /// The sysctl.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// A `--log-driver` Berth does not have.
    #[error("logger: no log driver named '{0}' is registered")]
    LogDriver(String),
    /// A `--log-opt` the driver does not take, or a bad value.
    #[error("{0}")]
    LogOpt(String),

    /// A `--security-opt` that cannot be parsed.
    #[error("invalid --security-opt {level}: {opt:?}")]
    SecurityOpt {
        /// docker's 1 (no separator) or 2 (unknown key or bad value).
        level: u8,
        /// The option given.
        opt: String,
    },
    /// A seccomp profile that cannot be used.
    #[error("Decoding seccomp profile failed: {0}")]
    SeccompProfile(String),

    /// A user name that is not in the container's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    /// A group name that is not in the container's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    /// A uid or gid outside 0..2^31-1.
    #[error("uids and gids must be in range 0-2147483647")]
    IdRange,
    /// `/etc/passwd` or `/etc/group` of the container cannot be read.
    #[error("cannot read {path} in the container's root filesystem {rootfs}: {source}")]
    ReadEtc {
        /// `/etc/passwd` or `/etc/group`.
        path: &'static str,
        /// The root filesystem.
        rootfs: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// oci-spec refused a value (a bug: the values are checked before).
    #[error("cannot build the runtime spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

impl HasKind for SpecError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ReadEtc { .. } | Self::Build(_) | Self::SourceMount { .. } => ErrorKind::System,
            _ => ErrorKind::InvalidParameter,
        }
    }
}
