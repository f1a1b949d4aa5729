//! Volumes with docker's `local` driver: the data lives in `<data-root>/volumes/<name>/_data`, the metadata (driver,
//! labels, options, creation time) in the `volumes` table of the state database, which this module creates.
//!
//! - Names as dockerd accepts them (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`); a volume created without a name is anonymous:
//!   64 random hex digits and the label `com.docker.volume.anonymous`.
//! - Driver options `type`, `device`, `o` (as `mount -t type -o o device`): the device is mounted on `_data` when
//!   the first user mounts the volume and unmounted when the last one goes ([`VolumeService::mount`],
//!   [`VolumeService::unmount`]).
//! - Who uses a volume is the container service's answer ([`VolumeUsers`]) plus the references taken with
//!   [`VolumeService::reference`] (a container being created); a volume in use cannot be removed or pruned.
//! - Crash safety: a volume's directories exist before its row is committed, and a removal renames the directory
//!   aside before the row goes. At start, renamed-aside directories are deleted, directories without a row are
//!   adopted as volumes (docker's local driver lists its directories), rows without a directory are forgotten.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bollard_stubs::models::{
    Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum, VolumeUsageData,
};
use rusqlite::{OptionalExtension, Transaction, params};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::db::{Db, DbError};
use crate::errdefs::{ErrorKind, HasKind};
use crate::events::{Event, EventBus};
use crate::filters::{FilterError, Filters};

/// The label docker puts on anonymous volumes; prune removes only those unless asked for `all`.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
/// The only driver.
pub const DRIVER: &str = "local";
/// The characters docker allows in a volume name (for messages).
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";
/// Prefix of a directory renamed aside for removal (never a valid volume name: names start alphanumeric).
const REMOVING_PREFIX: &str = "_removing-";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created INTEGER NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL
);
";

/// A volume operation that failed. Messages follow dockerd's (`remove x: volume is in use - [id]`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// A name of one character.
    #[error("create {0}: volume name is too short, names should be at least two alphanumeric characters")]
    NameTooShort(String),
    /// A name with characters outside [`NAME_CHARS`].
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"{NAME_CHARS}\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    InvalidName(String),
    /// A driver other than `local`.
    #[error("create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found")]
    NoSuchDriver {
        /// The volume.
        name: String,
        /// The driver asked for.
        driver: String,
    },
    /// Driver options the local driver refuses.
    #[error("create {name}: {reason}")]
    BadOption {
        /// The volume.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Containers use the volume.
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The containers (or references) that use it.
        users: Vec<String>,
    },
    /// The volume's device is still mounted for a user.
    #[error("remove {0}: volume has active mounts")]
    ActiveMounts(String),
    /// Another prune runs.
    #[error("a prune operation is already running")]
    PruneRunning,
    /// Filters that do not fit.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A file system operation on a volume's directories failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("create the volume directory").
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Mounting or unmounting a volume's device failed.
    #[error("{action} local volume {name} failed: {source}")]
    Mount {
        /// "mounting" or "unmounting".
        action: &'static str,
        /// The volume.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The stored labels or options are not JSON.
    #[error("the stored metadata of volume {name} is corrupt: {source}")]
    Corrupt {
        /// The volume.
        name: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The state database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for VolumeError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl HasKind for VolumeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) | Self::NoSuchDriver { .. } => ErrorKind::NotFound,
            Self::NameTooShort(_) | Self::InvalidName(_) | Self::BadOption { .. } | Self::Filter(_) => {
                ErrorKind::InvalidParameter
            }
            Self::InUse { .. } | Self::PruneRunning => ErrorKind::Conflict,
            Self::ActiveMounts(_)
            | Self::Io { .. }
            | Self::Mount { .. }
            | Self::Corrupt { .. }
            | Self::Db(_) => ErrorKind::System,
        }
    }
}

/// Who uses a volume: implemented by the container service.
pub trait VolumeUsers: Send + Sync + std::fmt::Debug {
    /// The ids of the containers whose mounts name the volume, running or not.
    fn users(&self, name: &str) -> Vec<String>;
}

/// No containers (until the container service registers itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVolumeUsers;

impl VolumeUsers for NoVolumeUsers {
    fn users(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// One volume's row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    driver: String,
    /// Unix nanoseconds.
    created: i64,
    labels: HashMap<String, String>,
    options: HashMap<String, String>,
}

impl Row {
    fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// Whether the local driver mounts something on `_data` (docker's `needsMount`).
    fn needs_mount(&self) -> bool {
        self.options.get("type").is_some_and(|v| !v.is_empty())
            || self.options.get("device").is_some_and(|v| !v.is_empty())
    }
}

/// Mount state of a volume whose options ask for a mount.
#[derive(Debug, Default)]
struct Active {
    /// Mount references (`mount` calls not yet undone), by reference id.
    refs: BTreeSet<String>,
    /// Whether the device is mounted on `_data`.
    mounted: bool,
}

#[derive(Debug, Default)]
struct State {
    active: HashMap<String, Active>,
    /// References taken with [`VolumeService::reference`].
    refs: HashMap<String, BTreeSet<String>>,
}

/// The volume service.
#[derive(Debug)]
pub struct VolumeService {
    root: PathBuf,
    db: Arc<Db>,
    events: Arc<EventBus>,
    users: RwLock<Arc<dyn VolumeUsers>>,
    /// Serialises changes (create, remove, mount) and holds the in-memory state.
    state: Mutex<State>,
    prune_running: AtomicBool,
}

impl VolumeService {
    /// Opens `<data_root>/volumes`: creates it and the table, and reconciles directories with rows (see the
    /// module documentation).
    pub fn open(data_root: &Path, db: Arc<Db>, events: Arc<EventBus>) -> Result<Self, VolumeError> {
        let root = data_root.join("volumes");
        mkdir(&root, 0o701, "create the volumes directory")?;
        db.transaction::<_, VolumeError>(|tx| Ok(tx.execute_batch(SCHEMA)?))?;
        let s = Self {
            root,
            db,
            events,
            users: RwLock::new(Arc::new(NoVolumeUsers)),
            state: Mutex::new(State::default()),
            prune_running: AtomicBool::new(false),
        };
        s.reconcile()?;
        Ok(s)
    }

