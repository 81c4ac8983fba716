//! Content digests: `sha256:<hex>` and `sha512:<hex>`.
//!
//! OCI image-spec "Descriptors", section "Digests", defines the grammar; the
//! registry accepts the two registered algorithms and lower-case hex only.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm the registry accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256, 32 bytes, the default.
    Sha256,
    /// SHA-512, 64 bytes.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's name as written before the colon.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of the raw digest in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha512 => 64,
        }
    }

    /// The code stored in on-disk headers.
    pub(crate) fn code(self) -> u8 {
        match self {
            DigestAlgorithm::Sha256 => 1,
            DigestAlgorithm::Sha512 => 2,
        }
    }

    /// The algorithm for an on-disk code.
    pub(crate) fn from_code(code: u8) -> Option<DigestAlgorithm> {
        match code {
            1 => Some(DigestAlgorithm::Sha256),
            2 => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a digest string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The text before the colon is not a supported algorithm.
    #[error("unsupported digest algorithm in {0:?}")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong length or a character outside `[0-9a-f]`.
    #[error("malformed digest {0:?}")]
    Malformed(String),
}

/// A content digest: an algorithm and its raw bytes.
///
/// Ordering is by algorithm, then bytes, which is also the lexical order of
/// the text form within one algorithm.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    bytes: [u8; 64],
}

impl Digest {
    /// Parses `sha256:<64 lower hex>` or `sha512:<128 lower hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((name, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(truncated(s)));
        };
        let algorithm = match name {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(DigestError::UnsupportedAlgorithm(truncated(s))),
        };

        let len = algorithm.byte_len();
        if hex.len() != len * 2 {
            return Err(DigestError::Malformed(truncated(s)));
        }
        let mut bytes = [0u8; 64];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = hi << 4 | lo,
                _ => return Err(DigestError::Malformed(truncated(s))),
            }
        }
        Ok(Digest { algorithm, bytes })
    }

    /// Builds a digest from raw bytes; `None` if the length does not fit
    /// the algorithm.
    pub fn from_bytes(algorithm: DigestAlgorithm, raw: &[u8]) -> Option<Digest> {
        if raw.len() != algorithm.byte_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Digest { algorithm, bytes })
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The raw digest bytes (32 or 64 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.byte_len()]
    }

    /// The lower-case hex part, without the algorithm.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(self.algorithm.byte_len() * 2);
        for b in self.as_bytes() {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

/// An incremental hasher that yields a [`Digest`].
#[derive(Clone)]
pub struct DigestHasher {
    inner: HasherInner,
}

#[derive(Clone)]
enum HasherInner {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl DigestHasher {
    /// Starts an empty hash with `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> DigestHasher {
        let inner = match algorithm {
            DigestAlgorithm::Sha256 => HasherInner::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => HasherInner::Sha512(Sha512::new()),
        };
        DigestHasher { inner }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match self.inner {
            HasherInner::Sha256(_) => DigestAlgorithm::Sha256,
            HasherInner::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            HasherInner::Sha256(h) => h.update(bytes),
            HasherInner::Sha512(h) => h.update(bytes),
        }
    }

    /// Finishes the hash.
    pub fn finish(self) -> Digest {
        let mut bytes = [0u8; 64];
        let algorithm = self.algorithm();
        match self.inner {
            HasherInner::Sha256(h) => bytes[..32].copy_from_slice(&h.finalize()),
            HasherInner::Sha512(h) => bytes.copy_from_slice(&h.finalize()),
        }
        Digest { algorithm, bytes }
    }
}

/// The digest of `bytes` with `algorithm`, in one call.
pub fn digest_of(algorithm: DigestAlgorithm, bytes: &[u8]) -> Digest {
    let mut hasher = DigestHasher::new(algorithm);
    hasher.update(bytes);
    hasher.finish()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Keeps error messages bounded when a client sends a huge string.
fn truncated(s: &str) -> String {
    s.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good256 = format!("sha256:{}", "ab".repeat(32));
        let good512 = format!("sha512:{}", "0f".repeat(64));
        let cases: Vec<(String, bool)> = vec![
            (good256.clone(), true),
            (good512.clone(), true),
            (format!("sha256:{}", "AB".repeat(32)), false),
            (format!("sha256:{}", "ab".repeat(31)), false),
            (format!("sha384:{}", "ab".repeat(48)), false),
            ("sha256".to_string(), false),
            (String::new(), false),
            (format!("sha256:{}g", "a".repeat(63)), false),
        ];
        for (input, ok) in cases {
            assert_eq!(Digest::parse(&input).is_ok(), ok, "{input}");
        }
        assert_eq!(Digest::parse(&good256).unwrap().to_string(), good256);
        assert_eq!(Digest::parse(&good512).unwrap().to_string(), good512);
    }

    #[test]
    fn digest_of_empty_matches_known_value() {
        let d = digest_of(DigestAlgorithm::Sha256, b"");
        assert_eq!(
            d.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
