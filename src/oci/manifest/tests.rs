use super::*;
use crate::oci::errors::ErrorCode;
use crate::oci::fuzz_tests::Rng;
use crate::oci::media_type::OCI_EMPTY;

/// A sha256 digest made of one repeated hex digit.
fn d(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn dg(c: char) -> Digest {
    Digest::parse(&d(c)).unwrap()
}

fn desc(media_type: &str, c: char, size: u64) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{size}}}"#,
        d(c)
    )
}

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

fn oci_image() -> String {
    format!(
        r#"{{
          "schemaVersion": 2,
          "mediaType": "{OCI_MANIFEST}",
          "config": {},
          "layers": [{}, {}, {}],
          "subject": {},
          "annotations": {{"org.example.a": "1", "org.example.b": "2"}}
        }}"#,
        desc(super::super::media_type::OCI_CONFIG, 'c', 7023),
        desc(LAYER, '1', 32654),
        desc(LAYER, '2', 16724),
        desc(LAYER, '1', 32654),
        desc(OCI_MANIFEST, '5', 7682),
    )
}

fn parse(content_type: Option<&str>, body: &str) -> ParsedManifest {
    match parse_manifest(content_type, body.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("{e} for {body}"),
    }
}

fn refuse(content_type: Option<&str>, body: &[u8]) -> OciError {
    match parse_manifest(content_type, body) {
        Ok(m) => panic!("accepted {m:?}"),
        Err(e) => e,
    }
}

#[test]
fn oci_image_manifest_lists_config_and_layers() {
    let m = parse(Some(OCI_MANIFEST), &oci_image());

    assert_eq!(m.kind, ManifestKind::OciImage);
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.layers.len(), 3);
    assert_eq!(m.layers[1].size, 16724);
    assert_eq!(m.required_blobs(), [dg('c'), dg('1'), dg('2')]);
    assert!(m.required_manifests().is_empty());

    let subject = m.subject.as_ref().unwrap();
    assert_eq!(subject.digest, dg('5'));
    assert_eq!(subject.media_type, OCI_MANIFEST);

    assert_eq!(
        m.annotations_json.as_deref(),
        Some(r#"{"org.example.a":"1","org.example.b":"2"}"#)
    );
    assert_eq!(
        m.artifact_type.as_deref(),
        Some(super::super::media_type::OCI_CONFIG)
    );
}

#[test]
fn oci_index_with_subject_requires_its_children() {
    let body = format!(
        r#"{{
          "schemaVersion": 2,
          "mediaType": "{OCI_INDEX}",
          "artifactType": "application/vnd.example.sbom",
          "manifests": [
            {{"mediaType": "{OCI_MANIFEST}", "digest": "{}", "size": 7143,
              "platform": {{"architecture": "ppc64le", "os": "linux"}}}},
            {{"mediaType": "{OCI_MANIFEST}", "digest": "{}", "size": 7682,
              "platform": {{"architecture": "amd64", "os": "linux"}}}}
          ],
          "subject": {},
          "annotations": {{"com.example.key1": "value1"}}
        }}"#,
        d('a'),
        d('b'),
        desc(OCI_MANIFEST, '9', 10),
    );
    let m = parse(Some(OCI_INDEX), &body);

    assert_eq!(m.kind, ManifestKind::OciIndex);
    assert_eq!(m.required_manifests(), [dg('a'), dg('b')]);
    assert!(m.required_blobs().is_empty());
    assert!(m.config.is_none());
    assert_eq!(m.subject.unwrap().digest, dg('9'));
    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
}

#[test]
fn docker_schema2_manifest_skips_foreign_layers() {
    let body = format!(
        r#"{{
          "schemaVersion": 2,
          "mediaType": "{DOCKER_MANIFEST}",
          "config": {},
          "layers": [
            {{"mediaType": "{FOREIGN}", "digest": "{}", "size": 1,
              "urls": ["https://example.com/base.tar.gz"]}},
            {}
          ]
        }}"#,
        desc(DOCKER_CONFIG, 'c', 1470),
        d('f'),
        desc(DOCKER_LAYER, '1', 977),
    );
    let m = parse(Some(DOCKER_MANIFEST), &body);

    assert_eq!(m.kind, ManifestKind::DockerImage);
    assert_eq!(m.media_type, DOCKER_MANIFEST);
    assert!(m.layers[0].is_foreign());
    assert_eq!(m.required_blobs(), [dg('c'), dg('1')]);
}

