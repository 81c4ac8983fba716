//! Media type names the API knows, and the syntax every media type must
//! follow (RFC 6838, section 4.2).

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The OCI empty descriptor's media type (`{}`, 2 bytes).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A Docker manifest list, schema 2.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A Docker image manifest, schema 1 (unsigned).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// A Docker image manifest, schema 1 (signed).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The longest media type accepted: two RFC 6838 names of 127
/// characters and the slash.
pub const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// Whether `s` is `type/subtype` with RFC 6838 restricted names.
///
/// `restricted-name = ALPHA / DIGIT, then up to 126 of ALPHA / DIGIT /
/// "!" / "#" / "$" / "&" / "-" / "^" / "_" / "." / "+"`. Parameters are
/// not allowed here; see [`essence`].
pub fn is_media_type(s: &str) -> bool {
    let Some((kind, subtype)) = s.split_once('/') else {
        return false;
    };
    is_restricted_name(kind) && is_restricted_name(subtype)
}

/// The media type of a `Content-Type` or `Accept` value, parameters
/// dropped, trimmed and lowercased (media types compare without case).
pub fn essence(value: &str) -> String {
    let bare = value.split(';').next().unwrap_or("");
    bare.trim().to_ascii_lowercase()
}

/// Whether a media type is one of Docker's schema 1 manifests.
pub fn is_docker_schema1(media_type: &str) -> bool {
    media_type.eq_ignore_ascii_case(DOCKER_SCHEMA1)
        || media_type.eq_ignore_ascii_case(DOCKER_SCHEMA1_SIGNED)
}

fn is_restricted_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };

    let rest_ok = rest.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
            )
    });
    first.is_ascii_alphanumeric() && rest_ok && bytes.len() <= 127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_rfc_6838() {
        let long = format!("application/{}", "a".repeat(127));
        let too_long = format!("application/{}", "a".repeat(128));
        let cases = [
            (OCI_MANIFEST, true),
            (DOCKER_LIST, true),
            ("application/vnd.example+type", true),
            ("text/plain", true),
            (long.as_str(), true),
            (too_long.as_str(), false),
            ("", false),
            ("application", false),
            ("application/", false),
            ("/json", false),
            ("application/json; charset=utf-8", false),
            ("application/+json", false),
            ("a/b/c", false),
            ("*/*", false),
            ("appl ication/json", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_media_type(s), want, "{s:?}");
        }
    }

    #[test]
    fn essence_drops_parameters_and_case() {
        let cases = [
            ("application/JSON; charset=utf-8", "application/json"),
            ("  text/plain  ", "text/plain"),
            (";q=1", ""),
            ("", ""),
        ];
        for (value, want) in cases {
            assert_eq!(essence(value), want, "{value:?}");
        }
    }
}