    /// Lets the container service answer "who uses this volume".
    pub fn set_users(&self, users: Arc<dyn VolumeUsers>) {
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reconcile(&self) -> Result<(), VolumeError> {
        let rows = self.rows()?;
        let known: BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let entries = std::fs::read_dir(&self.root).map_err(|source| VolumeError::Io {
            action: "read the volumes directory",
            path: self.root.clone(),
            source,
        })?;
        let mut adopt = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(REMOVING_PREFIX) {
                tracing::info!(path = %entry.path().display(), "finishing an interrupted volume removal");
                berth_image::unpack::remove_tree(&entry.path()).map_err(|source| VolumeError::Io {
                    action: "remove",
                    path: entry.path(),
                    source,
                })?;
                continue;
            }
            if known.contains(name) || validate_name(name).is_err() {
                continue;
            }
            if entry.path().join("_data").is_dir() {
                adopt.push(name.to_string());
            }
        }
        for name in &adopt {
            tracing::info!(volume = %name, "adopting a volume directory the database does not know");
            let created = std::fs::metadata(self.root.join(name))
                .ok()
                .and_then(|m| {
                    use std::os::unix::fs::MetadataExt as _;
                    m.ctime().checked_mul(1_000_000_000)
                })
                .unwrap_or_else(crate::time::now_nanos);
            let row = Row {
                name: name.clone(),
                driver: DRIVER.to_string(),
                created,
                labels: HashMap::new(),
                options: HashMap::new(),
            };
            self.db.transaction::<_, VolumeError>(|tx| insert_row(tx, &row))?;
        }
        let mut state = self.lock();
        for row in rows {
            let data = self.data_path(&row.name);
            if !data.is_dir() {
                tracing::warn!(volume = %row.name, path = %data.display(), "a volume's directory is gone; forgetting it");
                self.db
                    .transaction::<_, VolumeError>(|tx| Ok(delete_row(tx, &row.name)?))?;
                continue;
            }
            if row.needs_mount() && is_mount_root(&data) {
                state.active.entry(row.name.clone()).or_default().mounted = true;
            }
        }
        Ok(())
    }

    /// `<root>/<name>/_data`: where the volume's data is (its `Mountpoint`).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    fn rows(&self) -> Result<Vec<Row>, VolumeError> {
        self.db.transaction(|tx| {
            let mut st =
                tx.prepare("SELECT name, driver, created, labels, options FROM volumes ORDER BY name")?;
            let raw = st
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<Vec<(String, String, i64, String, String)>, _>>()?;
            raw.into_iter().map(parse_row).collect()
        })
    }

    fn row(&self, name: &str) -> Result<Option<Row>, VolumeError> {
        self.db.transaction(|tx| {
            let raw: Option<(String, String, i64, String, String)> = tx
                .query_row(
                    "SELECT name, driver, created, labels, options FROM volumes WHERE name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            raw.map(parse_row).transpose()
        })
    }

    fn get(&self, name: &str) -> Result<Row, VolumeError> {
        self.row(name)?
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    fn to_api(&self, row: &Row) -> Volume {
        Volume {
            name: row.name.clone(),
            driver: row.driver.clone(),
            mountpoint: self.data_path(&row.name).display().to_string(),
            created_at: Some(crate::time::rfc3339_nanos(
                row.created.div_euclid(1_000_000_000) * 1_000_000_000,
            )),
            status: None,
            labels: row.labels.clone(),
            scope: Some(VolumeScopeEnum::LOCAL),
            cluster_volume: None,
            options: row.options.clone(),
            usage_data: None,
        }
    }

    /// Who uses a volume: containers, then references.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.users_locked(&self.lock(), name)
    }

    fn users_locked(&self, state: &State, name: &str) -> Vec<String> {
        let mut out = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .users(name);
        if let Some(refs) = state.refs.get(name) {
            out.extend(
                refs.iter()
                    .filter(|r| !out.contains(r))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        out
    }

    /// `POST /volumes/create`. No name (or an empty one) makes an anonymous volume. A name that exists returns
    /// that volume unchanged, as dockerd does.
    pub fn create(&self, req: VolumeCreateRequest) -> Result<Volume, VolumeError> {
        Ok(self.create_inner(req, None)?.0)
    }

    /// Like [`Self::create`], and takes a reference for `reference` (a container id) in the same step, so that
    /// no prune can take the volume before the container records it. Returns whether it was created.
    pub fn create_referenced(
        &self,
        req: VolumeCreateRequest,
        reference: &str,
    ) -> Result<(Volume, bool), VolumeError> {
        self.create_inner(req, Some(reference))
    }

    fn create_inner(
        &self,
        req: VolumeCreateRequest,
        reference: Option<&str>,
    ) -> Result<(Volume, bool), VolumeError> {
        let mut labels = req.labels.unwrap_or_default();
        let name = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                random_name()?
            }
        };
        validate_name(&name)?;
        let driver = req
            .driver
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DRIVER.to_string());
        if driver != DRIVER {
            return Err(VolumeError::NoSuchDriver { name, driver });
        }
        let options = req.driver_opts.unwrap_or_default();
        validate_options(&name, &options)?;
        let mut state = self.lock();
        if let Some(existing) = self.row(&name)? {
            if let Some(r) = reference {
                state.refs.entry(name.clone()).or_default().insert(r.to_string());
            }
            return Ok((self.to_api(&existing), false));
        }
        let dir = self.root.join(&name);
        mkdir(&dir, 0o701, "create the volume directory")?;
        let data = dir.join("_data");
        if let Err(e) = mkdir(&data, 0o755, "create the volume's data directory") {
            let _ = berth_image::unpack::remove_tree(&dir);
            return Err(e);
        }
        let row = Row {
            name: name.clone(),
            driver,
            created: crate::time::now_nanos(),
            labels,
            options,
        };
        if let Err(e) = self.db.transaction::<_, VolumeError>(|tx| insert_row(tx, &row)) {
            let _ = berth_image::unpack::remove_tree(&dir);
            return Err(e);
        }
        if let Some(r) = reference {
            state.refs.entry(name.clone()).or_default().insert(r.to_string());
        }
        drop(state);
        self.events
            .publish(Event::new("volume", "create", &name, &[("driver", &row.driver)]));
        Ok((self.to_api(&row), true))
    }