#[test]
fn docker_manifest_list_requires_its_children() {
    let body = format!(
        r#"{{
          "schemaVersion": 2,
          "mediaType": "{DOCKER_LIST}",
          "manifests": [{}, {}]
        }}"#,
        desc(DOCKER_MANIFEST, 'a', 7143),
        desc(DOCKER_MANIFEST, 'a', 7143),
    );
    let m = parse(None, &body);

    assert_eq!(m.kind, ManifestKind::DockerList);
    assert_eq!(m.required_manifests(), [dg('a')]);
}

#[test]
fn artifact_manifest_reports_its_artifact_type() {
    let body = format!(
        r#"{{
          "schemaVersion": 2,
          "mediaType": "{OCI_MANIFEST}",
          "artifactType": "application/vnd.example+type",
          "config": {{"mediaType": "{OCI_EMPTY}", "digest": "{}",
                      "size": 2, "data": "e30="}},
          "layers": []
        }}"#,
        d('e'),
    );
    let m = parse(Some(OCI_MANIFEST), &body);

    assert_eq!(
        m.artifact_type.as_deref(),
        Some("application/vnd.example+type")
    );
    assert_eq!(m.required_blobs(), [dg('e')]);
}

#[test]
fn index_children_that_are_not_manifests_are_required_as_blobs() {
    let body = format!(
        r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}",
            "manifests": [{}, {}, {}, {}]}}"#,
        desc(OCI_MANIFEST, 'a', 1),
        desc("application/vnd.buildkit.cacheconfig.v0", 'c', 2),
        desc(LAYER, '1', 3),
        desc(DOCKER_LIST, 'b', 4),
    );
    let m = parse(None, &body);

    assert_eq!(m.required_manifests(), [dg('a'), dg('b')]);
    assert_eq!(m.required_blobs(), [dg('c'), dg('1')]);
}

#[test]
fn null_lists_are_empty_lists() {
    let image = format!(
        r#"{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}",
            "config": {}, "layers": null}}"#,
        desc(OCI_EMPTY, 'e', 2)
    );
    let m = parse(None, &image);
    assert_eq!((m.kind, m.layers.len()), (ManifestKind::OciImage, 0));

    let index = format!(r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "manifests": null}}"#);
    let m = parse(None, &index);
    assert_eq!((m.kind, m.manifests.len()), (ManifestKind::OciIndex, 0));

    // Without a media type, null says nothing about the shape.
    let guessed = format!(
        r#"{{"schemaVersion": 2, "manifests": null, "config": {}, "layers": []}}"#,
        desc(OCI_EMPTY, 'e', 2)
    );
    assert_eq!(parse(None, &guessed).kind, ManifestKind::OciImage);
}

#[test]
fn empty_artifact_type_counts_as_absent() {
    let body = oci_image().replacen(
        r#""schemaVersion": 2"#,
        r#""schemaVersion": 2, "artifactType": """#,
        1,
    );
    let m = parse(None, &body);
    assert_eq!(
        m.artifact_type.as_deref(),
        Some(super::super::media_type::OCI_CONFIG)
    );
}

