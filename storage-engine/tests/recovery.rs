//! Reopen loops, torn tails, unknown versions and full disks.

mod common;

use std::collections::BTreeMap;

use berth_storage::{
    BlobLocation, Digest, Layout, ManifestLink, Reader, Shard, ShardOptions, StorageError, UploadId,
};
use common::{bytes, copy_tree, meta_logs, run, sha, small_opts};

async fn upload_blob(shard: &Shard, repo: &str, data: &[u8], pieces: usize) -> BlobLocation {
    let id = shard.create_upload(repo).await.unwrap();
    let step = data.len() / pieces.max(1) + 1;
    for part in data.chunks(step) {
        let mut app = shard.append_upload(&id).await.unwrap();
        for piece in part.chunks(100_003) {
            app.write(piece).await.unwrap();
        }
        app.finish().await.unwrap();
    }
    shard.commit_upload(&id, &sha(data)).await.unwrap()
}

fn link(digest: Digest, loc: BlobLocation) -> ManifestLink {
    ManifestLink {
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: loc.len(),
        location: loc,
        subject: None,
        artifact_type: None,
        annotations_json: None,
    }
}

#[test]
fn reopen_loop_reads_back_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let mut blobs: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
        let mut tags: BTreeMap<String, (Digest, Vec<u8>)> = BTreeMap::new();
        let mut open_upload: Option<(UploadId, Vec<u8>)> = None;

        for round in 0..8u64 {
            let (shard, report) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
            assert_eq!(report.blobs_indexed, blobs.len(), "round {round}: {report}");
            assert_eq!(report.bytes_cut, 0, "{report}");
            let reader = Reader::new(&layout, 1 << 20);

            for (d, data) in &blobs {
                let loc = shard.index_get(d).expect("indexed blob");
                assert_eq!(&reader.read_all(&loc).await.unwrap(), data);
                assert_eq!(shard.blob_link("app", d), Some(data.len() as u64));
            }
            for (tag, (d, data)) in &tags {
                assert_eq!(shard.tag("app", tag), Some(*d));
                let m = shard.manifest("app", d).unwrap();
                assert_eq!(&reader.read_all(&m.location).await.unwrap(), data);
            }

            // An upload left open last round resumes where it stopped.
            if let Some((id, mut data)) = open_upload.take() {
                assert_eq!(shard.upload(&id).unwrap().len, data.len() as u64);
                let more = bytes(round + 1000, 70_000);
                let mut app = shard.append_upload(&id).await.unwrap();
                app.write(&more).await.unwrap();
                app.finish().await.unwrap();
                data.extend_from_slice(&more);
                let d = sha(&data);
                let loc = shard.commit_upload(&id, &d).await.unwrap();
                shard.index_put(&d, loc).await.unwrap();
                shard.link_blob("app", &d, loc.len()).await.unwrap();
                blobs.insert(d, data);
            }

            for i in 0..3u64 {
                let seed = round * 10 + i;
                let data = bytes(seed, (seed as usize * 377_777) % 2_500_000);
                let loc = upload_blob(&shard, "app", &data, 1 + i as usize).await;
                let d = sha(&data);
                shard.index_put(&d, loc).await.unwrap();
                shard.link_blob("app", &d, loc.len()).await.unwrap();
                blobs.insert(d, data);
            }
            for i in 0..5u64 {
                let m = format!("{{\"round\":{round},\"i\":{i}}}").into_bytes();
                let d = sha(&m);
                let loc = shard.put_content(&m, &d).await.unwrap();
                shard.link_manifest("app", link(d, loc)).await.unwrap();
                let tag = format!("r{round}-{i}");
                shard.set_tag("app", &tag, &d).await.unwrap();
                tags.insert(tag, (d, m));
            }
            let gone = format!("r{round}-0");
            assert!(shard.remove_tag("app", &gone).await.unwrap());
            tags.remove(&gone);
            if let Some((&d, _)) = blobs.iter().next().filter(|_| round % 3 == 2) {
                assert!(shard.unlink_blob("app", &d).await.unwrap());
                assert!(shard.index_remove(&d).await.unwrap());
                blobs.remove(&d);
            }

            let id = shard.create_upload("app").await.unwrap();
            let data = bytes(round + 500, 1_500_000);
            let mut app = shard.append_upload(&id).await.unwrap();
            app.write(&data).await.unwrap();
            app.finish().await.unwrap();
            open_upload = Some((id, data));
            shard.close().await.unwrap();
        }
    });
}

