//! The CLI's configuration directory (`~/.berth`, or `--config`/`BERTH_CONFIG`): `config.json` (`currentContext`,
//! `auths` as docker writes them) and contexts in docker's layout: `contexts/meta/<sha256(name)>/meta.json` and
//! TLS files under `contexts/tls/<sha256(name)>/docker/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A configuration failure.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file cannot be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// No such context.
    #[error("context {0:?} does not exist")]
    NoContext(String),
    /// A context with that name exists.
    #[error("context {0:?} already exists")]
    Exists(String),
    /// A bad name or endpoint.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The configuration directory.
pub fn config_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("BERTH_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".berth")
}

/// The docker endpoint of a context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEndpoint {
    /// `unix:///...` or `tcp://...`.
    #[serde(rename = "Host")]
    pub host: String,
    /// Skip TLS verification (not supported; kept for docker compatibility of the file).
    #[serde(rename = "SkipTLSVerify", default)]
    pub skip_tls_verify: bool,
}

/// A context's `meta.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextMeta {
    /// The name.
    #[serde(rename = "Name")]
    pub name: String,
    /// `{"Description": "..."}`.
    #[serde(rename = "Metadata", default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `{"docker": {...}}`.
    #[serde(rename = "Endpoints", default)]
    pub endpoints: std::collections::BTreeMap<String, DockerEndpoint>,
}

impl ContextMeta {
    /// The docker endpoint's host.
    pub fn host(&self) -> Option<&str> {
        self.endpoints.get("docker").map(|e| e.host.as_str())
    }

    /// The description.
    pub fn description(&self) -> &str {
        self.metadata
            .get("Description")
            .and_then(|d| d.as_str())
            .unwrap_or("")
    }
}

/// The configuration directory's contents.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn context_hash(name: &str) -> String {
    let d = sha2::Sha256::digest(name.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's rule for context names.
pub fn valid_context_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

impl Store {
    /// The store at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `config.json`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn read_config(&self) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        let p = self.config_file();
        match std::fs::read(&p) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::Map::new()),
            Ok(b) => serde_json::from_slice(&b).map_err(|source| ConfigError::Parse {
                path: p.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Map::new()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    /// `currentContext` (empty or absent: `default`).
    pub fn current_context(&self) -> Result<String, ConfigError> {
        Ok(self
            .read_config()?
            .get("currentContext")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string())
    }

    /// Sets `currentContext`, keeping the rest of `config.json`.
    pub fn set_current_context(&self, name: &str) -> Result<(), ConfigError> {
        let mut c = self.read_config()?;
        if name == "default" {
            c.remove("currentContext");
        } else {
            c.insert(
                "currentContext".into(),
                serde_json::Value::String(name.to_string()),
            );
        }
        let bytes = serde_json::to_vec_pretty(&c).map_err(|source| ConfigError::Parse {
            path: self.config_file(),
            source,
        })?;
        Self::write_atomic(&self.config_file(), &bytes)
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir
            .join("contexts/meta")
            .join(context_hash(name))
            .join("meta.json")
    }

    /// The TLS directory of a context.
    pub fn tls_dir(&self, name: &str) -> PathBuf {
        self.dir
            .join("contexts/tls")
            .join(context_hash(name))
            .join("docker")
    }

    /// One context.
    pub fn context(&self, name: &str) -> Result<ContextMeta, ConfigError> {
        let p = self.meta_path(name);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| ConfigError::Parse { path: p, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ConfigError::NoContext(name.to_string()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Every stored context, by name.
    pub fn contexts(&self) -> Result<Vec<ContextMeta>, ConfigError> {
        let dir = self.dir.join("contexts/meta");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for e in entries.flatten() {
            let p = e.path().join("meta.json");
            if let Ok(b) = std::fs::read(&p) {
                out.push(
                    serde_json::from_slice(&b).map_err(|source| ConfigError::Parse { path: p, source })?,
                );
            }
        }
        out.sort_by(|a: &ContextMeta, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a context.
    pub fn create(&self, meta: &ContextMeta) -> Result<(), ConfigError> {
        if meta.name == "default" || !valid_context_name(&meta.name) {
            return Err(ConfigError::Invalid(format!(
                "context name {:?} is invalid: names start with a letter or digit and contain only letters, digits, '_', '.', '+' and '-' (\"default\" is reserved)",
                meta.name
            )));
        }
        if self.meta_path(&meta.name).exists() {
            return Err(ConfigError::Exists(meta.name.clone()));
        }
        self.write(meta)
    }

    /// Writes a context's metadata.
    pub fn write(&self, meta: &ContextMeta) -> Result<(), ConfigError> {
        let bytes = serde_json::to_vec(meta).map_err(|source| ConfigError::Parse {
            path: self.meta_path(&meta.name),
            source,
        })?;
        Self::write_atomic(&self.meta_path(&meta.name), &bytes)
    }

    /// Removes a context and its TLS files.
    pub fn remove(&self, name: &str) -> Result<(), ConfigError> {
        let p = self.meta_path(name);
        if !p.exists() {
            return Err(ConfigError::NoContext(name.to_string()));
        }
        if let Some(d) = p.parent() {
            std::fs::remove_dir_all(d).map_err(io_err(d))?;
        }
        let tls = self.dir.join("contexts/tls").join(context_hash(name));
        if tls.exists() {
            std::fs::remove_dir_all(&tls).map_err(io_err(&tls))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().to_path_buf());
        assert_eq!(s.current_context().unwrap(), "default");
        let mut m = ContextMeta {
            name: "a".into(),
            ..Default::default()
        };
        m.endpoints.insert(
            "docker".into(),
            DockerEndpoint {
                host: "unix:///x".into(),
                skip_tls_verify: false,
            },
        );
        s.create(&m).unwrap();
        assert!(matches!(s.create(&m), Err(ConfigError::Exists(_))));
        assert!(
            s.create(&ContextMeta {
                name: "default".into(),
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(s.context("a").unwrap().host(), Some("unix:///x"));
        s.set_current_context("a").unwrap();
        assert_eq!(s.current_context().unwrap(), "a");
        assert_eq!(s.contexts().unwrap().len(), 1);
        s.remove("a").unwrap();
        assert!(matches!(s.context("a"), Err(ConfigError::NoContext(_))));
    }
}
