//! Real-client test: skopeo copies a multi-layer image and a multi-arch
//! index into berth, inspects them, copies them back out, and every digest
//! matches.
//!
//! skopeo is installed by `tests/run-all.sh`. When it is missing the test
//! fails, unless `BERTH_SKIP_SKOPEO=1` says to skip it on purpose.

mod common;

use std::path::Path;
use std::process::Command;

use common::{payload, sha256_digest, Server, TempDir};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Writes a blob into an OCI image layout and returns (digest, size).
fn write_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let digest = sha256_digest(data);
    let hex = digest.trim_start_matches("sha256:");
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(hex), data).unwrap();
    (digest, data.len())
}

/// Builds an image (config + layers + manifest) in the layout.
fn write_image(layout: &Path, seed: u64, arch: &str, layers: usize) -> (String, usize) {
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let data = payload(seed * 100 + i as u64, 40_000 + i * 7_000);
        let (digest, size) = write_blob(layout, &data);
        diff_ids.push(digest.clone());
        layer_descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    }))
    .unwrap();
    let (config_digest, config_size) = write_blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": layer_descriptors
    }))
    .unwrap();
    write_blob(layout, &manifest)
}

fn write_index(layout: &Path, entries: &[(String, usize, &str)]) -> (String, usize) {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(digest, size, arch)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests
    }))
    .unwrap();
    write_blob(layout, &index)
}

/// Writes the layout's `index.json` naming one top-level manifest.
fn write_layout(layout: &Path, media_type: &str, top: &(String, usize), tag: &str) {
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type, "digest": top.0, "size": top.1,
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs (tests/run-all.sh installs it)")
}

fn skopeo_available() -> bool {
    if Command::new("skopeo").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("BERTH_SKIP_SKOPEO").as_deref() == Ok("1") {
        eprintln!("skipping: skopeo is not installed and BERTH_SKIP_SKOPEO=1");
        return false;
    }
    panic!("skopeo is not installed; run tests through tests/run-all.sh");
}

fn assert_ok(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn skopeo_copies_image_and_index_in_and_out() {
    if !skopeo_available() {
        return;
    }
    let server = Server::start();
    let temp = TempDir::new("skopeo");
    let source = temp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();

    // A three-layer image, and a two-platform index of two more images.
    let single = write_image(&source, 1, "amd64", 3);
    let amd = write_image(&source, 2, "amd64", 2);
    let arm = write_image(&source, 3, "arm64", 2);
    let index = write_index(
        &source,
        &[
            (amd.0.clone(), amd.1, "amd64"),
            (arm.0.clone(), arm.1, "arm64"),
        ],
    );

    let registry = server.addr.to_string();
    for (top, media_type, repo) in [
        (&single, OCI_MANIFEST, "skopeo/single"),
        (&index, OCI_INDEX, "skopeo/multi"),
    ] {
        write_layout(&source, media_type, top, "v1");
        let src = format!("oci:{}:v1", source.display());
        let dest = format!("docker://{registry}/{repo}:v1");
        let copy_in = skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &src,
            &dest,
        ]);
        assert_ok(&copy_in, "skopeo copy in");

        let inspect = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
        assert_ok(&inspect, "skopeo inspect");
        assert_eq!(
            sha256_digest(&inspect.stdout),
            top.0,
            "{repo}: manifest digest after push"
        );

        let out = temp.path().join(format!("out-{}", repo.replace('/', "-")));
        let back = format!("oci:{}:v1", out.display());
        let copy_out = skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &dest,
            &back,
        ]);
        assert_ok(&copy_out, "skopeo copy out");

        // Every blob that came back is byte-identical to what went in.
        let blobs = out.join("blobs/sha256");
        let mut count = 0;
        for entry in std::fs::read_dir(&blobs).unwrap() {
            let entry = entry.unwrap();
            let data = std::fs::read(entry.path()).unwrap();
            let name = entry.file_name().into_string().unwrap();
            assert_eq!(sha256_digest(&data), format!("sha256:{name}"));
            assert!(
                source.join("blobs/sha256").join(&name).exists(),
                "{name} was not pushed"
            );
            count += 1;
        }
        assert!(count >= 3, "{repo}: only {count} blobs came back");
    }

    let tags = server.get("/v2/skopeo/multi/tags/list").json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}
