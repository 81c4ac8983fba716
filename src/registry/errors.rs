//! The one place where failures become HTTP statuses and OCI error codes.

use berth_storage::StorageError;

use crate::http::{BodyError, Response};
use crate::oci::errors::{ErrorCode, OciError};
use crate::shards::ShardError;

/// Turns an API error into its response: the spec's JSON error body.
pub fn into_response(error: OciError) -> Response {
    let status = error.status;
    let body = error.body();
    let mut response = Response::new(status)
        .header("Content-Type", "application/json")
        .bytes(body);
    if status == 405 {
        let allowed: Vec<&str> = error
            .detail
            .as_ref()
            .and_then(|detail| detail["allowed"].as_array())
            .map(|list| list.iter().filter_map(|m| m.as_str()).collect())
            .unwrap_or_default();
        if !allowed.is_empty() {
            response = response.header("Allow", allowed.join(", "));
        }
    }
    response
}

/// Maps a storage failure to the error a client sees.
///
/// Client mistakes keep their OCI code; failures of the machine (disk full,
/// poisoned shard, corruption) are 5xx so clients retry elsewhere or later,
/// and are logged once here with their context.
pub(crate) fn storage(error: StorageError) -> OciError {
    match &error {
        StorageError::DigestMismatch { .. } => {
            OciError::new(ErrorCode::DigestInvalid, 400, error.to_string())
        }
        StorageError::UploadUnknown { .. } => {
            OciError::new(ErrorCode::BlobUploadUnknown, 404, error.to_string())
        }
        StorageError::UploadBusy { .. } => OciError::new(
            ErrorCode::BlobUploadInvalid,
            409,
            "another request is writing to this upload".to_owned(),
        ),
        StorageError::NoSpace { .. } => {
            tracing::error!(error = %error, "write refused: the disk is full");
            OciError::new(
                ErrorCode::Unsupported,
                507,
                "insufficient storage on the registry".to_owned(),
            )
        }
        StorageError::Poisoned { .. } => OciError::new(
            ErrorCode::Unsupported,
            503,
            "the registry cannot write right now".to_owned(),
        ),
        _ => {
            tracing::error!(error = %error, "storage failure");
            OciError::new(
                ErrorCode::Unsupported,
                500,
                "internal storage error".to_owned(),
            )
        }
    }
}

/// Maps a failure to reach another core.
pub(crate) fn shard(error: ShardError) -> OciError {
    OciError::new(ErrorCode::Unsupported, 503, error.to_string())
}

/// Maps a request body failure.
pub(crate) fn body(error: BodyError) -> OciError {
    match error {
        BodyError::TooLarge => OciError::new(
            ErrorCode::SizeInvalid,
            413,
            "request body is too large".to_owned(),
        ),
        BodyError::Timeout => OciError::new(
            ErrorCode::BlobUploadInvalid,
            408,
            format!("request body: {}", BodyError::Timeout),
        ),
        other => OciError::new(
            ErrorCode::BlobUploadInvalid,
            400,
            format!("request body: {other}"),
        ),
    }
}
