//! The image service: references (tags and digests, in SQLite), and every image operation of the Engine API over
//! an [`ImageBackend`] (the store and registry client of `berth_image`).
//!
//! Ordering for crash safety: the store's files are complete before the database records an image, and the
//! database forgets an image before the store deletes it. At start, images the store holds that the database never
//! committed (an interrupted pull, load or import) are removed and their layers collected.

pub mod backend;
mod changes;
pub mod jsonmessage;
mod naming;
mod store_backend;
mod views;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use berth_image::reference::Reference;
use bollard_stubs::models::{
    ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect, ImagePruneResponse, ImageSummary,
};
use serde::Serialize;
use tokio::sync::mpsc;

pub use backend::{
    BackendError, ImageBackend, ImageRefs, ImageUsers, ImportOptions, NoUsers, Pulled, Pushed, Reader,
    RegistryAuth, StoredImage, Writer,
};
pub use jsonmessage::JsonMessage;
pub use naming::short_id;

use crate::db::{Db, DbError, write};
use crate::errdefs::{ErrorKind, HasKind};
use crate::events::{Event, EventBus};
use crate::filters::{FilterError, Filters};

/// An image operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the name.
    #[error("No such image: {0}")]
    NotFound(String),
    /// An id prefix matches several images.
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// A reference that does not parse.
    #[error("invalid reference format: {0}")]
    BadReference(String),
    /// A parameter that does not fit.
    #[error("{0}")]
    BadParameter(String),
    /// Filters that do not fit.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The image is in use or referenced elsewhere.
    #[error("conflict: unable to delete {id} (must be forced) - {reason}")]
    Conflict {
        /// Short id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The image is used by a running container; even force does not help.
    #[error(
        "conflict: unable to delete {id} (cannot be forced) - image is being used by running container {container}"
    )]
    InUseRunning {
        /// Short id.
        id: String,
        /// The container.
        container: String,
    },
    /// The state database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The store or the registry failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<rusqlite::Error> for ImageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl HasKind for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Ambiguous(_) | Self::BadReference(_) | Self::BadParameter(_) | Self::Filter(_) => {
                ErrorKind::InvalidParameter
            }
            Self::Conflict { .. } | Self::InUseRunning { .. } => ErrorKind::Conflict,
            Self::Db(_) => ErrorKind::System,
            Self::Backend(b) => b.kind,
        }
    }
}

/// `GET /system/df` (the API 1.47 shape).
#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    /// Bytes used by all layers.
    #[serde(rename = "LayersSize")]
    pub layers_size: i64,
    /// The images.
    #[serde(rename = "Images")]
    pub images: Vec<ImageSummary>,
    /// Containers (none yet).
    #[serde(rename = "Containers")]
    pub containers: Vec<serde_json::Value>,
    /// Volumes (none yet).
    #[serde(rename = "Volumes")]
    pub volumes: Vec<serde_json::Value>,
    /// Build cache (none).
    #[serde(rename = "BuildCache")]
    pub build_cache: Vec<serde_json::Value>,
}

/// The image service.
#[derive(Debug)]
pub struct ImageService {
    db: Arc<Db>,
    events: Arc<EventBus>,
    backend: Arc<dyn ImageBackend>,
    users: RwLock<Arc<dyn ImageUsers>>,
    /// Serialises changes of references against removal and prune.
    write_lock: tokio::sync::Mutex<()>,
}

impl ImageService {
    /// Opens the store under the data root and reconciles it with the database.
    pub async fn open(
        config: &crate::EngineConfig,
        db: Arc<Db>,
        events: Arc<EventBus>,
    ) -> Result<Self, ImageError> {
        let backend = store_backend::StoreBackend::open(config)?;
        Self::with_backend(db, events, Arc::new(backend))
    }

    /// A service over any backend (tests use an in-memory one).
    pub fn with_backend(
        db: Arc<Db>,
        events: Arc<EventBus>,
        backend: Arc<dyn ImageBackend>,
    ) -> Result<Self, ImageError> {
        let s = Self {
            db,
            events,
            backend,
            users: RwLock::new(Arc::new(NoUsers)),
            write_lock: tokio::sync::Mutex::new(()),
        };
        s.reconcile()?;
        Ok(s)
    }

    /// Lets the container service answer "who uses this image".
    pub fn set_users(&self, users: Arc<dyn ImageUsers>) {
        *self
            .users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = users;
    }

