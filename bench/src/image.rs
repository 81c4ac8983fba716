//! Whole images, pushed and pulled the way container clients do.
//!
//! An image is a config blob, its layers and an OCI image manifest naming
//! them (OCI image-spec, "Image Manifest"). Pushing checks each blob with a
//! HEAD first and uploads, or mounts from another repository, only what is
//! missing; the manifest goes last, under a tag. Pulling fetches the
//! manifest by tag, then every blob it names.

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};

use crate::client::{Failure, PushMode, Registry, OCI_MANIFEST};
use crate::payload::{Blob, Content};
use crate::workload::{stored_blob, Stored};

/// Blobs of one image uploaded at a time (Docker's default is 5).
const PUSH_PARALLELISM: usize = 5;
/// Blobs of one image downloaded at a time (Docker's default is 3).
const PULL_PARALLELISM: usize = 3;

/// One image to push.
pub(crate) struct ImageSpec<'a> {
    /// The run's name, written into the config so configs differ between
    /// runs.
    pub run_label: &'a str,
    /// Repository to push into.
    pub repository: &'a str,
    /// Tag for the manifest.
    pub tag: &'a str,
    /// Layers every image shares, mounted from `shared_from` when missing.
    pub shared: &'a [Blob],
    /// Repository that holds the shared layers.
    pub shared_from: &'a str,
    /// Layers of this image alone.
    pub own: &'a [Blob],
}

/// Pushes an image the way `docker push` does: for each blob a HEAD, then
/// an upload (or a mount of a shared layer) only when it is missing; the
/// manifest last. Returns the manifest digest and the bytes sent.
pub(crate) async fn push_image(
    registry: &Registry,
    image: &ImageSpec<'_>,
    stored: &mut Vec<Stored>,
) -> Result<(String, u64), Failure> {
    let ImageSpec {
        run_label,
        repository,
        tag,
        shared,
        shared_from,
        own,
    } = *image;
    let mut sent = 0u64;
    let layers: Vec<&Blob> = shared.iter().chain(own.iter()).collect();
    let config = Content::blob_from(config_json(run_label, tag, &layers));

    // Blobs go up a few at a time, as `docker push` sends layers.
    let mut uploads = Vec::new();
    for blob in shared {
        uploads.push(upload_missing(
            registry,
            repository,
            blob,
            Some(shared_from),
        ));
    }
    for blob in own.iter().chain(std::iter::once(&config)) {
        uploads.push(upload_missing(registry, repository, blob, None));
    }
    let uploaded: Vec<Option<(u64, &'static str, &Blob)>> = stream::iter(uploads)
        .buffer_unordered(PUSH_PARALLELISM)
        .try_collect()
        .await?;
    for (bytes, kind, blob) in uploaded.into_iter().flatten() {
        sent += bytes;
        stored.push(stored_blob(kind, repository, blob));
    }

    let manifest = manifest_json(&config, &layers);
    let manifest = Content::blob_from(manifest);
    let bytes = manifest.to_bytes();
    sent += registry
        .put_manifest(repository, tag, OCI_MANIFEST, bytes)
        .await?;
    stored.push(Stored {
        kind: "manifest",
        repository: repository.to_string(),
        digest: manifest.digest.clone(),
        size: manifest.size(),
        tag: Some(tag.to_string()),
    });
    Ok((manifest.digest, sent))
}

/// Uploads a blob unless the repository has it: mounted from `mount_from`
/// when given (and the registry agrees), else sent. Returns the bytes sent,
/// how it was stored and the blob, or `None` when nothing was needed.
async fn upload_missing<'a>(
    registry: &Registry,
    repository: &str,
    blob: &'a Blob,
    mount_from: Option<&str>,
) -> Result<Option<(u64, &'static str, &'a Blob)>, Failure> {
    if registry.blob_exists(repository, &blob.digest).await? {
        return Ok(None);
    }
    if let Some(from) = mount_from {
        let (bytes, mounted) = registry.mount_blob(repository, from, blob).await?;
        let kind = if mounted { "mount" } else { "blob" };
        return Ok(Some((bytes, kind, blob)));
    }
    let bytes = registry
        .push_blob(repository, blob, PushMode::Monolithic)
        .await?;
    Ok(Some((bytes, "blob", blob)))
}

/// Pulls an image the way clients do: manifest by tag, then each blob it
/// names. Returns the bytes received.
pub(crate) async fn pull_image(
    registry: &Registry,
    repository: &str,
    tag: &str,
) -> Result<u64, Failure> {
    let manifest = registry.manifest(repository, tag, false).await?;
    let parsed: ManifestDoc = serde_json::from_slice(&manifest)
        .map_err(|_| Failure::protocol("image pull", "manifest is not JSON"))?;

    // Config and layers come down a few at a time, as `docker pull` does.
    let mut downloads = Vec::new();
    downloads.push(registry.pull_blob(repository, &parsed.config.digest, None, None));
    for layer in &parsed.layers {
        downloads.push(registry.pull_blob(repository, &layer.digest, None, None));
    }
    let sizes: Vec<u64> = stream::iter(downloads)
        .buffer_unordered(PULL_PARALLELISM)
        .try_collect()
        .await?;
    Ok(manifest.len() as u64 + sizes.iter().sum::<u64>())
}

#[derive(serde::Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
}

fn config_json(label: &str, tag: &str, layers: &[&Blob]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "berth-bench": format!("{label}-{tag}") } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

fn manifest_json(config: &Blob, layers: &[&Blob]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": l.digest,
                "size": l.size(),
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.size(),
        },
        "layers": layers,
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_config_and_layers() {
        let content = Content::new(1, &[32]);
        let layer = content.blob(32);
        let config = Content::blob_from(b"{}".to_vec());
        let json = manifest_json(&config, &[&layer]);
        let doc: ManifestDoc = serde_json::from_slice(&json).unwrap();
        assert_eq!(doc.config.digest, config.digest);
        assert_eq!(doc.layers[0].digest, layer.digest);
    }
}
