//! [`ImageBackend`] over `berth_image`: the image store under the data root and the registry client.

use berth_image::archive::{ArchiveError, ArchiveFormat, ImportOptions as StoreImportOptions};
use berth_image::credentials::Credentials;
use berth_image::digest::Digest;
use berth_image::image::{ImageError as StoreImageError, ImageStore};
use berth_image::pull::{Progress, PullError, PushError};
use berth_image::reference::Reference;
use berth_image::registry::{ClientConfig, Platform, RegistryClient, RegistryError};
use tokio::sync::mpsc;

use super::ImageError;
use super::backend::{
    BackendError, BoxFut, ImageBackend, ImageRefs, ImportOptions, Pulled, Pushed, Reader, RegistryAuth,
    StoredImage, Writer,
};
use super::jsonmessage::{JsonMessage, ProgressDetail};
use crate::errdefs::ErrorKind;

/// The whole chain of an error, each cause once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn registry_kind(e: &RegistryError) -> ErrorKind {
    match e {
        RegistryError::ManifestUnknown(_)
        | RegistryError::BlobUnknown { .. }
        | RegistryError::NoMatchingPlatform { .. } => ErrorKind::NotFound,
        RegistryError::Unauthorized { .. } | RegistryError::Token { .. } => ErrorKind::Unauthorized,
        RegistryError::Denied { .. } => ErrorKind::Forbidden,
        RegistryError::Unreachable { .. } | RegistryError::NotARegistry { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::System,
    }
}

fn store_err(e: &StoreImageError) -> BackendError {
    let kind = match e {
        StoreImageError::NotFound(_) => ErrorKind::NotFound,
        _ => ErrorKind::System,
    };
    BackendError::new(kind, chain(e))
}

fn pull_err(e: &PullError) -> BackendError {
    let kind = match e {
        PullError::Registry(r) => registry_kind(r),
        _ => ErrorKind::System,
    };
    BackendError::new(kind, chain(e))
}

fn digest(id: &str) -> Result<Digest, BackendError> {
    Digest::parse(id).map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))
}

/// The store and a registry client for anonymous requests.
#[derive(Debug)]
pub struct StoreBackend {
    store: ImageStore,
    insecure: Vec<String>,
    anonymous: RegistryClient,
}

impl StoreBackend {
    /// Opens the store at the data root.
    pub fn open(config: &crate::EngineConfig) -> Result<Self, ImageError> {
        let store = ImageStore::open(&config.data_root).map_err(|e| ImageError::Backend(store_err(&e)))?;
        let anonymous = RegistryClient::new(ClientConfig {
            insecure_registries: config.insecure_registries.clone(),
            credentials: Credentials::empty(),
            user_agent: user_agent(),
        });
        Ok(Self {
            store,
            insecure: config.insecure_registries.clone(),
            anonymous,
        })
    }

    /// A client with `auth` for its registry, or the shared anonymous one. Credentials come with each request
    /// and are never kept by the daemon.
    fn client(&self, registry: &str, auth: Option<RegistryAuth>) -> RegistryClient {
        match auth {
            Some(a) => {
                let mut creds = Credentials::empty();
                let server = if a.server_address.is_empty() {
                    registry.to_string()
                } else {
                    a.server_address.clone()
                };
                creds.insert(&server, &a.username, &a.password);
                if server != registry {
                    creds.insert(registry, &a.username, &a.password);
                }
                RegistryClient::new(ClientConfig {
                    insecure_registries: self.insecure.clone(),
                    credentials: creds,
                    user_agent: user_agent(),
                })
            }
            None => self.anonymous.clone(),
        }
    }
}

fn user_agent() -> String {
    format!("berthd/{}", env!("CARGO_PKG_VERSION"))
}

fn to_message(p: Progress) -> JsonMessage {
    let detail =
        (p.progress_detail.current.is_some() || p.progress_detail.total.is_some()).then(|| ProgressDetail {
            current: p.progress_detail.current.and_then(|c| i64::try_from(c).ok()),
            total: p.progress_detail.total.and_then(|t| i64::try_from(t).ok()),
        });
    JsonMessage {
        status: Some(p.status),
        id: p.id,
        progress: p.progress,
        progress_detail: detail,
        ..JsonMessage::default()
    }
}

