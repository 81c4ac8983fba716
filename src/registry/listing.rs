//! Listings: tags, the catalog and referrers.

use berth_storage::Digest;

use super::{errors, Registry};
use crate::http::{Request, Response};
use crate::oci::errors::{ErrorCode, OciError};
use crate::oci::pagination::{link_header, paginate, parse_n};
use crate::oci::referrers::{referrers_index, ReferrerEntry};
use crate::oci::route::{param, query_params};

/// The most entries one page of tags or catalog holds; a client asking
/// for more gets this many and a `Link` to the rest.
const MAX_PAGE_ENTRIES: usize = 10_000;

/// `GET /v2/<name>/tags/list` with `n` and `last` (spec: "Listing tags").
pub(super) async fn tags(
    registry: &Registry,
    name: &str,
    req: &Request,
) -> Result<Response, OciError> {
    let params = query_params(&req.query);
    let (n, last) = page_params(&params)?;

    let router = registry.router();
    let shard = router.repository_shard(name);
    let repo = name.to_owned();
    let tags = registry
        .read_on(shard, move |shard, _| async move { shard.tags(&repo) })
        .await?;
    let Some(tags) = tags else {
        return Err(OciError::new(
            ErrorCode::NameUnknown,
            404,
            format!("repository {name} is unknown"),
        ));
    };

    let (page, more) = paginate(&tags, n, last.as_deref());
    let body = serde_json::json!({ "name": name, "tags": page });
    let mut response = json_response(&body);
    if more {
        if let (Some(n), Some(last)) = (n, page.last()) {
            let link = link_header(&format!("/v2/{name}/tags/list"), n, last);
            response = response.header("Link", &link);
        }
    }
    Ok(response)
}

/// `GET /v2/_catalog` with `n` and `last`: every repository, sorted.
pub(super) async fn catalog(registry: &Registry, req: &Request) -> Result<Response, OciError> {
    let params = query_params(&req.query);
    let (n, last) = page_params(&params)?;

    let per_executor = registry
        .router()
        .on_every_executor(|local| async move {
            let mut names = Vec::new();
            for shard in local.shards.values() {
                names.extend(shard.repositories());
            }
            names
        })
        .await
        .map_err(errors::shard)?;
    let mut names: Vec<String> = per_executor.into_iter().flatten().collect();
    names.sort();
    names.dedup();

    let (page, more) = paginate(&names, n, last.as_deref());
    let body = serde_json::json!({ "repositories": page });
    let mut response = json_response(&body);
    if more {
        if let (Some(n), Some(last)) = (n, page.last()) {
            response = response.header("Link", link_header("/v2/_catalog", n, last));
        }
    }
    Ok(response)
}

/// `GET /v2/<name>/referrers/<digest>` (spec: "Listing referrers").
///
/// Always an image index, empty when nothing refers to the subject; the
/// `artifactType` filter is applied here and said so in
/// `OCI-Filters-Applied`.
pub(super) async fn referrers(
    registry: &Registry,
    name: &str,
    subject: Digest,
    req: &Request,
) -> Result<Response, OciError> {
    let params = query_params(&req.query);
    let filter = param(&params, "artifactType").map(str::to_owned);

    let router = registry.router();
    let shard = router.repository_shard(name);
    let repo = name.to_owned();
    let links = registry
        .read_on(shard, move |shard, _| async move {
            shard.referrers(&repo, &subject)
        })
        .await?;

    let entries: Vec<ReferrerEntry> = links
        .into_iter()
        .map(|link| ReferrerEntry {
            media_type: link.media_type,
            digest: link.digest.to_string(),
            size: link.size,
            artifact_type: link.artifact_type,
            annotations_json: link.annotations_json,
        })
        .collect();
    let (body, filtered) = referrers_index(&entries, filter.as_deref());

    let mut response = Response::new(200)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .bytes(body);
    if filtered {
        response = response.header("OCI-Filters-Applied", "artifactType");
    }
    Ok(response)
}

/// Reads `n` and `last` of a paginated listing.
fn page_params(params: &[(String, String)]) -> Result<(Option<usize>, Option<String>), OciError> {
    let n = parse_n(param(params, "n"), MAX_PAGE_ENTRIES)?;
    let last = param(params, "last").map(str::to_owned);
    Ok((n, last))
}

fn json_response(value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::new(200)
        .header("Content-Type", "application/json")
        .bytes(body)
}
