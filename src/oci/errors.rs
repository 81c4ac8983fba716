//! The error codes of the OCI distribution-spec and the JSON body that
//! carries them.
//!
//! Every failure the API reports is an [`OciError`]: a code from the spec's
//! error table, a message for humans, optional structured detail and the
//! HTTP status the handler should send. Each code has a usual status
//! ([`ErrorCode::status`]); a handler overrides it where the spec asks for
//! another one on a given endpoint (416 for an out-of-order chunk, for
//! example).

use std::fmt;

use serde_json::{json, Value};

/// The most bytes of a client-supplied path, name or digest echoed in
/// an error's detail; the rest is cut.
pub const MAX_DETAIL_BYTES: usize = 256;

/// The longest error message kept, in bytes; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// An error code from the distribution-spec's error table.
///
/// The spec lists codes 1 to 14 (section "Error Codes"); clients treat
/// codes they do not know as `UNKNOWN`, so berth only sends these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The blob is not known to the repository.
    BlobUnknown,
    /// The upload is invalid: a bad chunk, a bad range or a bad size.
    BlobUploadInvalid,
    /// The upload session is not known (never started, or expired).
    BlobUploadUnknown,
    /// The digest is malformed or does not match the content.
    DigestInvalid,
    /// A manifest references a blob that the repository does not hold.
    ManifestBlobUnknown,
    /// The manifest is malformed or fails validation.
    ManifestInvalid,
    /// The manifest (by tag or digest) is not known to the repository.
    ManifestUnknown,
    /// The repository name is malformed.
    NameInvalid,
    /// The repository is not known.
    NameUnknown,
    /// The content length does not match what was declared.
    SizeInvalid,
    /// The client must authenticate.
    Unauthorized,
    /// The client is authenticated but may not do this.
    Denied,
    /// The operation or the request is not supported.
    Unsupported,
    /// The client sent too many requests.
    TooManyRequests,
}

impl ErrorCode {
    /// Every code, in the spec's table order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
    ];

    /// The code as it appears in the JSON body, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            // NOTE: the spec spells this one without an underscore.
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    /// The usual HTTP status for the code.
    ///
    /// The spec ties statuses to endpoints, not codes; this is the status
    /// the endpoints use most often. `Unsupported` defaults to 405 (a
    /// method or operation the registry does not offer); an unknown path
    /// is a 404 and is built by [`OciError::not_found`].
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown => 404,
            ErrorCode::BlobUploadInvalid => 400,
            ErrorCode::BlobUploadUnknown => 404,
            ErrorCode::DigestInvalid => 400,
            ErrorCode::ManifestBlobUnknown => 400,
            ErrorCode::ManifestInvalid => 400,
            ErrorCode::ManifestUnknown => 404,
            ErrorCode::NameInvalid => 400,
            ErrorCode::NameUnknown => 404,
            ErrorCode::SizeInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API failure: a spec error code, a message, optional detail and the
/// HTTP status to answer with.
#[derive(Clone, Debug, PartialEq)]
pub struct OciError {
    /// The spec error code.
    pub code: ErrorCode,
    /// A message for humans; it names the digest, tag or name at fault.
    pub message: String,
    /// Optional structured detail, sent as the `detail` member.
    pub detail: Option<Value>,
    /// The HTTP status the response carries.
    pub status: u16,
}

impl OciError {
    /// An error with an explicit HTTP status and no detail.
    ///
    /// A message longer than [`MAX_MESSAGE_BYTES`] is cut, since
    /// messages often quote what the client sent.
    pub fn new(code: ErrorCode, status: u16, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let end = shown_len(&message, MAX_MESSAGE_BYTES);
            message.truncate(end);
            message.push('…');
        }

