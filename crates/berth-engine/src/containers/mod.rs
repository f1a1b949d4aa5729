//! The container service: create, start, stop, kill, pause, remove, wait, rename, update, top, stats, logs,
//! attach, exec, archives and prune, over the records in SQLite, the overlay2 layers and one `berth-monitor` per
//! running container (which starts `berth-runtime`, holds the container's stdio and log, and records its exit).
//!
//! Consistency across a daemon crash: a container becomes visible only when its record is committed, after its
//! layers and files exist; at start-up [`ContainerService::open`] removes layers and state directories no record
//! owns, reconnects to every monitor that still runs (live restore), and records the exits that happened while the
//! daemon was away.

pub mod archive;
pub mod idmap;
pub mod layers;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod record;
pub mod spec;
pub mod stats;
mod store;

mod connect;
mod create;
mod exec;
mod io;
mod lifecycle;
mod restore;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::watch;

use crate::db::Db;
use crate::errdefs::{ErrorKind, HasKind};
use crate::events::{Event, EventBus};
use crate::images::ImageService;

pub use exec::{ExecIo, ExecService};
pub use io::ByteStream;
pub use lifecycle::{AttachTarget, WaitCondition};
pub use record::{Record, Status};

/// A container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has that name or id.
    #[error("No such container: {0}")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the container's state or another container.
    #[error("{0}")]
    Conflict(String),
    /// The image side failed (unknown image, ...).
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The container's layers failed.
    #[error(transparent)]
    Layers(#[from] layers::LayersError),
    /// The monitor or the runtime failed.
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
    /// Copying files in or out failed.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// The operation is not allowed (docker answers 403).
    #[error("{0}")]
    Forbidden(String),
    /// A network operation failed.
    #[error(transparent)]
    Network(#[from] crate::networks::NetworkError),
    /// Something the daemon does on the host failed.
    #[error("{0}")]
    System(String),
}

impl HasKind for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) => ErrorKind::InvalidParameter,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Image(e) => e.kind(),
            Self::Archive(e) => e.kind(),
            Self::Network(e) => e.kind(),
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Monitor(monitor::MonitorError::Refused(m)) if runtime_says_invalid(m) => {
                ErrorKind::InvalidParameter
            }
            Self::Store(_) | Self::Layers(_) | Self::Monitor(_) | Self::System(_) => ErrorKind::System,
        }
    }
}

/// Runtime errors that are the user's (a program that does not exist or cannot run): dockerd answers 400.
fn runtime_says_invalid(m: &str) -> bool {
    m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("permission denied")
}

/// The exit code docker gives a container whose program could not be started: 127 not found, 126 not executable.
pub fn start_failure_code(message: &str) -> i64 {
    if message.contains("executable file not found") || message.contains("no such file or directory") {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        128
    }
}

/// Result of container operations.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// The first container that runs from `exec_root` and does not belong to `data_root` (its directory is not
/// there): a container of another `userns-remap` mapping (or of none). Looked at before the data root is created,
/// so that a refused switch changes nothing.
pub async fn foreign_running(exec_root: &Path, data_root: &Path) -> Option<String> {
    let rd = std::fs::read_dir(exec_root.join("c")).ok()?;
    for ent in rd.flatten() {
        let id = ent.file_name().to_string_lossy().into_owned();
        if !data_root.join("containers").join(&id).exists() && monitor::alive(&ent.path()).await {
            return Some(id);
        }
    }
    None
}

/// Where the service keeps things and which binaries it runs.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The data root (`/var/lib/berth`).
    pub data_root: PathBuf,
    /// The exec root (`/run/berth`).
    pub exec_root: PathBuf,
    /// `berth-runtime`.
    pub runtime: PathBuf,
    /// `berth-monitor`.
    pub monitor: PathBuf,
    /// `berth-init` (for `--init`).
    pub init: PathBuf,
    /// The cgroup parent of containers (`/berth`).
    pub cgroup_parent: String,
    /// The daemon's `userns-remap` mapping.
    pub remap: Option<Arc<crate::userns::Remap>>,
}

