//! `berth-engine`: the daemon's services. The Engine API routes in `berthd` are a thin layer over these.
//!
//! - [`db`]: metadata in SQLite (WAL), every change in one transaction.
//! - [`events`]: the events bus behind `/events`.
//! - [`images`]: the image service (references, pull, push, inspect, history, tag, remove, prune, save, load,
//!   import, disk usage) over `berth_image::store::ImageStore`.
//! - [`system`]: `/version` and `/info`.

pub mod containers;
pub mod db;
pub mod errdefs;
pub mod events;
pub mod filters;
pub mod images;
pub mod networks;
pub mod system;
pub mod time;
pub mod userns;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

pub use errdefs::{ErrorKind, HasKind};

/// What the engine is configured with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data root (`/var/lib/berth`).
    pub data_root: PathBuf,
    /// Registries reachable over plain HTTP (host[:port] or CIDR).
    pub insecure_registries: Vec<String>,
    /// Debug mode (reported by `/info`).
    pub debug: bool,
    /// The exec root (`/run/berth`): the runtime's state, bundles and monitors' sockets.
    pub exec_root: PathBuf,
    /// `berth-runtime`, `berth-monitor` and `berth-init`.
    pub runtime: PathBuf,
    /// The per-container monitor.
    pub monitor: PathBuf,
    /// The init for `--init`.
    pub init: PathBuf,
    /// The cgroup parent of containers.
    pub cgroup_parent: String,
    /// `userns-remap`: container root becomes an unprivileged host id (see [`userns`]); the images, layers,
    /// containers and volumes of a mapping live under their own data root, `<data-root>/<uid>.<gid>`.
    pub userns_remap: Option<String>,
    /// The default bridge (`None`: no default `bridge` network).
    pub bridge: Option<String>,
    /// `--bip`.
    pub bip: Option<String>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--default-address-pool`s: `(base CIDR, prefix)`.
    pub address_pools: Vec<(String, u8)>,
    /// The host's resolv.conf (`BERTH_RESOLV_CONF` or `/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

/// Opening the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The data root cannot be created.
    #[error("cannot create the data root {path}: {source}")]
    DataRoot {
        /// The data root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state database cannot be opened.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The image service cannot start.
    #[error(transparent)]
    Images(#[from] images::ImageError),
    /// The volume service cannot start.
    #[error(transparent)]
    Volumes(#[from] volumes::VolumeError),
    /// The network service cannot start.
    #[error(transparent)]
    Networks(#[from] networks::NetworkError),
    /// The container service cannot start.
    #[error(transparent)]
    Containers(#[from] containers::ContainerError),
    /// Containers of another `userns-remap` setting run (their data root is not this one).
    #[error(
        "container {0} of another user-namespace mapping (or of none) is still running: stop and remove the \
         containers of the previous userns-remap setting before changing it"
    )]
    ForeignContainers(String),
    /// `userns-remap` names no usable mapping.
    #[error("userns-remap: {0}")]
    Userns(#[from] userns::UsernsError),
}

/// The engine: state, events and services, shared by every request.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    db: Arc<db::Db>,
    events: Arc<events::EventBus>,
    id: String,
    images: Arc<images::ImageService>,
    volumes: Arc<volumes::VolumeService>,
    networks: Arc<networks::NetworkService>,
    containers: Arc<containers::ContainerService>,
}

impl Engine {
    /// Opens the data root: creates it, opens the database, the image store, and reconciles them (images the
    /// store holds that the database never committed — an interrupted pull or load — are removed).
    pub async fn open(mut config: EngineConfig) -> Result<Self, EngineError> {
        let remap = match &config.userns_remap {
            Some(spec) => {
                // BERTH_ETC_DIR points the lookup (passwd, group, subuid, subgid) at another directory: for tests
                // and for hosts whose id files live elsewhere.
                let files = match std::env::var_os("BERTH_ETC_DIR") {
                    Some(dir) => userns::IdFiles::in_dir(std::path::Path::new(&dir)),
                    None => userns::IdFiles::system(),
                };
                let remap = userns::Remap::resolve(spec, &files)?;
                config.data_root = config.data_root.join(remap.dir_name());
                Some(Arc::new(remap))
            }
            None => None,
        };
        if let Some(id) = containers::foreign_running(&config.exec_root, &config.data_root).await {
            return Err(EngineError::ForeignContainers(id));
        }
        std::fs::create_dir_all(&config.data_root).map_err(|source| EngineError::DataRoot {
            path: config.data_root.clone(),
            source,
        })?;
        let db = Arc::new(db::Db::open(&config.data_root)?);
        let id = db.meta_or_init("daemon-id", new_daemon_id)?;
        let events = Arc::new(events::EventBus::new());
        let images = Arc::new(images::ImageService::open(&config, db.clone(), events.clone()).await?);
        let volumes = Arc::new(volumes::VolumeService::open(
            &config.data_root,
            db.clone(),
            events.clone(),
        )?);
        let networks = networks::NetworkService::open(
            networks::NetworkConfig {
                bridge: config.bridge.clone(),
                bip: config.bip.clone(),
                mtu: config.mtu,
                pools: config.address_pools.clone(),
                resolv_conf: config.resolv_conf.clone(),
                netns_dir: config.exec_root.join("netns"),
            },
            &config.data_root,
            db.clone(),
            events.clone(),
        )
        .await?;
        let containers = containers::ContainerService::open(
            containers::ContainerConfig {
                data_root: config.data_root.clone(),
                exec_root: config.exec_root.clone(),
                runtime: config.runtime.clone(),
                monitor: config.monitor.clone(),
                init: config.init.clone(),
                cgroup_parent: config.cgroup_parent.clone(),
                remap,
            },
            db.clone(),
            events.clone(),
            images.clone(),
            volumes.clone(),
            networks.clone(),
        )
        .await?;
        Ok(Self {
            networks,
            config,
            db,
            events,
            id,
            images,
            volumes,
            containers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The events bus.
    pub fn events(&self) -> &events::EventBus {
        &self.events
    }

    /// The image service.
    pub fn images(&self) -> &images::ImageService {
        &self.images
    }

    /// The volume service.
    pub fn volumes(&self) -> &Arc<volumes::VolumeService> {
        &self.volumes
    }

    /// The network service.
    pub fn networks(&self) -> &Arc<networks::NetworkService> {
        &self.networks
    }

    /// The container service.
    pub fn containers(&self) -> &Arc<containers::ContainerService> {
        &self.containers
    }

    /// The state database.
    pub fn db(&self) -> &db::Db {
        &self.db
    }

    /// The daemon's id, stable across restarts.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `GET /info`.
    pub fn info(&self, event_listeners: i64) -> bollard_stubs::models::SystemInfo {
        system::info(system::InfoInputs {
            id: self.id.clone(),
            root_dir: self.config.data_root.display().to_string(),
            images: self.images.count().unwrap_or(0),
            containers: self.containers.counts(),
            userns_layers: self.containers.layer_mode().map(containers::LayerMode::describe),
            debug: self.config.debug,
            insecure_registries: self.config.insecure_registries.clone(),
            event_listeners,
        })
    }
}

/// A random id in docker's format (a UUID from the kernel).
fn new_daemon_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{:x}", time::now_nanos()))
}
