//! Blob reads and deletes: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use std::io;

use berth_storage::{BlobLocation, BlobRead, Digest};

use super::{errors, Registry};
use crate::http::range::{parse_range, RangeSpec};
use crate::http::{Request, Response, ResponseBody};
use crate::oci::errors::{ErrorCode, OciError};

/// `GET`/`HEAD` of a blob, whole or one range (RFC 9110 §14).
pub(super) async fn get(
    registry: &Registry,
    name: &str,
    digest: Digest,
    req: &Request,
    head: bool,
) -> Result<Response, OciError> {
    let Some(location) = locate(registry, name, &digest).await? else {
        return Err(OciError::new(
            ErrorCode::BlobUnknown,
            404,
            format!("blob {digest} is unknown to repository {name}"),
        ));
    };

    let len = location.len();
    let (status, start, end) = match parse_range(req.header("range"), len) {
        RangeSpec::Full => (200, 0, len),
        RangeSpec::Partial {
            start,
            end_inclusive,
        } => (206, start, end_inclusive + 1),
        RangeSpec::Unsatisfiable => {
            return Ok(Response::new(416)
                .header("Content-Range", format!("bytes */{len}"))
                .header("Docker-Content-Digest", digest.to_string()));
        }
    };

    let mut response = Response::new(status)
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", digest.to_string())
        .header("ETag", format!("\"{digest}\""))
        .header("Accept-Ranges", "bytes");
    if status == 206 {
        let last = end.saturating_sub(1);
        response = response.header("Content-Range", format!("bytes {start}-{last}/{len}"));
    }

    if head {
        response.body = ResponseBody::Stream {
            len: end - start,
            chunks: Box::pin(futures_lite::stream::empty()),
        };
        return Ok(response);
    }

    let read = registry
        .router()
        .local()
        .reader
        .read_range(&location, start, end)
        .await
        .map_err(errors::storage)?;
    response.body = ResponseBody::Stream {
        len: end - start,
        chunks: Box::pin(stream_of(read)),
    };
    Ok(response)
}

/// `DELETE` of a blob: unlinks it from the repository.
///
/// The bytes stay until garbage collection finds them unreferenced
/// everywhere; the repository stops serving the blob at once.
pub(super) async fn delete(
    registry: &Registry,
    name: &str,
    digest: Digest,
) -> Result<Response, OciError> {
    let router = registry.router();
    let shard = router.repository_shard(name);
    let (repo, d) = (name.to_owned(), digest);
    let removed = registry
        .write_on(shard, move |shard, _| async move {
            shard.unlink_blob(&repo, &d).await
        })
        .await?;
    if !removed {
        return Err(OciError::new(
            ErrorCode::BlobUnknown,
            404,
            format!("blob {digest} is unknown to repository {name}"),
        ));
    }
    Ok(Response::new(202).header("Docker-Content-Digest", digest.to_string()))
}

/// Where a blob readable through `repository` lies, if it is one.
///
/// A blob is readable through a repository only when it was pushed or
/// mounted there; a manifest's bytes are readable as a blob too.
pub(super) async fn locate(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
) -> Result<Option<BlobLocation>, OciError> {
    let router = registry.router();
    let shard = router.repository_shard(repository);
    let (repo, d) = (repository.to_owned(), *digest);
    let link = registry
        .read_on(shard, move |shard, _| async move {
            if shard.blob_link(&repo, &d).is_some() {
                return Link::Blob;
            }
            match shard.manifest(&repo, &d) {
                Some(manifest) => Link::Manifest(manifest.location),
                None => Link::None,
            }
        })
        .await?;

    match link {
        Link::None => Ok(None),
        Link::Manifest(location) => Ok(Some(location)),
        Link::Blob => index_get(registry, digest).await,
    }
}

/// Looks a digest up in the blob index, on the digest's shard.
pub(super) async fn index_get(
    registry: &Registry,
    digest: &Digest,
) -> Result<Option<BlobLocation>, OciError> {
    let router = registry.router();
    let shard = router.digest_shard(digest);
    let d = *digest;
    registry
        .read_on(shard, move |shard, _| async move { shard.index_get(&d) })
        .await
}

enum Link {
    None,
    Blob,
    Manifest(BlobLocation),
}

/// Adapts a storage read to the HTTP layer's body stream.
fn stream_of(read: BlobRead) -> impl futures_lite::Stream<Item = io::Result<Vec<u8>>> {
    futures_lite::stream::unfold(Some(read), |state| async move {
        let mut read = state?;
        match read.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(read))),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(error = %error, "blob read failed mid-response");
                Some((Err(io::Error::other(error.to_string())), None))
            }
        }
    })
}
