//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`) and a streaming verifier.
//!
//! A [`Digest`] is validated when parsed: only the algorithms the registry API and the OCI image spec
//! register (sha256, sha512) and lowercase hex of the right length. A [`Verifier`] hashes data as it streams
//! past and compares at the end, so a layer is verified while it is downloaded and unpacked.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Errors of digest parsing and verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The text has no `algorithm:` prefix.
    #[error("invalid digest {0:?}: expected algorithm:hex, such as sha256:<64 hex digits>")]
    MissingAlgorithm(String),
    /// The algorithm is not sha256 or sha512.
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 and sha512 are supported")]
    UnsupportedAlgorithm { algorithm: String, digest: String },
    /// The hex part has the wrong length or characters.
    #[error("invalid digest {digest:?}: {algorithm} needs {expected} lowercase hex digits")]
    InvalidHex {
        digest: String,
        algorithm: Algorithm,
        expected: usize,
    },
    /// The data hashed to another digest.
    #[error("the content has digest {actual}, expected {expected}")]
    Mismatch { expected: Digest, actual: Digest },
    /// The data had another length than announced.
    #[error("the content of {digest} is {actual} bytes long, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the one everybody uses.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex digits of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest. Displays as `sha256:<hex>`; ordered and hashed by that text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_string()));
        };
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    algorithm: other.to_string(),
                    digest: s.to_string(),
                });
            }
        };
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::InvalidHex {
                digest: s.to_string(),
                algorithm,
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, data)
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part (without `sha256:`), as used in file names.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Checks `data` against this digest.
    pub fn verify(&self, data: &[u8]) -> Result<(), DigestError> {
        let mut v = Verifier::new(self);
        v.update(data);
        v.verify()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // oci-spec accepts every `sha256:<64 lowercase hex>` and `sha512:<128 lowercase hex>`, which is exactly
        // what `Digest::parse` lets through, so this cannot fail for a `Digest`.
        #[allow(clippy::expect_used)]
        oci_spec::image::Digest::from_str(&d.to_string())
            .expect("a validated digest is a valid oci-spec digest")
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Digest {
        let (algorithm, bytes): (Algorithm, Vec<u8>) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            hex: to_hex(&bytes),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// An incremental hasher that checks data against an expected digest (and optionally a size).
pub struct Verifier {
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Hasher,
    len: u64,
}

impl Verifier {
    /// A verifier for content with digest `expected`.
    pub fn new(expected: &Digest) -> Self {
        Verifier {
            expected: expected.clone(),
            expected_size: None,
            hasher: Hasher::new(expected.algorithm),
            len: 0,
        }
    }

    /// A verifier that also checks the length.
    pub fn with_size(expected: &Digest, size: u64) -> Self {
        let mut v = Self::new(expected);
        v.expected_size = Some(size);
        v
    }

    /// Feeds data.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest expected.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Compares what was fed with the expected digest (and size).
    pub fn verify(self) -> Result<(), DigestError> {
        if let Some(size) = self.expected_size
            && size != self.len
        {
            return Err(DigestError::SizeMismatch {
                digest: self.expected,
                expected: size,
                actual: self.len,
            });
        }
        let actual = self.hasher.finish();
        if actual == self.expected {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.expected,
                actual,
            })
        }
    }
}

impl std::io::Write for Verifier {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(Digest::sha256(b""), d);
        let s512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(&s512.to_string()).unwrap(), s512);
        assert!(s512.to_string().starts_with("sha512:ddaf35a1"));
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            Digest::parse("abc"),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("md5:abcd"),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::InvalidHex { .. })
        ));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            Digest::parse(&upper),
            Err(DigestError::InvalidHex { .. })
        ));
    }

    #[test]
    fn verifier_streams() {
        let d = Digest::sha256(b"hello world");
        let mut v = Verifier::with_size(&d, 11);
        v.update(b"hello ");
        v.update(b"world");
        v.verify().unwrap();
        let mut v = Verifier::new(&d);
        v.update(b"hello there");
        let err = v.verify().unwrap_err();
        assert!(err.to_string().contains("expected sha256:b94d27b9"), "{err}");
        let mut v = Verifier::with_size(&d, 12);
        v.update(b"hello world");
        assert!(matches!(v.verify(), Err(DigestError::SizeMismatch { .. })));
    }

    #[test]
    fn converts_to_oci_spec() {
        let d = Digest::parse(EMPTY).unwrap();
        let o: oci_spec::image::Digest = (&d).into();
        assert_eq!(o.to_string(), EMPTY);
        assert_eq!(Digest::try_from(&o).unwrap(), d);
    }
}
