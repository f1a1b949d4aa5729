//! Docker's `filters` query parameter: JSON `{"key": {"value": true}}` or the legacy `{"key": ["value"]}`.

use std::collections::{BTreeMap, BTreeSet};

/// A `filters` parameter that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The parameter is not a JSON object of lists or maps of strings.
    #[error("invalid filter: {0}")]
    Malformed(String),
    /// A key this endpoint does not know.
    #[error("invalid filter '{0}'")]
    UnknownKey(String),
    /// A value that does not fit its key.
    #[error("invalid filter '{key}={value}': {reason}")]
    BadValue {
        /// The filter key.
        key: String,
        /// The value given.
        value: String,
        /// Why it does not fit.
        reason: String,
    },
}

/// Parsed filters: key → set of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Parses the query parameter; an empty string means no filters.
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::default());
        }
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| FilterError::Malformed(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| FilterError::Malformed(format!("expected a JSON object, got {s}")))?;
        let mut out = BTreeMap::new();
        for (k, vals) in obj {
            let mut set = BTreeSet::new();
            match vals {
                serde_json::Value::Array(a) => {
                    for x in a {
                        let x = x.as_str().ok_or_else(|| {
                            FilterError::Malformed(format!("the values of '{k}' must be strings"))
                        })?;
                        set.insert(x.to_string());
                    }
                }
                serde_json::Value::Object(m) => {
                    for (x, on) in m {
                        if on.as_bool() == Some(true) {
                            set.insert(x.clone());
                        }
                    }
                }
                _ => {
                    return Err(FilterError::Malformed(format!(
                        "the values of '{k}' must be a list or a map"
                    )));
                }
            }
            out.insert(k.clone(), set);
        }
        Ok(Self(out))
    }

    /// Builds filters from `key=value` pairs (as the CLI's `--filter` gives them).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().insert(v.to_string());
        }
        Self(m)
    }

    /// Serialises in the map form the Engine API documents.
    pub fn to_json(&self) -> String {
        let m: BTreeMap<&String, BTreeMap<&String, bool>> = self
            .0
            .iter()
            .map(|(k, vs)| (k, vs.iter().map(|v| (v, true)).collect()))
            .collect();
        serde_json::to_string(&m).unwrap_or_else(|_| "{}".to_string())
    }

    /// Refuses keys outside `allowed`.
    pub fn validate(&self, allowed: &[&str]) -> Result<(), FilterError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(FilterError::UnknownKey(k.clone())),
            None => Ok(()),
        }
    }

    /// The values of `key` (empty when absent).
    pub fn get(&self, key: &str) -> Vec<&str> {
        self.0
            .get(key)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether `key` was given.
    pub fn contains(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|s| !s.is_empty())
    }

    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }

    /// A boolean filter (`dangling=true`): `None` when absent, an error for values other than true/false/1/0.
    pub fn bool_value(&self, key: &str) -> Result<Option<bool>, FilterError> {
        let vals = self.get(key);
        let mut result = None;
        for v in vals {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(FilterError::BadValue {
                        key: key.to_string(),
                        value: v.to_string(),
                        reason: "expected true or false".to_string(),
                    });
                }
            };
            if result.is_some_and(|r| r != b) {
                return Err(FilterError::BadValue {
                    key: key.to_string(),
                    value: v.to_string(),
                    reason: "conflicts with another value of the same key".to_string(),
                });
            }
            result = Some(b);
        }
        Ok(result)
    }

    /// Whether the `label` filters (`key` or `key=value`, all must hold) match `labels`.
    pub fn match_labels(&self, key: &str, labels: &std::collections::HashMap<String, String>) -> bool {
        self.get(key).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(*f),
        })
    }
}

/// Matches a Go `path.Match`-style shell pattern (`*`, `?`, `[...]`) against `name`; `*` does not cross `/`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                    return !n.is_empty() && n[0] == '[' && go(&p[1..], &n[1..]);
                };
                if n.is_empty() {
                    return false;
                }
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^' | '!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let c = n[0];
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => !n.is_empty() && n[0] == p[1] && go(&p[2..], &n[1..]),
            Some(&c) => !n.is_empty() && n[0] == c && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let a = Filters::parse(r#"{"dangling":{"true":true},"label":["a=b"]}"#).unwrap();
        assert_eq!(a.bool_value("dangling").unwrap(), Some(true));
        assert_eq!(a.get("label"), vec!["a=b"]);
        assert!(a.validate(&["dangling"]).is_err());
        assert!(Filters::parse("[1]").is_err());
        assert!(Filters::parse("{\"a\":[1]}").is_err());
        let round = Filters::parse(&a.to_json()).unwrap();
        assert_eq!(round, a);
    }

    #[test]
    fn globs_like_go() {
        assert!(glob_match("busy*", "busybox"));
        assert!(!glob_match("busy*", "library/busybox"));
        assert!(glob_match("*/busybox", "library/busybox"));
        assert!(glob_match("b?sy[a-z]ox", "busybox"));
        assert!(!glob_match("b[^u]sybox", "busybox"));
    }
}
