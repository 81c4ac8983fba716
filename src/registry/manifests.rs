//! Manifests: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use berth_storage::{digest_of, DigestAlgorithm, ManifestLink};

use super::budget::Held;
use super::{errors, Registry};
use crate::http::{Body, Request, Response, ResponseBody};
use crate::oci::accept::accepts;
use crate::oci::errors::{ErrorCode, OciError};
use crate::oci::manifest::parse_manifest;
use crate::oci::name::validate_tag;
use crate::oci::route::{query_params, Reference};

/// Why a manifest body could not be read.
enum ManifestRead {
    /// This executor holds as many manifest bytes as it may: try again.
    Busy(OciError),
    /// The whole body did not arrive within the body read timeout.
    TooSlow(OciError),
    /// The body is too large, malformed or cut short.
    Failed(OciError),
}

/// Reads a manifest body whole, holding its bytes against the executor's
/// budget until the returned [`Held`] is dropped.
///
/// The whole body must arrive within the body read timeout, not only
/// each piece of it, so that a client dribbling bytes cannot hold its
/// share of the budget for long.
async fn read_manifest(
    registry: &Registry,
    body: &mut Body<'_>,
) -> Result<(Vec<u8>, Held), ManifestRead> {
    let max = registry.settings().max_manifest_bytes;
    let too_large = || {
        ManifestRead::Failed(OciError::new(
            ErrorCode::SizeInvalid,
            413,
            format!("manifest is larger than the {max} bytes this registry accepts"),
        ))
    };
    let busy = || {
        ManifestRead::Busy(OciError::new(
            ErrorCode::TooManyRequests,
            503,
            "too many manifest pushes in flight on this core; retry shortly",
        ))
    };

    let declared = body.content_length().unwrap_or(0);
    if declared > max as u64 {
        return Err(too_large());
    }
    // NOTE: bytes are held as they arrive, not as declared, so that a
    // client cannot take the budget with a head alone.
    let declared = declared as usize;
    let mut held = registry.buffered().hold(0).ok_or_else(busy)?;

    let within = body.read_timeout();
    let read = async {
        let mut bytes = Vec::with_capacity(declared);
        loop {
            let piece = match body.chunk().await {
                Ok(Some(piece)) => piece,
                Ok(None) => return Ok(bytes),
                Err(error) => return Err(ManifestRead::Failed(errors::body(error))),
            };
            if bytes.len() + piece.len() > max {
                return Err(too_large());
            }
            if !held.grow_to(bytes.len() + piece.len()) {
                return Err(busy());
            }
            bytes.extend_from_slice(piece);
        }
    };
    let timeout = async {
        glommio::timer::Timer::new(within).await;
        Err(ManifestRead::TooSlow(OciError::new(
            ErrorCode::ManifestInvalid,
            408,
            format!("the manifest did not arrive within {} s", within.as_secs()),
        )))
    };
    let bytes = futures_lite::future::or(read, timeout).await?;
    Ok((bytes, held))
}