#[test]
fn cut_segment_tail_at_every_offset_of_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let src2 = src.clone();
    let (locs, payloads) = run(move || async move {
        let layout = Layout::open_or_create(&src2, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let mut locs = Vec::new();
        let mut payloads = Vec::new();
        for i in 0..4u64 {
            let m = bytes(i, 300 + i as usize * 50);
            let d = sha(&m);
            let loc = shard.put_content(&m, &d).await.unwrap();
            shard.index_put(&d, loc).await.unwrap();
            locs.push(loc);
            payloads.push(m);
        }
        // As after a crash: no clean close, so the next open scans.
        drop(shard);
        (locs, payloads)
    });

    let last = *locs.last().unwrap();
    let seg_path = Layout::open_or_create(&src, 1)
        .unwrap()
        .segment_path(0, last.segment());
    let start = last.offset();
    let meaningful = 128 + last.len();
    let offsets: Vec<u64> = (0..=meaningful)
        .chain((meaningful + 1..4096).step_by(61))
        .map(|o| start + o)
        .collect();

    let base = tmp.path().to_path_buf();
    run(move || async move {
        for (n, &cut) in offsets.iter().enumerate() {
            let dst = base.join(format!("cut-{n}"));
            copy_tree(&src, &dst, Some((&seg_path, cut)));
            let layout = Layout::open_or_create(&dst, 1).unwrap();
            let (shard, report) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
            let reader = Reader::new(&layout, 0);

            for (loc, data) in locs.iter().zip(&payloads).take(locs.len() - 1) {
                assert_eq!(&reader.read_all(loc).await.unwrap(), data, "cut at {cut}");
            }
            let torn = cut < start + meaningful;
            let got = reader.read_all(&last).await;
            if torn {
                assert!(got.is_err(), "torn record served at cut {cut}");
                assert!(cut == start || report.bytes_cut > 0, "cut {cut}: {report}");
            } else {
                assert_eq!(&got.unwrap(), payloads.last().unwrap());
            }
            shard.close().await.unwrap();
            std::fs::remove_dir_all(&dst).unwrap();
        }
    });
}

#[test]
fn cut_metadata_log_at_every_offset_of_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let src2 = src.clone();
    let opts = ShardOptions::default();
    let d = sha(b"manifest");
    let (before, after) = run(move || async move {
        let layout = Layout::open_or_create(&src2, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .unwrap();
        for i in 0..10 {
            shard.set_tag("repo", &format!("t{i}"), &d).await.unwrap();
        }
        let before = shard.stats().meta_bytes;
        shard.set_tag("repo", "last", &d).await.unwrap();
        let after = shard.stats().meta_bytes;
        shard.close().await.unwrap();
        (before, after)
    });
    assert!(after > before);
    let log = meta_logs(&src.join("shard-0000")).pop().unwrap();

    let base = tmp.path().to_path_buf();
    run(move || async move {
        for cut in before..after {
            let dst = base.join(format!("cut-{cut}"));
            copy_tree(&src, &dst, Some((&log, cut)));
            let layout = Layout::open_or_create(&dst, 1).unwrap();
            let (shard, report) = Shard::open(&layout, 0, &opts).await.unwrap();
            // Zero bytes at the very end of the torn piece are not counted.
            assert!(report.bytes_cut <= cut - before, "cut {cut}: {report}");
            assert_eq!(report.log_frames, 10, "cut {cut}: {report}");
            for i in 0..10 {
                assert_eq!(shard.tag("repo", &format!("t{i}")), Some(d));
            }
            assert_eq!(shard.tag("repo", "last"), None, "cut {cut}");

            // Appends after a cut land where the cut was, and survive.
            shard.set_tag("repo", "after-cut", &d).await.unwrap();
            shard.close().await.unwrap();
            let (shard, report) = Shard::open(&layout, 0, &opts).await.unwrap();
            assert_eq!(report.bytes_cut, 0, "{report}");
            assert_eq!(shard.tag("repo", "after-cut"), Some(d));
            assert_eq!(shard.tag("repo", "last"), None);
            shard.close().await.unwrap();
            std::fs::remove_dir_all(&dst).unwrap();
        }
    });
}

