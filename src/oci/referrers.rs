//! The referrers API response: an image index listing the manifests
//! whose `subject` is a given digest (distribution-spec, "Listing
//! Referrers").

use serde_json::{json, Map, Value};

use super::manifest::ParsedManifest;
use super::media_type::OCI_INDEX;

/// The `OCI-Filters-Applied` value when the `artifactType` filter was
/// used.
pub const ARTIFACT_TYPE_FILTER: &str = "artifactType";

/// What the registry keeps about one referring manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerEntry {
    /// The referring manifest's media type.
    pub media_type: String,
    /// The referring manifest's digest.
    pub digest: String,
    /// The referring manifest's size in bytes.
    pub size: u64,
    /// Its artifact type as [`ParsedManifest::artifact_type`] gives it.
    pub artifact_type: Option<String>,
    /// Its top-level annotations as a JSON object, if any.
    pub annotations_json: Option<String>,
}

impl ReferrerEntry {
    /// The entry for a manifest that was just pushed with a subject.
    pub fn from_manifest(manifest: &ParsedManifest, digest: &str, size: u64) -> Self {
        ReferrerEntry {
            media_type: manifest.media_type.clone(),
            digest: digest.to_string(),
            size,
            artifact_type: manifest.artifact_type.clone(),
            annotations_json: manifest.annotations_json.clone(),
        }
    }
}

/// Builds the referrers response body, an
/// `application/vnd.oci.image.index.v1+json` document.
///
/// With a non-empty `artifact_type_filter`, only entries of that
/// artifact type are listed and the second value is `true`: the handler
/// then sends `OCI-Filters-Applied: artifactType`. Entries keep their
/// order. Annotations that are not a JSON object are left out rather
/// than failing the whole listing.
pub fn referrers_index(
    entries: &[ReferrerEntry],
    artifact_type_filter: Option<&str>,
) -> (Vec<u8>, bool) {
    let filter = artifact_type_filter.filter(|f| !f.is_empty());

    let manifests: Vec<Value> = entries
        .iter()
        .filter(|e| filter.is_none() || e.artifact_type.as_deref() == filter)
        .map(descriptor)
        .collect();

    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    (index.to_string().into_bytes(), filter.is_some())
}

