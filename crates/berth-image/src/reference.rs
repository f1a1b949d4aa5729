//! Image references, parsed and normalised as docker does.
//!
//! `debian` → `docker.io/library/debian:latest`, `user/app` → `docker.io/user/app:latest`,
//! `localhost:5000/app`, `127.0.0.1:5000/a/b:1.0`, `[::1]:5000/app`, `debian@sha256:…`, `debian:12@sha256:…`.
//! The grammar is distribution's `reference` grammar: the first path component is a registry host when it contains
//! a `.` or a `:`, is `localhost`, or has an uppercase letter; repository components are lowercase
//! `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`; tags are `[\w][\w.-]{0,127}`; a name is at most 255 characters.
//! A reference with neither tag nor digest gets the tag `latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry Docker Hub images live on, as written in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// Errors of reference parsing. Messages follow docker's (`invalid reference format: …`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Nothing was given.
    #[error("invalid reference format: the image reference is empty")]
    Empty,
    /// A 64-hex name is an image id, not a repository.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// A repository path has uppercase letters.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// A repository path component does not match the grammar.
    #[error("invalid reference format: {component:?} in {input:?} is not a valid repository name component")]
    InvalidComponent { input: String, component: String },
    /// The registry host is not a host name, an IP address or host:port.
    #[error("invalid reference format: {host:?} in {input:?} is not a valid registry host")]
    InvalidHost { input: String, host: String },
    /// The tag does not match `[\w][\w.-]{0,127}`.
    #[error("invalid reference format: {tag:?} in {input:?} is not a valid tag")]
    InvalidTag { input: String, tag: String },
    /// The digest after `@` is invalid.
    #[error("invalid reference format: the digest in {input:?} is invalid")]
    InvalidDigest {
        input: String,
        #[source]
        source: DigestError,
    },
    /// The repository name is too long.
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    NameTooLong(String),
}