fn push_err(e: &PushError) -> BackendError {
    let kind = match e {
        PushError::Registry(r) => registry_kind(r),
        PushError::Image(StoreImageError::NotFound(_)) => ErrorKind::NotFound,
        _ => ErrorKind::System,
    };
    BackendError::new(kind, chain(e))
}

fn archive_err(e: &ArchiveError) -> BackendError {
    let kind = match e {
        ArchiveError::Invalid(_) | ArchiveError::Unpack { .. } => ErrorKind::InvalidParameter,
        ArchiveError::Image(StoreImageError::NotFound(_)) => ErrorKind::NotFound,
        _ => ErrorKind::System,
    };
    BackendError::new(kind, chain(e))
}

impl ImageBackend for StoreBackend {
    fn list(&self) -> Result<Vec<String>, BackendError> {
        Ok(self
            .store
            .images()
            .map_err(|e| store_err(&e))?
            .into_iter()
            .map(|r| r.id.to_string())
            .collect())
    }

    fn get(&self, id: &str) -> Result<StoredImage, BackendError> {
        let d = digest(id)?;
        let rec = self.store.image(&d).map_err(|e| store_err(&e))?;
        let config = serde_json::to_value(&rec.config)
            .map_err(|e| BackendError::new(ErrorKind::System, e.to_string()))?;
        let layer_dirs = self
            .store
            .layer_dirs(&d)
            .map_err(|e| store_err(&e))?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        Ok(StoredImage {
            id: rec.id.to_string(),
            config,
            size: i64::try_from(rec.size).unwrap_or(i64::MAX),
            layer_sizes: rec
                .layers
                .iter()
                .map(|l| i64::try_from(l.size).unwrap_or(i64::MAX))
                .collect(),
            layer_dirs,
        })
    }

    fn remove(&self, id: &str) -> Result<(), BackendError> {
        match self.store.remove_image(&digest(id)?) {
            Ok(()) | Err(StoreImageError::NotFound(_)) => Ok(()),
            Err(e) => Err(store_err(&e)),
        }
    }

    fn gc(&self) -> Result<u64, BackendError> {
        Ok(self.store.gc().map_err(|e| store_err(&e))?.bytes_reclaimed)
    }

    fn layers_size(&self) -> Result<i64, BackendError> {
        Ok(
            i64::try_from(self.store.disk_usage().map_err(|e| store_err(&e))?.layers_size)
                .unwrap_or(i64::MAX),
        )
    }

