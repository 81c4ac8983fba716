//! A second, independent client against the real `berth` binary: the
//! `oci-client` crate pushes and pulls images over plain HTTP on
//! loopback, anonymously, and what it reads back must match what it
//! wrote, byte for byte and digest for digest.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use common::{payload, sha256_digest, Server};
use oci_client::client::{Client, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;

/// Size of each layer: a few hundred KiB, more than one read buffer.
const LAYER_LEN: usize = 300 * 1024;

/// Runs one test body on a current-thread tokio runtime, and fails if
/// oci-client logged any warning while it ran.
///
/// NOTE: oci-client works around registries that stray from the spec
/// (no `Location` on a manifest PUT, a refused chunked upload) with only
/// a warning; turning those warnings into failures keeps the workarounds
/// from hiding a deviation in berth.
fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    let warnings = Warnings::default();
    let sink = warnings.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();

    let output = tracing::subscriber::with_default(subscriber, || runtime.block_on(future));

    let text = warnings.text();
    assert!(text.is_empty(), "oci-client warned:\n{text}");
    output
}

/// Log lines written while a test body ran.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<u8>>>);

impl Warnings {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Warnings {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An oci-client speaking plain HTTP that uploads blobs in chunks
/// (POST, PATCH..., PUT), falling back to one PUT if berth strays from
/// the spec.
fn client() -> Client {
    client_with(false)
}

/// An oci-client speaking plain HTTP, uploading each blob with one PUT
/// when `monolithic`.
fn client_with(monolithic: bool) -> Client {
    // NOTE: reqwest is built without a default crypto provider; plain
    // HTTP never uses it, but building a client asks for one. A second
    // install (another test) fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..ClientConfig::default()
    })
}

/// A reference to `repo:tag` on the test server.
fn tagged(server: &Server, repo: &str, tag: &str) -> Reference {
    Reference::with_tag(server.addr.to_string(), repo.to_owned(), tag.to_owned())
}

/// A reference to `repo@digest` on the test server.
fn by_digest(server: &Server, repo: &str, digest: &str) -> Reference {
    Reference::with_digest(server.addr.to_string(), repo.to_owned(), digest.to_owned())
}

/// A small image: a JSON config and two layers from `seed`.
struct Image {
    config: Config,
    layers: Vec<ImageLayer>,
}

impl Image {
    fn new(seed: u64) -> Image {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\
             \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\
             \"config\":{{\"Labels\":{{\"seed\":\"{seed}\"}}}}}}"
        );
        let layers = (0..2)
            .map(|i| ImageLayer::oci_v1_gzip(payload(seed * 10 + i, LAYER_LEN), None))
            .collect();
        Image {
            config: Config::oci_v1(config.into_bytes(), None),
            layers,
        }
    }

    /// The manifest oci-client builds for this image, with its media type
    /// set as most clients do.
    fn manifest(&self) -> OciImageManifest {
        let mut manifest = OciImageManifest::build(&self.layers, &self.config, None);
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());
        manifest
    }

    async fn push(&self, client: &Client, reference: &Reference) {
        client
            .push(
                reference,
                &self.layers,
                self.config.clone(),
                &RegistryAuth::Anonymous,
                Some(self.manifest()),
            )
            .await
            .unwrap_or_else(|e| panic!("oci-client push {reference}: {e:?}"));
    }
}

/// What berth says the manifest digest of `repo:reference` is.
fn berth_manifest_digest(server: &Server, repo: &str, reference: &str) -> String {
    let response = server.request(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", OCI_IMAGE_MEDIA_TYPE)],
        b"",
    );
    assert_eq!(response.status, 200, "GET manifest: {}", response.text());
    let digest = response
        .header("docker-content-digest")
        .expect("Docker-Content-Digest")
        .to_owned();
    assert_eq!(digest, sha256_digest(&response.body));
    digest
}