    /// Takes a reference on a volume (a container being created uses it): it counts as a user until
    /// [`Self::release`].
    pub fn reference(&self, name: &str, reference: &str) -> Result<(), VolumeError> {
        let mut state = self.lock();
        self.get(name)?;
        state
            .refs
            .entry(name.to_string())
            .or_default()
            .insert(reference.to_string());
        Ok(())
    }

    /// Drops a reference taken with [`Self::reference`] or [`Self::create_referenced`] (absent is fine).
    pub fn release(&self, name: &str, reference: &str) {
        let mut state = self.lock();
        if let Some(set) = state.refs.get_mut(name) {
            set.remove(reference);
            if set.is_empty() {
                state.refs.remove(name);
            }
        }
    }

    /// `GET /volumes/{name}`.
    pub fn inspect(&self, name: &str) -> Result<Volume, VolumeError> {
        Ok(self.to_api(&self.get(name)?))
    }

    /// `GET /volumes?filters=` (`name` (substring, `^`/`$` anchors), `driver`, `label`, `dangling`).
    pub fn list(&self, filters: &Filters) -> Result<VolumeListResponse, VolumeError> {
        filters.validate(&["dangling", "name", "driver", "label"])?;
        let dangling = filters.bool_value("dangling")?;
        let mut out = Vec::new();
        for row in self.rows()? {
            if filters.contains("driver") && !filters.get("driver").contains(&row.driver.as_str()) {
                continue;
            }
            if filters.contains("name") && !filters.get("name").iter().any(|p| name_matches(p, &row.name)) {
                continue;
            }
            if !filters.match_labels("label", &row.labels) {
                continue;
            }
            if let Some(d) = dangling
                && d != self.users(&row.name).is_empty()
            {
                continue;
            }
            out.push(self.to_api(&row));
        }
        Ok(VolumeListResponse {
            volumes: Some(out),
            warnings: None,
        })
    }

