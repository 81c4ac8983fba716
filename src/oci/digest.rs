//! Digest strings as the API sees them: checked against the spec's
//! grammar, then parsed into the storage engine's [`Digest`].
//!
//! A digest is `algorithm ":" encoded` (image-spec `descriptor.md`,
//! "Digests"). berth serves `sha256` (64 lowercase hex digits) and `sha512`
//! (128). A digest of another well-formed algorithm is reported as
//! unsupported; anything else is invalid.

use std::fmt;

use berth_storage::Digest;

use super::errors::OciError;

/// The longest digest string accepted, in bytes.
///
/// A sha512 digest is 135 bytes; the bound keeps error messages and
/// logs small when a client sends garbage.
pub const MAX_DIGEST_BYTES: usize = 256;

/// Why a digest string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestError {
    /// The string is not a digest of a known form.
    Invalid {
        /// The digest as received, cut to [`MAX_DIGEST_BYTES`].
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The string is a well-formed digest of an algorithm berth does not
    /// serve.
    Unsupported {
        /// The algorithm named in the digest.
        algorithm: String,
    },
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Invalid { digest, reason } => {
                write!(f, "invalid digest {digest:?}: {reason}")
            }
            DigestError::Unsupported { algorithm } => {
                write!(f, "unsupported digest algorithm {algorithm:?}")
            }
        }
    }
}

impl std::error::Error for DigestError {}

impl From<DigestError> for OciError {
    /// Invalid digests are `DIGEST_INVALID`; unsupported algorithms are a
    /// 400 `UNSUPPORTED`.
    fn from(err: DigestError) -> Self {
        match err {
            DigestError::Invalid { .. } => OciError::digest_invalid(err.to_string()),
            DigestError::Unsupported { .. } => OciError::unsupported(err.to_string()),
        }
    }
}

/// Parses a digest string as the API sees it.
///
/// The spec's grammar decides between a malformed digest (invalid) and a
/// well-formed one of an algorithm berth does not serve (unsupported);
/// the registered algorithms are then parsed by the storage engine's
/// [`Digest`], which wants fixed-length lowercase hex.
pub fn parse_digest(digest: &str) -> Result<Digest, DigestError> {
    let invalid = |reason| DigestError::Invalid {
        digest: truncate(digest),
        reason,
    };

    if digest.len() > MAX_DIGEST_BYTES {
        return Err(invalid("too long"));
    }
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(invalid("no ':' between algorithm and hex"));
    };

    if !is_algorithm(algorithm) {
        return Err(invalid("malformed algorithm"));
    }
    if !is_encoded(encoded) {
        return Err(invalid("malformed encoded part"));
    }
    if !matches!(algorithm, "sha256" | "sha512") {
        return Err(DigestError::Unsupported {
            algorithm: algorithm.to_string(),
        });
    }
    Digest::parse(digest).map_err(|_| invalid("wrong length or not lowercase hex"))
}

/// Whether a string looks like a digest rather than a tag.
///
/// Tags cannot contain ':', so anything with one is meant as a digest
/// (distribution-spec, "Pulling manifests").
pub fn looks_like_digest(reference: &str) -> bool {
    reference.contains(':')
}

/// `algorithm ::= component (separator component)*`, with
/// `component ::= [a-z0-9]+` and `separator ::= [+._-]`.
fn is_algorithm(s: &str) -> bool {
    let mut previous_was_separator = true;
    for b in s.bytes() {
        let is_separator = matches!(b, b'+' | b'.' | b'_' | b'-');
        let is_component = b.is_ascii_lowercase() || b.is_ascii_digit();
        if is_separator && previous_was_separator {
            return false;
        }
        if !is_separator && !is_component {
            return false;
        }
        previous_was_separator = is_separator;
    }
    !previous_was_separator
}

/// `encoded ::= [a-zA-Z0-9=_-]+`.
fn is_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_DIGEST_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::errors::ErrorCode;
    use berth_storage::DigestAlgorithm;

    const SHA256: &str = "sha256:\
        6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    fn sha512() -> String {
        format!("sha512:{}", "ab".repeat(64))
    }

    #[test]
    fn registered_algorithms_are_accepted() {
        let sha256 = parse_digest(SHA256).unwrap();
        assert_eq!(sha256.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(sha256.to_string(), SHA256);
        let long = parse_digest(&sha512()).unwrap();
        assert_eq!(long.algorithm(), DigestAlgorithm::Sha512);
        assert_eq!(long.to_string(), sha512());
    }

    #[test]
    fn malformed_digests_are_invalid() {
        let too_long = format!("sha256:{}", "a".repeat(300));
        let upper = SHA256.to_uppercase().replacen("SHA256", "sha256", 1);
        let cases = [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "sha256:zz3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d",
            &upper,
            "SHA256:abc",
            "sha256+:abc",
            "+sha256:abc",
            "sha__256:abc",
            "sha256:a/b",
            "sha256:ab cd",
            "sha256:é",
            &too_long,
            "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b0",
        ];
        for case in cases {
            let err = parse_digest(case).unwrap_err();
            assert!(
                matches!(err, DigestError::Invalid { .. }),
                "{case:?} gave {err:?}"
            );
            let oci: OciError = err.into();
            assert_eq!(oci.code, ErrorCode::DigestInvalid);
        }
    }

    #[test]
    fn other_well_formed_algorithms_are_unsupported() {
        for case in ["blake3:abcd", "sha384:00ff", "multihash+base58:QmRZ"] {
            let err = parse_digest(case).unwrap_err();
            assert_eq!(
                err,
                DigestError::Unsupported {
                    algorithm: case.split(':').next().unwrap().into()
                }
            );
            let oci: OciError = err.into();
            assert_eq!(oci.code, ErrorCode::Unsupported);
            assert_eq!(oci.status, 400);
        }
    }

    #[test]
    fn references_with_a_colon_are_digests() {
        assert!(looks_like_digest(SHA256));
        assert!(!looks_like_digest("latest"));
    }
}