        OciError {
            code,
            message,
            detail: None,
            status,
        }
    }

    /// An error with the code's usual status ([`ErrorCode::status`]) and
    /// no detail.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        OciError::new(code, code.status(), message)
    }

    /// The same error answered with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same error with structured detail attached.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A 404 `UNSUPPORTED` for a path the API does not define.
    pub fn not_found(path: &str) -> Self {
        OciError::new(ErrorCode::Unsupported, 404, "no such endpoint")
            .with_detail(json!({ "path": shown(path) }))
    }

    /// A 405 `UNSUPPORTED` for a method the endpoint does not allow.
    pub fn method_not_allowed() -> Self {
        OciError::new(ErrorCode::Unsupported, 405, "method not allowed")
    }

    /// A 405 `UNSUPPORTED` naming the method and the allowed ones.
    ///
    /// The detail lists the allowed methods (`{"allowed": [..]}`), so
    /// that the handler can also send them in an `Allow` header.
    pub fn method_not_allowed_for(method: &str, allowed: &[&str]) -> Self {
        OciError::new(
            ErrorCode::Unsupported,
            405,
            format!("method {method} is not allowed here"),
        )
        .with_detail(json!({ "allowed": allowed }))
    }

    /// A 404 `BLOB_UNKNOWN` for a digest.
    pub fn blob_unknown(digest: &str) -> Self {
        OciError::from_code(ErrorCode::BlobUnknown, "blob unknown to registry")
            .with_detail(json!({ "digest": shown(digest) }))
    }

    /// A 404 `BLOB_UPLOAD_UNKNOWN` for an upload id.
    pub fn upload_unknown(id: &str) -> Self {
        OciError::from_code(ErrorCode::BlobUploadUnknown, "blob upload unknown")
            .with_detail(json!({ "id": shown(id) }))
    }

    /// A 400 `BLOB_UPLOAD_INVALID` with a reason.
    pub fn upload_invalid(reason: impl Into<String>) -> Self {
        OciError::from_code(ErrorCode::BlobUploadInvalid, reason)
    }

    /// A 400 `DIGEST_INVALID` with a reason.
    pub fn digest_invalid(reason: impl Into<String>) -> Self {
        OciError::from_code(ErrorCode::DigestInvalid, reason)
    }

    /// A 404 `MANIFEST_UNKNOWN` for a tag or digest.
    pub fn manifest_unknown(reference: &str) -> Self {
        OciError::from_code(ErrorCode::ManifestUnknown, "manifest unknown")
            .with_detail(json!({ "reference": shown(reference) }))
    }

    /// A 400 `MANIFEST_INVALID` with a reason.
    pub fn manifest_invalid(reason: impl Into<String>) -> Self {
        OciError::from_code(ErrorCode::ManifestInvalid, reason)
    }

    /// A 400 `MANIFEST_BLOB_UNKNOWN` for a referenced digest.
    pub fn manifest_blob_unknown(digest: &str) -> Self {
        OciError::from_code(
            ErrorCode::ManifestBlobUnknown,
            "manifest references a blob or manifest unknown to the \
             repository",
        )
        .with_detail(json!({ "digest": shown(digest) }))
    }

    /// A 400 `NAME_INVALID` for a repository name, with a reason.
    pub fn name_invalid(name: &str, reason: &str) -> Self {
        OciError::from_code(
            ErrorCode::NameInvalid,
            format!("invalid repository name: {reason}"),
        )
        .with_detail(json!({ "name": shown(name) }))
    }

    /// A 404 `NAME_UNKNOWN` for a repository name.
    pub fn name_unknown(name: &str) -> Self {
        OciError::from_code(ErrorCode::NameUnknown, "repository name not known")
            .with_detail(json!({ "name": shown(name) }))
    }

    /// A 400 `SIZE_INVALID` with a reason.
    pub fn size_invalid(reason: impl Into<String>) -> Self {
        OciError::from_code(ErrorCode::SizeInvalid, reason)
    }

    /// A 400 `UNSUPPORTED` for a request the registry cannot serve.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        OciError::new(ErrorCode::Unsupported, 400, reason)
    }

    /// The JSON body for the response.
    ///
    /// The shape is the spec's: `{"errors":[{"code":..,"message":..,
    /// "detail":..}]}`; `detail` is left out when there is none.
    pub fn body(&self) -> Vec<u8> {
        let mut entry = serde_json::Map::new();
        entry.insert("code".into(), Value::from(self.code.as_str()));
        entry.insert("message".into(), Value::from(self.message.as_str()));
        if let Some(detail) = &self.detail {
            entry.insert("detail".into(), detail.clone());
        }

        let body = json!({ "errors": [Value::Object(entry)] });
        body.to_string().into_bytes()
    }
}