#[test]
fn media_type_comes_from_header_body_or_shape() {
    let image_no_type = oci_image().replace(&format!(r#""mediaType": "{OCI_MANIFEST}","#), "");
    let index_no_type = format!(
        r#"{{"schemaVersion": 2, "manifests": [{}]}}"#,
        desc(OCI_MANIFEST, 'a', 1)
    );
    let artifact = oci_image().replace(OCI_MANIFEST, "application/vnd.example.thing.v1+json");
    let with_params = format!("{OCI_MANIFEST}; charset=utf-8");
    let image = oci_image();

    let cases: Vec<(Option<&str>, &str, &str, ManifestKind)> = vec![
        (
            Some(OCI_MANIFEST),
            &image_no_type,
            OCI_MANIFEST,
            ManifestKind::OciImage,
        ),
        (None, &image_no_type, OCI_MANIFEST, ManifestKind::OciImage),
        (
            Some("application/json"),
            &image_no_type,
            OCI_MANIFEST,
            ManifestKind::OciImage,
        ),
        (None, &index_no_type, OCI_INDEX, ManifestKind::OciIndex),
        (
            Some(OCI_INDEX),
            &index_no_type,
            OCI_INDEX,
            ManifestKind::OciIndex,
        ),
        (
            Some(&with_params),
            &image,
            OCI_MANIFEST,
            ManifestKind::OciImage,
        ),
        (
            None,
            &artifact,
            "application/vnd.example.thing.v1+json",
            ManifestKind::OciImage,
        ),
    ];
    for (content_type, body, media_type, kind) in cases {
        let m = parse(content_type, body);
        assert_eq!(m.media_type, media_type, "{content_type:?}");
        assert_eq!(m.kind, kind, "{content_type:?}");
    }
}

#[test]
fn docker_schema1_is_refused_by_name() {
    let body = r#"{"schemaVersion": 1, "name": "a", "tag": "b",
                   "fsLayers": [], "history": []}"#;
    let signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";

    for content_type in [None, Some(signed)] {
        let err = refuse(content_type, body.as_bytes());
        assert_eq!(err.code, ErrorCode::ManifestInvalid);
        assert!(err.message.contains("schema 1"), "{}", err.message);
    }
}

#[test]
fn malformed_manifests_are_manifest_invalid() {
    let image = oci_image();
    let swap = |from: &str, to: &str| image.replacen(from, to, 1);
    let layer1 = desc(LAYER, '1', 32654);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_field = swap(
        r#""org.example.a": "1""#,
        &format!(r#""org.example.a": {deep}"#),
    );

    let layers_object =
        format!(r#"{{"schemaVersion": 2, "config": {layer1}, "layers": {{"a": 1}}}}"#);

    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("null", "null".into()),
        ("array", "[]".into()),
        ("string", r#""manifest""#.into()),
        ("empty object", "{}".into()),
        ("truncated", image[..image.len() / 2].into()),
        ("trailing garbage", format!("{image} x")),
        ("no schemaVersion", swap(r#""schemaVersion": 2,"#, "")),
        (
            "schemaVersion string",
            swap(r#""schemaVersion": 2"#, r#""schemaVersion": "2""#),
        ),
        (
            "schemaVersion 3",
            swap(r#""schemaVersion": 2"#, r#""schemaVersion": 3"#),
        ),
        (
            "schemaVersion float",
            swap(r#""schemaVersion": 2"#, r#""schemaVersion": 2.5"#),
        ),
        (
            "mediaType number",
            swap(&format!(r#""{OCI_MANIFEST}""#), "7"),
        ),
        ("mediaType bad", swap(OCI_MANIFEST, "not a type")),
        ("no config", swap(r#""config""#, r#""konfig""#)),
        ("no layers", swap(r#""layers""#, r#""lairs""#)),
        ("layers object", layers_object),
        ("layer not object", swap(&layer1, "42")),
        (
            "no layer digest",
            swap(&format!(r#""digest":"{}""#, d('1')), r#""x":1"#),
        ),
        ("bad layer digest", swap(&d('1'), "sha256:123")),
        ("upper hex digest", swap(&d('c'), &d('C'))),
        ("unsupported digest", swap(&d('1'), "md5:0123")),
        ("digest number", swap(&format!(r#""{}""#, d('1')), "1")),
        ("no size", swap(r#","size":32654"#, "")),
        ("negative size", swap(":32654", ":-1")),
        ("float size", swap(":32654", ":1.5")),
        ("exponent size", swap(":32654", ":1e3")),
        ("huge size", swap(":32654", ":100000000000000000000000")),
        ("size past int64", swap(":32654", ":9223372036854775808")),
        ("size string", swap(":32654", r#":"32654""#)),
        (
            "no layer mediaType",
            swap(&format!(r#""mediaType":"{LAYER}","#), ""),
        ),
        ("annotation number", swap(r#""1""#, "1")),
        (
            "annotations array",
            swap(r#"{"org.example.a": "1", "org.example.b": "2"}"#, "[]"),
        ),
        (
            "urls string",
            swap(&layer1, &layer1.replace("}", r#","urls":"x"}"#)),
        ),
        (
            "urls empty item",
            swap(&layer1, &layer1.replace("}", r#","urls":[""]}"#)),
        ),
        (
            "subject string",
            swap(&desc(OCI_MANIFEST, '5', 7682), r#""x""#),
        ),
        (
            "image with manifests",
            swap(r#""layers""#, r#""manifests": [], "layers""#),
        ),
        (
            "artifactType number",
            swap(
                r#""schemaVersion": 2"#,
                r#""schemaVersion": 2, "artifactType": 1"#,
            ),
        ),
        ("deep JSON", deep),
        ("deep field", deep_field),
    ];
    for (what, body) in cases {
        let err = refuse(Some(OCI_MANIFEST), body.as_bytes());
        assert_eq!(err.code, ErrorCode::ManifestInvalid, "{what}: {err}");
        assert_eq!(err.status, 400, "{what}");
    }
}

#[test]
fn shape_must_fit_the_declared_type() {
    let image = oci_image();
    let index = format!(
        r#"{{"schemaVersion": 2, "manifests": [{}]}}"#,
        desc(OCI_MANIFEST, 'a', 1)
    );
    let both = format!(
        r#"{{"schemaVersion": 2, "manifests": [], "config": {}, "layers": []}}"#,
        desc(OCI_EMPTY, 'e', 2)
    );
    let neither = r#"{"schemaVersion": 2, "blobs": []}"#;
    let as_index = image.replace(OCI_MANIFEST, OCI_INDEX);
    let as_list = image.replace(OCI_MANIFEST, DOCKER_LIST);

    let cases: Vec<(Option<&str>, &str)> = vec![
        (Some(OCI_INDEX), &as_index),
        (Some(DOCKER_LIST), &as_list),
        (Some(OCI_MANIFEST), &index),
        (Some(DOCKER_MANIFEST), &index),
        (None, &both),
        (None, neither),
        (Some("application/vnd.example+json"), neither),
    ];
    for (content_type, body) in cases {
        let err = refuse(content_type, body.as_bytes());
        assert_eq!(err.code, ErrorCode::ManifestInvalid, "{content_type:?}");
    }
}

#[test]
fn content_type_and_media_type_must_agree() {
    let cases = [
        Some(OCI_INDEX),
        Some(DOCKER_MANIFEST),
        Some("application/vnd.example+json"),
        Some("not a media type"),
    ];
    for content_type in cases {
        let err = refuse(content_type, oci_image().as_bytes());
        assert_eq!(err.code, ErrorCode::ManifestInvalid, "{content_type:?}");
    }

    let upper = OCI_MANIFEST.to_ascii_uppercase();
    assert!(parse_manifest(Some(&upper), oci_image().as_bytes()).is_ok());
}

#[test]
fn non_utf8_bodies_are_refused() {
    let mut body = oci_image().into_bytes();
    let at = body.iter().position(|&b| b == b'1').unwrap();
    body[at] = 0xff;
    let err = refuse(None, &body);
    assert_eq!(err.code, ErrorCode::ManifestInvalid);

    let err = refuse(None, &[0xfe, 0xff, 0x00, b'{']);
    assert_eq!(err.code, ErrorCode::ManifestInvalid);
}

#[test]
fn too_many_descriptors_are_refused() {
    let layer = desc(LAYER, '1', 1);
    let layers = vec![layer.as_str(); MAX_DESCRIPTORS + 1].join(",");
    let body = format!(
        r#"{{"schemaVersion": 2, "config": {}, "layers": [{layers}]}}"#,
        desc(OCI_EMPTY, 'e', 2)
    );
    let err = refuse(None, body.as_bytes());
    assert!(err.message.contains("more than"), "{}", err.message);
}

#[test]
fn sha512_descriptors_are_accepted() {
    let digest = format!("sha512:{}", "0a".repeat(64));
    let body = oci_image().replacen(&d('2'), &digest, 1);
    let m = parse(None, &body);
    assert_eq!(m.layers[1].digest.to_string(), digest);
}

#[test]
fn parse_never_panics_on_random_or_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [
        oci_image(),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{}]}}"#,
            desc(DOCKER_MANIFEST, 'a', 1)
        ),
    ];
    let alphabet = br#"{}[]":,0123456789-.eE+ abcsize\digestmediaTypesha256"#;

    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 4 == 0 {
            // Random bytes.
            let len = rng.below(256);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            // A valid manifest with a few bytes changed, cut or doubled.
            let mut bytes = seeds[round % 2].clone().into_bytes();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = alphabet[rng.below(alphabet.len())],
                    1 => bytes[at] = rng.next() as u8,
                    2 => bytes.truncate(at.max(1)),
                    _ => {
                        let tail = bytes[at..].to_vec();
                        bytes.extend_from_slice(&tail);
                    }
                }
            }
            bytes
        };

        let content_type = [None, Some(OCI_MANIFEST), Some("x")][round % 3];
        let _ = parse_manifest(content_type, &bytes);
    }
}
