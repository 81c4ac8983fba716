//! The OCI distribution API against the real binary: one test per
//! endpoint and per error code.

mod common;

use common::{image_manifest, payload, sha256_digest, Server};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[test]
fn base_endpoint_says_registry_v2() {
    let server = Server::start();
    let response = server.get("/v2/");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[test]
fn monolithic_push_then_pull_blob() {
    let server = Server::start();
    let data = payload(1, 300_000);
    let digest = server.push_blob("team/app", &data);

    let head = server.request("HEAD", &format!("/v2/team/app/blobs/{digest}"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));

    let get = server.get(&format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(get.status, 200);
    assert_eq!(get.body, data);
}

#[test]
fn single_post_with_digest_creates_blob() {
    let server = Server::start();
    let data = payload(2, 5000);
    let digest = sha256_digest(&data);
    let response = server.request(
        "POST",
        &format!("/v2/single/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        response.header("location"),
        Some(format!("/v2/single/blobs/{digest}").as_str())
    );
    assert_eq!(server.get(&format!("/v2/single/blobs/{digest}")).body, data);
}

#[test]
fn chunked_upload_with_status_and_out_of_order_chunk() {
    let server = Server::start();
    let data = payload(3, 100_000);
    let digest = sha256_digest(&data);

    let start = server.request("POST", "/v2/chunky/blobs/uploads/", &[], b"");
    assert_eq!(start.status, 202);
    let location = start.header("location").unwrap().to_owned();
    assert!(start.header("docker-upload-uuid").is_some());

    let first = server.request(
        "PATCH",
        &location,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "0-39999"),
        ],
        &data[..40_000],
    );
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.header("range"), Some("0-39999"));
    let location = first.header("location").unwrap().to_owned();

    let status = server.get(&location);
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-39999"));

    let wrong = server.request(
        "PATCH",
        &location,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "50000-59999"),
        ],
        &data[50_000..60_000],
    );
    assert_eq!(wrong.status, 416);
    assert_eq!(wrong.header("range"), Some("0-39999"));

    let second = server.request(
        "PATCH",
        &location,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "40000-99999"),
        ],
        &data[40_000..],
    );
    assert_eq!(second.status, 202);

    let put = server.request("PUT", &format!("{location}?digest={digest}"), &[], b"");
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(server.get(&format!("/v2/chunky/blobs/{digest}")).body, data);
}

