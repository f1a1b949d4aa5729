//! Registry credentials in docker's `config.json` format.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, so `docker login` and `berth login`
//! share it. Credentials are kept under `auths` as `{"<registry>": {"auth": base64("user:password")}}`; Docker
//! Hub's key is `https://index.docker.io/v1/` as docker writes it. Reading also accepts `username`/`password`
//! fields and keys written as URLs (`https://host/v2/`). Other keys of the file are preserved when saving.
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// The key docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Errors of reading and writing the credentials file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read the credentials file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of docker's shape.
    #[error("the credentials file {path} is not a valid docker config.json")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error("the credentials for {registry} in {path} are not base64 of user:password")]
    BadAuth { path: PathBuf, registry: String },
    /// The file could not be written.
    #[error("cannot write the credentials file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither `DOCKER_CONFIG` nor `HOME` is set.
    #[error("cannot find the credentials file: neither DOCKER_CONFIG nor HOME is set")]
    NoHome,
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Credentials by registry host (normalised: `docker.io`, `127.0.0.1:5000`).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, Credential>,
}

impl Credentials {
    /// No credentials.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The default file: `$DOCKER_CONFIG/config.json` or `$HOME/.docker/config.json`.
    pub fn default_path() -> Result<PathBuf, CredentialsError> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir).join("config.json"));
        }
        match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".docker").join("config.json")),
            None => Err(CredentialsError::NoHome),
        }
    }

    /// Loads the default file; a missing file means no credentials.
    pub fn load_default() -> Result<Self, CredentialsError> {
        Self::load(&Self::default_path()?)
    }

    /// Loads `path`; a missing file means no credentials.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| CredentialsError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let mut creds = Self::empty();
        let Some(auths) = value.get("auths").and_then(|a| a.as_object()) else {
            return Ok(creds);
        };
        for (key, entry) in auths {
            let registry = normalize_registry(key);
            let from_fields = || {
                let u = entry.get("username")?.as_str()?;
                let p = entry.get("password")?.as_str()?;
                Some(Credential {
                    username: u.to_string(),
                    password: p.to_string(),
                })
            };
            let cred = match entry
                .get("auth")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
            {
                Some(auth) => decode_auth(auth).ok_or_else(|| CredentialsError::BadAuth {
                    path: path.to_path_buf(),
                    registry: key.clone(),
                })?,
                None => match from_fields() {
                    Some(c) => c,
                    None => continue,
                },
            };
            creds.by_registry.insert(registry, cred);
        }
        Ok(creds)
    }

    /// Adds or replaces the credential of `registry` in memory.
    pub fn insert(&mut self, registry: &str, username: &str, password: &str) {
        self.by_registry.insert(
            normalize_registry(registry),
            Credential {
                username: username.to_string(),
                password: password.to_string(),
            },
        );
    }

    /// The credential of `registry` (`docker.io`, `registry-1.docker.io` and `index.docker.io` are one).
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(&normalize_registry(registry))
    }

    /// Registries with credentials.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.by_registry.keys().map(String::as_str)
    }

    /// Stores the credential of `registry` in `path` (created with mode 0600), keeping the file's other content.
    pub fn save(path: &Path, registry: &str, username: &str, password: &str) -> Result<(), CredentialsError> {
        let mut value = read_value(path)?;
        let auths = auths_mut(&mut value);
        let normalized = normalize_registry(registry);
        auths.retain(|k, _| normalize_registry(k) != normalized);
        let auth = BASE64.encode(format!("{username}:{password}"));
        auths.insert(auth_key(&normalized), serde_json::json!({ "auth": auth }));
        write_value(path, &value)
    }

    /// Removes the credential of `registry` from `path`; returns whether there was one.
    pub fn remove(path: &Path, registry: &str) -> Result<bool, CredentialsError> {
        let mut value = read_value(path)?;
        let auths = auths_mut(&mut value);
        let normalized = normalize_registry(registry);
        let before = auths.len();
        auths.retain(|k, _| normalize_registry(k) != normalized);
        let removed = auths.len() != before;
        if removed {
            write_value(path, &value)?;
        }
        Ok(removed)
    }
}

/// The key written into `auths` for a normalised registry.
fn auth_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/v2/` → `host:5000`.
pub fn normalize_registry(key: &str) -> String {
    let s = key.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | DOCKER_HUB_API_HOST | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

fn decode_auth(auth: &str) -> Option<Credential> {
    let bytes = BASE64.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credential {
        username: u.to_string(),
        password: p.to_string(),
    })
}

fn read_value(path: &Path) -> Result<serde_json::Value, CredentialsError> {
    match std::fs::read(path) {
        Ok(t) if t.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::json!({})),
        Ok(t) => serde_json::from_slice(&t).map_err(|source| CredentialsError::Parse {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(source) => Err(CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn auths_mut(value: &mut serde_json::Value) -> &mut serde_json::Map<String, serde_json::Value> {
    if !value.is_object() {
        *value = serde_json::json!({});
    }
    let obj = match value {
        serde_json::Value::Object(o) => o,
        _ => unreachable!("made an object above"),
    };
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    match auths {
        serde_json::Value::Object(a) => a,
        _ => unreachable!("made an object above"),
    }
}

/// Writes atomically: a temporary file with mode 0600 in the same directory, then rename.
fn write_value(path: &Path, value: &serde_json::Value) -> Result<(), CredentialsError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    text.push(b'\n');
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{},"psFormat":"table {{.ID}}","credHelpers":{"x":"y"}}"#,
        )
        .unwrap();
        Credentials::save(&path, "127.0.0.1:5000", "alice", "pa:ss").unwrap();
        Credentials::save(&path, "docker.io", "bob", "secret").unwrap();
        Credentials::save(&path, "http://127.0.0.1:5000/v2/", "alice", "new").unwrap();

        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}", "other keys are kept");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], BASE64.encode("alice:new"));
        assert_eq!(
            v["auths"][DOCKER_HUB_AUTH_KEY]["auth"],
            BASE64.encode("bob:secret")
        );
        assert_eq!(v["auths"].as_object().unwrap().len(), 2);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let c = Credentials::load(&path).unwrap();
        assert_eq!(c.get("127.0.0.1:5000").unwrap().password, "new");
        assert_eq!(c.get("registry-1.docker.io").unwrap().username, "bob");
        assert_eq!(c.get("index.docker.io").unwrap().password, "secret");
        assert!(c.get("quay.io").is_none());

        assert!(Credentials::remove(&path, "docker.io").unwrap());
        assert!(!Credentials::remove(&path, "docker.io").unwrap());
        assert!(Credentials::load(&path).unwrap().get("docker.io").is_none());
    }

    #[test]
    fn reads_docker_variants_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert!(
            Credentials::load(&path).unwrap().registries().next().is_none(),
            "a missing file is empty"
        );
        std::fs::write(
            &path,
            r#"{"auths":{"https://quay.io/v2/":{"username":"u","password":"p"},"empty.io":{}}}"#,
        )
        .unwrap();
        let c = Credentials::load(&path).unwrap();
        assert_eq!(c.get("quay.io").unwrap().username, "u");
        assert!(c.get("empty.io").is_none());

        std::fs::write(&path, r#"{"auths":{"x.io":{"auth":"!!!"}}}"#).unwrap();
        let e = Credentials::load(&path).unwrap_err();
        assert!(matches!(e, CredentialsError::BadAuth { .. }), "{e}");
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            Credentials::load(&path),
            Err(CredentialsError::Parse { .. })
        ));
    }
}