/// How a remapped container sees the image's layers as owned by its mapped ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerMode {
    /// Idmapped mounts of the layer directories (the layers stay owned by the host's ids).
    Idmapped,
    /// The layers' owners were shifted once, on first use (a `shifted` marker in the layer's directory).
    Shifted,
}

impl LayerMode {
    /// As `berth info` shows it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Idmapped => "idmapped mounts",
            Self::Shifted => "shifted unpack",
        }
    }
}

/// What waiters watch: changes whenever the container starts, exits or is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// A process is alive.
    pub running: bool,
    /// How many times it has exited (or failed to start) since the daemon loaded it.
    pub exits: u64,
    /// The last exit code.
    pub exit_code: i64,
    /// Removed.
    pub removed: bool,
}

/// A container as held in memory.
#[derive(Debug)]
pub(crate) struct Entry {
    pub rec: Mutex<Record>,
    /// Serialises lifecycle operations (start, stop, remove, ...).
    pub op: tokio::sync::Mutex<()>,
    pub tx: watch::Sender<Snapshot>,
    /// Attach requests waiting for the next start.
    pub pending: Mutex<Vec<lifecycle::PendingAttach>>,
    /// The ids of its execs.
    pub execs: Mutex<Vec<String>>,
}

impl Entry {
    fn new(rec: Record) -> Arc<Self> {
        let snap = Snapshot {
            running: rec.state.status.is_running(),
            exits: 0,
            exit_code: rec.state.exit_code,
            removed: false,
        };
        Arc::new(Self {
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            tx: watch::channel(snap).0,
            pending: Mutex::new(Vec::new()),
            execs: Mutex::new(Vec::new()),
        })
    }

    pub fn rec(&self) -> std::sync::MutexGuard<'_, Record> {
        self.rec.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Record {
        self.rec().clone()
    }

    pub fn id(&self) -> String {
        self.rec().id.clone()
    }
}

/// The container service.
#[derive(Debug)]
pub struct ContainerService {
    pub(crate) cfg: ContainerConfig,
    pub(crate) db: Arc<Db>,
    pub(crate) events: Arc<EventBus>,
    pub(crate) images: Arc<ImageService>,
    pub(crate) volumes: Arc<crate::volumes::VolumeService>,
    pub(crate) networks: Arc<crate::networks::NetworkService>,
    pub(crate) dirs: record::Dirs,
    pub(crate) layers_root: PathBuf,
    pub(crate) entries: RwLock<HashMap<String, Arc<Entry>>>,
    pub(crate) execs: ExecService,
    /// Serialises name reservation in create and rename.
    pub(crate) names: tokio::sync::Mutex<()>,
    /// With `userns-remap`: a user namespace with the mapping (for idmapped mounts) and the layer mode.
    pub(crate) userns: Option<(idmap::UserNs, LayerMode)>,
    /// Serialises the one-time shift of layers.
    pub(crate) shift_lock: Mutex<()>,
}

impl ContainerService {
    /// Opens the service: loads the records, sweeps what no record owns, reconnects to running monitors.
    pub async fn open(
        cfg: ContainerConfig,
        db: Arc<Db>,
        events: Arc<EventBus>,
        images: Arc<ImageService>,
        volumes: Arc<crate::volumes::VolumeService>,
        networks: Arc<crate::networks::NetworkService>,
    ) -> Result<Arc<Self>> {
        store::init(&db)?;
        let dirs = record::Dirs {
            containers: cfg.data_root.join("containers"),
            run: cfg.exec_root.join("c"),
        };
        for d in [&dirs.containers, &dirs.run, &cfg.exec_root.join("runtime")] {
            std::fs::create_dir_all(d)
                .map_err(|e| ContainerError::System(format!("cannot create {}: {e}", d.display())))?;
        }
        let userns = match &cfg.remap {
            Some(remap) => {
                let ns = idmap::UserNs::new(&remap.uids, &remap.gids)
                    .map_err(|e| ContainerError::System(format!("userns-remap: {e}")))?;
                // BERTH_USERNS_LAYERS=shifted forces the fallback (to test and measure it where idmapped mounts
                // work).
                let forced_shift = std::env::var("BERTH_USERNS_LAYERS").is_ok_and(|v| v == "shifted");
                let mode = if !forced_shift && idmap::supported(&cfg.data_root, &ns) {
                    LayerMode::Idmapped
                } else {
                    LayerMode::Shifted
                };
                tracing::info!(mapping = %remap.dir_name(), layers = mode.describe(), "user namespace remapping");
                Some((ns, mode))
            }
            None => None,
        };
        let svc = Arc::new(Self {
            userns,
            shift_lock: Mutex::new(()),
            layers_root: cfg.data_root.join("overlay2"),
            cfg,
            db,
            events,
            images,
            volumes,
            networks,
            dirs,
            entries: RwLock::new(HashMap::new()),
            execs: ExecService::default(),
            names: tokio::sync::Mutex::new(()),
        });
        svc.clone().restore().await?;
        Ok(svc)
    }

