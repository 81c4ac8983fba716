//! `berth check`: a clean data directory passes; bytes corrupted on disk
//! are found and named with digest and repository; `--repair` unlinks
//! them so berth never serves them.

mod common;

use std::path::Path;
use std::process::Command;

use common::{image_manifest, payload, Server};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn berth_check(dir: &Path, repair: bool) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .arg("check")
        .arg("--data-dir")
        .arg(dir)
        .env("BERTH_LOG", "error");
    if repair {
        command.arg("--repair");
    }
    let output = command.output().expect("berth check runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Flips one byte of the first occurrence of `needle` in any segment
/// file under `dir`; returns whether it found one.
fn corrupt_on_disk(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + needle.len() / 2] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            return true;
        }
    }
    false
}

#[test]
fn check_finds_corrupted_blob_and_repair_unlinks_it() {
    let mut server = Server::start();
    let good = payload(1, 30_000);
    let bad = payload(2, 30_000);
    let good_digest = server.push_blob("scrub/app", &good);
    let bad_digest = server.push_blob("scrub/app", &bad);
    let config = server.push_blob("scrub/app", b"{}");
    let manifest = image_manifest((&config, 2), &[(&good_digest, good.len())]);
    server.push_manifest("scrub/app", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(server.stop(), Some(0));

    let (ok, report) = berth_check(&server.data_dir, false);
    assert!(ok, "clean directory reported problems:\n{report}");

    assert!(
        corrupt_on_disk(&server.data_dir, &bad[1000..1064]),
        "payload not found on disk"
    );
    let (ok, report) = berth_check(&server.data_dir, false);
    assert!(!ok, "corruption went unnoticed:\n{report}");
    assert!(report.contains(&bad_digest), "{report}");
    assert!(report.contains("scrub/app"), "{report}");
    assert!(
        !report.contains(&format!("digest={good_digest}")),
        "{report}"
    );

    // The damaged record itself is named too, with where it lies.
    assert!(report.contains("record CRC"), "{report}");

    let (_, repaired) = berth_check(&server.data_dir, true);
    assert!(repaired.contains("repaired 1"), "{repaired}");
    // Nothing reachable is damaged any more; the dead record stays on
    // disk (and is reported) until compaction rewrites its segment.
    let (_, report) = berth_check(&server.data_dir, false);
    assert!(
        !report.contains("repository=scrub/app"),
        "problems left after repair:\n{report}"
    );

    server.start_again();
    assert_eq!(
        server
            .get(&format!("/v2/scrub/app/blobs/{bad_digest}"))
            .status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/v2/scrub/app/blobs/{good_digest}"))
            .body,
        good
    );
    assert_eq!(server.get("/v2/scrub/app/manifests/v1").body, manifest);
}

/// The metadata checkpoint files under a data directory.
fn checkpoint_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with("ckpt-") && name.ends_with(".dat") {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn check_passes_a_clean_directory_with_checkpoints() {
    let temp = common::TempDir::new("scrub-ckpt");
    let config = temp.path().join("berth.toml");
    std::fs::write(
        &config,
        "[server]\nexecutors = 1\n\
         [storage]\nshards = 1\ncheckpoint_every_bytes = 1048576\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut server = Server::start_with(&["--config", &config_arg]);

    // Manifest annotations live in the metadata log, so a few manifests
    // with large ones grow it past the 1 MiB checkpoint threshold fast.
    let config_digest = server.push_blob("scrub/ckpt", b"{}");
    let layer = payload(3, 10_000);
    let layer_digest = server.push_blob("scrub/ckpt", &layer);
    let note = "n".repeat(60_000);
    for i in 0..40 {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": 2
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest, "size": layer.len()
            }],
            "annotations": { "note": format!("{i}{note}") }
        }))
        .unwrap();
        server.push_manifest("scrub/ckpt", &format!("v{i}"), OCI_MANIFEST, &manifest);
    }
    assert_eq!(server.stop(), Some(0));
    let checkpoints = checkpoint_files(&server.data_dir);
    assert!(!checkpoints.is_empty(), "no shard checkpointed");

    let (ok, report) = berth_check(&server.data_dir, false);
    assert!(ok, "clean directory with {checkpoints:?} failed:\n{report}");
    assert!(!report.contains("CORRUPT"), "{report}");
}
