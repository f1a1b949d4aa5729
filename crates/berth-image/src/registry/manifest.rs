//! Manifest media types, and telling manifests from indexes.
//!
//! Docker schema2 manifests and manifest lists parse as OCI `ImageManifest` and `ImageIndex` (same fields;
//! only the media type strings differ). Schema1 manifests are refused.

use oci_spec::image::{ImageIndex, ImageManifest};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1 (refused).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed (refused).
pub const DOCKER_MANIFEST_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The `Accept` header for manifest requests: every kind we understand, single manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest accepted (docker's limit is 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform image manifest (Docker schema2 or OCI).
    Manifest,
    /// A list of manifests by platform (Docker manifest list or OCI index).
    Index,
    /// Docker schema 1, which is not supported.
    Schema1,
    /// Something else.
    Unknown,
}

/// The kind of a media type string (parameters after `;` are ignored).
pub fn kind_of_media_type(media_type: &str) -> ManifestKind {
    match media_type.split(';').next().unwrap_or("").trim() {
        DOCKER_MANIFEST_V2 | OCI_MANIFEST => ManifestKind::Manifest,
        DOCKER_MANIFEST_LIST | OCI_INDEX => ManifestKind::Index,
        DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => ManifestKind::Schema1,
        _ => ManifestKind::Unknown,
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

/// Decides what `bytes` is, from the `Content-Type` header, else the document's `mediaType`, else its shape.
/// Returns the kind and the media type to record.
pub fn detect(content_type: Option<&str>, bytes: &[u8]) -> Result<(ManifestKind, String), serde_json::Error> {
    let probe: Probe = serde_json::from_slice(bytes)?;
    let from_header = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    for mt in [from_header.as_deref(), probe.media_type.as_deref()]
        .into_iter()
        .flatten()
    {
        let kind = kind_of_media_type(mt);
        if kind != ManifestKind::Unknown {
            return Ok((kind, mt.to_string()));
        }
    }
    let kind = if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
        ManifestKind::Schema1
    } else if probe.manifests.is_some() {
        ManifestKind::Index
    } else if probe.layers.is_some() {
        ManifestKind::Manifest
    } else {
        ManifestKind::Unknown
    };
    let media_type = match kind {
        ManifestKind::Index => OCI_INDEX.to_string(),
        ManifestKind::Manifest => OCI_MANIFEST.to_string(),
        _ => from_header.or(probe.media_type).unwrap_or_default(),
    };
    Ok((kind, media_type))
}

/// Parses an image manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Parses an index or manifest list.
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_V2: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#;
    const LIST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":3,
      "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}"#;

    #[test]
    fn detects_kinds() {
        assert_eq!(
            detect(Some(DOCKER_MANIFEST_V2), DOCKER_V2.as_bytes()).unwrap().0,
            ManifestKind::Manifest
        );
        assert_eq!(
            detect(None, DOCKER_V2.as_bytes()).unwrap(),
            (ManifestKind::Manifest, DOCKER_MANIFEST_V2.into())
        );
        assert_eq!(
            detect(Some("text/plain"), LIST.as_bytes()).unwrap(),
            (ManifestKind::Index, DOCKER_MANIFEST_LIST.into())
        );
        let oci_index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            detect(None, oci_index.as_bytes()).unwrap(),
            (ManifestKind::Index, OCI_INDEX.into())
        );
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert_eq!(
            detect(Some("application/json"), s1.as_bytes()).unwrap().0,
            ManifestKind::Schema1
        );
        assert_eq!(
            detect(Some(DOCKER_MANIFEST_V1_SIGNED), s1.as_bytes()).unwrap().0,
            ManifestKind::Schema1
        );
        assert!(detect(None, b"not json").is_err());
    }

    #[test]
    fn parses_docker_types_with_oci_spec() {
        let m = parse_manifest(DOCKER_V2.as_bytes()).unwrap();
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.config().media_type().to_string(), DOCKER_CONFIG);
        let i = parse_index(LIST.as_bytes()).unwrap();
        let p = i.manifests()[0].platform().as_ref().unwrap();
        assert_eq!(p.variant().as_deref(), Some("v7"));
    }
}