    fn pull<'a>(
        &'a self,
        reference: &'a str,
        platform: Option<&'a str>,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> BoxFut<'a, Result<Pulled, BackendError>> {
        Box::pin(async move {
            let r = Reference::parse(reference)
                .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))?;
            let platform = match platform {
                Some(p) => Platform::parse(p)
                    .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))?,
                None => Platform::host(),
            };
            let client = self.client(r.registry(), auth);
            let (tx, mut rx) = mpsc::channel::<Progress>(256);
            // The engine sends "Pulling from" (with the first layer message) and the closing "Digest:" and
            // "Status:" lines itself: it knows whether the tag moved.
            let forward = async {
                while let Some(p) = rx.recv().await {
                    if p.id.is_none() && (p.status.starts_with("Digest:") || p.status.starts_with("Status:"))
                    {
                        continue;
                    }
                    if p.status.starts_with("Pulling from ") {
                        continue;
                    }
                    let _ = progress.send(to_message(p)).await;
                }
            };
            let (id, ()) = tokio::join!(self.store.pull(&client, &r, &platform, tx), forward);
            let id = id.map_err(|e| pull_err(&e))?;
            let rec = self.store.image(&id).map_err(|e| store_err(&e))?;
            let familiar = r.familiar_name();
            let manifest_digest = rec
                .repo_digests
                .iter()
                .rev()
                .find_map(|d| {
                    d.split_once('@')
                        .filter(|(n, _)| *n == familiar || *n == r.name())
                        .map(|(_, d)| d.to_string())
                })
                .or_else(|| rec.manifest.as_ref().map(|m| m.digest.to_string()))
                .unwrap_or_default();
            Ok(Pulled {
                id: id.to_string(),
                manifest_digest,
            })
        })
    }

    fn push<'a>(
        &'a self,
        id: &'a str,
        reference: &'a str,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> BoxFut<'a, Result<Pushed, BackendError>> {
        Box::pin(async move {
            let r = Reference::parse(reference)
                .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))?;
            let id = digest(id)?;
            let client = self.client(r.registry(), auth);
            let (tx, mut rx) = mpsc::channel::<Progress>(256);
            // The engine sends the first and last lines itself; the manifest size comes from the store's last line.
            let mut size = 0i64;
            let forward = async {
                while let Some(p) = rx.recv().await {
                    if p.id.is_none() && p.status.starts_with("The push refers to repository") {
                        continue;
                    }
                    if p.id.is_none() && p.status.contains(": digest: ") {
                        if let Some(n) = p
                            .status
                            .rsplit_once("size: ")
                            .and_then(|(_, n)| n.trim().parse().ok())
                        {
                            size = n;
                        }
                        continue;
                    }
                    let _ = progress.send(to_message(p)).await;
                }
            };
            let (pushed, ()) = tokio::join!(self.store.push(&client, &id, &r, tx), forward);
            let digest = pushed.map_err(|e| push_err(&e))?;
            Ok(Pushed {
                digest: digest.to_string(),
                size,
            })
        })
    }

    fn save<'a>(&'a self, images: ImageRefs, out: Writer) -> BoxFut<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut list = Vec::with_capacity(images.len());
            for (id, tags) in images {
                let refs = tags
                    .iter()
                    .map(|t| {
                        Reference::parse(t)
                            .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                list.push((digest(&id)?, refs));
            }
            self.store
                .save(&list, ArchiveFormat::Docker, out)
                .await
                .map_err(|e| archive_err(&e))
        })
    }

    fn load<'a>(&'a self, input: Reader) -> BoxFut<'a, Result<ImageRefs, BackendError>> {
        Box::pin(async move {
            let loaded = self.store.load(input).await.map_err(|e| archive_err(&e))?;
            Ok(loaded
                .into_iter()
                .map(|(id, tags)| (id.to_string(), tags))
                .collect())
        })
    }

    fn import<'a>(
        &'a self,
        input: Reader,
        options: ImportOptions,
    ) -> BoxFut<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let platform = options
                .platform
                .as_deref()
                .map(Platform::parse)
                .transpose()
                .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, chain(&e)))?;
            let config = super::changes::apply(&options.changes)
                .map_err(|e| BackendError::new(ErrorKind::InvalidParameter, e))?;
            let opts = StoreImportOptions {
                message: Some(options.message).filter(|m| !m.is_empty()),
                config,
                platform,
            };
            let id = self
                .store
                .import(input, opts)
                .await
                .map_err(|e| archive_err(&e))?;
            Ok(id.to_string())
        })
    }

    fn login<'a>(&'a self, auth: RegistryAuth) -> BoxFut<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let registry = if auth.server_address.is_empty() {
                "docker.io".to_string()
            } else {
                auth.server_address.clone()
            };
            let registry = registry
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("docker.io")
                .to_string();
            let registry = if registry == "index.docker.io" {
                "docker.io".to_string()
            } else {
                registry
            };
            // A client of its own: on success a client keeps the credentials, and the shared one must stay
            // anonymous.
            let client = RegistryClient::new(ClientConfig {
                insecure_registries: self.insecure.clone(),
                credentials: Credentials::empty(),
                user_agent: user_agent(),
            });
            client
                .login(&registry, &auth.username, &auth.password)
                .await
                .map_err(|e| BackendError::new(registry_kind(&e), chain(&e)))
        })
    }
}