/// Cuts client-supplied text to [`MAX_DETAIL_BYTES`] for an error body.
fn shown(text: &str) -> &str {
    &text[..shown_len(text, MAX_DETAIL_BYTES)]
}

/// The longest prefix of `text` within `max` bytes that ends on a
/// character boundary.
fn shown_len(text: &str, max: usize) -> usize {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for OciError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_spec_spelling_and_usual_status() {
        let table = [
            (ErrorCode::BlobUnknown, "BLOB_UNKNOWN", 404),
            (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID", 400),
            (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404),
            (ErrorCode::DigestInvalid, "DIGEST_INVALID", 400),
            (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN", 400),
            (ErrorCode::ManifestInvalid, "MANIFEST_INVALID", 400),
            (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN", 404),
            (ErrorCode::NameInvalid, "NAME_INVALID", 400),
            (ErrorCode::NameUnknown, "NAME_UNKNOWN", 404),
            (ErrorCode::SizeInvalid, "SIZE_INVALID", 400),
            (ErrorCode::Unauthorized, "UNAUTHORIZED", 401),
            (ErrorCode::Denied, "DENIED", 403),
            (ErrorCode::Unsupported, "UNSUPPORTED", 405),
            (ErrorCode::TooManyRequests, "TOOMANYREQUESTS", 429),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, text, status) in table {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.status(), status, "{text}");
        }
    }

    #[test]
    fn body_has_the_spec_shape() {
        let err = OciError::blob_unknown("sha256:00");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(
            body,
            json!({"errors": [{
                "code": "BLOB_UNKNOWN",
                "message": "blob unknown to registry",
                "detail": {"digest": "sha256:00"},
            }]})
        );
    }

    #[test]
    fn body_leaves_out_missing_detail() {
        let err = OciError::manifest_invalid("bad \"json\"");
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(
            body,
            json!({"errors": [{
                "code": "MANIFEST_INVALID",
                "message": "bad \"json\"",
            }]})
        );
    }

    #[test]
    fn echoed_client_text_is_cut() {
        let long = "é".repeat(1000);
        let err = OciError::not_found(&long);
        let path = err.detail.unwrap()["path"].as_str().unwrap().to_string();
        assert!(path.len() <= MAX_DETAIL_BYTES);
        assert!(long.starts_with(&path));

        let err = OciError::manifest_invalid(long.clone());
        assert!(err.message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(err.message.ends_with('…'));
    }

    #[test]
    fn status_can_be_overridden_per_endpoint() {
        let err = OciError::upload_invalid("out of order").with_status(416);
        assert_eq!(err.status, 416);
        assert_eq!(err.code, ErrorCode::BlobUploadInvalid);
    }

    #[test]
    fn unknown_path_is_404_and_bad_method_is_405() {
        assert_eq!(OciError::not_found("/x").status, 404);
        assert_eq!(OciError::method_not_allowed().status, 405);
        let err = OciError::method_not_allowed_for("PUT", &["GET", "HEAD"]);
        assert_eq!(err.status, 405);
        assert_eq!(err.code, ErrorCode::Unsupported);
        assert_eq!(err.detail, Some(json!({"allowed": ["GET", "HEAD"]})));
    }
}