    /// `DELETE /volumes/{name}?force=`: refused while the volume is in use; `force` only makes a missing volume
    /// no error, as in dockerd.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let mut state = self.lock();
        let row = match self.row(name)? {
            Some(r) => r,
            None if force => return Ok(()),
            None => return Err(VolumeError::NotFound(name.to_string())),
        };
        self.remove_locked(&mut state, &row).map(|_| ())
    }

    /// Removes a volume whose row is `row`; returns the bytes its data took.
    fn remove_locked(&self, state: &mut State, row: &Row) -> Result<u64, VolumeError> {
        let users = self.users_locked(state, &row.name);
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: row.name.clone(),
                users,
            });
        }
        let data = self.data_path(&row.name);
        if let Some(a) = state.active.get(&row.name) {
            if !a.refs.is_empty() {
                return Err(VolumeError::ActiveMounts(row.name.clone()));
            }
            if a.mounted {
                unmount_data(&row.name, &data)?;
            }
        }
        state.active.remove(&row.name);
        // A mounted device's content is not the volume's to count or delete.
        let size = if row.needs_mount() || is_mount_root(&data) {
            0
        } else {
            berth_image::unpack::tree_size(&data).unwrap_or(0)
        };
        let dir = self.root.join(&row.name);
        let aside = self.root.join(format!(
            "{REMOVING_PREFIX}{}-{:x}",
            row.name,
            crate::time::now_nanos()
        ));
        std::fs::rename(&dir, &aside).map_err(|source| VolumeError::Io {
            action: "move aside for removal",
            path: dir.clone(),
            source,
        })?;
        self.db
            .transaction::<_, VolumeError>(|tx| Ok(delete_row(tx, &row.name)?))?;
        if is_mount_root(&aside.join("_data")) {
            // Never delete what another file system holds; leave it for an operator.
            tracing::error!(path = %aside.display(), "a removed volume's data directory is still a mount point");
        } else if let Err(e) = berth_image::unpack::remove_tree(&aside) {
            tracing::warn!(path = %aside.display(), error = %e, "cannot delete a removed volume's directory; it goes at the next start");
        }
        state.refs.remove(&row.name);
        self.events.publish(Event::new(
            "volume",
            "destroy",
            &row.name,
            &[("driver", &row.driver)],
        ));
        Ok(size)
    }

    /// `POST /volumes/prune?filters=`: unused local volumes without mount options that pass the filters
    /// (`label`, `label!`), anonymous ones only unless `all=true` (API >= 1.42, as dockerd).
    pub fn prune(&self, filters: &Filters) -> Result<VolumePruneResponse, VolumeError> {
        filters.validate(&["label", "label!", "all"])?;
        let all = filters.get("all");
        if all.len() > 1 {
            return Err(FilterError::BadValue {
                key: "all".to_string(),
                value: all.join(","),
                reason: "only one value is expected".to_string(),
            }
            .into());
        }
        let all = filters.bool_value("all")?.unwrap_or(false);
        if self
            .prune_running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(VolumeError::PruneRunning);
        }
        struct Reset<'a>(&'a AtomicBool);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _reset = Reset(&self.prune_running);
        let mut deleted = Vec::new();
        let mut reclaimed: u64 = 0;
        for row in self.rows()? {
            if row.driver != DRIVER || !row.options.is_empty() || (!all && !row.is_anonymous()) {
                continue;
            }
            if !filters.match_labels("label", &row.labels)
                || filters
                    .get("label!")
                    .iter()
                    .any(|l| Filters::from_pairs([("label", *l)]).match_labels("label", &row.labels))
            {
                continue;
            }
            let mut state = self.lock();
            match self.remove_locked(&mut state, &row) {
                Ok(size) => {
                    reclaimed += size;
                    deleted.push(row.name.clone());
                }
                Err(VolumeError::InUse { .. }) | Err(VolumeError::ActiveMounts(_)) => {}
                Err(e) => tracing::warn!(volume = %row.name, error = %e, "could not prune a volume"),
            }
        }
        let reclaimed = i64::try_from(reclaimed).unwrap_or(i64::MAX);
        self.events.publish(Event::new(
            "volume",
            "prune",
            "",
            &[("reclaimed", &reclaimed.to_string())],
        ));
        Ok(VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }

    /// Volumes with their usage (`GET /system/df`): size of local volumes without mount options (`-1`
    /// otherwise) and how many containers use each.
    pub fn disk_usage(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut out = Vec::new();
        for row in self.rows()? {
            let mut v = self.to_api(&row);
            let size = if row.options.is_empty() {
                berth_image::unpack::tree_size(&self.data_path(&row.name))
                    .ok()
                    .and_then(|s| i64::try_from(s).ok())
                    .unwrap_or(-1)
            } else {
                -1
            };
            let users = self
                .users
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .users(&row.name);
            v.usage_data = Some(VolumeUsageData {
                size,
                ref_count: i64::try_from(users.len()).unwrap_or(i64::MAX),
            });
            out.push(v);
        }
        Ok(out)
    }

    /// Makes the volume ready for a container (`reference`, a container id) and returns the host path to bind:
    /// a volume with `type`/`device` options gets its device mounted on `_data` by the first user.
    pub fn mount(&self, name: &str, reference: &str) -> Result<PathBuf, VolumeError> {
        let mut state = self.lock();
        let row = self.get(name)?;
        let data = self.data_path(name);
        if row.needs_mount() {
            let a = state.active.entry(name.to_string()).or_default();
            if !a.mounted {
                mount_data(&row, &data)?;
                a.mounted = true;
            }
            a.refs.insert(reference.to_string());
        }
        Ok(data)
    }

    /// Undoes [`Self::mount`] for `reference`; the last user unmounts the device.
    pub fn unmount(&self, name: &str, reference: &str) -> Result<(), VolumeError> {
        let mut state = self.lock();
        let Some(a) = state.active.get_mut(name) else {
            return Ok(());
        };
        a.refs.remove(reference);
        if a.refs.is_empty() && a.mounted {
            unmount_data(name, &self.data_path(name))?;
            a.mounted = false;
        }
        Ok(())
    }

    /// Docker's copy of image content into a new volume: when the volume's data directory is empty and
    /// `path_in_rootfs` (resolved inside `rootfs`, symlinks never leaving it) is a directory, copies that
    /// directory's content (owners, modes, times, symlinks, hard links, devices) into the volume and gives the
    /// volume's root the directory's owner and mode. Returns whether anything was copied.
    pub fn copy_up(&self, name: &str, rootfs: &Path, path_in_rootfs: &str) -> Result<bool, VolumeError> {
        let data = self.mount(name, "copy-up")?;
        let result = copy_up_into(&data, rootfs, path_in_rootfs);
        self.unmount(name, "copy-up")?;
        result
    }

    /// An event for a container mounting a volume (the container service publishes it at start).
    pub fn mount_event(
        name: &str,
        container: &str,
        destination: &str,
        read_write: bool,
        propagation: &str,
    ) -> Event {
        Event::new(
            "volume",
            "mount",
            name,
            &[
                ("container", container),
                ("destination", destination),
                ("driver", DRIVER),
                ("propagation", propagation),
                ("read/write", if read_write { "true" } else { "false" }),
            ],
        )
    }

    /// An event for a container unmounting a volume (at stop).
    pub fn unmount_event(name: &str, container: &str) -> Event {
        Event::new(
            "volume",
            "unmount",
            name,
            &[("container", container), ("driver", DRIVER)],
        )
    }

    /// How many volumes there are.
    pub fn count(&self) -> Result<usize, VolumeError> {
        Ok(self.rows()?.len())
    }
}

fn parse_row(raw: (String, String, i64, String, String)) -> Result<Row, VolumeError> {
    let (name, driver, created, labels, options) = raw;
    let labels = serde_json::from_str(&labels).map_err(|source| VolumeError::Corrupt {
        name: name.clone(),
        source,
    })?;
    let options = serde_json::from_str(&options).map_err(|source| VolumeError::Corrupt {
        name: name.clone(),
        source,
    })?;
    Ok(Row {
        name,
        driver,
        created,
        labels,
        options,
    })
}

