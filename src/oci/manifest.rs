//! Manifest validation for `PUT /v2/<name>/manifests/<reference>`.
//!
//! A pushed manifest is checked for what the registry relies on: a JSON
//! object with `schemaVersion: 2`, a media type that agrees with the
//! `Content-Type`, a shape that fits it (image manifest or index) and
//! well-formed descriptors. The parse yields what the handler needs
//! next: which blobs and manifests must already be in the repository,
//! the `subject` for the referrers API and the artifact type.
//!
//! The JSON is read into a `serde_json::Value` and walked by hand rather
//! than into derived structs: unknown fields must be kept out of the way
//! (the bytes are stored exactly as pushed), and each failure should say
//! which field is wrong. serde_json caps nesting at 128 levels, so deep
//! input is an error, not a stack overflow.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use berth_storage::Digest;

use super::digest::parse_digest;
use super::errors::OciError;
use super::media_type::{
    essence, is_docker_schema1, is_media_type, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
    OCI_MANIFEST,
};

/// The most descriptors (config, layers, children) one manifest may
/// hold.
pub const MAX_DESCRIPTORS: usize = 10_000;

/// The most URLs one descriptor may carry.
pub const MAX_URLS: usize = 64;

/// The largest descriptor size: the image-spec types it as int64.
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

/// The family a manifest belongs to, which decides its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI image manifest, or an artifact with that shape.
    OciImage,
    /// An OCI image index, or an artifact with that shape.
    OciIndex,
    /// A Docker image manifest, schema 2.
    DockerImage,
    /// A Docker manifest list, schema 2.
    DockerList,
}

impl ManifestKind {
    /// Whether manifests of this kind list other manifests.
    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerList)
    }
}

/// A content descriptor: what a manifest says about a blob or a
/// manifest it references (image-spec `descriptor.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The referenced content's media type.
    pub media_type: String,
    /// The referenced content's digest.
    pub digest: Digest,
    /// The referenced content's size in bytes.
    pub size: u64,
    /// The artifact type, when the descriptor gives one.
    pub artifact_type: Option<String>,
    /// Where else the content may be fetched. A layer with URLs is
    /// foreign (non-distributable): the registry need not hold it.
    pub urls: Vec<String>,
    /// The descriptor's annotations, when it has some.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// Whether the content is fetched from elsewhere, so the registry
    /// must not require it.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
    }
}

/// A manifest that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The media type to store and serve it with.
    pub media_type: String,
    /// Its family.
    pub kind: ManifestKind,
    /// The config descriptor (image kinds only).
    pub config: Option<Descriptor>,
    /// The layer descriptors (image kinds only).
    pub layers: Vec<Descriptor>,
    /// The child manifests (index kinds only).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to, for the referrers API.
    pub subject: Option<Descriptor>,
    /// The artifact type the referrers API reports for this manifest:
    /// `artifactType` when set (and not empty); otherwise, for an image
    /// manifest, the config's media type (distribution-spec, "Listing
    /// Referrers"); otherwise `None`.
    pub artifact_type: Option<String>,
    /// The top-level annotations as a JSON object, when there are some.
    pub annotations_json: Option<String>,
}

impl ParsedManifest {
    /// Blob digests that must exist in the repository before the
    /// manifest is accepted, each once, in manifest order: the config,
    /// every layer that is not foreign, and the children of an index
    /// that are not manifests (see [`ParsedManifest::required_manifests`]).
    pub fn required_blobs(&self) -> Vec<Digest> {
        let layers = self.layers.iter().filter(|d| !d.is_foreign());
        let blob_children = self.manifests.iter().filter(|d| !is_manifest_type(d));
        let all = self.config.iter().chain(layers).chain(blob_children);
        dedup(all.map(|d| d.digest))
    }

    /// Manifest digests that must exist in the repository, each once,
    /// in manifest order: the children of an index whose media type is
    /// a manifest or index type.
    ///
    /// NOTE: the image-spec asks implementations not to fail on a child
    /// media type they do not know, and build caches list plain blobs
    /// in an index; such children are required as blobs instead.
    ///
    /// The `subject` is not among them: the spec asks registries to
    /// accept a manifest whose subject is not there (yet).
    pub fn required_manifests(&self) -> Vec<Digest> {
        let children = self.manifests.iter().filter(|d| is_manifest_type(d));
        dedup(children.map(|d| d.digest))
    }
}

/// Whether a descriptor points at a manifest or an index, by media type.
fn is_manifest_type(descriptor: &Descriptor) -> bool {
    let media_type = descriptor.media_type.as_str();
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
        .iter()
        .any(|known| media_type.eq_ignore_ascii_case(known))
        || is_docker_schema1(media_type)
}