#[test]
fn oci_client_pushes_and_pulls_an_image() {
    let server = Server::start();
    let repo = "clients/rust/app";
    let image = Image::new(1);
    let reference = tagged(&server, repo, "v1");
    let client = client();
    let auth = RegistryAuth::Anonymous;

    let pulled = block_on(async {
        image.push(&client, &reference).await;
        client
            .pull(&reference, &auth, vec![IMAGE_LAYER_GZIP_MEDIA_TYPE])
            .await
            .unwrap_or_else(|e| panic!("oci-client pull: {e:?}"))
    });

    // NOTE: oci-client fetches layers concurrently and returns them in
    // the order they finished, not manifest order; match them by digest.
    assert_eq!(pulled.layers.len(), image.layers.len());
    for sent in &image.layers {
        let digest = sent.sha256_digest();
        let got = pulled
            .layers
            .iter()
            .find(|l| l.sha256_digest() == digest)
            .unwrap_or_else(|| panic!("layer {digest} missing from the pull"));
        assert_eq!(got.media_type, sent.media_type);
        assert!(got.data == sent.data, "layer {digest} came back different");
    }
    assert_eq!(pulled.config.data, image.config.data);
    assert_eq!(pulled.config.media_type, IMAGE_CONFIG_MEDIA_TYPE);

    let manifest = pulled.manifest.expect("pull returns the manifest");
    assert_eq!(manifest.config.digest, sha256_digest(&image.config.data));
    let digest = pulled.digest.expect("pull returns the manifest digest");
    assert_eq!(digest, berth_manifest_digest(&server, repo, "v1"));

    // Each blob, fetched alone, is the one pushed.
    let layer = &manifest.layers[1];
    let blob = block_on(async {
        let mut out = Vec::new();
        client
            .pull_blob(&reference, layer, &mut out)
            .await
            .unwrap_or_else(|e| panic!("oci-client pull_blob: {e:?}"));
        out
    });
    assert!(blob == image.layers[1].data, "pull_blob bytes differ");
}

#[test]
fn oci_client_uploads_a_blob_in_several_chunks() {
    let server = Server::start();
    let repo = "clients/rust/chunks";
    let reference = tagged(&server, repo, "unused");
    let client = client();
    let blob = ImageLayer::oci_v1(payload(4, 3 * LAYER_LEN + 17), None);
    let digest = blob.sha256_digest();

    // NOTE: the stream path has no fallback to a single PUT, so each
    // piece must go through berth as its own PATCH with a Content-Range.
    let cuts = [0, 1, LAYER_LEN, 2 * LAYER_LEN + 5, blob.data.len()];
    let pieces: Vec<oci_client::errors::Result<_>> = cuts
        .windows(2)
        .map(|w| Ok(blob.data.slice(w[0]..w[1])))
        .collect();
    let (existed, exists, pulled) = block_on(async {
        let existed = client
            .blob_exists(&reference, &digest)
            .await
            .unwrap_or_else(|e| panic!("blob_exists before: {e:?}"));
        client
            .push_blob_stream(
                &reference,
                futures_lite::stream::iter(pieces),
                &digest,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("oci-client chunked push: {e:?}"));
        let exists = client
            .blob_exists(&reference, &digest)
            .await
            .unwrap_or_else(|e| panic!("blob_exists after: {e:?}"));
        let descriptor = OciDescriptor {
            media_type: blob.media_type.clone(),
            digest: digest.clone(),
            size: i64::try_from(blob.data.len()).expect("size fits"),
            ..OciDescriptor::default()
        };
        let mut out = Vec::new();
        client
            .pull_blob(&reference, &descriptor, &mut out)
            .await
            .unwrap_or_else(|e| panic!("oci-client pull_blob: {e:?}"));
        (existed, exists, out)
    });

    assert!(!existed, "the blob was there before it was pushed");
    assert!(exists, "the blob is missing after its upload");
    assert!(pulled == blob.data, "the chunked blob came back different");
}

#[test]
fn oci_client_lists_tags_and_pulls_by_digest() {
    let server = Server::start();
    let repo = "clients/rust/tags";
    let image = Image::new(2);
    let client = client_with(true);
    let auth = RegistryAuth::Anonymous;
    let stable = tagged(&server, repo, "stable");
    let latest = tagged(&server, repo, "latest");

    let (tags, by_tag, by_hash) = block_on(async {
        image.push(&client, &stable).await;
        image.push(&client, &latest).await;
        let tags = client
            .list_tags(&stable, &auth, None, None)
            .await
            .unwrap_or_else(|e| panic!("oci-client list_tags: {e:?}"));
        let by_tag = client
            .pull_image_manifest(&stable, &auth)
            .await
            .unwrap_or_else(|e| panic!("pull manifest by tag: {e:?}"));
        let pinned = by_digest(&server, repo, &by_tag.1);
        let by_hash = client
            .pull_image_manifest(&pinned, &auth)
            .await
            .unwrap_or_else(|e| panic!("pull manifest by digest: {e:?}"));
        (tags, by_tag, by_hash)
    });

    assert_eq!(tags.name, repo);
    assert_eq!(tags.tags, vec!["latest".to_owned(), "stable".to_owned()]);
    assert_eq!(by_hash.1, by_tag.1);
    assert_eq!(by_tag.1, berth_manifest_digest(&server, repo, "latest"));
    let layers: Vec<&str> = by_hash.0.layers.iter().map(|l| l.digest.as_str()).collect();
    let expected: Vec<String> = image.layers.iter().map(|l| l.sha256_digest()).collect();
    assert_eq!(layers, expected);
}