fn insert_row(tx: &Transaction<'_>, row: &Row) -> Result<(), VolumeError> {
    let labels = serde_json::to_string(&row.labels).map_err(|source| VolumeError::Corrupt {
        name: row.name.clone(),
        source,
    })?;
    let options = serde_json::to_string(&row.options).map_err(|source| VolumeError::Corrupt {
        name: row.name.clone(),
        source,
    })?;
    tx.execute(
        "INSERT INTO volumes (name, driver, created, labels, options) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![row.name, row.driver, row.created, labels, options],
    )?;
    Ok(())
}

fn delete_row(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<bool> {
    Ok(tx.execute("DELETE FROM volumes WHERE name = ?1", [name])? > 0)
}

fn mkdir(path: &Path, mode: u32, action: &'static str) -> Result<(), VolumeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(source) => {
            return Err(VolumeError::Io {
                action,
                path: path.to_owned(),
                source,
            });
        }
    }
    // The umask must not narrow the mode.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| VolumeError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

/// Docker's volume name rule.
fn validate_name(name: &str) -> Result<(), VolumeError> {
    if name.len() == 1 {
        return Err(VolumeError::NameTooShort(name.to_string()));
    }
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(VolumeError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// The local driver's options: `type`, `device`, `o` (each requiring the others as docker does) and `size`
/// (refused: there is no quota support).
fn validate_options(name: &str, opts: &HashMap<String, String>) -> Result<(), VolumeError> {
    let bad = |reason: String| VolumeError::BadOption {
        name: name.to_string(),
        reason,
    };
    let mut keys: Vec<&String> = opts.keys().collect();
    keys.sort();
    for k in &keys {
        if !matches!(k.as_str(), "type" | "device" | "o" | "size") {
            return Err(bad(format!("invalid option: \"{k}\"")));
        }
    }
    if let Some(size) = opts.get("size") {
        let n = berth_size(size).ok_or_else(|| bad(format!("invalid size: '{size}'")))?;
        if n > 0 {
            return Err(bad("quota size requested but no quota support".to_string()));
        }
    }
    for (opt, required) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            for r in required {
                if !opts.contains_key(*r) {
                    return Err(bad(format!("missing required option: \"{r}\"")));
                }
            }
        }
    }
    if let Some(o) = opts.get("o") {
        parse_mount_options(o).map_err(bad)?;
    }
    Ok(())
}

/// A size as docker's `RAMInBytes` reads one: `10`, `10k`, `1.5g`, `512MiB`.
fn berth_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "p" | "pb" | "pib" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return None;
    }
    Some(v as i64)
}

/// Mount options split as `mount(8)` does: flags, propagation, and the rest as file system data.
#[derive(Debug, PartialEq, Eq)]
struct MountOptions {
    flags: MountFlags,
    clear: MountFlags,
    propagation: MountPropagationFlags,
    data: Vec<String>,
}

fn parse_mount_options(o: &str) -> Result<MountOptions, String> {
    let mut m = MountOptions {
        flags: MountFlags::empty(),
        clear: MountFlags::empty(),
        propagation: MountPropagationFlags::empty(),
        data: Vec::new(),
    };
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (set, clear) = match opt {
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "nostrictatime" => (MountFlags::empty(), MountFlags::STRICTATIME),
            "bind" => (MountFlags::BIND, MountFlags::empty()),
            "rbind" => (MountFlags::BIND | MountFlags::REC, MountFlags::empty()),
            "defaults" => (MountFlags::empty(), MountFlags::empty()),
            "remount" | "move" => return Err(format!("mount option \"{opt}\" is not supported for volumes")),
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable") => {
                let rec = p.starts_with('r');
                let base = match p.trim_start_matches('r') {
                    "private" => MountPropagationFlags::PRIVATE,
                    "shared" => MountPropagationFlags::SHARED,
                    "slave" => MountPropagationFlags::DOWNSTREAM,
                    _ => MountPropagationFlags::UNBINDABLE,
                };
                m.propagation = if rec {
                    base | MountPropagationFlags::REC
                } else {
                    base
                };
                continue;
            }
            other => {
                m.data.push(other.to_string());
                continue;
            }
        };
        m.flags = (m.flags | set) & !clear;
        m.clear = (m.clear | clear) & !set;
    }
    Ok(m)
}

fn mount_data(row: &Row, data: &Path) -> Result<(), VolumeError> {
    let err = |source: std::io::Error| VolumeError::Mount {
        action: "mounting",
        name: row.name.clone(),
        source,
    };
    let device = row.options.get("device").map(String::as_str).unwrap_or("");
    if device.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "missing device in volume options",
        )));
    }
    let fstype = row.options.get("type").map(String::as_str).unwrap_or("");
    let o = row.options.get("o").map(String::as_str).unwrap_or("");
    let opts =
        parse_mount_options(o).map_err(|m| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, m)))?;
    let data_str = opts.data.join(",");
    let cdata = std::ffi::CString::new(data_str)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let bind = opts.flags.contains(MountFlags::BIND);
    // A bind mount ignores most flags at first; they are applied by a remount, as mount(8) does.
    let first_flags = if bind {
        opts.flags & (MountFlags::BIND | MountFlags::REC)
    } else {
        opts.flags
    };
    let data_arg = (!bind && !cdata.as_bytes().is_empty()).then_some(cdata.as_c_str());
    rustix::mount::mount(device, data, fstype, first_flags, data_arg).map_err(|e| err(e.into()))?;
    let extra = opts.flags & !(MountFlags::BIND | MountFlags::REC);
    if bind
        && !extra.is_empty()
        && let Err(e) = rustix::mount::mount_remount(data, MountFlags::BIND | extra, "")
    {
        let _ = rustix::mount::unmount(data, UnmountFlags::DETACH);
        return Err(err(e.into()));
    }
    if !opts.propagation.is_empty()
        && let Err(e) = rustix::mount::mount_change(data, opts.propagation)
    {
        let _ = rustix::mount::unmount(data, UnmountFlags::DETACH);
        return Err(err(e.into()));
    }
    Ok(())
}