/// Validates a pushed manifest.
///
/// `content_type` is the request's `Content-Type`, if any; parameters
/// are ignored. Generic values (`application/json`,
/// `application/octet-stream`, a form type) say nothing about the
/// manifest and count as absent. Every failure is `MANIFEST_INVALID` with a message
/// that names the field.
pub fn parse_manifest(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<ParsedManifest, OciError> {
    if bytes.is_empty() {
        return Err(invalid("the body is empty"));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(doc) = value else {
        return Err(invalid("the manifest is not a JSON object"));
    };

    let header_type = content_type.map(essence).filter(|t| !is_generic(t));
    let body_type = optional_media_type(&doc, "mediaType")?;
    let declared = declared_media_type(header_type, body_type)?;

    // Schema 1 is refused by name, so clients know to push schema 2.
    check_schema_version(&doc, declared.as_deref())?;

    let kind = manifest_kind(&doc, declared.as_deref())?;
    let media_type = declared.unwrap_or_else(|| match kind {
        ManifestKind::OciIndex => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    });

    let mut count = 0;
    let (config, layers, manifests) = if kind.is_index() {
        let manifests = descriptor_list(&doc, "manifests", &mut count)?;
        (None, Vec::new(), manifests)
    } else {
        let config = doc
            .get("config")
            .ok_or_else(|| invalid("config: missing"))?;
        let config = descriptor(config, "config")?;
        let layers = descriptor_list(&doc, "layers", &mut count)?;
        (Some(config), layers, Vec::new())
    };

    let subject = match doc.get("subject") {
        None | Some(Value::Null) => None,
        Some(v) => Some(descriptor(v, "subject")?),
    };

    // NOTE: the spec says "config's media type" without exception, so a
    // plain image reports application/vnd.oci.image.config.v1+json.
    let artifact_type =
        artifact_type(&doc)?.or_else(|| config.as_ref().map(|c| c.media_type.clone()));

    Ok(ParsedManifest {
        media_type,
        kind,
        config,
        layers,
        manifests,
        subject,
        artifact_type,
        annotations_json: annotations(&doc, "annotations")?.map(|a| annotations_to_json(&a)),
    })
}

/// Reconciles the `Content-Type` with the body's `mediaType`.
///
/// The spec asks that both agree when both are present.
fn declared_media_type(
    header: Option<String>,
    body: Option<String>,
) -> Result<Option<String>, OciError> {
    match (header, body) {
        (Some(h), Some(b)) if !h.eq_ignore_ascii_case(&b) => Err(invalid(format!(
            "mediaType {b:?} does not match Content-Type {h:?}"
        ))),
        (Some(h), None) => {
            if !is_media_type(&h) {
                return Err(invalid(format!("Content-Type {h:?} is malformed")));
            }
            Ok(Some(h))
        }
        (_, Some(b)) => Ok(Some(b)),
        (None, None) => Ok(None),
    }
}

fn check_schema_version(doc: &Map<String, Value>, declared: Option<&str>) -> Result<(), OciError> {
    let schema1 = || {
        invalid(
            "Docker image manifest schema 1 is not supported; push an OCI \
             or Docker schema 2 manifest",
        )
    };
    if declared.is_some_and(is_docker_schema1) {
        return Err(schema1());
    }

    match doc.get("schemaVersion").map(Value::as_u64) {
        Some(Some(2)) => Ok(()),
        Some(Some(1)) => Err(schema1()),
        None => Err(invalid("schemaVersion: missing")),
        Some(_) => Err(invalid("schemaVersion: must be 2")),
    }
}

/// Decides the kind from the declared type, or from the shape when the
/// type is unknown or absent (image-spec: an artifact may carry its own
/// media type and still be a manifest or an index).
fn manifest_kind(
    doc: &Map<String, Value>,
    declared: Option<&str>,
) -> Result<ManifestKind, OciError> {
    let present = |key| doc.get(key).is_some_and(|v| !v.is_null());
    let has_index_shape = present("manifests");
    let has_image_shape = present("config") || present("layers");

    let by_type = declared.and_then(|t| match t {
        t if t.eq_ignore_ascii_case(OCI_MANIFEST) => Some(ManifestKind::OciImage),
        t if t.eq_ignore_ascii_case(OCI_INDEX) => Some(ManifestKind::OciIndex),
        t if t.eq_ignore_ascii_case(DOCKER_MANIFEST) => Some(ManifestKind::DockerImage),
        t if t.eq_ignore_ascii_case(DOCKER_LIST) => Some(ManifestKind::DockerList),
        _ => None,
    });

    let kind = match (by_type, has_index_shape, has_image_shape) {
        (_, true, true) => {
            return Err(invalid(
                "a manifest cannot have both manifests and config/layers",
            ))
        }
        (Some(kind), true, _) if !kind.is_index() => {
            return Err(invalid("an image manifest cannot list manifests"))
        }
        (Some(kind), _, true) if kind.is_index() => {
            return Err(invalid("an index cannot have config or layers"))
        }
        (Some(kind), _, _) => kind,
        (None, true, false) => ManifestKind::OciIndex,
        (None, false, true) => ManifestKind::OciImage,
        (None, false, false) => {
            return Err(invalid(
                "neither an image manifest (config, layers) nor an index \
                 (manifests)",
            ))
        }
    };
    Ok(kind)
}

fn descriptor_list(
    doc: &Map<String, Value>,
    field: &str,
    count: &mut usize,
) -> Result<Vec<Descriptor>, OciError> {
    // NOTE: Go clients marshal an empty list as null; that is an empty
    // list, not a missing one.
    let items = match doc.get(field) {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) => &[],
        Some(_) => return Err(invalid(format!("{field}: not an array"))),
        None => return Err(invalid(format!("{field}: missing"))),
    };

    *count += items.len();
    if *count > MAX_DESCRIPTORS {
        return Err(invalid(format!(
            "{field}: more than {MAX_DESCRIPTORS} descriptors"
        )));
    }

    items
        .iter()
        .enumerate()
        .map(|(i, item)| descriptor(item, &format!("{field}[{i}]")))
        .collect()
}

/// Checks one descriptor; `at` names it in messages (`layers[2]`).
fn descriptor(value: &Value, at: &str) -> Result<Descriptor, OciError> {
    let Value::Object(obj) = value else {
        return Err(invalid(format!("{at}: not an object")));
    };

    let media_type = optional_media_type(obj, "mediaType")
        .map_err(|e| prefix(at, e))?
        .ok_or_else(|| invalid(format!("{at}.mediaType: missing")))?;

    let digest = match obj.get("digest") {
        Some(Value::String(d)) => {
            parse_digest(d).map_err(|e| invalid(format!("{at}.digest: {e}")))?
        }
        Some(_) => return Err(invalid(format!("{at}.digest: not a string"))),
        None => return Err(invalid(format!("{at}.digest: missing"))),
    };

    let size = match obj.get("size") {
        None => return Err(invalid(format!("{at}.size: missing"))),
        Some(v) => v.as_u64().filter(|&s| s <= MAX_DESCRIPTOR_SIZE),
    };
    let size =
        size.ok_or_else(|| invalid(format!("{at}.size: not an integer from 0 to 2^63-1")))?;

    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type: artifact_type(obj).map_err(|e| prefix(at, e))?,
        urls: urls(obj).map_err(|e| prefix(at, e))?,
        annotations: annotations(obj, "annotations").map_err(|e| prefix(at, e))?,
    })
}

