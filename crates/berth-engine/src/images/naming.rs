//! Names: image ids, references as stored (`docker.io/library/busybox:latest`, `...@sha256:...`), and as shown.

use berth_image::reference::Reference;

use super::ImageError;
use crate::db::RefRow;
use crate::filters::glob_match;

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `sha256:<64 hex>` or `<64 hex>` → the full id.
pub fn full_id(name: &str) -> Option<String> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    (hex.len() == 64 && is_hex(hex)).then(|| format!("sha256:{hex}"))
}

/// Whether `name` could be an id prefix (`3f57d9401f8d`, `sha256:3f57`).
pub fn is_id_prefix(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    hex.len() <= 64 && is_hex(hex)
}

/// The first 12 hex digits of an id.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// The key a reference is stored under: `name@digest` for digests, else `name:tag`.
pub fn ref_key(r: &Reference) -> String {
    match r.digest() {
        Some(d) => format!("{}@{d}", r.name()),
        None => r.to_string(),
    }
}

/// A stored key as docker prints it: `busybox:latest`, `busybox@sha256:...`.
pub fn familiar_key(key: &str) -> String {
    match Reference::parse(key) {
        Ok(r) => match r.digest() {
            Some(d) => format!("{}@{d}", r.familiar_name()),
            None => r.familiar(),
        },
        Err(_) => key.to_string(),
    }
}

/// The repository of a stored key (`docker.io/library/busybox`).
pub fn repo_of(key: &str) -> String {
    Reference::parse(key)
        .map(|r| r.name())
        .unwrap_or_else(|_| key.to_string())
}

/// How a name appears in "No such image": `busybox:latest` for references, as given otherwise.
pub fn display_name(name: &str) -> String {
    if is_id_prefix(name) && name.len() >= 12 {
        return name.to_string();
    }
    match Reference::parse(name) {
        Ok(r) => match r.digest() {
            Some(d) => format!("{}@{d}", r.familiar_name()),
            None => r.familiar(),
        },
        Err(_) => name.to_string(),
    }
}

/// `fromImage` and `tag` of a pull as one reference (`tag` may be a digest).
pub fn pull_reference(from_image: &str, tag: &str) -> Result<Reference, ImageError> {
    if from_image.is_empty() {
        return Err(ImageError::BadParameter(
            "fromImage or fromSrc is required".to_string(),
        ));
    }
    let s = if tag.is_empty() {
        from_image.to_string()
    } else if tag.contains(':') {
        format!("{from_image}@{tag}")
    } else {
        format!("{from_image}:{tag}")
    };
    Reference::parse(&s).map_err(|e| ImageError::BadReference(format!("{s}: {e}")))
}

/// `repo` and `tag` of a tag, push or import as one reference (`repo` may carry the tag).
pub fn tag_reference(repo: &str, tag: &str) -> Result<Reference, ImageError> {
    if repo.is_empty() {
        return Err(ImageError::BadParameter(
            "repository name must have at least one component".to_string(),
        ));
    }
    let s = if tag.is_empty() {
        repo.to_string()
    } else {
        format!("{repo}:{tag}")
    };
    let r = Reference::parse(&s).map_err(|e| ImageError::BadReference(format!("{s}: {e}")))?;
    if r.digest().is_some() {
        return Err(ImageError::BadParameter(format!(
            "refusing to create a tag with a digest reference: {s}"
        )));
    }
    Ok(r)
}

/// An `until` filter: a timestamp, or a Go duration (`10m`, `24h`) before now. Unix seconds.
pub fn until_secs(v: &str) -> Result<i64, ImageError> {
    let bad = || {
        ImageError::BadParameter(format!(
            "invalid until filter {v:?}: expected a timestamp or a duration"
        ))
    };
    if let Some(n) = crate::time::parse_api_timestamp(v) {
        return Ok(n.div_euclid(1_000_000_000));
    }
    let secs = go_duration_secs(v).ok_or_else(bad)?;
    Ok(crate::time::now_nanos().div_euclid(1_000_000_000) - secs)
}

/// Parses a Go duration such as `1h30m`, `90s`, `2.5h` into seconds.
pub fn go_duration_secs(v: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(total as i64)
}

/// The `reference` filter of `/images/json`: a pattern matches the familiar repository or `repository:tag`.
pub fn reference_filter(patterns: &[&str], refs: &[RefRow]) -> bool {
    patterns.iter().any(|p| {
        refs.iter().any(|row| {
            let Ok(r) = Reference::parse(&row.name) else {
                return false;
            };
            let fam_name = r.familiar_name();
            let full = familiar_key(&row.name);
            glob_match(p, &fam_name)
                || glob_match(p, &full)
                || glob_match(p, &r.name())
                || glob_match(p, &row.name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = format!("sha256:{}", "a".repeat(64));
        assert_eq!(full_id(&"a".repeat(64)), Some(id.clone()));
        assert_eq!(short_id(&id), "aaaaaaaaaaaa");
        assert!(is_id_prefix("abc123"));
        assert!(!is_id_prefix("busybox"));
        let r = pull_reference("busybox", "").unwrap();
        assert_eq!(ref_key(&r), "docker.io/library/busybox:latest");
        assert_eq!(familiar_key("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(display_name("nosuch"), "nosuch:latest");
        let d = format!("sha256:{}", "b".repeat(64));
        let r = pull_reference("127.0.0.1:5000/app", &d).unwrap();
        assert_eq!(ref_key(&r), format!("127.0.0.1:5000/app@{d}"));
        assert!(tag_reference(&format!("x@{d}"), "").is_err());
        assert_eq!(go_duration_secs("1h30m"), Some(5400));
        assert_eq!(go_duration_secs("10"), None);
        let rows = vec![RefRow {
            name: "docker.io/library/busybox:1.36".into(),
            image_id: id,
            is_digest: false,
            created: 0,
        }];
        assert!(reference_filter(&["busybox"], &rows));
        assert!(reference_filter(&["busy*:1.*"], &rows));
        assert!(!reference_filter(&["debian"], &rows));
    }
}