#[test]
fn streamed_patch_with_chunked_encoding() {
    let server = Server::start();
    let data = payload(4, 70_000);
    let digest = sha256_digest(&data);
    let start = server.request("POST", "/v2/stream/blobs/uploads/", &[], b"");
    let location = start.header("location").unwrap().to_owned();

    let chunked = common::chunked_body(&data, 9000);
    let patch = server.request(
        "PATCH",
        &location,
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(patch.status, 202, "{}", patch.text());
    let location = patch.header("location").unwrap().to_owned();

    let put = server.request("PUT", &format!("{location}?digest={digest}"), &[], b"");
    assert_eq!(put.status, 201);
    assert_eq!(server.get(&format!("/v2/stream/blobs/{digest}")).body, data);
}

#[test]
fn put_with_final_chunk_and_wrong_digest() {
    let server = Server::start();
    let data = payload(5, 1000);
    let start = server.request("POST", "/v2/final/blobs/uploads/", &[], b"");
    let location = start.header("location").unwrap().to_owned();
    let wrong = sha256_digest(b"something else");
    let put = server.request("PUT", &format!("{location}?digest={wrong}"), &[], &data);
    assert_eq!(put.status, 400);
    assert_eq!(put.error_code(), "DIGEST_INVALID");
    let missing = server.get(&format!("/v2/final/blobs/{wrong}"));
    assert_eq!(missing.status, 404);
}

#[test]
fn cancel_upload_then_it_is_unknown() {
    let server = Server::start();
    let start = server.request("POST", "/v2/cancel/blobs/uploads/", &[], b"");
    let location = start.header("location").unwrap().to_owned();
    assert_eq!(server.request("DELETE", &location, &[], b"").status, 204);
    let after = server.get(&location);
    assert_eq!(after.status, 404);
    assert_eq!(after.error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn unknown_upload_id_is_blob_upload_unknown() {
    let server = Server::start();
    let response = server.get("/v2/x/blobs/uploads/0-not-an-upload");
    assert_eq!(response.status, 404);
    assert_eq!(response.error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn ranged_blob_get() {
    let server = Server::start();
    let data = payload(6, 10_000);
    let digest = server.push_blob("ranges", &data);
    let path = format!("/v2/ranges/blobs/{digest}");

    let part = server.request("GET", &path, &[("Range", "bytes=100-199")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(part.body, &data[100..200]);

    let tail = server.request("GET", &path, &[("Range", "bytes=-10")], b"");
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &data[9990..]);

    let beyond = server.request("GET", &path, &[("Range", "bytes=20000-")], b"");
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10000"));

    let backwards = server.request("GET", &path, &[("Range", "bytes=500-0")], b"");
    assert_eq!(backwards.status, 416);
}

#[test]
fn cross_repository_mount_and_fallback() {
    let server = Server::start();
    let data = payload(7, 2048);
    let digest = server.push_blob("source/repo", &data);

    let mount = server.request(
        "POST",
        &format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"),
        &[],
        b"",
    );
    assert_eq!(mount.status, 201, "{}", mount.text());
    assert_eq!(
        server.get(&format!("/v2/target/repo/blobs/{digest}")).body,
        data
    );

    let unknown = sha256_digest(b"never pushed");
    let fallback = server.request(
        "POST",
        &format!("/v2/target/repo/blobs/uploads/?mount={unknown}&from=source/repo"),
        &[],
        b"",
    );
    assert_eq!(fallback.status, 202);
    assert!(fallback.header("location").is_some());
}

#[test]
fn blob_is_only_readable_where_pushed() {
    let server = Server::start();
    let digest = server.push_blob("owner", &payload(8, 100));
    let other = server.get(&format!("/v2/stranger/blobs/{digest}"));
    assert_eq!(other.status, 404);
    assert_eq!(other.error_code(), "BLOB_UNKNOWN");
}

#[test]
fn manifest_push_pull_by_tag_and_digest() {
    let server = Server::start();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let layer = payload(9, 4096);
    let config_digest = server.push_blob("img", &config);
    let layer_digest = server.push_blob("img", &layer);
    let manifest = image_manifest(
        (&config_digest, config.len()),
        &[(&layer_digest, layer.len())],
    );
    let digest = server.push_manifest("img", "v1", OCI_MANIFEST, &manifest);

    let by_tag = server.request(
        "GET",
        "/v2/img/manifests/v1",
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    assert_eq!(by_tag.status, 200);
    assert_eq!(by_tag.body, manifest);
    assert_eq!(by_tag.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        by_tag.header("docker-content-digest"),
        Some(digest.as_str())
    );

    let by_digest = server.get(&format!("/v2/img/manifests/{digest}"));
    assert_eq!(by_digest.body, manifest);

    let head = server.request("HEAD", "/v2/img/manifests/v1", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(manifest.len().to_string().as_str())
    );
}

#[test]
fn manifest_with_missing_blob_is_refused() {
    let server = Server::start();
    let missing = sha256_digest(b"missing");
    let manifest = image_manifest((&missing, 7), &[]);
    let response = server.request(
        "PUT",
        "/v2/broken/manifests/latest",
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn invalid_manifest_is_manifest_invalid() {
    let server = Server::start();
    let response = server.request(
        "PUT",
        "/v2/broken/manifests/latest",
        &[("Content-Type", OCI_MANIFEST)],
        b"{not json",
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "MANIFEST_INVALID");
}

#[test]
fn manifest_put_by_wrong_digest_is_digest_invalid() {
    let server = Server::start();
    let config = server.push_blob("d", b"{}");
    let manifest = image_manifest((&config, 2), &[]);
    let wrong = sha256_digest(b"other");
    let response = server.request(
        "PUT",
        &format!("/v2/d/manifests/{wrong}"),
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "DIGEST_INVALID");
}

#[test]
fn unknown_manifest_and_name_errors() {
    let server = Server::start();
    let unknown = server.get("/v2/nothing/here/manifests/latest");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "MANIFEST_UNKNOWN");

    let bad_name = server.get("/v2/Bad_Name/manifests/latest");
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.error_code(), "NAME_INVALID");

    let no_repo = server.get("/v2/never/pushed/tags/list");
    assert_eq!(no_repo.status, 404);
    assert_eq!(no_repo.error_code(), "NAME_UNKNOWN");

    let bad_digest = server.get("/v2/a/blobs/sha256:xyz");
    assert_eq!(bad_digest.status, 400);
    assert_eq!(bad_digest.error_code(), "DIGEST_INVALID");
}

#[test]
fn reading_a_reference_that_is_no_tag_is_manifest_unknown() {
    let server = Server::start();
    let path = "/v2/some/repo/manifests/.INVALID_MANIFEST_NAME";
    for method in ["GET", "DELETE"] {
        let response = server.request(method, path, &[], b"");
        assert_eq!(response.status, 404, "{method}");
        assert_eq!(response.error_code(), "MANIFEST_UNKNOWN", "{method}");
    }
    let head = server.request("HEAD", path, &[], b"");
    assert_eq!(head.status, 404);

    let push = server.request("PUT", path, &[("Content-Type", OCI_MANIFEST)], b"{}");
    assert_eq!(push.status, 400);
    assert_eq!(push.error_code(), "MANIFEST_INVALID");
}

#[test]
fn index_needs_its_child_manifests() {
    let server = Server::start();
    let config = server.push_blob("multi", b"{}");
    let child = image_manifest((&config, 2), &[]);
    let child_digest = server.push_manifest("multi", &sha256_digest(&child), OCI_MANIFEST, &child);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": child_digest, "size": child.len(),
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    }))
    .unwrap();
    server.push_manifest("multi", "latest", OCI_INDEX, &index);
    assert_eq!(server.get("/v2/multi/manifests/latest").body, index);

    let orphan = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"x"), "size": 1}]
    }))
    .unwrap();
    let refused = server.request(
        "PUT",
        "/v2/multi/manifests/bad",
        &[("Content-Type", OCI_INDEX)],
        &orphan,
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_code(), "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn tags_list_is_sorted_and_paginated() {
    let server = Server::start();
    let config = server.push_blob("tags", b"{}");
    let manifest = image_manifest((&config, 2), &[]);
    for tag in ["zeta", "alpha", "mid", "beta"] {
        server.push_manifest("tags", tag, OCI_MANIFEST, &manifest);
    }
    let all = server.get("/v2/tags/tags/list").json();
    assert_eq!(
        all["tags"],
        serde_json::json!(["alpha", "beta", "mid", "zeta"])
    );

    let page = server.get("/v2/tags/tags/list?n=2");
    assert_eq!(page.json()["tags"], serde_json::json!(["alpha", "beta"]));
    let link = page.header("link").expect("Link header");
    assert!(link.contains("last=beta"), "{link}");

    let next = server.get("/v2/tags/tags/list?n=2&last=beta").json();
    assert_eq!(next["tags"], serde_json::json!(["mid", "zeta"]));
}

