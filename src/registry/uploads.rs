//! Blob uploads: `POST`, `PATCH`, `PUT`, `GET` and `DELETE` on
//! `/v2/<name>/blobs/uploads/` (OCI distribution-spec, "Pushing blobs").
//!
//! An upload lives on a shard of the executor where it was created. Its id
//! in URLs carries that shard, so a later request that lands on another
//! core is sent there: the body is streamed across through a bounded
//! channel, chunk by chunk, never held whole.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_storage::{BlobLocation, Digest, Shard, UploadId};
use glommio::channels::shared_channel;

use super::{blobs, errors, Registry};
use crate::http::{Body, Request, Response};
use crate::metrics::UploadOutcome;
use crate::oci::content_range::parse_content_range;
use crate::oci::digest::parse_digest;
use crate::oci::errors::{ErrorCode, OciError};
use crate::oci::name::validate_repository;
use crate::oci::route::{param, query_params};
use crate::shards::Local;

/// How many body chunks may wait between two cores for one upload.
const CROSS_CORE_CHUNKS: usize = 8;

/// An upload as named in URLs: `<shard>-<id>`.
#[derive(Clone, Debug)]
struct UploadRef {
    shard: u16,
    id: UploadId,
}

impl UploadRef {
    fn parse(text: &str, shard_count: u16) -> Option<UploadRef> {
        let (shard, id) = text.split_once('-')?;
        let shard: u16 = shard.parse().ok()?;
        if shard >= shard_count {
            return None;
        }
        let id = id.parse().ok()?;
        Some(UploadRef { shard, id })
    }