    pub(crate) fn entries(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn entries_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds a container by full id, name (with or without `/`) or unique id prefix, as docker does.
    pub(crate) fn lookup(&self, name: &str) -> Result<Arc<Entry>> {
        let entries = self.entries();
        if name.is_empty() {
            return Err(ContainerError::NotFound(name.to_string()));
        }
        if let Some(e) = entries.get(name) {
            return Ok(e.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        for e in entries.values() {
            if e.rec().name == bare {
                return Ok(e.clone());
            }
        }
        if name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<&Arc<Entry>> = entries
                .keys()
                .filter(|k| k.starts_with(name))
                .map(|k| &entries[k])
                .collect();
            match found.len() {
                1 => return Ok(found.remove(0).clone()),
                0 => {}
                _ => {
                    return Err(ContainerError::Invalid(format!(
                        "multiple IDs found with provided prefix: {name}"
                    )));
                }
            }
        }
        Err(ContainerError::NotFound(name.to_string()))
    }

    /// The record of a container.
    pub fn get(&self, name: &str) -> Result<Record> {
        Ok(self.lookup(name)?.snapshot())
    }

    /// Publishes a container event with docker's attributes (name, image, labels).
    pub(crate) fn event(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut attrs: Vec<(&str, &str)> = vec![("name", rec.name.as_str()), ("image", rec.image.as_str())];
        let labels = rec.config.labels.clone().unwrap_or_default();
        for (k, v) in &labels {
            attrs.push((k.as_str(), v.as_str()));
        }
        attrs.extend_from_slice(extra);
        self.events
            .publish(Event::new("container", action, &rec.id, &attrs));
    }

    /// Writes a record to the database.
    pub(crate) fn save(&self, rec: &Record) -> Result<()> {
        store::update(&self.db, rec)?;
        Ok(())
    }

    /// The container's layers.
    pub(crate) fn layers(&self, id: &str) -> layers::ContainerLayers {
        layers::ContainerLayers::new(&self.layers_root, id)
    }

    /// The containers using image `id` (for rmi): (container id, running).
    pub fn users_of_image(&self, image_id: &str) -> Vec<(String, bool)> {
        self.entries()
            .values()
            .filter_map(|e| {
                let r = e.rec();
                (r.image_id == image_id).then(|| (r.id.clone(), r.state.status.is_running()))
            })
            .collect()
    }

    /// The containers using volume `name`.
    pub fn users_of_volume(&self, name: &str) -> Vec<String> {
        self.entries()
            .values()
            .filter_map(|e| {
                let r = e.rec();
                r.mounts
                    .iter()
                    .any(|m| m.name.as_deref() == Some(name))
                    .then(|| r.id.clone())
            })
            .collect()
    }

    /// How many containers are in each state: (total, running, paused, stopped).
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries().values() {
            c.0 += 1;
            match e.rec().state.status {
                Status::Running | Status::Restarting => c.1 += 1,
                Status::Paused => c.2 += 1,
                _ => c.3 += 1,
            }
        }
        c
    }

    /// How remapped containers see image layers (None without `userns-remap`).
    pub fn layer_mode(&self) -> Option<LayerMode> {
        self.userns.as_ref().map(|(_, m)| *m)
    }

    /// The mapping a container with `host` runs under: the daemon's, unless it asked for `--userns=host`.
    pub(crate) fn remap_for(
        &self,
        host: &bollard_stubs::models::HostConfig,
    ) -> Option<&crate::userns::Remap> {
        if host.userns_mode.as_deref() == Some("host") {
            return None;
        }
        self.cfg.remap.as_deref()
    }

    /// Mounts the container's root (already mounted is fine): image layers idmapped or shifted for a remapped
    /// container, then the init and writable layers. Blocking.
    pub(crate) fn mount_root(&self, rec: &Record) -> Result<PathBuf> {
        let ly = self.layers(&rec.id);
        if layers::is_mount_point(&ly.merged()) {
            return Ok(ly.merged());
        }
        let sys = |e: idmap::IdmapError| ContainerError::System(e.to_string());
        match (self.remap_for(&rec.host_config), &self.userns) {
            (Some(_), Some((ns, LayerMode::Idmapped))) => {
                // A layer shifted earlier (the daemon ran in the shifted mode once) already belongs to the
                // mapped ids: it is used as it is; the others go through idmapped mounts.
                let shifted = |diff: &PathBuf| diff.parent().is_some_and(|p| p.join("shifted").exists());
                let to_map: Vec<PathBuf> = rec.lowers.iter().filter(|d| !shifted(d)).cloned().collect();
                let at = ly.dir().join("idmap");
                let mut attached = idmap::attach(&to_map, ns, &at).map_err(sys)?.into_iter();
                let lowers: Vec<PathBuf> = rec
                    .lowers
                    .iter()
                    .map(|d| {
                        if shifted(d) {
                            Some(d.clone())
                        } else {
                            attached.next()
                        }
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ContainerError::System("an idmapped layer is missing".into()))?;
                let mounted = ly.mount(&lowers);
                // The overlay holds its lower layers; the attached idmapped mounts are no longer needed.
                let _ = idmap::detach(&at);
                Ok(mounted?)
            }
            (Some(remap), Some((_, LayerMode::Shifted))) => {
                let _guard = self.shift_lock.lock().unwrap_or_else(PoisonError::into_inner);
                for diff in &rec.lowers {
                    let marker = diff.parent().map(|p| p.join("shifted")).unwrap_or_default();
                    if marker.exists() {
                        continue;
                    }
                    idmap::shift_tree(diff, &remap.uids, &remap.gids).map_err(sys)?;
                    std::fs::write(&marker, remap.dir_name()).map_err(|e| {
                        ContainerError::System(format!("cannot write {}: {e}", marker.display()))
                    })?;
                }
                Ok(ly.mount(&rec.lowers)?)
            }
            _ => Ok(ly.mount(&rec.lowers)?),
        }
    }

    /// The directory of the container's bundle and monitor.
    pub(crate) fn run_dir(&self, id: &str) -> PathBuf {
        self.dirs.run(id)
    }

    /// The runtime's `--root`.
    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.cfg.exec_root.join("runtime")
    }

    /// Runs `berth-runtime --root R <args>`; the error is the runtime's message.
    pub(crate) async fn runtime(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::new(&self.cfg.runtime);
        cmd.arg("--root").arg(self.runtime_root()).args(args);
        cmd.stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            ContainerError::System(format!(
                "cannot run the runtime {}: {e}",
                self.cfg.runtime.display()
            ))
        })?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            let _ = w.write_all(&data).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ContainerError::System(format!("the runtime failed: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(ContainerError::System(if msg.is_empty() {
                format!("the runtime failed with {}", out.status)
            } else {
                msg
            }))
        }
    }

    /// Whether a path is under the data root (a sanity check before removing trees).
    pub(crate) fn owned(&self, p: &Path) -> bool {
        p.starts_with(&self.cfg.data_root) || p.starts_with(&self.cfg.exec_root)
    }
}