    fn users_of(&self, id: &str) -> Vec<(String, bool)> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .users(id)
    }

    fn reconcile(&self) -> Result<(), ImageError> {
        let committed: BTreeSet<String> = self.db.images()?.into_iter().map(|r| r.id).collect();
        let stored: BTreeSet<String> = self.backend.list()?.into_iter().collect();
        let mut removed = 0;
        for id in stored.difference(&committed) {
            tracing::info!(image = %id, "removing an image the database never committed (interrupted operation)");
            self.backend.remove(id)?;
            removed += 1;
        }
        let missing: Vec<&String> = committed.difference(&stored).collect();
        if !missing.is_empty() {
            self.db.transaction::<_, ImageError>(|tx| {
                for id in &missing {
                    tracing::warn!(image = %id, "the store lost a committed image; forgetting it");
                    write::remove_image(tx, id)?;
                }
                Ok(())
            })?;
        }
        if removed > 0 {
            let freed = self.backend.gc()?;
            tracing::info!(bytes = freed, "collected layers of interrupted operations");
        }
        Ok(())
    }

    /// How many images there are.
    pub fn count(&self) -> Result<i64, ImageError> {
        Ok(i64::try_from(self.db.images()?.len()).unwrap_or(i64::MAX))
    }

    /// Resolves a name as dockerd does: a full or short image id, or a reference (tag `latest` by default).
    pub fn resolve(&self, name: &str) -> Result<String, ImageError> {
        Ok(self.resolve_detail(name)?.0)
    }

    /// Like [`Self::resolve`], and the stored reference it went through (`None` for ids).
    fn resolve_detail(&self, name: &str) -> Result<(String, Option<String>), ImageError> {
        let not_found = || ImageError::NotFound(naming::display_name(name));
        if let Some(id) = naming::full_id(name) {
            return match self.db.image(&id)? {
                Some(_) => Ok((id, None)),
                None => Err(not_found()),
            };
        }
        if let Ok(r) = Reference::parse(name) {
            if let Some(row) = self.db.reference(&naming::ref_key(&r))? {
                return Ok((row.image_id, Some(row.name)));
            }
            // A digest reference names the image whose repo digest it is, whatever the tag.
            if let Some(d) = r.digest()
                && let Some(row) = self.db.reference(&format!("{}@{d}", r.name()))?
            {
                return Ok((row.image_id, Some(row.name)));
            }
        }
        if naming::is_id_prefix(name) {
            let prefix = format!("sha256:{}", name.trim_start_matches("sha256:"));
            let hits: Vec<String> = self
                .db
                .images()?
                .into_iter()
                .map(|r| r.id)
                .filter(|id| id.starts_with(&prefix))
                .collect();
            return match hits.len() {
                0 => Err(not_found()),
                1 => Ok((hits.into_iter().next().unwrap_or_default(), None)),
                _ => Err(ImageError::Ambiguous(name.to_string())),
            };
        }
        Err(not_found())
    }

    fn stored(&self, id: &str) -> Result<StoredImage, ImageError> {
        Ok(self.backend.get(id)?)
    }

    /// `POST /images/create?fromImage=&tag=&platform=`: pulls, streaming progress to `progress`. The final
    /// `Digest:` and `Status:` lines are sent here.
    pub async fn pull(
        &self,
        from_image: &str,
        tag: &str,
        platform: Option<&str>,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> Result<String, ImageError> {
        let r = naming::pull_reference(from_image, tag)?;
        let key = naming::ref_key(&r);
        let shown = r.tag().map_or_else(|| r.manifest_reference(), str::to_string);
        let before = self.db.reference(&key)?.map(|row| row.image_id);
        // "Pulling from" goes out with the first message of the store, so that an image that cannot be resolved
        // fails before anything is streamed (the API then answers with a plain error status).
        let (btx, mut brx) = mpsc::channel::<JsonMessage>(256);
        let forward = async {
            let mut first = true;
            while let Some(m) = brx.recv().await {
                if first {
                    first = false;
                    let hdr =
                        JsonMessage::status_id(format!("Pulling from {}", r.repository()), shown.clone());
                    let _ = progress.send(hdr).await;
                }
                let _ = progress.send(m).await;
            }
        };
        let (pulled, ()) = tokio::join!(self.backend.pull(&key, platform, auth, btx), forward);
        let pulled = pulled?;
        let now = crate::time::now_nanos();
        {
            let _w = self.write_lock.lock().await;
            self.db.transaction::<_, ImageError>(|tx| {
                write::add_image(tx, &pulled.id, now)?;
                write::set_ref(tx, &key, &pulled.id, r.digest().is_some(), now)?;
                if !pulled.manifest_digest.is_empty() {
                    write::set_ref(
                        tx,
                        &format!("{}@{}", r.name(), pulled.manifest_digest),
                        &pulled.id,
                        true,
                        now,
                    )?;
                }
                Ok(())
            })?;
        }
        let _ = progress
            .send(JsonMessage::status(format!("Digest: {}", pulled.manifest_digest)))
            .await;
        let status = if before.as_deref() == Some(pulled.id.as_str()) {
            format!("Status: Image is up to date for {}", r.familiar())
        } else {
            format!("Status: Downloaded newer image for {}", r.familiar())
        };
        let _ = progress.send(JsonMessage::status(status)).await;
        self.events.publish(Event::new(
            "image",
            "pull",
            &r.familiar(),
            &[("name", &r.familiar_name())],
        ));
        Ok(pulled.id)
    }

    /// `GET /images/json`.
    pub fn list(
        &self,
        filters: &Filters,
        _all: bool,
        digests: bool,
    ) -> Result<Vec<ImageSummary>, ImageError> {
        filters.validate(&[
            "dangling",
            "label",
            "label!",
            "before",
            "since",
            "reference",
            "until",
        ])?;
        let dangling = filters.bool_value("dangling")?;
        let before = filters
            .get("before")
            .first()
            .map(|n| self.resolve(n))
            .transpose()?;
        let since = filters
            .get("since")
            .first()
            .map(|n| self.resolve(n))
            .transpose()?;
        let rows = self.db.images()?;
        let created_of = |id: &str| -> i64 {
            self.stored(id)
                .map(|s| views::created_secs(&s.config))
                .unwrap_or(0)
        };
        let before_t = before.as_deref().map(created_of);
        let since_t = since.as_deref().map(created_of);
        let until = match filters.get("until").first() {
            Some(u) => Some(naming::until_secs(u)?),
            None => None,
        };
        let mut out = Vec::new();
        for row in rows {
            let Ok(stored) = self.stored(&row.id) else {
                continue;
            };
            let mut refs = self.db.refs_of(&row.id)?;
            if filters.contains("reference") {
                // Like dockerd: only the references that match are listed.
                let patterns = filters.get("reference");
                refs.retain(|r| naming::reference_filter(&patterns, std::slice::from_ref(r)));
                if refs.is_empty() {
                    continue;
                }
            }
            let summary = views::summary(&stored, &refs, digests, self.users_of(&row.id).len());
            let tagged = !summary.repo_tags.is_empty();
            if dangling.is_some_and(|d| d == tagged) {
                continue;
            }
            if before_t.is_some_and(|t| summary.created >= t) || since_t.is_some_and(|t| summary.created <= t)
            {
                continue;
            }
            if until.is_some_and(|u| summary.created > u) {
                continue;
            }
            if !filters.match_labels("label", &summary.labels) {
                continue;
            }
            if filters.contains("label!")
                && filters
                    .get("label!")
                    .iter()
                    .any(|l| Filters::from_pairs([("label", *l)]).match_labels("label", &summary.labels))
            {
                continue;
            }
            out.push(summary);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `GET /images/{name}/json`.
    pub fn inspect(&self, name: &str) -> Result<ImageInspect, ImageError> {
        let id = self.resolve(name)?;
        let stored = self.stored(&id)?;
        let refs = self.db.refs_of(&id)?;
        let row = self.db.image(&id)?;
        Ok(views::inspect(&stored, &refs, row.and_then(|r| r.last_tag_time)))
    }

    /// `GET /images/{name}/history`.
    pub fn history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>, ImageError> {
        let id = self.resolve(name)?;
        let stored = self.stored(&id)?;
        let refs = self.db.refs_of(&id)?;
        Ok(views::history(&stored, &refs))
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    pub async fn tag(&self, name: &str, repo: &str, tag: &str) -> Result<(), ImageError> {
        let id = self.resolve(name)?;
        let target = naming::tag_reference(repo, tag)?;
        let key = naming::ref_key(&target);
        let now = crate::time::now_nanos();
        {
            let _w = self.write_lock.lock().await;
            self.db.transaction::<_, ImageError>(|tx| {
                write::set_ref(tx, &key, &id, false, now)?;
                Ok(())
            })?;
        }
        self.events
            .publish(Event::new("image", "tag", &id, &[("name", &target.familiar())]));
        Ok(())
    }

    /// `DELETE /images/{name}?force=&noprune=`.
    pub async fn remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>, ImageError> {
        let _w = self.write_lock.lock().await;
        let (id, via) = self.resolve_detail(name)?;
        let refs = self.db.refs_of(&id)?;
        let mut out = Vec::new();
        let mut untag = Vec::new();
        if let Some(key) = via {
            untag.push(key.clone());
            let remaining_tags: Vec<&crate::db::RefRow> =
                refs.iter().filter(|x| x.name != key && !x.is_digest).collect();
            if remaining_tags.is_empty() {
                // The last tag: its repo digests go too, and the image with them.
                untag.extend(refs.iter().filter(|x| x.name != key).map(|x| x.name.clone()));
            } else {
                self.untag(&id, &untag, &mut out)?;
                return Ok(out);
            }
        } else {
            let repos: BTreeSet<String> = refs.iter().map(|x| naming::repo_of(&x.name)).collect();
            if repos.len() > 1 && !force {
                return Err(ImageError::Conflict {
                    id: short_id(&id),
                    reason: "image is referenced in multiple repositories".to_string(),
                });
            }
            untag.extend(refs.iter().map(|x| x.name.clone()));
        }
        let users = self.users_of(&id);
        if let Some((c, _)) = users.iter().find(|(_, running)| *running) {
            return Err(ImageError::InUseRunning {
                id: short_id(&id),
                container: short_id(c),
            });
        }
        if let Some((c, _)) = users.first()
            && !force
        {
            return Err(ImageError::Conflict {
                id: short_id(&id),
                reason: format!("image is being used by stopped container {}", short_id(c)),
            });
        }
        if !users.is_empty() {
            // Forced while a container uses it: docker only untags then.
            self.untag(&id, &untag, &mut out)?;
            return Ok(out);
        }
        self.untag_and_delete(&id, &untag, &mut out)?;
        Ok(out)
    }

    fn untag(
        &self,
        id: &str,
        names: &[String],
        out: &mut Vec<ImageDeleteResponseItem>,
    ) -> Result<(), ImageError> {
        self.db.transaction::<_, ImageError>(|tx| {
            for n in names {
                write::remove_ref(tx, n)?;
            }
            Ok(())
        })?;
        for n in names {
            let familiar = naming::familiar_key(n);
            self.events
                .publish(Event::new("image", "untag", id, &[("name", &familiar)]));
            out.push(ImageDeleteResponseItem {
                untagged: Some(familiar),
                deleted: None,
            });
        }
        Ok(())
    }

    fn untag_and_delete(
        &self,
        id: &str,
        names: &[String],
        out: &mut Vec<ImageDeleteResponseItem>,
    ) -> Result<u64, ImageError> {
        let size = self.stored(id).map(|s| s.size).unwrap_or(0);
        self.db.transaction::<_, ImageError>(|tx| {
            for n in names {
                write::remove_ref(tx, n)?;
            }
            write::remove_image(tx, id)?;
            Ok(())
        })?;
        for n in names {
            let familiar = naming::familiar_key(n);
            self.events
                .publish(Event::new("image", "untag", id, &[("name", &familiar)]));
            out.push(ImageDeleteResponseItem {
                untagged: Some(familiar),
                deleted: None,
            });
        }
        self.backend.remove(id)?;
        out.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(id.to_string()),
        });
        self.events
            .publish(Event::new("image", "delete", id, &[("name", id)]));
        let _ = self.backend.gc()?;
        Ok(u64::try_from(size).unwrap_or(0))
    }

    /// `POST /images/prune?filters=`: dangling images, or with `dangling=false` every image no container uses.
    pub async fn prune(&self, filters: &Filters) -> Result<ImagePruneResponse, ImageError> {
        filters.validate(&["dangling", "until", "label", "label!"])?;
        let only_dangling = filters.bool_value("dangling")?.unwrap_or(true);
        let until = match filters.get("until").first() {
            Some(u) => Some(naming::until_secs(u)?),
            None => None,
        };
        let _w = self.write_lock.lock().await;
        let mut deleted = Vec::new();
        let mut before = self.backend.layers_size().unwrap_or(0);
        for row in self.db.images()? {
            let refs = self.db.refs_of(&row.id)?;
            let tagged = refs.iter().any(|r| !r.is_digest);
            if only_dangling && tagged {
                continue;
            }
            if !self.users_of(&row.id).is_empty() {
                continue;
            }
            let Ok(stored) = self.stored(&row.id) else {
                continue;
            };
            let labels = views::labels(&stored.config);
            if !filters.match_labels("label", &labels) {
                continue;
            }
            if filters
                .get("label!")
                .iter()
                .any(|l| Filters::from_pairs([("label", *l)]).match_labels("label", &labels))
            {
                continue;
            }
            if until.is_some_and(|u| views::created_secs(&stored.config) > u) {
                continue;
            }
            let names: Vec<String> = refs.iter().map(|r| r.name.clone()).collect();
            self.untag_and_delete(&row.id, &names, &mut deleted)?;
        }
        let after = self.backend.layers_size().unwrap_or(0);
        before = before.max(after);
        if !deleted.is_empty() {
            self.events.publish(Event::new(
                "image",
                "prune",
                "",
                &[("reclaimed", &(before - after).to_string())],
            ));
        }
        Ok(ImagePruneResponse {
            images_deleted: Some(deleted),
            space_reclaimed: Some(before - after),
        })
    }

    /// Resolves the names of a save (`GET /images/get?names=`, `GET /images/{name}/get`) before anything is
    /// streamed: each image with the tags to record (the named tag, or every tag when named by id).
    pub fn save_plan(&self, names: &[String]) -> Result<Vec<(String, Vec<String>)>, ImageError> {
        if names.is_empty() {
            return Err(ImageError::BadParameter(
                "no image names given to save".to_string(),
            ));
        }
        let mut images: Vec<(String, Vec<String>)> = Vec::new();
        for n in names {
            let (id, via) = self.resolve_detail(n)?;
            let tags: Vec<String> = match via {
                Some(key) if !key.contains('@') => vec![naming::familiar_key(&key)],
                Some(_) => Vec::new(),
                None => self
                    .db
                    .refs_of(&id)?
                    .into_iter()
                    .filter(|r| !r.is_digest)
                    .map(|r| naming::familiar_key(&r.name))
                    .collect(),
            };
            match images.iter_mut().find(|(i, _)| *i == id) {
                Some((_, t)) => t.extend(tags.into_iter().filter(|x| !t.contains(x)).collect::<Vec<_>>()),
                None => images.push((id, tags)),
            }
        }
        Ok(images)
    }

    /// Writes a docker-archive of a [`Self::save_plan`] to `out`.
    pub async fn save(&self, plan: Vec<(String, Vec<String>)>, out: Writer) -> Result<(), ImageError> {
        for (id, _) in &plan {
            self.events
                .publish(Event::new("image", "save", id, &[("name", id)]));
        }
        self.backend.save(plan, out).await?;
        Ok(())
    }

    /// `POST /images/load`: reads an archive, then tags as it says; returns the lines to print.
    pub async fn load(&self, input: Reader) -> Result<Vec<String>, ImageError> {
        let loaded = self.backend.load(input).await?;
        let now = crate::time::now_nanos();
        let mut lines = Vec::new();
        let _w = self.write_lock.lock().await;
        for (id, refs) in loaded {
            let mut parsed = Vec::new();
            for name in &refs {
                let r =
                    Reference::parse(name).map_err(|e| ImageError::BadReference(format!("{name}: {e}")))?;
                parsed.push(r);
            }
            let replaced = self.db.transaction::<_, ImageError>(|tx| {
                write::add_image(tx, &id, now)?;
                let mut replaced = Vec::new();
                for r in &parsed {
                    if let Some(old) = write::set_ref(tx, &naming::ref_key(r), &id, false, now)? {
                        replaced.push((r.familiar(), old));
                    }
                }
                Ok(replaced)
            })?;
            for (name, old) in replaced {
                lines.push(format!(
                    "The image {name} already exists, renaming the old one with ID {old} to empty string\n"
                ));
            }
            if parsed.is_empty() {
                lines.push(format!("Loaded image ID: {id}\n"));
                self.events
                    .publish(Event::new("image", "load", &id, &[("name", &id)]));
            }
            for r in &parsed {
                lines.push(format!("Loaded image: {}\n", r.familiar()));
                self.events
                    .publish(Event::new("image", "load", &id, &[("name", &r.familiar())]));
            }
        }
        Ok(lines)
    }

    /// `POST /images/create?fromSrc=-&repo=&tag=&message=&changes=`: a one-layer image from a rootfs tarball.
    pub async fn import(
        &self,
        input: Reader,
        repo: &str,
        tag: &str,
        options: ImportOptions,
    ) -> Result<String, ImageError> {
        let target = if repo.is_empty() {
            None
        } else {
            Some(naming::tag_reference(repo, tag)?)
        };
        let id = self.backend.import(input, options).await?;
        let now = crate::time::now_nanos();
        let _w = self.write_lock.lock().await;
        self.db.transaction::<_, ImageError>(|tx| {
            write::add_image(tx, &id, now)?;
            if let Some(t) = &target {
                write::set_ref(tx, &naming::ref_key(t), &id, false, now)?;
            }
            Ok(())
        })?;
        let name = target.as_ref().map_or_else(|| id.clone(), Reference::familiar);
        self.events
            .publish(Event::new("image", "import", &id, &[("name", &name)]));
        Ok(id)
    }

    /// `POST /images/{name}/push?tag=`: pushes, streaming progress; records the repo digest.
    pub async fn push(
        &self,
        name: &str,
        tag: &str,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> Result<(), ImageError> {
        let r = naming::tag_reference(name, tag)?;
        let id = self.resolve(&r.to_string())?;
        let shown_tag = r.tag().unwrap_or("latest").to_string();
        let _ = progress
            .send(JsonMessage::status(format!(
                "The push refers to repository [{}]",
                r.name().trim_start_matches("docker.io/")
            )))
            .await;
        let pushed = self
            .backend
            .push(&id, &naming::ref_key(&r), auth, progress.clone())
            .await?;
        let now = crate::time::now_nanos();
        {
            let _w = self.write_lock.lock().await;
            self.db.transaction::<_, ImageError>(|tx| {
                write::set_ref(tx, &format!("{}@{}", r.name(), pushed.digest), &id, true, now)?;
                Ok(())
            })?;
        }
        let _ = progress
            .send(JsonMessage::status(format!(
                "{shown_tag}: digest: {} size: {}",
                pushed.digest, pushed.size
            )))
            .await;
        let _ = progress
            .send(JsonMessage {
                aux: Some(
                    serde_json::json!({"Tag": shown_tag, "Digest": pushed.digest, "Size": pushed.size}),
                ),
                ..JsonMessage::default()
            })
            .await;
        self.events.publish(Event::new(
            "image",
            "push",
            &r.familiar(),
            &[("name", &r.familiar_name())],
        ));
        Ok(())
    }

    /// `POST /auth`.
    pub async fn login(&self, auth: RegistryAuth) -> Result<(), ImageError> {
        if auth.username.is_empty() {
            return Err(ImageError::BadParameter(
                "a user name is required to log in".to_string(),
            ));
        }
        Ok(self.backend.login(auth).await?)
    }

    /// `GET /system/df`.
    pub fn disk_usage(&self) -> Result<DiskUsage, ImageError> {
        let mut images = Vec::new();
        for row in self.db.images()? {
            let Ok(stored) = self.stored(&row.id) else {
                continue;
            };
            let refs = self.db.refs_of(&row.id)?;
            images.push(views::summary(&stored, &refs, true, self.users_of(&row.id).len()));
        }
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(DiskUsage {
            layers_size: self.backend.layers_size()?,
            images,
            containers: Vec::new(),
            volumes: Vec::new(),
            build_cache: Vec::new(),
        })
    }

    /// The layer directories of an image, top first (for the container service).
    pub fn layer_dirs(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let id = self.resolve(name)?;
        Ok(self.stored(&id)?.layer_dirs)
    }

    /// What the container service needs of an image: its id, its config's `config` object (Env, Cmd, Entrypoint,
    /// WorkingDir, User, Volumes, ...), and its layers' `diff/` directories, top first.
    pub fn for_container(
        &self,
        name: &str,
    ) -> Result<(String, serde_json::Value, Vec<std::path::PathBuf>), ImageError> {
        let id = self.resolve(name)?;
        let stored = self.stored(&id)?;
        let config = stored
            .config
            .get("config")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        Ok((
            id,
            config,
            stored.layer_dirs.iter().map(std::path::PathBuf::from).collect(),
        ))
    }

    /// Labels of an image (for the container service and filters).
    pub fn labels(&self, id: &str) -> Result<HashMap<String, String>, ImageError> {
        Ok(views::labels(&self.stored(id)?.config))
    }
}

#[cfg(test)]
mod tests;