    fn url_id(&self) -> String {
        format!("{}-{}", self.shard, self.id)
    }
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload or session.
pub(super) async fn start(
    registry: &Registry,
    name: &str,
    req: &Request,
    body: &mut Body<'_>,
) -> Result<Response, OciError> {
    let params = query_params(&req.query);

    if let Some(mount) = param(&params, "mount") {
        let digest = parse_digest(mount)?;
        let from = param(&params, "from");
        if let Some(response) = try_mount(registry, name, &digest, from).await? {
            return Ok(response);
        }
        // NOTE: a mount that cannot be done falls back to a new upload
        // session, as the spec asks (202 instead of 201).
    }

    if let Some(digest_text) = param(&params, "digest") {
        let digest = parse_digest(digest_text)?;
        if !body.has_length_framing() {
            return Err(OciError::new(
                ErrorCode::BlobUploadInvalid,
                411,
                "a monolithic upload needs Content-Length or chunked encoding",
            ));
        }
        let upload = create(registry, name).await?;
        let pushed = match append_body(registry, &upload, body).await {
            Ok(_) => finish(registry, name, &upload, &digest).await,
            Err(error) => Err(error),
        };
        // NOTE: the client never learnt this session's id, so a failed
        // monolithic push cannot be resumed or cancelled by it: drop the
        // session now rather than keep its bytes until it expires.
        if pushed.is_err() {
            discard(registry, &upload).await;
        }
        return pushed;
    }

    let upload = create(registry, name).await?;
    Ok(session_response(name, &upload, 0, 202))
}

/// Cancels an upload nobody can reach any more; a failure only leaves it
/// to expire. One already committed is gone and needs nothing.
async fn discard(registry: &Registry, upload: &UploadRef) {
    match end_upload(registry, upload, UploadOutcome::Failed).await {
        Ok(()) => {}
        Err(error) if error.code == ErrorCode::BlobUploadUnknown => {}
        Err(error) => {
            tracing::warn!(upload = %upload.url_id(), error = %error.message, "failed upload left to expire");
        }
    }
}

/// Cancels `upload` on its shard, counting it as `outcome`.
async fn end_upload(
    registry: &Registry,
    upload: &UploadRef,
    outcome: UploadOutcome,
) -> Result<(), OciError> {
    let id = upload.id;
    registry
        .write_on(upload.shard, move |shard, local| async move {
            let cancelled = shard.cancel_upload(&id).await;
            if cancelled.is_ok() {
                local.metrics.upload_finished(outcome);
            }
            cancelled
        })
        .await
}

/// `PATCH`: appends one chunk (or a streamed body) to an upload.
pub(super) async fn patch(
    registry: &Registry,
    name: &str,
    id: &str,
    req: &Request,
    body: &mut Body<'_>,
) -> Result<Response, OciError> {
    let upload = lookup(registry, name, id).await?;
    let length = current_length(registry, name, &upload).await?;

    if let Some(range) = req.header("content-range") {
        let Ok((start, end)) = parse_content_range(range) else {
            return Ok(range_invalid(name, &upload, length));
        };
        if start != length {
            return Ok(range_invalid(name, &upload, length));
        }
        if let Some(declared) = body.content_length() {
            // The parser caps offsets far below u64::MAX, so `end + 1`
            // cannot overflow; checked anyway, since it came off the wire.
            let span = end.checked_add(1).and_then(|e| e.checked_sub(start));
            if span != Some(declared) {
                return Err(OciError::new(
                    ErrorCode::BlobUploadInvalid,
                    400,
                    format!("Content-Range {range} does not match Content-Length {declared}"),
                ));
            }
        }
    }

    let length = append_body(registry, &upload, body).await?;
    Ok(session_response(name, &upload, length, 202))
}

/// `PUT ?digest=`: appends an optional last chunk and commits the blob.
pub(super) async fn put(
    registry: &Registry,
    name: &str,
    id: &str,
    req: &Request,
    body: &mut Body<'_>,
) -> Result<Response, OciError> {
    let params = query_params(&req.query);
    let Some(digest_text) = param(&params, "digest") else {
        return Err(OciError::new(
            ErrorCode::DigestInvalid,
            400,
            "the digest query parameter is required to close an upload".to_owned(),
        ));
    };
    let digest = parse_digest(digest_text)?;
    let upload = lookup(registry, name, id).await?;

    if let Some(range) = req.header("content-range") {
        let length = current_length(registry, name, &upload).await?;
        match parse_content_range(range) {
            Ok((start, _)) if start == length => {}
            _ => return Ok(range_invalid(name, &upload, length)),
        }
    }
    if !body.is_empty() {
        append_body(registry, &upload, body).await?;
    }
    finish(registry, name, &upload, &digest).await
}

/// `GET`: the upload's progress, as a `Range` header (204).
pub(super) async fn status(
    registry: &Registry,
    name: &str,
    id: &str,
) -> Result<Response, OciError> {
    let upload = lookup(registry, name, id).await?;
    let length = current_length(registry, name, &upload).await?;
    Ok(session_response(name, &upload, length, 204))
}

/// `DELETE`: cancels an upload and frees its space.
pub(super) async fn cancel(
    registry: &Registry,
    name: &str,
    id: &str,
) -> Result<Response, OciError> {
    let upload = lookup(registry, name, id).await?;
    end_upload(registry, &upload, UploadOutcome::Cancelled).await?;
    Ok(Response::new(204))
}

/// Cancels the uploads of this executor's shards that were left idle
/// longer than `expiry`; their space becomes dead, for compaction.
pub async fn expire_uploads(local: Rc<Local>, expiry: Duration) -> usize {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut cancelled = 0;
    for shard in local.shards.values() {
        for (id, info) in shard.uploads() {
            if now.saturating_sub(info.updated_secs) < expiry.as_secs() {
                continue;
            }
            match shard.cancel_upload(&id).await {
                Ok(()) => {
                    cancelled += 1;
                    local.metrics.upload_finished(UploadOutcome::Expired);
                }
                Err(error) => {
                    tracing::warn!(shard = shard.id(), error = %error, "could not expire an upload");
                }
            }
        }
    }
    if cancelled > 0 {
        tracing::info!(executor = local.executor, cancelled, "expired idle uploads");
    }
    cancelled
}

/// Links an existing blob into `name` without moving its bytes.
///
/// With `from`, the blob must be readable through that repository; without
/// it (anonymous mount), any blob the registry holds may be mounted.
async fn try_mount(
    registry: &Registry,
    name: &str,
    digest: &Digest,
    from: Option<&str>,
) -> Result<Option<Response>, OciError> {
    // An index entry found may still be on its way to the disk: the
    // mount's 201 waits for it.
    let location = match from {
        Some(from) => {
            if validate_repository(from).is_err() {
                return Ok(None);
            }
            blobs::locate(registry, from, digest).await?
        }
        None => index_get_settled(registry, digest).await?,
    };
    let Some(location) = location else {
        return Ok(None);
    };

    // A manifest mounted from another repository stays a blob here: its
    // bytes may not be in the blob index, so record them there before
    // linking.
    if from.is_some() && index_get_settled(registry, digest).await?.is_none() {
        index_put(registry, digest, location).await?;
    }
    link(registry, name, digest, location.len()).await?;
    Ok(Some(created_response(name, digest)))
}

/// Starts an upload on one of this executor's shards.
async fn create(registry: &Registry, name: &str) -> Result<UploadRef, OciError> {
    let local = registry.router().local();
    let shard = local.home_shard();
    let id = shard.create_upload(name).await.map_err(errors::storage)?;
    local.metrics.upload_started();
    Ok(UploadRef {
        shard: shard.id(),
        id,
    })
}

/// Finds an upload named in a URL and checks it belongs to `name`.
async fn lookup(registry: &Registry, name: &str, id: &str) -> Result<UploadRef, OciError> {
    let upload =
        UploadRef::parse(id, registry.router().shard_count()).ok_or_else(|| upload_unknown(id))?;
    current_length(registry, name, &upload).await?;
    Ok(upload)
}

/// The durable length of an upload, checking it belongs to `name`.
async fn current_length(
    registry: &Registry,
    name: &str,
    upload: &UploadRef,
) -> Result<u64, OciError> {
    let id = upload.id;
    let info = registry
        .read_on(
            upload.shard,
            move |shard, _| async move { shard.upload(&id) },
        )
        .await?;
    match info {
        Some(info) if info.repo == name => Ok(info.len),
        _ => Err(upload_unknown(&upload.url_id())),
    }
}

/// Streams a request body into an upload, on the upload's own core.
///
/// Returns the upload's new durable length.
async fn append_body(
    registry: &Registry,
    upload: &UploadRef,
    body: &mut Body<'_>,
) -> Result<u64, OciError> {
    let limit = BodyLimit::new(registry.settings().max_upload_bytes);
    if let Some(declared) = body.content_length() {
        limit.check(declared)?;
    }
    if let Some(shard) = registry.router().local().shard(upload.shard) {
        return append_local(&shard, &upload.id, body, limit).await;
    }

    let (sender, receiver) = shared_channel::new_bounded::<Piece>(CROSS_CORE_CHUNKS);
    let id = upload.id;
    let writer = registry
        .router()
        .on_shard(upload.shard, move |shard, _| async move {
            let receiver = receiver.connect().await;
            let mut append = shard.append_upload(&id).await?;
            loop {
                match receiver.recv().await {
                    Some(Piece::Bytes(bytes)) => append.write(&bytes).await?,
                    Some(Piece::End) => return append.finish().await.map(Some),
                    // The sending side gave up: drop what this append wrote.
                    None => return Ok(None),
                }
            }
        });

    // IMPORTANT: a sender blocked on a full channel is not woken when the
    // receiving core gives up (a failed write, a full disk), so the feeder
    // also stops as soon as the writer has answered; the unread rest of
    // the body then closes the connection after the error is sent.
    let (writer_done, mut writer_answered) = futures_channel::oneshot::channel::<()>();
    let writer = async move {
        let written = writer.await;
        let _ = writer_done.send(());
        written
    };

    let feeder = async {
        let stop = &mut writer_answered;
        let Some(sender) = unless_stopped(sender.connect(), stop).await else {
            return Ok(());
        };
        let mut received = 0u64;
        loop {
            match body.chunk().await {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
                    // Dropping the sender without `End` discards what the
                    // other core wrote of this body.
                    limit.check(received)?;
                    let piece = Piece::Bytes(bytes.to_vec());
                    match unless_stopped(sender.send(piece), stop).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) | None => return Ok(()),
                    }
                }
                Ok(None) => {
                    let _ = unless_stopped(sender.send(Piece::End), stop).await;
                    return Ok(());
                }
                Err(error) => return Err(errors::body(error)),
            }
        }
    };

    let (written, fed) = futures_lite::future::zip(writer, feeder).await;
    fed?;
    let written = written.map_err(errors::shard)?.map_err(errors::storage)?;
    written.ok_or_else(|| {
        OciError::new(
            ErrorCode::BlobUploadInvalid,
            400,
            "upload body ended early".to_owned(),
        )
    })
}