/// An optional media type field: absent or null is `None`.
fn optional_media_type(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, OciError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_media_type(s) => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(invalid(format!("{field}: {s:?} is not a media type"))),
        Some(_) => Err(invalid(format!("{field}: not a string"))),
    }
}

/// `artifactType`: an empty string counts as absent, as the referrers
/// rules of the distribution-spec treat "empty or missing" alike.
fn artifact_type(obj: &Map<String, Value>) -> Result<Option<String>, OciError> {
    if obj.get("artifactType").and_then(Value::as_str) == Some("") {
        return Ok(None);
    }
    optional_media_type(obj, "artifactType")
}

fn urls(obj: &Map<String, Value>) -> Result<Vec<String>, OciError> {
    let items = match obj.get("urls") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("urls: not an array")),
    };
    if items.len() > MAX_URLS {
        return Err(invalid(format!("urls: more than {MAX_URLS}")));
    }

    items
        .iter()
        .map(|u| match u {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(invalid("urls: each must be a non-empty string")),
        })
        .collect()
}

/// An optional map of string to string.
fn annotations(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<BTreeMap<String, String>>, OciError> {
    let map = match obj.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(format!("{field}: not an object"))),
    };

    let mut out = BTreeMap::new();
    for (key, value) in map {
        let Value::String(s) = value else {
            return Err(invalid(format!("{field}.{key}: not a string")));
        };
        out.insert(key.clone(), s.clone());
    }
    Ok(Some(out))
}

fn is_generic(media_type: &str) -> bool {
    matches!(
        media_type,
        "" | "application/json"
            | "application/octet-stream"
            | "application/x-www-form-urlencoded"
            | "*/*"
    )
}

fn dedup(digests: impl Iterator<Item = Digest>) -> Vec<Digest> {
    let mut seen = HashSet::new();
    digests.filter(|d| seen.insert(*d)).collect()
}

fn annotations_to_json(annotations: &BTreeMap<String, String>) -> String {
    let map: Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(map).to_string()
}

fn invalid(reason: impl Into<String>) -> OciError {
    OciError::manifest_invalid(reason)
}

fn prefix(at: &str, mut err: OciError) -> OciError {
    err.message = format!("{at}.{}", err.message);
    err
}

#[cfg(test)]
mod tests;
