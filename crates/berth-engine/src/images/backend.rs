//! What the image service needs from the image store. `berth_image` implements it (see `store_backend`); tests use
//! an in-memory one. Keeping the boundary this narrow lets the service's logic (references, filters, conflicts,
//! events, the API's shapes) be tested without a registry.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::jsonmessage::JsonMessage;
use crate::errdefs::{ErrorKind, HasKind};

/// A boxed future (the trait is used as `dyn`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A readable body.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// A writable body.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Images with their references (save's input, load's output).
pub type ImageRefs = Vec<(String, Vec<String>)>;

/// A store or registry failure, with its category.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// The category (decides the HTTP status).
    pub kind: ErrorKind,
    /// The whole message.
    pub message: String,
}

impl BackendError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl HasKind for BackendError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// One image as the store holds it.
#[derive(Debug, Clone, Default)]
pub struct StoredImage {
    /// `sha256:<config digest>`.
    pub id: String,
    /// The image configuration (OCI/docker config JSON).
    pub config: serde_json::Value,
    /// Unpacked size of all layers, bytes.
    pub size: i64,
    /// Unpacked size of each layer, bottom first (matches `rootfs.diff_ids`).
    pub layer_sizes: Vec<i64>,
    /// The layer directories, top first (the overlay lower dirs).
    pub layer_dirs: Vec<String>,
}

/// Credentials sent with a request (`X-Registry-Auth` or `/auth`).
#[derive(Debug, Clone, Default)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// The registry the credentials are for.
    pub server_address: String,
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image id.
    pub id: String,
    /// The manifest digest (for the repo digest).
    pub manifest_digest: String,
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest digest.
    pub digest: String,
    /// The manifest size.
    pub size: i64,
}

/// What `import` records in the new image.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The commit message (becomes the history comment).
    pub message: String,
    /// Dockerfile-like changes (`CMD ["sh"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    /// `os/arch[/variant]`, default the host's.
    pub platform: Option<String>,
}

/// The image store and registry operations the service uses.
pub trait ImageBackend: Send + Sync + std::fmt::Debug {
    /// Ids of every image the store holds.
    fn list(&self) -> Result<Vec<String>, BackendError>;
    /// One image.
    fn get(&self, id: &str) -> Result<StoredImage, BackendError>;
    /// Removes an image record (layers and blobs go with [`ImageBackend::gc`]).
    fn remove(&self, id: &str) -> Result<(), BackendError>;
    /// Removes unreferenced layers and blobs; returns the bytes reclaimed.
    fn gc(&self) -> Result<u64, BackendError>;
    /// The total size of all layers.
    fn layers_size(&self) -> Result<i64, BackendError>;
    /// Pulls `reference` (fully qualified), sending docker's progress messages per layer.
    fn pull<'a>(
        &'a self,
        reference: &'a str,
        platform: Option<&'a str>,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> BoxFut<'a, Result<Pulled, BackendError>>;
    /// Pushes image `id` as `reference`.
    fn push<'a>(
        &'a self,
        id: &'a str,
        reference: &'a str,
        auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> BoxFut<'a, Result<Pushed, BackendError>>;
    /// Writes a docker-archive (with an OCI layout index) of `images` (id, familiar references) to `out`.
    fn save<'a>(
        &'a self,
        images: Vec<(String, Vec<String>)>,
        out: Writer,
    ) -> BoxFut<'a, Result<(), BackendError>>;
    /// Reads a docker-archive or OCI layout; returns the images and their references.
    fn load<'a>(&'a self, input: Reader) -> BoxFut<'a, Result<ImageRefs, BackendError>>;
    /// Makes a one-layer image from a rootfs tarball.
    fn import<'a>(
        &'a self,
        input: Reader,
        options: ImportOptions,
    ) -> BoxFut<'a, Result<String, BackendError>>;
    /// Checks credentials against a registry.
    fn login<'a>(&'a self, auth: RegistryAuth) -> BoxFut<'a, Result<(), BackendError>>;
}

/// Who uses an image (containers, once they exist).
pub trait ImageUsers: Send + Sync + std::fmt::Debug {
    /// The containers using image `id`: (container id, running).
    fn users(&self, id: &str) -> Vec<(String, bool)>;
}

/// No containers yet.
#[derive(Debug, Default)]
pub struct NoUsers;

impl ImageUsers for NoUsers {
    fn users(&self, _id: &str) -> Vec<(String, bool)> {
        Vec::new()
    }
}