#[test]
fn oci_client_finds_a_referrer_through_the_referrers_api() {
    let server = Server::start();
    let repo = "clients/rust/signed";
    let image = Image::new(3);
    let client = client();
    let auth = RegistryAuth::Anonymous;
    let reference = tagged(&server, repo, "v1");
    let artifact_type = "application/vnd.example.signature.v1+json";

    let (subject_digest, referrer_digest, index) = block_on(async {
        image.push(&client, &reference).await;
        let (_, subject_digest) = client
            .pull_image_manifest(&reference, &auth)
            .await
            .unwrap_or_else(|e| panic!("pull subject: {e:?}"));

        // An artifact whose subject is the image: an empty config and
        // one small layer, pushed by digest with no tag.
        let signature = Image {
            config: Config::new(
                b"{}".to_vec(),
                "application/vnd.oci.empty.v1+json".to_owned(),
                None,
            ),
            layers: vec![ImageLayer::new(
                payload(30, 512),
                "application/vnd.example.signature.v1".to_owned(),
                None,
            )],
        };
        let mut manifest = signature.manifest();
        manifest.artifact_type = Some(artifact_type.to_owned());
        manifest.subject = Some(OciDescriptor {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_owned(),
            digest: subject_digest.clone(),
            size: berth_manifest_len(&server, repo, &subject_digest),
            ..OciDescriptor::default()
        });
        let mut annotations = BTreeMap::new();
        annotations.insert("org.example.signed-by".to_owned(), "berth".to_owned());
        manifest.annotations = Some(annotations);
        let body = serde_json::to_vec(&manifest).expect("manifest serializes");
        let referrer_digest = sha256_digest(&body);
        for layer in &signature.layers {
            client
                .push_blob(&reference, layer.data.clone(), &layer.sha256_digest())
                .await
                .unwrap_or_else(|e| panic!("push referrer layer: {e:?}"));
        }
        client
            .push_blob(
                &reference,
                signature.config.data.clone(),
                &sha256_digest(&signature.config.data),
            )
            .await
            .unwrap_or_else(|e| panic!("push referrer config: {e:?}"));
        let pinned = by_digest(&server, repo, &referrer_digest);
        client
            .push_manifest_raw(
                &pinned,
                body,
                OCI_IMAGE_MEDIA_TYPE.parse().expect("header value"),
            )
            .await
            .unwrap_or_else(|e| panic!("push referrer manifest: {e:?}"));

        let subject = by_digest(&server, repo, &subject_digest);
        let index = client
            .pull_referrers(&subject, Some(artifact_type))
            .await
            .unwrap_or_else(|e| panic!("oci-client pull_referrers: {e:?}"));
        (subject_digest, referrer_digest, index)
    });

    // The native API answered (not the tag-schema fallback, which would
    // find nothing here since no fallback tag was pushed).
    let native = server.get(&format!("/v2/{repo}/referrers/{subject_digest}"));
    assert_eq!(native.status, 200, "referrers: {}", native.text());

    assert_eq!(index.manifests.len(), 1, "referrers: {index:?}");
    let entry = &index.manifests[0];
    assert_eq!(entry.digest, referrer_digest);
    assert_eq!(entry.media_type, OCI_IMAGE_MEDIA_TYPE);
    assert_eq!(entry.artifact_type.as_deref(), Some(artifact_type));
    let annotations = entry.annotations.as_ref().expect("annotations copied");
    assert_eq!(
        annotations.get("org.example.signed-by").map(String::as_str),
        Some("berth")
    );
}

/// The size in bytes of a manifest stored in berth.
fn berth_manifest_len(server: &Server, repo: &str, reference: &str) -> i64 {
    let response = server.request(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", OCI_IMAGE_MEDIA_TYPE)],
        b"",
    );
    assert_eq!(response.status, 200, "GET manifest: {}", response.text());
    i64::try_from(response.body.len()).expect("manifest size fits")
}