#[test]
fn catalog_lists_repositories_across_shards() {
    let server = Server::start();
    let mut names: Vec<String> = (0..12).map(|i| format!("team{i}/svc")).collect();
    for name in &names {
        server.push_blob(name, b"layer");
        let config = server.push_blob(name, b"{}");
        server.push_manifest(name, "v1", OCI_MANIFEST, &image_manifest((&config, 2), &[]));
    }
    names.sort();
    let catalog = server.get("/v2/_catalog").json();
    let listed: Vec<String> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, names);

    let page = server.get("/v2/_catalog?n=5");
    assert_eq!(page.json()["repositories"].as_array().unwrap().len(), 5);
    assert!(page.header("link").is_some());
}

#[test]
fn delete_manifest_tag_and_blob_are_visible_at_once() {
    let server = Server::start();
    let config = server.push_blob("del", b"{}");
    let manifest = image_manifest((&config, 2), &[]);
    let digest = server.push_manifest("del", "v1", OCI_MANIFEST, &manifest);
    server.push_manifest("del", "v2", OCI_MANIFEST, &manifest);

    assert_eq!(
        server
            .request("DELETE", "/v2/del/manifests/v2", &[], b"")
            .status,
        202
    );
    assert_eq!(server.get("/v2/del/manifests/v2").status, 404);
    assert_eq!(server.get("/v2/del/manifests/v1").status, 200);

    let deleted = server.request("DELETE", &format!("/v2/del/manifests/{digest}"), &[], b"");
    assert_eq!(deleted.status, 202);
    assert_eq!(
        server.get(&format!("/v2/del/manifests/{digest}")).status,
        404
    );
    assert_eq!(server.get("/v2/del/manifests/v1").status, 404);

    assert_eq!(
        server
            .request("DELETE", &format!("/v2/del/blobs/{config}"), &[], b"")
            .status,
        202
    );
    let gone = server.get(&format!("/v2/del/blobs/{config}"));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "BLOB_UNKNOWN");
}

