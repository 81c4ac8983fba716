//! Writes, reopens and reads back through the public API.

mod common;

use berth_storage::{Layout, ManifestLink, Reader, Shard, StorageError};
use common::{bytes, run, sha, small_opts};

#[test]
fn blob_upload_commit_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 2).unwrap();
        let (shard, report) = Shard::open(&layout, 1, &small_opts()).await.unwrap();
        assert_eq!(report.blobs_indexed, 0);

        let blob = bytes(1, 3_000_000);
        let id = shard.create_upload("library/alpine").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        for piece in blob[..2_000_000].chunks(65_536) {
            app.write(piece).await.unwrap();
        }
        assert_eq!(app.finish().await.unwrap(), 2_000_000);
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&blob[2_000_000..]).await.unwrap();
        assert_eq!(app.finish().await.unwrap(), 3_000_000);

        let digest = sha(&blob);
        let loc = shard.commit_upload(&id, &digest).await.unwrap();
        assert_eq!(loc.len(), 3_000_000);
        shard.index_put(&digest, loc).await.unwrap();
        shard
            .link_blob("library/alpine", &digest, 3_000_000)
            .await
            .unwrap();

        let reader = Reader::new(&layout, 8 << 20);
        assert_eq!(reader.read_all(&loc).await.unwrap(), blob);
        let mut r = reader.read_range(&loc, 1_000_000, 2_500_001).await.unwrap();
        let mut got = Vec::new();
        while let Some(c) = r.next_chunk().await.unwrap() {
            assert!(c.len() <= 1 << 20);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, &blob[1_000_000..2_500_001]);
        assert_eq!(reader.verify(&loc).await.unwrap(), digest);

        let manifest = br#"{"schemaVersion":2}"#.to_vec();
        let md = sha(&manifest);
        let mloc = shard.put_content(&manifest, &md).await.unwrap();
        shard
            .link_manifest(
                "library/alpine",
                ManifestLink {
                    digest: md,
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    size: manifest.len() as u64,
                    location: mloc,
                    subject: Some(digest),
                    artifact_type: None,
                    annotations_json: None,
                },
            )
            .await
            .unwrap();
        shard.set_tag("library/alpine", "3.20", &md).await.unwrap();
        shard.close().await.unwrap();

        let (shard, report) = Shard::open(&layout, 1, &small_opts()).await.unwrap();
        assert_eq!(report.blobs_indexed, 1, "{report}");
        assert_eq!(shard.index_get(&digest), Some(loc));
        assert_eq!(shard.blob_link("library/alpine", &digest), Some(3_000_000));
        assert_eq!(shard.tag("library/alpine", "3.20"), Some(md));
        assert_eq!(shard.tags("library/alpine").unwrap(), vec!["3.20"]);
        assert_eq!(shard.referrers("library/alpine", &digest).len(), 1);
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&mloc).await.unwrap(), manifest);
        assert_eq!(reader.read_all(&loc).await.unwrap(), blob);

        assert!(shard.unlink_manifest("library/alpine", &md).await.unwrap());
        assert_eq!(shard.tag("library/alpine", "3.20"), None);
    });
}

#[test]
fn digest_mismatch_leaves_upload_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(b"hello").await.unwrap();
        app.finish().await.unwrap();

        let wrong = sha(b"world");
        let err = shard.commit_upload(&id, &wrong).await.unwrap_err();
        assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
        assert_eq!(shard.upload(&id).unwrap().len, 5);
        shard.commit_upload(&id, &sha(b"hello")).await.unwrap();
        assert!(shard.upload(&id).is_none());
    });
}

#[test]
fn dead_space_is_accounted_per_segment_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();

        let m = b"{\"config\":{}}".to_vec();
        let mloc = shard.put_content(&m, &sha(&m)).await.unwrap();

        let blob = bytes(9, 2_500_000);
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&blob).await.unwrap();
        app.finish().await.unwrap();
        let bloc = shard.commit_upload(&id, &sha(&blob)).await.unwrap();

        // Cancelled, and dropped without finish: both dead at once.
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&bytes(3, 1_200_000)).await.unwrap();
        app.finish().await.unwrap();
        shard.cancel_upload(&id).await.unwrap();
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&bytes(4, 1_500_000)).await.unwrap();
        drop(app);
        assert_eq!(shard.upload(&id).unwrap().len, 0);

        let live = |s: &Shard| -> (u64, u64) {
            let st = s.stats();
            let written = st.segments.iter().map(|x| x.written_bytes).sum();
            let live = st.segments.iter().map(|x| x.live_bytes).sum();
            (written, live)
        };
        let (written, before) = live(&shard);
        assert!(before < written, "{before} of {written}");

        shard.mark_dead(&mloc).await.unwrap();
        shard.mark_dead(&bloc).await.unwrap();
        let headers = 4096 * shard.stats().segments.len() as u64;
        assert_eq!(live(&shard).1, headers);
        shard.close().await.unwrap();

        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert_eq!(live(&shard).1, headers);
    });
}

#[test]
fn sha512_blobs_and_manifests_work_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        use berth_storage::{digest_of, DigestAlgorithm};
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        let blob = bytes(5, 1_300_000);
        let d = digest_of(DigestAlgorithm::Sha512, &blob);
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        app.write(&blob).await.unwrap();
        app.finish().await.unwrap();
        let loc = shard.commit_upload(&id, &d).await.unwrap();
        shard.index_put(&d, loc).await.unwrap();

        let m = b"{}".to_vec();
        let md = digest_of(DigestAlgorithm::Sha512, &m);
        let mloc = shard.put_content(&m, &md).await.unwrap();
        shard.close().await.unwrap();

        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert_eq!(shard.index_get(&d), Some(loc));
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.verify(&loc).await.unwrap(), d);
        assert_eq!(reader.verify(&mloc).await.unwrap(), md);
    });
}

#[test]
fn restarts_resume_the_newest_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let mut locs = Vec::new();
        for i in 0..5u64 {
            let (shard, report) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
            // A clean close records where the segment ends; a drop does not.
            let closed_cleanly = i > 0 && (i - 1) % 2 == 0;
            let want = if i == 0 || closed_cleanly { 0 } else { 1 };
            assert_eq!(report.segments_scanned, want, "open {i}: {report}");
            let m = bytes(i, 1000);
            locs.push((shard.put_content(&m, &sha(&m)).await.unwrap(), m));
            if i % 2 == 0 {
                shard.close().await.unwrap();
            } else {
                drop(shard);
            }
        }
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert_eq!(shard.stats().segments.len(), 1, "{:?}", shard.stats());
        let reader = Reader::new(&layout, 0);
        for (loc, m) in &locs {
            assert_eq!(loc.segment(), locs[0].0.segment());
            assert_eq!(&reader.read_all(loc).await.unwrap(), m);
        }
    });
}
