//! Maps a request's method and path to an API endpoint.
//!
//! Repository names contain `/`, so a path is matched from its end: the
//! last one or two segments say which endpoint it is (`manifests/<ref>`,
//! `blobs/<digest>`, `blobs/uploads/`, `blobs/uploads/<id>`, `tags/list`,
//! `referrers/<digest>`) and everything before them is the name. A
//! repository may itself be called `a/blobs/b`; matching from the end
//! keeps that unambiguous.
//!
//! Segments are split on raw `/` first and percent-decoded after, so an
//! encoded slash (`%2F`) can never change where a name ends.

use std::borrow::Cow;

use berth_storage::Digest;

use super::digest::{looks_like_digest, parse_digest};
use super::errors::OciError;
use super::name::{is_valid_tag, validate_repository, validate_tag};

/// The longest upload id accepted, in bytes.
///
/// berth makes its own ids far shorter; anything longer is not one of
/// them.
pub const MAX_UPLOAD_ID_BYTES: usize = 128;

/// The most query parameters [`query_params`] returns; the rest are
/// dropped.
pub const MAX_QUERY_PARAMS: usize = 64;

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag such as `latest`.
    Tag(String),
    /// A digest such as `sha256:…`.
    Digest(Digest),
}

impl Reference {
    /// Reads a reference: one with a `:` is a digest, anything else a tag.
    ///
    /// A bad digest is `DIGEST_INVALID` (or `UNSUPPORTED` for an unknown
    /// algorithm); a bad tag is `MANIFEST_INVALID`.
    pub fn parse(reference: &str) -> Result<Self, OciError> {
        Reference::parse_owned(reference.to_string())
    }

    /// [`Reference::parse`] without copying the string.
    fn parse_owned(reference: String) -> Result<Self, OciError> {
        if looks_like_digest(&reference) {
            return Ok(Reference::Digest(parse_digest(&reference)?));
        }
        validate_tag(&reference)?;
        Ok(Reference::Tag(reference))
    }

    /// The digest of a by-digest reference.
    pub fn digest(&self) -> Option<Digest> {
        match self {
            Reference::Digest(digest) => Some(*digest),
            Reference::Tag(_) => None,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// An endpoint of the distribution API, with its path parameters decoded
/// and checked.
///
/// `D` and `R` are the types of a digest and of a manifest reference in
/// the path: [`Digest`] and [`Reference`] once checked, the decoded text
/// while the path is only matched (so that a wrong method is reported
/// before a bad digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<D = Digest, R = Reference> {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`: the repository list.
    Catalog,
    /// `/v2/<name>/tags/list`.
    TagsList {
        /// The repository.
        name: String,
    },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The repository.
        name: String,
        /// The tag or digest.
        reference: R,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository.
        name: String,
        /// The blob digest.
        digest: D,
    },
    /// `/v2/<name>/blobs/uploads/`: starts an upload (or a mount, or a
    /// monolithic push, depending on the query).
    UploadStart {
        /// The repository.
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: an upload session.
    Upload {
        /// The repository.
        name: String,
        /// The session id, as sent (checked only for length and
        /// characters; the handler looks it up).
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// The repository.
        name: String,
        /// The subject digest.
        digest: D,
    },
}

impl<D, R> Route<D, R> {
    /// The methods the endpoint allows, for a 405 and its `Allow` header.
    pub fn allowed_methods(&self) -> &'static [&'static str] {
        match self {
            Route::Base | Route::Catalog | Route::TagsList { .. } => &["GET", "HEAD"],
            Route::Referrers { .. } => &["GET", "HEAD"],
            Route::Manifest { .. } => &["GET", "HEAD", "PUT", "DELETE"],
            Route::Blob { .. } => &["GET", "HEAD", "DELETE"],
            Route::UploadStart { .. } => &["POST"],
            Route::Upload { .. } => &["GET", "PATCH", "PUT", "DELETE"],
        }
    }

    /// The repository the endpoint acts on, if it acts on one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::TagsList { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Finds the endpoint for a request.
///
/// `path` is the request target's path without the query; `query` is
/// the part after `?` (empty when there is none). An unknown path is a
/// 404 `UNSUPPORTED`, a known path with the wrong method a 405
/// `UNSUPPORTED`, a bad name `NAME_INVALID`, a bad digest
/// `DIGEST_INVALID`. When present, a `digest` query parameter on an
/// upload is checked too.
pub fn route(method: &str, path: &str, query: &str) -> Result<Route, OciError> {
    let shape = match_shape(path)?;

    let allowed = shape.allowed_methods();
    if !allowed.contains(&method) {
        return Err(OciError::method_not_allowed_for(method, allowed));
    }

    let route = check_shape(method, shape)?;

    // A bad `digest` is a client error before any body is read.
    if matches!(route, Route::UploadStart { .. } | Route::Upload { .. }) {
        let params = query_params(query);
        if let Some(digest) = param(&params, "digest") {
            parse_digest(digest)?;
        }
    }
    Ok(route)
}

/// Splits a query string into decoded `(key, value)` pairs, in order.
///
/// `+` is a space and `%XX` a byte, as in HTML forms; a malformed escape
/// is kept as written and bytes that are not UTF-8 become U+FFFD. A key
/// without `=` has an empty value. At most [`MAX_QUERY_PARAMS`] pairs
/// are returned.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .take(MAX_QUERY_PARAMS)
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_form(key), decode_form(value))
        })
        .collect()
}