#[test]
fn unknown_versions_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let m = b"{}".to_vec();
        let loc = shard.put_content(&m, &sha(&m)).await.unwrap();
        shard.set_tag("r", "t", &sha(&m)).await.unwrap();
        shard.close().await.unwrap();

        // A record written by a future version.
        let seg = layout.segment_path(0, loc.segment());
        let mut raw = std::fs::read(&seg).unwrap();
        raw[loc.offset() as usize + 4] = 9;
        std::fs::write(&seg, &raw).unwrap();
        let err = Reader::new(&layout, 0).read_all(&loc).await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::UnsupportedVersion {
                    what: "record",
                    found: 9,
                    ..
                }
            ),
            "{err}"
        );

        // A metadata log written by a future version.
        let log = meta_logs(&layout.shard_dir(0)).pop().unwrap();
        let mut raw = std::fs::read(&log).unwrap();
        raw[8] = 7;
        std::fs::write(&log, &raw).unwrap();
        let err = Shard::open(&layout, 0, &small_opts()).await.err().unwrap();
        assert!(
            matches!(
                err,
                StorageError::UnsupportedVersion {
                    what: "metadata log",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("version 7"), "{err}");
    });
}

#[test]
fn capacity_limit_fails_writes_with_no_space_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let opts = ShardOptions {
            segment_bytes: 2 << 20,
            max_segments: Some(2),
            ..small_opts()
        };
        let (shard, _) = Shard::open(&layout, 0, &opts).await.unwrap();
        let reader = Reader::new(&layout, 0);
        let mut stored = Vec::new();
        let err = loop {
            let m = bytes(stored.len() as u64, 200_000);
            match shard.put_content(&m, &sha(&m)).await {
                Ok(loc) => stored.push((loc, m)),
                Err(e) => break e,
            }
        };
        assert!(err.is_no_space(), "{err}");
        assert!(stored.len() >= 9, "only {} stored", stored.len());
        assert!(!shard.is_poisoned());

        // Uploads fail the same way, and the upload keeps its length.
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        let err = app.write(&bytes(1, 3 << 20)).await.unwrap_err();
        assert!(err.is_no_space(), "{err}");
        drop(app);
        assert_eq!(shard.upload(&id).unwrap().len, 0);

        for (loc, m) in &stored {
            assert_eq!(&reader.read_all(loc).await.unwrap(), m);
        }
        shard.close().await.unwrap();
        let (_shard, report) = Shard::open(&layout, 0, &opts).await.unwrap();
        assert_eq!(report.bytes_cut, 0, "{report}");
        for (loc, m) in &stored {
            assert_eq!(&reader.read_all(loc).await.unwrap(), m);
        }
    });
}

#[test]
fn a_shard_opens_once_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (_shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let err = Shard::open(&layout, 0, &small_opts()).await.err().unwrap();
        assert!(matches!(err, StorageError::ShardLocked { .. }), "{err}");
    });
}

#[test]
fn failed_sync_poisons_writes_but_keeps_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let m = b"{\"a\":1}".to_vec();
        let d = sha(&m);
        let loc = shard.put_content(&m, &d).await.unwrap();
        shard.index_put(&d, loc).await.unwrap();

        shard.inject_sync_failure();
        let err = shard.set_tag("r", "t", &d).await.unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        assert!(shard.is_poisoned());
        let err = shard.put_content(b"x", &sha(b"x")).await.unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        let err = shard.create_upload("r").await.unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");

        // Reads are still served.
        assert_eq!(shard.index_get(&d), Some(loc));
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&loc).await.unwrap(), m);
        drop(shard);

        // Reopening clears the poison; what was acknowledged is there.
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert!(!shard.is_poisoned());
        assert_eq!(shard.index_get(&d), Some(loc));
        shard.set_tag("r", "t", &d).await.unwrap();
    });
}