#[test]
fn referrers_with_subject_and_artifact_type_filter() {
    let server = Server::start();
    let config = server.push_blob("ref", b"{}");
    let subject = image_manifest((&config, 2), &[]);
    let subject_digest = server.push_manifest("ref", "v1", OCI_MANIFEST, &subject);

    let empty_config = server.push_blob("ref", b"{}");
    let signature = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_config, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len()},
        "annotations": {"org.example.kind": "sig"}
    }))
    .unwrap();
    let put = server.request(
        "PUT",
        &format!("/v2/ref/manifests/{}", sha256_digest(&signature)),
        &[("Content-Type", OCI_MANIFEST)],
        &signature,
    );
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.header("oci-subject"), Some(subject_digest.as_str()));

    let referrers = server.get(&format!("/v2/ref/referrers/{subject_digest}"));
    assert_eq!(referrers.status, 200);
    assert_eq!(referrers.header("content-type"), Some(OCI_INDEX));
    let body = referrers.json();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(
        body["manifests"][0]["annotations"]["org.example.kind"],
        "sig"
    );

    let filtered = server.get(&format!(
        "/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.other"
    ));
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"].as_array().unwrap().len(), 0);
}

#[test]
fn manifest_put_with_tag_query_returns_oci_tag() {
    let server = Server::start();
    let config = server.push_blob("qtag", b"{}");
    let manifest = image_manifest((&config, 2), &[]);
    let digest = sha256_digest(&manifest);
    let response = server.request(
        "PUT",
        &format!("/v2/qtag/manifests/{digest}?tag=one&tag=two"),
        &[("Content-Type", OCI_MANIFEST)],
        &manifest,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(server.get("/v2/qtag/manifests/one").status, 200);
    assert_eq!(server.get("/v2/qtag/manifests/two").status, 200);
}

#[test]
fn sha512_blob_round_trip() {
    use sha2::{Digest as _, Sha512};
    let server = Server::start();
    let data = payload(10, 3000);
    let hex: String = Sha512::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha512:{hex}");
    let response = server.request(
        "POST",
        &format!("/v2/s512/blobs/uploads/?digest={digest}"),
        &[],
        &data,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let get = server.get(&format!("/v2/s512/blobs/{digest}"));
    assert_eq!(get.body, data);
    assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
}

#[test]
fn docker_schema2_manifest_round_trip() {
    let server = Server::start();
    let config = server.push_blob("docker", b"{\"os\":\"linux\"}");
    let layer = server.push_blob("docker", &payload(11, 512));
    let media = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 14},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 512}]
    }))
    .unwrap();
    server.push_manifest("docker", "latest", media, &manifest);
    let got = server.request(
        "GET",
        "/v2/docker/manifests/latest",
        &[("Accept", media)],
        b"",
    );
    assert_eq!(got.header("content-type"), Some(media));
    assert_eq!(got.body, manifest);
}

#[test]
fn everything_survives_a_restart() {
    let mut server = Server::start();
    let data = payload(12, 200_000);
    let digest = server.push_blob("persist/me", &data);
    let config = server.push_blob("persist/me", b"{}");
    let manifest = image_manifest((&config, 2), &[(&digest, data.len())]);
    let manifest_digest = server.push_manifest("persist/me", "v1", OCI_MANIFEST, &manifest);

    server.restart();

    assert_eq!(
        server.get(&format!("/v2/persist/me/blobs/{digest}")).body,
        data
    );
    let got = server.get("/v2/persist/me/manifests/v1");
    assert_eq!(got.body, manifest);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(manifest_digest.as_str())
    );
    assert_eq!(
        server.get("/v2/persist/me/tags/list").json()["tags"],
        serde_json::json!(["v1"])
    );
}

#[test]
fn upload_framing_errors_are_blob_upload_invalid() {
    let server = Server::start();
    let start = server.request("POST", "/v2/framing/blobs/uploads/", &[], b"");
    let location = start.header("location").unwrap().to_owned();

    let mismatched = server.request("PATCH", &location, &[("Content-Range", "0-9")], b"12345");
    assert_eq!(mismatched.status, 400);
    assert_eq!(mismatched.error_code(), "BLOB_UPLOAD_INVALID");

    let out_of_order = server.request("PATCH", &location, &[("Content-Range", "5-9")], b"12345");
    assert_eq!(out_of_order.status, 416);
    assert_eq!(out_of_order.error_code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(out_of_order.header("range"), Some("0-0"));
}

#[test]
fn unknown_paths_methods_and_algorithms_are_unsupported() {
    let server = Server::start();
    let unknown = server.get("/v2/some/repo/elsewhere/x");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "UNSUPPORTED");

    let wrong_method = server.request("POST", "/v2/some/repo/tags/list", &[], b"");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.error_code(), "UNSUPPORTED");
    assert_eq!(wrong_method.header("allow"), Some("GET, HEAD"));

    let md5 = server.get("/v2/some/repo/manifests/md5:0123456789abcdef0123456789abcdef");
    assert_eq!(md5.status, 400);
    assert_eq!(md5.error_code(), "UNSUPPORTED");
}