/// The value of the first parameter called `key`.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes one path segment (`+` stays a `+`).
pub fn percent_decode(segment: &str) -> String {
    decode(segment, false).into_owned()
}

/// A route whose path segments are decoded but not yet checked.
fn match_shape(path: &str) -> Result<Route<String, String>, OciError> {
    let not_found = || OciError::not_found(path);

    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }

    let segments: Vec<Cow<str>> = rest.split('/').map(|s| decode(s, false)).collect();
    let n = segments.len();
    let at = |i: usize| segments[i].as_ref();

    // Each arm needs at least one name segment before its suffix.
    let name = |suffix: usize| join_name(&segments[..n - suffix]);
    let shape = if n >= 3 && at(n - 2) == "manifests" {
        Route::Manifest {
            name: name(2)?,
            reference: segments[n - 1].to_string(),
        }
    } else if n >= 4 && at(n - 3) == "blobs" && at(n - 2) == "uploads" {
        if at(n - 1).is_empty() {
            Route::UploadStart { name: name(3)? }
        } else {
            Route::Upload {
                name: name(3)?,
                id: segments[n - 1].to_string(),
            }
        }
    } else if n >= 3 && at(n - 2) == "blobs" && at(n - 1) == "uploads" {
        // NOTE: the spec's path has a trailing slash; some clients drop
        // it, and "uploads" can never be a digest.
        Route::UploadStart { name: name(2)? }
    } else if n >= 3 && at(n - 2) == "blobs" {
        Route::Blob {
            name: name(2)?,
            digest: segments[n - 1].to_string(),
        }
    } else if n >= 3 && at(n - 2) == "tags" && at(n - 1) == "list" {
        Route::TagsList { name: name(2)? }
    } else if n >= 3 && at(n - 2) == "referrers" {
        Route::Referrers {
            name: name(2)?,
            digest: segments[n - 1].to_string(),
        }
    } else {
        return Err(not_found());
    };
    Ok(shape)
}

/// Checks the name and the parameter of a matched route.
///
/// A reference that is not a valid tag names no manifest: reading or
/// deleting one is a 404 `MANIFEST_UNKNOWN` (distribution-spec, "Pulling
/// manifests": 404 when the manifest does not exist); only a push under
/// it is a 400 `MANIFEST_INVALID`.
fn check_shape(method: &str, shape: Route<String, String>) -> Result<Route, OciError> {
    if let Some(name) = shape.name() {
        validate_repository(name)?;
    }

    let route = match shape {
        Route::Base => Route::Base,
        Route::Catalog => Route::Catalog,
        Route::TagsList { name } => Route::TagsList { name },
        Route::Manifest { name, reference } => {
            let is_tag_like = !looks_like_digest(&reference);
            if method != "PUT" && is_tag_like && !is_valid_tag(&reference) {
                return Err(OciError::manifest_unknown(&reference));
            }
            Route::Manifest {
                name,
                reference: Reference::parse_owned(reference)?,
            }
        }
        Route::Blob { name, digest } => Route::Blob {
            name,
            digest: parse_digest(&digest)?,
        },
        Route::UploadStart { name } => Route::UploadStart { name },
        Route::Upload { name, id } => {
            if !is_plausible_upload_id(&id) {
                return Err(OciError::upload_unknown(""));
            }
            Route::Upload { name, id }
        }
        Route::Referrers { name, digest } => Route::Referrers {
            name,
            digest: parse_digest(&digest)?,
        },
    };
    Ok(route)
}

/// Joins decoded name segments; a segment that decoded to contain `/`
/// would make an alias of another name, so it is refused.
fn join_name(segments: &[Cow<str>]) -> Result<String, OciError> {
    let name = segments.join("/");
    if segments.iter().any(|s| s.contains('/')) {
        return Err(OciError::name_invalid(&name, "encoded '/' in a name"));
    }
    Ok(name)
}