fn unmount_data(name: &str, data: &Path) -> Result<(), VolumeError> {
    match rustix::mount::unmount(data, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(_) if !is_mount_root(data) => Ok(()),
        Err(e) => Err(VolumeError::Mount {
            action: "unmounting",
            name: name.to_string(),
            source: e.into(),
        }),
    }
}

/// Whether `path` is the root of a mount.
fn is_mount_root(path: &Path) -> bool {
    use rustix::fs::{StatxAttributes, StatxFlags};
    match rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) {
        Ok(st) => {
            st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => false,
    }
}

/// `name=` filter: dockerd matches a regular expression; this takes literal text with optional `^`/`$`
/// anchors, which is what is used in practice.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (start, end) {
        (true, true) => name == p,
        (true, false) => name.starts_with(p),
        (false, true) => name.ends_with(p),
        (false, false) => name.contains(p),
    }
}

/// 64 random hex digits.
fn random_name() -> Result<String, VolumeError> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| VolumeError::Io {
            action: "read random bytes from",
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

// ---------------------------------------------------------------- copy-up

fn copy_up_into(data: &Path, rootfs: &Path, path_in_rootfs: &str) -> Result<bool, VolumeError> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: Errno| VolumeError::Io {
            action,
            path,
            source: e.into(),
        }
    };
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open the container root", rootfs))?;
    let rel = path_in_rootfs.trim_start_matches('/');
    let src_path = rootfs.join(rel);
    let src = if rel.is_empty() {
        rustix::fs::openat(
            &root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    } else {
        rustix::fs::openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let src = match src {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(false),
        Err(e) => return Err(io_err("open", &src_path)(e)),
    };
    let st = rustix::fs::fstat(&src).map_err(io_err("stat", &src_path))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Ok(false);
    }
    let dst = rustix::fs::open(
        data,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(io_err("open", data))?;
    if !dir_is_empty(dst.as_fd()).map_err(io_err("read", data))? {
        return Ok(false);
    }
    let mut links = HashMap::new();
    copy_dir(src.as_fd(), dst.as_fd(), &mut links, &src_path).map_err(|source| VolumeError::Io {
        action: "copy image content from",
        path: src_path.clone(),
        source,
    })?;
    rustix::fs::fchown(
        &dst,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )
    .map_err(io_err("chown", data))?;
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(io_err("chmod", data))?;
    Ok(true)
}

fn dir_is_empty(dir: BorrowedFd<'_>) -> rustix::io::Result<bool> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    for e in d.by_ref() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the entries of `src` into `dst` (both directories), preserving metadata; `links` maps a source
/// (dev, ino) with several links to the first copy's (directory fd is not kept, so the path relative to `dst`'s
/// top is not needed: hard links are made with `linkat` from the first copy's parent fd and name).
fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    links: &mut HashMap<(u64, u64), (OwnedFd, std::ffi::OsString)>,
    shown: &Path,
) -> std::io::Result<()> {
    let mut names = Vec::new();
    {
        let mut d = rustix::fs::Dir::read_from(src)?;
        for e in d.by_ref() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_owned());
            }
        }
    }
    for name in names {
        let st = rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        let key = (st.st_dev, st.st_ino);
        if ft != rustix::fs::FileType::Directory
            && st.st_nlink > 1
            && let Some((pfd, pname)) = links.get(&key)
        {
            rustix::fs::linkat(pfd, pname.as_os_str(), dst, &name, AtFlags::empty())?;
            continue;
        }
        match ft {
            rustix::fs::FileType::Directory => {
                rustix::fs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?;
                let s = rustix::fs::openat(
                    src,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_dir(s.as_fd(), d.as_fd(), links, &shown.join(&name))?;
            }
            rustix::fs::FileType::RegularFile => {
                let s = rustix::fs::openat(
                    src,
                    &name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut sf = std::fs::File::from(s);
                let mut df = std::fs::File::from(d);
                std::io::copy(&mut sf, &mut df)?;
            }
            rustix::fs::FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, &name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, &name)?;
            }
            rustix::fs::FileType::CharacterDevice
            | rustix::fs::FileType::BlockDevice
            | rustix::fs::FileType::Fifo
            | rustix::fs::FileType::Socket => {
                rustix::fs::mknodat(dst, &name, ft, perm, st.st_rdev)?;
            }
            rustix::fs::FileType::Unknown => continue,
        }
        rustix::fs::chownat(
            dst,
            &name,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if ft != rustix::fs::FileType::Symlink {
            rustix::fs::chmodat(dst, &name, perm, AtFlags::empty())?;
        }
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        rustix::fs::utimensat(dst, &name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        if ft != rustix::fs::FileType::Directory && st.st_nlink > 1 {
            let parent = rustix::io::fcntl_dupfd_cloexec(dst, 0)?;
            links.insert(key, (parent, name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct FakeUsers(Mutex<HashMap<String, Vec<String>>>);

    impl VolumeUsers for FakeUsers {
        fn users(&self, name: &str) -> Vec<String> {
            self.0.lock().unwrap().get(name).cloned().unwrap_or_default()
        }
    }

    fn service(dir: &Path) -> (VolumeService, Arc<EventBus>) {
        let db = Arc::new(Db::open(dir).unwrap());
        let events = Arc::new(EventBus::new());
        (VolumeService::open(dir, db, events.clone()).unwrap(), events)
    }

    fn named(name: &str, labels: &[(&str, &str)]) -> VolumeCreateRequest {
        VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn creates_inspects_lists_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, events) = service(dir.path());
        let (_, mut rx) = events.subscribe(None);
        let v = s.create(named("data", &[("a", "1")])).unwrap();
        assert_eq!(v.name, "data");
        assert_eq!(v.driver, "local");
        assert_eq!(v.scope, Some(VolumeScopeEnum::LOCAL));
        assert_eq!(
            v.mountpoint,
            dir.path().join("volumes/data/_data").display().to_string()
        );
        assert!(v.created_at.as_deref().unwrap().ends_with('Z'));
        assert!(Path::new(&v.mountpoint).is_dir());
        let e = rx.try_recv().unwrap();
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("volume", "create"));
        assert_eq!(e.actor.attributes["driver"], "local");

        // Creating it again returns it unchanged, without an event.
        let again = s.create(named("data", &[("b", "2")])).unwrap();
        assert_eq!(again.labels, v.labels);
        assert!(rx.try_recv().is_err());

        let anon = s.create(VolumeCreateRequest::default()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(anon.labels.contains_key(ANONYMOUS_LABEL));
        assert_eq!(rx.try_recv().unwrap().actor.id, anon.name);

        assert_eq!(s.inspect("data").unwrap(), v);
        let err = s.inspect("nope").unwrap_err();
        assert_eq!(err.to_string(), "get nope: no such volume");
        assert_eq!(err.kind(), ErrorKind::NotFound);

        let all = s.list(&Filters::default()).unwrap().volumes.unwrap();
        assert_eq!(all.len(), 2);
        let f = |j: &str| Filters::parse(j).unwrap();
        let names = |l: VolumeListResponse| -> Vec<String> {
            l.volumes.unwrap().into_iter().map(|v| v.name).collect()
        };
        assert_eq!(names(s.list(&f(r#"{"name":["dat"]}"#)).unwrap()), vec!["data"]);
        assert_eq!(
            names(s.list(&f(r#"{"name":["^ata"]}"#)).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(names(s.list(&f(r#"{"label":["a=1"]}"#)).unwrap()), vec!["data"]);
        assert_eq!(
            names(s.list(&f(r#"{"driver":["other"]}"#)).unwrap()),
            Vec::<String>::new()
        );
        assert!(s.list(&f(r#"{"bogus":["x"]}"#)).is_err());

        std::fs::write(Path::new(&v.mountpoint).join("f"), b"hello").unwrap();
        s.remove("data", false).unwrap();
        assert!(!dir.path().join("volumes/data").exists());
        assert!(matches!(s.remove("data", false), Err(VolumeError::NotFound(_))));
        s.remove("data", true).unwrap();
        let e = rx.try_recv().unwrap();
        assert_eq!(e.action, "destroy");
    }

    #[test]
    fn refuses_bad_names_drivers_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = service(dir.path());
        let e = s.create(named("a", &[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert!(e.to_string().contains("too short"), "{e}");
        for bad in ["-ab", "a/b", "../x", "a b", "_x"] {
            let e = s.create(named(bad, &[])).unwrap_err();
            assert!(matches!(e, VolumeError::InvalidName(_)), "{bad}: {e}");
        }
        let mut req = named("ok", &[]);
        req.driver = Some("nfs-plugin".to_string());
        let e = s.create(req).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let opts = |kv: &[(&str, &str)]| {
            let mut r = named("ok", &[]);
            r.driver_opts = Some(kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
            r
        };
        let e = s.create(opts(&[("bogus", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "create ok: invalid option: \"bogus\"");
        let e = s.create(opts(&[("type", "tmpfs")])).unwrap_err();
        assert_eq!(e.to_string(), "create ok: missing required option: \"device\"");
        let e = s.create(opts(&[("size", "10m")])).unwrap_err();
        assert!(e.to_string().contains("no quota support"), "{e}");
        assert!(s.list(&Filters::default()).unwrap().volumes.unwrap().is_empty());
    }

    #[test]
    fn in_use_volumes_stay_and_prune_takes_anonymous_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = service(dir.path());
        let users = Arc::new(FakeUsers::default());
        s.set_users(users.clone());
        s.create(named("keep", &[])).unwrap();
        let used = s.create(named("used", &[])).unwrap();
        let anon = s.create(VolumeCreateRequest::default()).unwrap();
        let anon_used = s.create(VolumeCreateRequest::default()).unwrap();
        std::fs::write(Path::new(&anon.mountpoint).join("f"), vec![0u8; 1000]).unwrap();
        users.0.lock().unwrap().insert("used".into(), vec!["c1".into()]);
        users
            .0
            .lock()
            .unwrap()
            .insert(anon_used.name.clone(), vec!["c2".into()]);

        let e = s.remove("used", true).unwrap_err();
        assert_eq!(e.to_string(), "remove used: volume is in use - [c1]");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let dangling = s
            .list(&Filters::parse(r#"{"dangling":["true"]}"#).unwrap())
            .unwrap()
            .volumes
            .unwrap();
        let mut dn: Vec<&str> = dangling.iter().map(|v| v.name.as_str()).collect();
        dn.sort();
        let mut expect = vec!["keep", anon.name.as_str()];
        expect.sort();
        assert_eq!(dn, expect);

        let r = s.prune(&Filters::default()).unwrap();
        assert_eq!(r.volumes_deleted.unwrap(), vec![anon.name.clone()]);
        assert_eq!(r.space_reclaimed, Some(1000));

        // A reference (a container being created) protects a volume too.
        s.reference("keep", "creating").unwrap();
        let r = s.prune(&Filters::parse(r#"{"all":["true"]}"#).unwrap()).unwrap();
        assert!(r.volumes_deleted.unwrap().is_empty());
        s.release("keep", "creating");
        let r = s
            .prune(&Filters::parse(r#"{"all":["1"],"label!":["x"]}"#).unwrap())
            .unwrap();
        assert_eq!(r.volumes_deleted.unwrap(), vec!["keep".to_string()]);
        assert!(Path::new(&used.mountpoint).is_dir());
        assert!(s.prune(&Filters::parse(r#"{"all":["maybe"]}"#).unwrap()).is_err());

        let (v, created) = s.create_referenced(VolumeCreateRequest::default(), "c9").unwrap();
        assert!(created);
        assert_eq!(s.users(&v.name), vec!["c9".to_string()]);
        let du = s.disk_usage().unwrap();
        assert!(du.iter().all(|v| v.usage_data.is_some()));
    }

    #[test]
    fn reopening_keeps_rows_and_reconciles_directories() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _) = service(dir.path());
            s.create(named("kept", &[("k", "v")])).unwrap();
            s.create(named("lost", &[])).unwrap();
        }
        let vols = dir.path().join("volumes");
        std::fs::remove_dir_all(vols.join("lost")).unwrap();
        std::fs::create_dir_all(vols.join("adopted/_data")).unwrap();
        std::fs::create_dir_all(vols.join("_removing-old-1/_data/x")).unwrap();
        std::fs::create_dir_all(vols.join("not-a-volume")).unwrap();
        let (s, _) = service(dir.path());
        let mut names: Vec<String> = s
            .list(&Filters::default())
            .unwrap()
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        assert_eq!(names, vec!["adopted", "kept"]);
        assert_eq!(s.inspect("kept").unwrap().labels["k"], "v");
        assert!(!vols.join("_removing-old-1").exists());
        assert!(vols.join("not-a-volume").exists());
    }

    #[test]
    fn copy_up_fills_an_empty_volume_without_leaving_the_root() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = service(dir.path());
        let rootfs = dir.path().join("rootfs");
        let src = rootfs.join("srv/data");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/file"), b"content").unwrap();
        std::fs::hard_link(src.join("sub/file"), src.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(src.join("sub/file"), std::fs::Permissions::from_mode(0o640)).unwrap();
        // An image symlink pointing out of the root resolves inside it.
        std::os::unix::fs::symlink("/../../../../etc", rootfs.join("escape")).unwrap();

        let v = s.create(named("cu", &[])).unwrap();
        let data = Path::new(&v.mountpoint);
        assert!(s.copy_up("cu", &rootfs, "/srv/data").unwrap());
        assert_eq!(std::fs::read(data.join("sub/file")).unwrap(), b"content");
        assert_eq!(
            std::fs::metadata(data.join("sub/file")).unwrap().mode() & 0o7777,
            0o640
        );
        assert_eq!(
            std::fs::metadata(data.join("link")).unwrap().ino(),
            std::fs::metadata(data.join("sub/file")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(data.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::metadata(data).unwrap().mode() & 0o7777, 0o1777);
        // Not empty any more: nothing is copied again.
        assert!(!s.copy_up("cu", &rootfs, "/srv/data").unwrap());

        s.create(named("esc", &[])).unwrap();
        // `/escape` is `/etc` of the rootfs, which does not exist: nothing to copy, and the host's /etc is not read.
        assert!(!s.copy_up("esc", &rootfs, "/escape").unwrap());
        assert!(!s.copy_up("esc", &rootfs, "/missing").unwrap());
        assert!(
            dir_is_empty(
                rustix::fs::open(
                    s.data_path("esc"),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty()
                )
                .unwrap()
                .as_fd()
            )
            .unwrap()
        );
    }

    #[test]
    fn device_options_mount_for_the_first_user_and_unmount_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = service(dir.path());
        let mut req = named("tmp", &[]);
        req.driver_opts = Some(
            [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m,noexec")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        s.create(req).unwrap();
        let data = s.data_path("tmp");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
            }
        }
        let _guard = Unmount(data.clone());
        let p = s.mount("tmp", "c1").unwrap();
        assert_eq!(p, data);
        assert!(is_mount_root(&data));
        s.mount("tmp", "c2").unwrap();
        s.unmount("tmp", "c1").unwrap();
        assert!(is_mount_root(&data));
        let e = s.remove("tmp", false).unwrap_err();
        assert!(matches!(e, VolumeError::ActiveMounts(_)), "{e}");
        s.unmount("tmp", "c2").unwrap();
        assert!(!is_mount_root(&data));
        // Volumes with options are never pruned.
        let r = s.prune(&Filters::parse(r#"{"all":["true"]}"#).unwrap()).unwrap();
        assert!(r.volumes_deleted.unwrap().is_empty());
        s.remove("tmp", false).unwrap();
    }

    #[test]
    fn mount_options_parse_like_mount8() {
        let m = parse_mount_options("ro,nosuid,size=10m,uid=1000,rshared").unwrap();
        assert_eq!(m.flags, MountFlags::RDONLY | MountFlags::NOSUID);
        assert_eq!(m.data, vec!["size=10m", "uid=1000"]);
        assert_eq!(
            m.propagation,
            MountPropagationFlags::SHARED | MountPropagationFlags::REC
        );
        let m = parse_mount_options("bind,ro,rw").unwrap();
        assert_eq!(m.flags, MountFlags::BIND);
        assert!(parse_mount_options("remount").is_err());
        assert_eq!(berth_size("1.5k"), Some(1536));
        assert_eq!(berth_size("0"), Some(0));
        assert_eq!(berth_size("x"), None);
        assert!(name_matches("^ab$", "ab") && !name_matches("^ab$", "abc"));
    }
}