/// Runs `work` unless `stop` fires first (`None` then).
async fn unless_stopped<T>(
    work: impl std::future::Future<Output = T>,
    stop: &mut futures_channel::oneshot::Receiver<()>,
) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        let _ = stop.await;
        None
    })
    .await
}

/// Streams a body into an upload whose shard is on this executor.
async fn append_local(
    shard: &Rc<Shard>,
    id: &UploadId,
    body: &mut Body<'_>,
    limit: BodyLimit,
) -> Result<u64, OciError> {
    let mut append = shard.append_upload(id).await.map_err(errors::storage)?;
    let mut received = 0u64;
    loop {
        match body.chunk().await {
            Ok(Some(bytes)) => {
                received += bytes.len() as u64;
                limit.check(received)?;
                append.write(bytes).await.map_err(errors::storage)?
            }
            Ok(None) => break,
            Err(error) => return Err(errors::body(error)),
        }
    }
    append.finish().await.map_err(errors::storage)
}

/// The most bytes one request may add to an upload (0: no limit).
#[derive(Clone, Copy)]
struct BodyLimit(u64);

impl BodyLimit {
    fn new(max_bytes: u64) -> Self {
        BodyLimit(max_bytes)
    }

    /// Refuses a body that has grown, or says it will grow, past the limit.
    fn check(self, bytes: u64) -> Result<(), OciError> {
        if self.0 > 0 && bytes > self.0 {
            return Err(OciError::new(
                ErrorCode::SizeInvalid,
                413,
                format!("upload body is larger than the {} bytes allowed", self.0),
            ));
        }
        Ok(())
    }
}

