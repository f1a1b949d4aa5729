//! Authentication: `WWW-Authenticate` challenges (Basic and Bearer), token requests, scopes.
//!
//! A registry that wants a token answers `401` with
//! `WWW-Authenticate: Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`.
//! The client asks the realm for a token (`GET realm?service=…&scope=…`, with HTTP basic credentials when it has
//! some, anonymously otherwise) and sends it as `Authorization: Bearer <token>`. A `Basic` challenge means the
//! registry itself takes the credentials on every request.

use std::time::Duration;

/// A parsed authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication against the registry itself.
    Basic {
        /// The realm (informational).
        realm: Option<String>,
    },
    /// A token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter for the token endpoint.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
    },
}

/// Parses the value of a `WWW-Authenticate` header. Returns `None` for schemes other than Basic and Bearer,
/// or a Bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic { realm: get("realm") })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `key=value` or `key="quoted, \"value\""` pairs separated by commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((key, value));
    }
}

/// What a token request asks for: `repository:<name>:<actions>` entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Vec<String>);

impl Scope {
    /// No scope (used by `login`).
    pub fn none() -> Self {
        Scope(Vec::new())
    }

    /// Pull access to `repository`.
    pub fn pull(repository: &str) -> Self {
        Scope(vec![format!("repository:{repository}:pull")])
    }

    /// Pull and push access to `repository`.
    pub fn push(repository: &str) -> Self {
        Scope(vec![format!("repository:{repository}:pull,push")])
    }

    /// Adds pull access to another repository (a cross-repository mount's source).
    pub fn and_pull(mut self, repository: &str) -> Self {
        self.0.push(format!("repository:{repository}:pull"));
        self
    }

    /// The `scope` query parameters.
    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

/// The token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    /// The token (`token`, or OAuth2's `access_token`).
    #[serde(default)]
    pub token: Option<String>,
    /// OAuth2 name of the same.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds; the spec's default is 60.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long to keep it (a little less than its lifetime).
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self.expires_in.unwrap_or(60).max(60);
        Some((token, Duration::from_secs(lifetime.saturating_sub(10))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull".into()),
            })
        );
        let c = parse_challenge(
            r#"bearer  realm = "http://127.0.0.1:1/t?x=1", scope="a:b:pull,push", error="insufficient_scope""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t?x=1".into(),
                service: None,
                scope: Some("a:b:pull,push".into())
            })
        );
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "no realm");
        let c = parse_challenge(r#"Bearer realm="q\"uote",service=plain"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "q\"uote".into(),
                service: Some("plain".into()),
                scope: None
            })
        );
    }

    #[test]
    fn parses_basic_and_others() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: Some("Registry Realm".into())
            })
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic { realm: None }));
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn scopes_and_tokens() {
        let s = Scope::push("a/b").and_pull("c");
        assert_eq!(s.entries(), ["repository:a/b:pull,push", "repository:c:pull"]);
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"xyz","expires_in":300}"#).unwrap();
        assert_eq!(
            t.into_token(),
            Some(("xyz".to_string(), Duration::from_secs(290)))
        );
        let t: TokenResponse = serde_json::from_str(r#"{"token":"abc"}"#).unwrap();
        assert_eq!(t.into_token().unwrap().0, "abc");
        let t: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert!(t.into_token().is_none());
    }
}