/// Mounts a small tmpfs when the tests run as root; `None` otherwise.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_filesystem_fails_with_no_space_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    let Some(fs) = SmallFs::mount(&mnt, "24m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let dir = fs.0.clone();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let opts = ShardOptions {
            segment_bytes: 2 << 20,
            ..small_opts()
        };
        let (shard, _) = Shard::open(&layout, 0, &opts).await.unwrap();
        let reader = Reader::new(&layout, 0);
        let mut stored = Vec::new();
        let err = loop {
            let m = bytes(stored.len() as u64, 300_000);
            let d = sha(&m);
            let loc = match shard.put_content(&m, &d).await {
                Ok(loc) => loc,
                Err(e) => break e,
            };
            if let Err(e) = shard.index_put(&d, loc).await {
                break e;
            }
            stored.push((d, loc, m));
        };
        assert!(err.is_no_space(), "{err}");
        assert!(!shard.is_poisoned());
        assert!(stored.len() > 10, "only {} stored", stored.len());
        for (d, loc, m) in &stored {
            assert_eq!(shard.index_get(d), Some(*loc));
            assert_eq!(&reader.read_all(loc).await.unwrap(), m);
        }
        drop(shard);

        let (shard, report) = Shard::open(&layout, 0, &opts).await.unwrap();
        assert_eq!(report.blobs_indexed, stored.len(), "{report}");
        for (d, loc, m) in &stored {
            assert_eq!(shard.index_get(d), Some(*loc));
            assert_eq!(&reader.read_all(loc).await.unwrap(), m);
        }
    });
}

#[test]
fn damaged_checkpoint_without_older_logs_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let d = sha(b"m");
        for i in 0..50 {
            shard.set_tag("r", &format!("t{i}"), &d).await.unwrap();
        }
        shard.checkpoint().await.unwrap();
        shard.set_tag("r", "after", &d).await.unwrap();
        shard.close().await.unwrap();

        // The checkpoint alone holds t0..t49: reopening uses it.
        let (shard, report) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert!(report.checkpoint.is_some(), "{report}");
        assert_eq!(shard.tags("r").unwrap().len(), 51);
        shard.close().await.unwrap();

        let ckpt = std::fs::read_dir(layout.shard_dir(0))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dat"))
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("ckpt-")
            })
            .unwrap();
        let mut raw = std::fs::read(&ckpt).unwrap();
        raw[40] ^= 0xff;
        std::fs::write(&ckpt, &raw).unwrap();
        let err = Shard::open(&layout, 0, &small_opts()).await.err().unwrap();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    });
}

#[test]
fn a_lost_segment_header_does_not_hide_synced_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let first = bytes(21, 1_700_000);
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&first).await.unwrap();
        app.finish().await.unwrap();
        let segment = shard.stats().segments[0].id;
        drop(shard);

        // As if the header write had never reached the disk.
        let path = layout.segment_path(0, segment);
        let mut raw = std::fs::read(&path).unwrap();
        raw[..4096].fill(0);
        std::fs::write(&path, &raw).unwrap();

        for _ in 0..2 {
            let (shard, report) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
            assert_eq!(report.uploads_truncated, 0, "{report}");
            assert_eq!(shard.upload(&id).unwrap().len, first.len() as u64);
            drop(shard);
        }

        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let more = bytes(22, 10_000);
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&more).await.unwrap();
        app.finish().await.unwrap();
        let mut all = first.clone();
        all.extend_from_slice(&more);
        let loc = shard.commit_upload(&id, &sha(&all)).await.unwrap();
        assert_eq!(Reader::new(&layout, 0).read_all(&loc).await.unwrap(), all);
    });
}