/// A normalised image reference: registry, repository, and a tag and/or digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises like `docker pull` does; adds the tag `latest` when there is neither tag nor digest.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(r)
    }

    /// Parses and normalises without adding a default tag (`docker push user/app` pushes every tag, for example).
    pub fn parse_named(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::HexName(s.to_string()));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::InvalidDigest {
                    input: s.to_string(),
                    source,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::InvalidTag {
                input: s.to_string(),
                tag: tag.to_string(),
            });
        }
        let (registry, repository) = split_registry(name);
        if repository.to_lowercase() != repository {
            return Err(ReferenceError::Uppercase(repository));
        }
        if !valid_host(&registry) {
            return Err(ReferenceError::InvalidHost {
                input: s.to_string(),
                host: registry,
            });
        }
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::InvalidComponent {
                    input: s.to_string(),
                    component: component.to_string(),
                });
            }
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(format!("{registry}/{repository}")));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// A reference from parts that are already valid (for example from another `Reference`).
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::InvalidTag {
                input: self.to_string(),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository, pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository without tag and digest.
    pub fn repository_only(&self) -> Self {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// The registry host as written in references (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/debian`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What `/v2/<name>/manifests/<reference>` takes: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, fully qualified (`docker.io/library/debian`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as docker prints it: `debian`, `user/app`, `127.0.0.1:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as docker prints it: `debian:latest`, `user/app@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/debian:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name` into registry and repository as docker's `splitDockerDomain` does.
fn split_registry(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if registry == LEGACY_DOCKER_HUB {
        registry = DOCKER_HUB.to_string();
    }
    if registry == DOCKER_HUB && !repository.contains('/') {
        repository = format!("{OFFICIAL_PREFIX}{repository}");
    }
    (registry, repository)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// A domain name (`[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` components joined by dots) or a bracketed IPv6
/// address, with an optional `:port`.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, full form, registry, repository, tag, familiar)
    type Row<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>, &'a str);

    #[test]
    fn normalises_like_docker() {
        let table: &[Row] = &[
            (
                "debian",
                "docker.io/library/debian:latest",
                "docker.io",
                "library/debian",
                Some("latest"),
                "debian:latest",
            ),
            (
                "debian:12",
                "docker.io/library/debian:12",
                "docker.io",
                "library/debian",
                Some("12"),
                "debian:12",
            ),
            (
                "library/debian",
                "docker.io/library/debian:latest",
                "docker.io",
                "library/debian",
                Some("latest"),
                "debian:latest",
            ),
            (
                "docker.io/debian",
                "docker.io/library/debian:latest",
                "docker.io",
                "library/debian",
                Some("latest"),
                "debian:latest",
            ),
            (
                "index.docker.io/debian",
                "docker.io/library/debian:latest",
                "docker.io",
                "library/debian",
                Some("latest"),
                "debian:latest",
            ),
            (
                "user/app",
                "docker.io/user/app:latest",
                "docker.io",
                "user/app",
                Some("latest"),
                "user/app:latest",
            ),
            (
                "user/app/sub:v1.2-rc_3",
                "docker.io/user/app/sub:v1.2-rc_3",
                "docker.io",
                "user/app/sub",
                Some("v1.2-rc_3"),
                "user/app/sub:v1.2-rc_3",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost",
                "app",
                Some("latest"),
                "localhost/app:latest",
            ),
            (
                "localhost:5000/app:1",
                "localhost:5000/app:1",
                "localhost:5000",
                "app",
                Some("1"),
                "localhost:5000/app:1",
            ),
            (
                "127.0.0.1:5000/a/b",
                "127.0.0.1:5000/a/b:latest",
                "127.0.0.1:5000",
                "a/b",
                Some("latest"),
                "127.0.0.1:5000/a/b:latest",
            ),
            (
                "quay.io/podman/hello",
                "quay.io/podman/hello:latest",
                "quay.io",
                "podman/hello",
                Some("latest"),
                "quay.io/podman/hello:latest",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000",
                "app",
                Some("latest"),
                "[::1]:5000/app:latest",
            ),
            (
                "a.b-c__d.e---f",
                "docker.io/library/a.b-c__d.e---f:latest",
                "docker.io",
                "library/a.b-c__d.e---f",
                Some("latest"),
                "a.b-c__d.e---f:latest",
            ),
            (
                "Registry/app",
                "Registry/app:latest",
                "Registry",
                "app",
                Some("latest"),
                "Registry/app:latest",
            ),
        ];
        for (input, full, registry, repository, tag, familiar) in table {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository(), *repository, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), None, "{input}");
            assert_eq!(r.familiar(), *familiar, "{input}");
            // The full form parses back to the same reference.
            assert_eq!(Reference::parse(full).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("debian@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/debian@{D}"));
        assert_eq!(r.familiar(), format!("debian@{D}"));
        assert_eq!(r.manifest_reference(), D);

        let r = Reference::parse(&format!("127.0.0.1:5000/app:1.0@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.manifest_reference(), D, "the digest wins over the tag");
        assert_eq!(r.familiar(), format!("127.0.0.1:5000/app:1.0@{D}"));

        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(Reference::parse_named("user/app").unwrap().tag(), None);
    }

    #[test]
    fn rejects_invalid_references() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Debian", "must be lowercase"),
            ("user/App", "must be lowercase"),
            ("127.0.0.1:5000/App", "must be lowercase"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "64-byte hexadecimal",
            ),
            ("debian:", "not a valid tag"),
            ("debian:-x", "not a valid tag"),
            ("debian:a+b", "not a valid tag"),
            ("debian@sha256:abc", "digest"),
            ("debian@md5:abc", "digest"),
            ("-debian", "not a valid repository name component"),
            ("deb__.ian", "not a valid repository name component"),
            ("user//app", "not a valid repository name component"),
            ("user/app/", "not a valid repository name component"),
            ("ex ample", "not a valid"),
            ("host:port/app", "not a valid registry host"),
            ("-bad.host/app", "not a valid registry host"),
            ("[zz]:5000/app", "not a valid registry host"),
        ];
        for (input, wanted) in cases {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(wanted), "{input:?}: {err}");
        }
        let long = format!("a/{}", "b".repeat(260));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong(_))
        ));
        let long_tag = format!("debian:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::InvalidTag { .. })
        ));
    }

    #[test]
    fn helpers() {
        let r = Reference::parse("debian:12").unwrap();
        assert_eq!(
            r.with_tag("13").unwrap().to_string(),
            "docker.io/library/debian:13"
        );
        assert!(r.with_tag("bad tag").is_err());
        let d = Digest::parse(D).unwrap();
        assert_eq!(r.with_digest(d).familiar(), format!("debian:12@{D}"));
        assert_eq!(r.repository_only().familiar(), "debian");
        assert_eq!(r.name(), "docker.io/library/debian");
    }
}