/// One message of a body streamed to another core.
enum Piece {
    Bytes(Vec<u8>),
    End,
}

/// Commits an upload as `digest`, indexes it and links it into `name`.
async fn finish(
    registry: &Registry,
    name: &str,
    upload: &UploadRef,
    digest: &Digest,
) -> Result<Response, OciError> {
    let id = upload.id;
    let expected = *digest;
    let location = registry
        .write_on(upload.shard, move |shard, local| async move {
            let committed = shard.commit_upload(&id, &expected).await;
            if committed.is_ok() {
                local.metrics.upload_finished(UploadOutcome::Completed);
            }
            committed
        })
        .await?;

    // IMPORTANT: the index entry is durable before the link is written,
    // so that a crash between the two can leave a blob unlinked but never
    // a repository link to a blob the index does not have.
    let kept = index_put_or_keep(registry, digest, location).await?;
    link(registry, name, digest, location.len()).await?;

    // The registry already held these bytes: the index keeps the older
    // copy and the new one becomes dead space for compaction (dedupe).
    if kept.is_some() {
        let dead = location;
        let marked = registry
            .router()
            .on_shard(dead.shard(), move |shard, _| async move {
                shard.mark_dead(&dead).await
            })
            .await;
        if let Ok(Err(error)) = marked {
            tracing::warn!(digest = %digest, error = %error, "duplicate upload not marked dead");
        }
    }
    Ok(created_response(name, digest))
}

/// Indexes `digest -> location` unless the digest is already indexed;
/// returns the location already there, if any.
async fn index_put_or_keep(
    registry: &Registry,
    digest: &Digest,
    location: BlobLocation,
) -> Result<Option<BlobLocation>, OciError> {
    let router = registry.router();
    let shard = router.digest_shard(digest);
    let d = *digest;
    registry
        .write_on(shard, move |shard, _| async move {
            if let Some(existing) = shard.index_get(&d) {
                // The entry may be another upload's, not yet durable.
                shard.settle().await?;
                return Ok(Some(existing));
            }
            shard.index_put(&d, location).await.map(|()| None)
        })
        .await
}

/// Looks a digest up in the blob index; an entry found is durable
/// before this returns.
async fn index_get_settled(
    registry: &Registry,
    digest: &Digest,
) -> Result<Option<BlobLocation>, OciError> {
    let shard = registry.router().digest_shard(digest);
    let d = *digest;
    registry
        .write_on(shard, move |shard, _| async move {
            let found = shard.index_get(&d);
            if found.is_some() {
                shard.settle().await?;
            }
            Ok(found)
        })
        .await
}

/// Records `digest -> location` in the blob index, durably.
pub(super) async fn index_put(
    registry: &Registry,
    digest: &Digest,
    location: BlobLocation,
) -> Result<(), OciError> {
    let router = registry.router();
    let shard = router.digest_shard(digest);
    let d = *digest;
    registry
        .write_on(shard, move |shard, _| async move {
            shard.index_put(&d, location).await
        })
        .await
}

/// Links a blob into a repository, durably.
async fn link(registry: &Registry, name: &str, digest: &Digest, size: u64) -> Result<(), OciError> {
    let router = registry.router();
    let shard = router.repository_shard(name);
    let (repo, d) = (name.to_owned(), *digest);
    registry
        .write_on(shard, move |shard, _| async move {
            shard.link_blob(&repo, &d, size).await
        })
        .await
}

fn created_response(name: &str, digest: &Digest) -> Response {
    Response::new(201)
        .header("Location", format!("/v2/{name}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
}

/// The headers that tell a client where its upload is and how far it got.
fn session_response(name: &str, upload: &UploadRef, length: u64, status: u16) -> Response {
    let id = upload.url_id();
    Response::new(status)
        .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("Range", format!("0-{}", length.saturating_sub(1)))
        .header("Docker-Upload-UUID", &id)
}

fn upload_unknown(id: &str) -> OciError {
    OciError::new(
        ErrorCode::BlobUploadUnknown,
        404,
        format!("upload {id} is unknown"),
    )
}

/// 416 for a chunk that does not start where the upload ends (spec:
/// "Pushing a blob in chunks"); the headers say where to resume.
fn range_invalid(name: &str, upload: &UploadRef, length: u64) -> Response {
    let error = OciError::new(
        ErrorCode::BlobUploadInvalid,
        416,
        format!("chunk must start at byte {length}, the current end of the upload"),
    );
    let mut response = errors::into_response(error);
    let session = session_response(name, upload, length, 416);
    for (key, value) in session.headers {
        response = response.header(&key, &value);
    }
    response
}