/// Upload ids are printable ASCII without `/`, `?` or `#`.
fn is_plausible_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#'))
}

fn decode_form(s: &str) -> String {
    decode(s, true).into_owned()
}

fn decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    // Most segments have nothing to decode.
    let has_plus = plus_is_space && s.contains('+');
    if !s.contains('%') && !has_plus {
        return Cow::Borrowed(s);
    }

    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());

    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi)
                .zip(hex_value(lo))
                .map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };

        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }

    let text = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Cow::Owned(text)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::errors::ErrorCode;

    const D: &str = "sha256:\
        6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    fn tag(name: &str, t: &str) -> Route {
        Route::Manifest {
            name: name.into(),
            reference: Reference::Tag(t.into()),
        }
    }

    fn blob(name: &str) -> Route {
        Route::Blob {
            name: name.into(),
            digest: D.parse().unwrap(),
        }
    }

    #[test]
    fn paths_map_to_their_endpoints() {
        let d = D;
        let cases: Vec<(&str, String, Route)> = vec![
            ("GET", "/v2/".into(), Route::Base),
            ("HEAD", "/v2".into(), Route::Base),
            ("GET", "/v2/_catalog".into(), Route::Catalog),
            ("GET", "/v2/a/tags/list".into(), tags("a")),
            ("GET", "/v2/a/b/c/tags/list".into(), tags("a/b/c")),
            ("GET", "/v2/a/manifests/latest".into(), tag("a", "latest")),
            ("PUT", "/v2/a/b/manifests/v1.0".into(), tag("a/b", "v1.0")),
            (
                "GET",
                format!("/v2/a/manifests/{d}"),
                Route::Manifest {
                    name: "a".into(),
                    reference: Reference::Digest(d.parse().unwrap()),
                },
            ),
            ("HEAD", format!("/v2/a/blobs/{d}"), blob("a")),
            (
                "DELETE",
                format!("/v2/a/blobs/b/blobs/{d}"),
                blob("a/blobs/b"),
            ),
            ("POST", "/v2/a/blobs/uploads/".into(), upload_start("a")),
            ("POST", "/v2/a/blobs/uploads".into(), upload_start("a")),
            (
                "POST",
                "/v2/a/blobs/uploads/blobs/uploads/".into(),
                upload_start("a/blobs/uploads"),
            ),
            (
                "PATCH",
                "/v2/a/b/blobs/uploads/x-1".into(),
                upload("a/b", "x-1"),
            ),
            (
                "GET",
                "/v2/blobs/blobs/uploads/u".into(),
                upload("blobs", "u"),
            ),
            (
                "GET",
                "/v2/manifests/manifests/m".into(),
                tag("manifests", "m"),
            ),
            ("GET", "/v2/tags/tags/list".into(), tags("tags")),
            (
                "GET",
                "/v2/x/manifests/tags/list".into(),
                tags("x/manifests"),
            ),
            (
                "GET",
                "/v2/x/tags/list/manifests/t".into(),
                tag("x/tags/list", "t"),
            ),
            (
                "GET",
                "/v2/%61/manifests/%6Catest".into(),
                tag("a", "latest"),
            ),
            (
                "GET",
                format!("/v2/a/referrers/{d}"),
                Route::Referrers {
                    name: "a".into(),
                    digest: d.parse().unwrap(),
                },
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(method, &path, ""), Ok(want), "{method} {path}");
        }
    }

    fn tags(name: &str) -> Route {
        Route::TagsList { name: name.into() }
    }

    fn upload_start(name: &str) -> Route {
        Route::UploadStart { name: name.into() }
    }

    fn upload(name: &str, id: &str) -> Route {
        Route::Upload {
            name: name.into(),
            id: id.into(),
        }
    }

    #[test]
    fn unknown_paths_are_404_unsupported() {
        let cases = [
            "/",
            "",
            "/v1/",
            "/v2x/",
            "/v2/a",
            "/v2/a/",
            "/v2/a/b",
            "/v2/a/tags",
            "/v2/a/tags/list/",
            "/v2/a/manifests",
            "/v2/manifests/x",
            "/v2/blobs/uploads/x",
            "/v2/a/blobs",
            "/v2/a/other/x",
            "/v2/_catalog/x",
        ];
        for path in cases {
            let err = route("GET", path, "").unwrap_err();
            assert_eq!(err.status, 404, "{path:?}");
            assert_eq!(err.code, ErrorCode::Unsupported, "{path:?}");
        }
    }

    #[test]
    fn wrong_methods_are_405_unsupported() {
        let d = D;
        let cases = [
            ("POST", "/v2/".to_string()),
            ("DELETE", "/v2/_catalog".into()),
            ("PUT", "/v2/a/tags/list".into()),
            ("POST", "/v2/a/manifests/latest".into()),
            ("PUT", format!("/v2/a/blobs/{d}")),
            ("GET", "/v2/a/blobs/uploads/".into()),
            ("POST", "/v2/a/blobs/uploads/id".into()),
            ("DELETE", format!("/v2/a/referrers/{d}")),
            ("get", "/v2/".into()),
        ];
        for (method, path) in cases {
            let err = route(method, &path, "").unwrap_err();
            assert_eq!(err.status, 405, "{method} {path}");
            assert_eq!(err.code, ErrorCode::Unsupported);
        }
    }

    #[test]
    fn bad_parameters_get_their_codes() {
        let d = D;
        let cases = [
            ("/v2/A/tags/list".to_string(), ErrorCode::NameInvalid),
            ("/v2/a//b/tags/list".into(), ErrorCode::NameInvalid),
            ("/v2/a%2Fb/tags/list".into(), ErrorCode::NameInvalid),
            ("/v2/a%ff/tags/list".into(), ErrorCode::NameInvalid),
            ("/v2/a/manifests/sha256:x".into(), ErrorCode::DigestInvalid),
            ("/v2/a/manifests/-bad".into(), ErrorCode::ManifestUnknown),
            ("/v2/a/manifests/md5:00".into(), ErrorCode::Unsupported),
            ("/v2/a/blobs/latest".into(), ErrorCode::DigestInvalid),
            ("/v2/a/referrers/latest".into(), ErrorCode::DigestInvalid),
            (format!("/v2/-a/blobs/{d}"), ErrorCode::NameInvalid),
            (
                "/v2/a/blobs/uploads/%20x".into(),
                ErrorCode::BlobUploadUnknown,
            ),
        ];
        for (path, code) in cases {
            let method = if path.contains("uploads") {
                "GET"
            } else {
                "HEAD"
            };
            let err = route(method, &path, "").unwrap_err();
            assert_eq!(err.code, code, "{path}");
            assert!(err.status == 400 || err.status == 404, "{path}");
        }
    }

    #[test]
    fn a_bad_tag_is_unknown_except_in_a_push() {
        for method in ["GET", "HEAD", "DELETE"] {
            let err = route(method, "/v2/a/manifests/.INVALID", "").unwrap_err();
            assert_eq!(err.status, 404, "{method}");
            assert_eq!(err.code, ErrorCode::ManifestUnknown, "{method}");
        }
        let err = route("PUT", "/v2/a/manifests/.INVALID", "").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.code, ErrorCode::ManifestInvalid);
    }

    #[test]
    fn upload_digest_parameter_is_checked() {
        let ok = format!("digest={}", D.replace(':', "%3A"));
        assert!(route("POST", "/v2/a/blobs/uploads/", &ok).is_ok());
        assert!(route("PUT", "/v2/a/blobs/uploads/u", &ok).is_ok());

        let err = route("PUT", "/v2/a/blobs/uploads/u", "digest=sha256:1").unwrap_err();
        assert_eq!(err.code, ErrorCode::DigestInvalid);
        let err = route("POST", "/v2/a/blobs/uploads/", "digest=x").unwrap_err();
        assert_eq!(err.code, ErrorCode::DigestInvalid);
    }

    #[test]
    fn query_params_are_decoded_in_order() {
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("", vec![]),
            ("n=2", vec![("n", "2")]),
            ("n=2&last=b", vec![("n", "2"), ("last", "b")]),
            ("a&&b=", vec![("a", ""), ("b", "")]),
            ("x=a+b%20c", vec![("x", "a b c")]),
            ("x=%3a%3A", vec![("x", "::")]),
            ("x=%zz%4", vec![("x", "%zz%4")]),
            ("x=%ff", vec![("x", "\u{fffd}")]),
            ("k%3D=v=w", vec![("k=", "v=w")]),
        ];
        for (query, want) in cases {
            let got = query_params(query);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, want, "{query:?}");
        }
    }

    #[test]
    fn param_finds_the_first_value() {
        let params = query_params("mount=a&from=b&mount=c");
        assert_eq!(param(&params, "mount"), Some("a"));
        assert_eq!(param(&params, "from"), Some("b"));
        assert_eq!(param(&params, "digest"), None);
    }

    #[test]
    fn query_params_are_capped() {
        let query = "a=1&".repeat(1000);
        assert_eq!(query_params(&query).len(), MAX_QUERY_PARAMS);
    }

    #[test]
    fn path_plus_is_not_a_space() {
        assert_eq!(percent_decode("a+b%2B"), "a+b+");
    }
}
