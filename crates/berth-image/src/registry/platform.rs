//! Platforms (`os/architecture[/variant]`) and the choice of a manifest from an index by platform.
//!
//! Architecture names are Go's (`amd64`, `arm64`, `arm`, `386`, …); common aliases (`x86_64`, `aarch64`,
//! `armhf`) are normalised. As in containerd's matcher, `arm64` without a variant equals `arm64/v8`, `arm`
//! without a variant means `arm/v7`, and `amd64` without a variant equals `amd64/v1`.

use std::fmt;
use std::str::FromStr;

/// Errors of platform parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// Not `os/architecture[/variant]`.
    #[error(
        "invalid platform {0:?}: expected os/architecture[/variant], such as linux/arm64 or linux/arm/v7"
    )]
    Invalid(String),
}

/// A platform, as in `--platform linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// Go's architecture name: `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// `v7`, `v8`, …
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this host (`linux/amd64` here).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/architecture[/variant]`, normalising architecture aliases.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || PlatformError::Invalid(s.to_string());
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !ok(os) || !ok(arch) || variant.is_some_and(|v| !ok(v)) {
            return Err(bad());
        }
        let (architecture, alias_variant) = normalize_arch(&arch.to_ascii_lowercase());
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant: variant.map(|v| v.to_ascii_lowercase()).or(alias_variant),
        })
    }

    /// The variant with defaults filled in (`arm64` → `v8`, `arm` → `v7`, `amd64` → `v1`), for comparisons.
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None | Some("8")) => Some("v8"),
            ("arm", None | Some("7")) => Some("v7"),
            ("amd64", None) => Some("v1"),
            (_, v) => v,
        }
    }

    /// How well `candidate` (an index entry) fits this requested platform: `None` when it does not,
    /// lower is better.
    pub fn match_rank(&self, candidate: &Platform) -> Option<u8> {
        if !self.os.eq_ignore_ascii_case(&candidate.os)
            || self.architecture != normalize_arch(&candidate.architecture).0
        {
            return None;
        }
        let candidate = Platform::normalized(candidate);
        match (
            self.variant.is_some(),
            self.effective_variant(),
            candidate.effective_variant(),
        ) {
            (_, want, have) if want == have => Some(0),
            // No variant asked: any variant of the architecture will do, less preferred.
            (false, _, _) => Some(1),
            _ => None,
        }
    }

    fn normalized(p: &Platform) -> Platform {
        let (architecture, alias_variant) = normalize_arch(&p.architecture.to_ascii_lowercase());
        Platform {
            os: p.os.to_ascii_lowercase(),
            architecture,
            variant: p.variant.clone().or(alias_variant),
        }
    }

    /// From an OCI descriptor's platform.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        }
    }
}

fn normalize_arch(arch: &str) -> (String, Option<String>) {
    let (a, v) = match arch {
        "x86_64" | "x86-64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "i386" | "i686" | "x86" => ("386", None),
        other => (other, None),
    };
    (a.to_string(), v.map(str::to_string))
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/ARM64/V8").to_string(), "linux/arm64/v8");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
            "",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Platform::host().to_string(), "linux/amd64");
        }
    }

    #[test]
    fn matching() {
        assert_eq!(p("linux/amd64").match_rank(&p("linux/amd64")), Some(0));
        assert_eq!(p("linux/amd64").match_rank(&p("linux/arm64")), None);
        assert_eq!(p("linux/amd64").match_rank(&p("windows/amd64")), None);
        assert_eq!(p("linux/arm64").match_rank(&p("linux/arm64/v8")), Some(0));
        assert_eq!(p("linux/arm64/v8").match_rank(&p("linux/arm64")), Some(0));
        assert_eq!(p("linux/arm/v7").match_rank(&p("linux/arm/v6")), None);
        assert_eq!(p("linux/arm").match_rank(&p("linux/arm/v6")), Some(1));
        assert_eq!(p("linux/arm").match_rank(&p("linux/arm/v7")), Some(0));
        assert_eq!(p("linux/amd64").match_rank(&p("linux/amd64/v3")), Some(1));
        assert_eq!(p("linux/amd64/v3").match_rank(&p("linux/amd64")), None);
    }
}