/// The tag a client falls back to when a registry lacks the referrers
/// API (distribution-spec, "Referrers Tag Schema"): the algorithm cut to
/// 32 characters, `-`, the encoded part cut to 64, with every character
/// a tag cannot hold replaced by `-`.
///
/// berth serves the API, so it only needs this to recognise such tags
/// (for example to fold an older index into its listing).
pub fn referrers_tag(digest: &str) -> String {
    let (algorithm, encoded) = digest.split_once(':').unwrap_or((digest, ""));
    let algorithm: String = algorithm.chars().take(32).collect();
    let encoded: String = encoded.chars().take(64).collect();

    format!("{algorithm}-{encoded}")
        .chars()
        .map(|c| {
            let allowed = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if allowed {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn descriptor(entry: &ReferrerEntry) -> Value {
    let mut d = Map::new();
    d.insert("mediaType".into(), Value::from(entry.media_type.as_str()));
    d.insert("digest".into(), Value::from(entry.digest.as_str()));
    d.insert("size".into(), Value::from(entry.size));
    if let Some(t) = &entry.artifact_type {
        d.insert("artifactType".into(), Value::from(t.as_str()));
    }

    let annotations = entry
        .annotations_json
        .as_deref()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_object);
    if let Some(a) = annotations {
        d.insert("annotations".into(), a);
    }
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::parse_manifest;
    use crate::oci::media_type::OCI_MANIFEST;

    fn entry(c: char, artifact_type: Option<&str>, annotations: Option<&str>) -> ReferrerEntry {
        ReferrerEntry {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size: 100,
            artifact_type: artifact_type.map(Into::into),
            annotations_json: annotations.map(Into::into),
        }
    }

    fn listed(body: &[u8]) -> Vec<Value> {
        let index: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        index["manifests"].as_array().unwrap().clone()
    }

    #[test]
    fn referrers_tags_follow_the_tag_schema() {
        let long_algorithm = "test+algorithm+using+algorithm+separators+and+more";
        let long_encoded = format!("someEncoded=Value{}", "x".repeat(80));
        let cases = [
            (
                format!("sha256:{}", "a".repeat(64)),
                format!("sha256-{}", "a".repeat(64)),
            ),
            (
                format!("sha512:{}", "b".repeat(128)),
                format!("sha512-{}", "b".repeat(64)),
            ),
            (
                format!("{long_algorithm}:{long_encoded}"),
                format!(
                    "test-algorithm-using-algorithm-s-someEncoded-Value{}",
                    "x".repeat(47)
                ),
            ),
        ];
        for (digest, want) in cases {
            let tag = referrers_tag(&digest);
            assert_eq!(tag, want);
            assert!(crate::oci::name::is_valid_tag(&tag), "{tag}");
        }
    }

    #[test]
    fn empty_listing_is_an_empty_index() {
        let (body, filtered) = referrers_index(&[], None);
        assert!(listed(&body).is_empty());
        assert!(!filtered);
    }

    #[test]
    fn entries_become_descriptors() {
        let entries = [
            entry(
                'a',
                Some("application/vnd.example.sig"),
                Some(r#"{"k":"v"}"#),
            ),
            entry('b', None, None),
            entry('c', Some("application/vnd.example.sbom"), Some("not json")),
        ];
        let (body, filtered) = referrers_index(&entries, None);
        let manifests = listed(&body);

        assert!(!filtered);
        assert_eq!(manifests.len(), 3);
        assert_eq!(
            manifests[0],
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": entries[0].digest,
                "size": 100,
                "artifactType": "application/vnd.example.sig",
                "annotations": {"k": "v"},
            })
        );
        assert!(manifests[1].get("artifactType").is_none());
        assert!(manifests[2].get("annotations").is_none());
    }

    #[test]
    fn artifact_type_filter_keeps_matches_and_is_reported() {
        let entries = [
            entry('a', Some("application/vnd.example.sig"), None),
            entry('b', Some("application/vnd.example.sbom"), None),
            entry('c', Some("application/vnd.example.sig"), None),
            entry('d', None, None),
        ];
        let cases: Vec<(Option<&str>, Vec<char>, bool)> = vec![
            (Some("application/vnd.example.sig"), vec!['a', 'c'], true),
            (Some("application/vnd.example.sbom"), vec!['b'], true),
            (Some("application/vnd.other"), vec![], true),
            (Some(""), vec!['a', 'b', 'c', 'd'], false),
            (None, vec!['a', 'b', 'c', 'd'], false),
        ];
        for (filter, want, want_filtered) in cases {
            let (body, filtered) = referrers_index(&entries, filter);
            let digests: Vec<char> = listed(&body)
                .iter()
                .map(|m| m["digest"].as_str().unwrap().chars().last().unwrap())
                .collect();
            assert_eq!(digests, want, "{filter:?}");
            assert_eq!(filtered, want_filtered, "{filter:?}");
        }
    }

    #[test]
    fn entry_from_manifest_falls_back_to_the_config_media_type() {
        let body = format!(
            r#"{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}",
                "config": {{"mediaType": "application/vnd.example.config",
                            "digest": "sha256:{}", "size": 2}},
                "layers": [],
                "annotations": {{"org.example": "x"}}}}"#,
            "e".repeat(64)
        );
        let m = parse_manifest(None, body.as_bytes()).unwrap();
        let entry = ReferrerEntry::from_manifest(&m, "sha256:00", 7);

        assert_eq!(
            entry.artifact_type.as_deref(),
            Some("application/vnd.example.config")
        );
        assert_eq!(
            entry.annotations_json.as_deref(),
            Some(r#"{"org.example":"x"}"#)
        );
        assert_eq!((entry.digest.as_str(), entry.size), ("sha256:00", 7));
    }
}
