//! The Engine API's shapes of an image: summary (`/images/json`), inspect, history.

use std::collections::HashMap;

use bollard_stubs::models::{
    DriverData, ImageConfig, ImageHistoryResponseItem, ImageInspect, ImageInspectMetadata,
    ImageInspectRootFs, ImageSummary,
};

use super::backend::StoredImage;
use super::naming::familiar_key;
use crate::db::RefRow;

/// The image's creation time from its config, unix seconds (0 when absent).
pub fn created_secs(config: &serde_json::Value) -> i64 {
    config
        .get("created")
        .and_then(|v| v.as_str())
        .and_then(crate::time::parse_rfc3339)
        .map_or(0, |n| n.div_euclid(1_000_000_000))
}

/// `config.Labels`.
pub fn labels(config: &serde_json::Value) -> HashMap<String, String> {
    config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn str_field(config: &serde_json::Value, key: &str) -> Option<String> {
    config.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

fn split_refs(refs: &[RefRow]) -> (Vec<String>, Vec<String>) {
    let tags = refs
        .iter()
        .filter(|r| !r.is_digest)
        .map(|r| familiar_key(&r.name))
        .collect();
    let digests = refs
        .iter()
        .filter(|r| r.is_digest)
        .map(|r| familiar_key(&r.name))
        .collect();
    (tags, digests)
}

/// One entry of `/images/json`.
pub fn summary(s: &StoredImage, refs: &[RefRow], _with_digests: bool, containers: usize) -> ImageSummary {
    let (tags, digests) = split_refs(refs);
    ImageSummary {
        id: s.id.clone(),
        parent_id: String::new(),
        repo_tags: tags,
        repo_digests: digests,
        created: created_secs(&s.config),
        size: s.size,
        shared_size: -1,
        labels: labels(&s.config),
        containers: i64::try_from(containers).unwrap_or(i64::MAX),
        manifests: None,
        descriptor: None,
    }
}

/// `/images/{name}/json`.
pub fn inspect(s: &StoredImage, refs: &[RefRow], last_tag_time: Option<i64>) -> ImageInspect {
    let (tags, digests) = split_refs(refs);
    let config: Option<ImageConfig> = s
        .config
        .get("config")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .or(Some(ImageConfig::default()));
    let diff_ids: Vec<String> = s
        .config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut driver = HashMap::new();
    if let Some((top, lower)) = s.layer_dirs.split_first() {
        let top_layer = std::path::Path::new(top)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if lower.is_empty() {
            driver.insert("UpperDir".to_string(), top.clone());
        } else {
            driver.insert("LowerDir".to_string(), lower.join(":"));
            driver.insert("UpperDir".to_string(), top.clone());
        }
        driver.insert("MergedDir".to_string(), format!("{top_layer}/merged"));
        driver.insert("WorkDir".to_string(), format!("{top_layer}/work"));
    }
    let comment = s
        .config
        .get("history")
        .and_then(|h| h.as_array())
        .and_then(|h| h.last())
        .and_then(|h| h.get("comment"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .or_else(|| str_field(&s.config, "comment"));
    ImageInspect {
        id: Some(s.id.clone()),
        repo_tags: Some(tags),
        repo_digests: Some(digests),
        comment: Some(comment.unwrap_or_default()),
        created: str_field(&s.config, "created"),
        author: Some(str_field(&s.config, "author").unwrap_or_default()),
        config,
        architecture: Some(str_field(&s.config, "architecture").unwrap_or_default()),
        variant: str_field(&s.config, "variant"),
        os: Some(str_field(&s.config, "os").unwrap_or_default()),
        os_version: str_field(&s.config, "os.version"),
        size: Some(s.size),
        graph_driver: Some(DriverData {
            name: "overlay2".to_string(),
            data: driver,
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_string(),
            layers: Some(diff_ids),
        }),
        metadata: Some(ImageInspectMetadata {
            last_tag_time: last_tag_time.map(crate::time::rfc3339_nanos),
        }),
        ..Default::default()
    }
}

/// `/images/{name}/history`: newest first; the top entry carries the id and tags, older ones `<missing>`.
pub fn history(s: &StoredImage, refs: &[RefRow]) -> Vec<ImageHistoryResponseItem> {
    let (tags, _) = split_refs(refs);
    let entries: Vec<serde_json::Value> = s
        .config
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let mut sizes = s.layer_sizes.iter();
    let mut out: Vec<ImageHistoryResponseItem> = if entries.is_empty() {
        // No history: one entry per layer.
        s.layer_sizes
            .iter()
            .map(|size| ImageHistoryResponseItem {
                id: "<missing>".to_string(),
                created: created_secs(&s.config),
                created_by: String::new(),
                tags: Vec::new(),
                size: *size,
                comment: String::new(),
            })
            .collect()
    } else {
        entries
            .iter()
            .map(|h| {
                let empty = h
                    .get("empty_layer")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let size = if empty {
                    0
                } else {
                    sizes.next().copied().unwrap_or(0)
                };
                ImageHistoryResponseItem {
                    id: "<missing>".to_string(),
                    created: h
                        .get("created")
                        .and_then(|c| c.as_str())
                        .and_then(crate::time::parse_rfc3339)
                        .map_or(0, |n| n.div_euclid(1_000_000_000)),
                    created_by: h
                        .get("created_by")
                        .and_then(|c| c.as_str())
                        .unwrap_or("")
                        .to_string(),
                    tags: Vec::new(),
                    size,
                    comment: h
                        .get("comment")
                        .and_then(|c| c.as_str())
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect()
    };
    out.reverse();
    if let Some(top) = out.first_mut() {
        top.id = s.id.clone();
        top.tags = tags;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_from_a_config() {
        let s = StoredImage {
            id: "sha256:abc".into(),
            config: serde_json::json!({
                "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
                "config": {"Cmd": ["sh"], "Labels": {"a": "b"}},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:l1", "sha256:l2"]},
                "history": [{"created_by": "ADD x"}, {"created_by": "ENV", "empty_layer": true}, {"created_by": "RUN"}]
            }),
            size: 30,
            layer_sizes: vec![10, 20],
            layer_dirs: vec!["/d/overlay2/b/diff".into(), "/d/overlay2/a/diff".into()],
        };
        let refs = vec![RefRow {
            name: "docker.io/library/x:1".into(),
            image_id: "sha256:abc".into(),
            is_digest: false,
            created: 0,
        }];
        let sum = summary(&s, &refs, true, 0);
        assert_eq!(sum.repo_tags, vec!["x:1"]);
        assert_eq!(sum.created, 1_704_164_645);
        assert_eq!(sum.labels.get("a").map(String::as_str), Some("b"));
        let ins = serde_json::to_value(inspect(&s, &refs, Some(0))).unwrap();
        assert_eq!(ins["Config"]["Cmd"][0], "sh");
        assert_eq!(ins["RootFS"]["Layers"][1], "sha256:l2");
        assert_eq!(ins["GraphDriver"]["Data"]["LowerDir"], "/d/overlay2/a/diff");
        let h = history(&s, &refs);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].id, "sha256:abc");
        assert_eq!((h[0].size, h[1].size, h[2].size), (20, 0, 10));
        assert_eq!(h[2].created_by, "ADD x");
    }
}