/// `PUT` of a manifest by tag or by digest (spec: "Pushing manifests").
///
/// The manifest is checked before anything is stored: valid JSON of a
/// known shape, every referenced blob and child manifest present in the
/// repository. Its bytes are stored exactly as sent.
pub(super) async fn put(
    registry: &Registry,
    name: &str,
    reference: &Reference,
    req: &Request,
    body: &mut Body<'_>,
) -> Result<Response, OciError> {
    // RFC 9110 §15.5.12: a manifest must say how long it is.
    if !body.has_length_framing() {
        return Err(OciError::new(
            ErrorCode::ManifestInvalid,
            411,
            "a manifest needs Content-Length or chunked encoding",
        ));
    }
    let (bytes, _held) = match read_manifest(registry, body).await {
        Ok(read) => read,
        Err(ManifestRead::Busy(error)) => {
            return Ok(errors::into_response(error).header("Retry-After", "1"));
        }
        // The rest of a body that came too slowly is not waited for.
        Err(ManifestRead::TooSlow(error)) => {
            return Ok(errors::into_response(error).header("Connection", "close"));
        }
        Err(ManifestRead::Failed(error)) => return Err(error),
    };

    let by_digest = reference.digest();
    let algorithm = by_digest
        .as_ref()
        .map(|d| d.algorithm())
        .unwrap_or(DigestAlgorithm::Sha256);
    let digest = digest_of(algorithm, &bytes);
    if let Some(expected) = &by_digest {
        if *expected != digest {
            return Err(OciError::new(
                ErrorCode::DigestInvalid,
                400,
                format!("manifest digest is {digest}, not {expected}"),
            ));
        }
    }

    let mut tags = Vec::new();
    if let Reference::Tag(tag) = reference {
        tags.push(tag.clone());
    }
    let mut query_tags = Vec::new();
    for (key, value) in query_params(&req.query) {
        if key == "tag" {
            validate_tag(&value)?;
            query_tags.push(value.clone());
            tags.push(value);
        }
    }

    let parsed = parse_manifest(req.header("content-type"), &bytes)?;
    let blobs = parsed.required_blobs();
    let children = parsed.required_manifests();
    let subject = parsed.subject.as_ref().map(|descriptor| descriptor.digest);

    let router = registry.router();
    let repo_shard = router.repository_shard(name);
    let repo = name.to_owned();
    let missing = registry
        .read_on(repo_shard, move |shard, _| async move {
            let mut missing = Vec::new();
            for blob in blobs {
                if shard.blob_link(&repo, &blob).is_none() && shard.manifest(&repo, &blob).is_none()
                {
                    missing.push(blob.to_string());
                }
            }
            for child in children {
                if shard.manifest(&repo, &child).is_none() {
                    missing.push(child.to_string());
                }
            }
            missing
        })
        .await?;
    if let Some(first) = missing.first() {
        let mut error = OciError::new(
            ErrorCode::ManifestBlobUnknown,
            400,
            format!("manifest references {first}, which is not in repository {name}"),
        );
        error.detail = Some(serde_json::json!({ "missing": missing }));
        return Err(error);
    }

    let home = router.local().home_shard();
    let location = home
        .put_content(&bytes, &digest)
        .await
        .map_err(errors::storage)?;

    let link = ManifestLink {
        digest,
        media_type: parsed.media_type.clone(),
        size: bytes.len() as u64,
        location,
        subject,
        artifact_type: parsed.artifact_type.clone(),
        annotations_json: parsed.annotations_json.clone(),
    };
    let repo = name.to_owned();
    let tagged = digest;
    registry
        .write_on(repo_shard, move |shard, _| async move {
            shard.link_manifest(&repo, link).await?;
            for tag in tags {
                shard.set_tag(&repo, &tag, &tagged).await?;
            }
            Ok(())
        })
        .await?;

    let mut response = Response::new(201)
        .header("Location", format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.to_string());
    if let Some(subject) = subject {
        response = response.header("OCI-Subject", subject.to_string());
    }
    for tag in query_tags {
        response = response.header("OCI-Tag", &tag);
    }
    Ok(response)
}

/// `GET`/`HEAD` of a manifest: the exact bytes and media type pushed.
pub(super) async fn get(
    registry: &Registry,
    name: &str,
    reference: &Reference,
    req: &Request,
    head: bool,
) -> Result<Response, OciError> {
    let wanted = reference.clone();
    let router = registry.router();
    let shard = router.repository_shard(name);
    let repo = name.to_owned();
    let link = registry
        .read_on(shard, move |shard, _| async move {
            let digest = match wanted {
                Reference::Digest(digest) => digest,
                Reference::Tag(tag) => shard.tag(&repo, &tag)?,
            };
            shard.manifest(&repo, &digest)
        })
        .await?;
    let Some(link) = link else {
        return Err(manifest_unknown(name, reference));
    };

    // Content negotiation (RFC 9110 §12.5.1): a client that lists the
    // types it takes and leaves this one out cannot use these bytes, and
    // berth never rewrites a manifest into another format.
    let accept: Vec<&str> = req.headers_all("accept").collect();
    if !accept.is_empty() && !accepts(&accept, &link.media_type) {
        return Err(OciError::new(
            ErrorCode::ManifestUnknown,
            404,
            format!(
                "manifest {} is {}, which the Accept header does not allow",
                link.digest, link.media_type
            ),
        ));
    }

    let mut response = Response::new(200)
        .header("Content-Type", &link.media_type)
        .header("Docker-Content-Digest", link.digest.to_string())
        .header("ETag", format!("\"{}\"", link.digest));
    if head {
        response.body = ResponseBody::Stream {
            len: link.size,
            chunks: Box::pin(futures_lite::stream::empty()),
        };
        return Ok(response);
    }

    let bytes = router
        .local()
        .reader
        .read_all(&link.location)
        .await
        .map_err(errors::storage)?;
    Ok(response.bytes(bytes))
}

/// `DELETE` of a manifest by digest (and its tags), or of a tag.
pub(super) async fn delete(
    registry: &Registry,
    name: &str,
    reference: &Reference,
) -> Result<Response, OciError> {
    let wanted = reference.clone();
    let shard = registry.router().repository_shard(name);
    let repo = name.to_owned();
    let removed = registry
        .write_on(shard, move |shard, _| async move {
            match wanted {
                Reference::Digest(digest) => shard.unlink_manifest(&repo, &digest).await,
                Reference::Tag(tag) => shard.remove_tag(&repo, &tag).await,
            }
        })
        .await?;
    if !removed {
        return Err(manifest_unknown(name, reference));
    }
    Ok(Response::new(202))
}

fn manifest_unknown(name: &str, reference: &Reference) -> OciError {
    OciError::new(
        ErrorCode::ManifestUnknown,
        404,
        format!("manifest {reference} is unknown to repository {name}"),
    )
}
