//! Dead space goes back to the file system, and nothing live goes with it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use berth_storage::{
    check_segments, BlobLocation, Layout, Reader, Shard, ShardOptions, StorageError,
};
use common::{bytes, run, sha, small_opts};

/// Bytes the file system holds for the shard's segment files.
fn allocated(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().blocks() * 512)
        .sum()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    files.sort();
    files
}

/// Uploads `blob` as one committed, indexed blob.
async fn put_blob(shard: &Shard, blob: &[u8]) -> BlobLocation {
    let id = shard.create_upload("r").await.unwrap();
    let mut app = shard.append_upload(&id).await.unwrap();
    for piece in blob.chunks(300_000) {
        app.write(piece).await.unwrap();
    }
    app.finish().await.unwrap();
    let digest = sha(blob);
    let loc = shard.commit_upload(&id, &digest).await.unwrap();
    shard.index_put(&digest, loc).await.unwrap();
    loc
}

/// Starts an upload, appends `len` bytes and cancels it.
async fn cancelled_upload(shard: &Shard, seed: u64, len: usize) {
    let id = shard.create_upload("r").await.unwrap();
    let mut app = shard.append_upload(&id).await.unwrap();
    for piece in bytes(seed, len).chunks(500_000) {
        app.write(piece).await.unwrap();
    }
    app.finish().await.unwrap();
    shard.cancel_upload(&id).await.unwrap();
}

async fn settle() {
    glommio::timer::sleep(Duration::from_millis(1100)).await;
}

fn big_segments() -> ShardOptions {
    ShardOptions {
        segment_bytes: 64 << 20,
        checkpoint_every_bytes: 8 << 20,
        ..small_opts()
    }
}

#[test]
fn cancelled_upload_space_is_punched_and_live_blobs_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let shard_dir = layout.shard_dir(0);
        let (shard, _) = Shard::open(&layout, 0, &big_segments()).await.unwrap();

        let first = bytes(1, 3_000_000);
        let first_loc = put_blob(&shard, &first).await;
        let base = allocated(&shard_dir);
        cancelled_upload(&shard, 2, 20_000_000).await;
        let last = bytes(3, 2_000_000);
        let last_loc = put_blob(&shard, &last).await;

        // Not yet: the records must be dead for a moment first.
        let early = shard.reclaim().await.unwrap();
        assert_eq!(early.bytes_punched, 0);
        assert!(early.records_waiting > 0);

        settle().await;
        let before = allocated(&shard_dir);
        let report = shard.reclaim().await.unwrap();
        let after = allocated(&shard_dir);
        assert!(report.bytes_punched >= 20_000_000, "{report:?}");
        assert_eq!(report.records_waiting, 0);
        assert!(
            before - after >= 19 << 20,
            "allocated {before} -> {after} (preallocated base {base})"
        );
        assert_eq!(shard.stats().reclaimed_bytes, report.bytes_punched);

        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&first_loc).await.unwrap(), first);
        assert_eq!(reader.read_all(&last_loc).await.unwrap(), last);

        // Nothing more to do, and a clean reopen keeps everything.
        assert_eq!(shard.reclaim().await.unwrap().bytes_punched, 0);
        shard.close().await.unwrap();
        let (shard, _) = Shard::open(&layout, 0, &big_segments()).await.unwrap();
        settle().await;
        let again = shard.reclaim().await.unwrap();
        assert_eq!(again.bytes_punched, 0, "re-punches are not counted");
        assert_eq!(allocated(&shard_dir), after);
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.verify(&first_loc).await.unwrap(), sha(&first));
        assert_eq!(reader.verify(&last_loc).await.unwrap(), sha(&last));

        let check = check_segments(&layout);
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert!(check.records >= 6, "{check:?}");
    });
}

#[test]
fn fully_dead_segments_are_deleted_and_their_capacity_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let shard_dir = layout.shard_dir(0);
        let opts = ShardOptions {
            max_segments: Some(4),
            ..small_opts()
        };
        let (shard, _) = Shard::open(&layout, 0, &opts).await.unwrap();
        let keep = bytes(7, 500_000);
        let keep_loc = put_blob(&shard, &keep).await;

        // Fill the shard to its capacity limit with an upload, then cancel.
        let id = shard.create_upload("r").await.unwrap();
        let mut app = shard.append_upload(&id).await.unwrap();
        let mut full = false;
        for i in 0..64u64 {
            if let Err(e) = app.write(&bytes(i, 500_000)).await {
                assert!(matches!(e, StorageError::NoSpace { .. }), "{e}");
                full = true;
                break;
            }
        }
        assert!(full, "the capacity limit was never reached");
        drop(app);
        let err = put_blob_result(&shard, &bytes(8, 4_000_000)).await;
        assert!(matches!(err, Err(StorageError::NoSpace { .. })), "{err:?}");
        assert_eq!(segment_files(&shard_dir).len(), 4);

        settle().await;
        let report = shard.reclaim().await.unwrap();
        // The first segment holds the live blob; the middle ones held only
        // the dropped append and are gone; the newest is still active.
        assert!(report.segments_deleted >= 2, "{report:?}");
        assert_eq!(
            segment_files(&shard_dir).len(),
            4 - report.segments_deleted as usize
        );
        assert_eq!(shard.stats().segments_deleted, report.segments_deleted);

        // The space is usable again.
        let more = bytes(9, 4_000_000);
        let more_loc = put_blob(&shard, &more).await;
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&keep_loc).await.unwrap(), keep);
        assert_eq!(reader.read_all(&more_loc).await.unwrap(), more);
        shard.close().await.unwrap();

        let (shard, report) = Shard::open(&layout, 0, &opts).await.unwrap();
        assert_eq!(report.segments, segment_files(&shard_dir).len(), "{report}");
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.verify(&keep_loc).await.unwrap(), sha(&keep));
        assert_eq!(reader.verify(&more_loc).await.unwrap(), sha(&more));
        drop(shard);
    });
}

async fn put_blob_result(shard: &Shard, blob: &[u8]) -> Result<BlobLocation, StorageError> {
    let id = shard.create_upload("r").await?;
    let mut app = shard.append_upload(&id).await?;
    app.write(blob).await?;
    app.finish().await?;
    shard.commit_upload(&id, &sha(blob)).await
}

#[test]
fn a_dead_segment_file_left_by_a_crash_is_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let shard_dir = layout.shard_dir(0);
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        cancelled_upload(&shard, 1, 9_000_000).await;
        let keep = bytes(2, 100_000);
        let keep_loc = put_blob(&shard, &keep).await;
        let files = segment_files(&shard_dir);
        let saved: Vec<(std::path::PathBuf, Vec<u8>)> = files
            .iter()
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect();

        settle().await;
        let report = shard.reclaim().await.unwrap();
        assert!(report.segments_deleted >= 1, "{report:?}");
        let deleted = report.segments_deleted;
        shard.close().await.unwrap();

        // As if the process had died after logging the deletion and before
        // removing the files.
        for (path, bytes) in &saved {
            if !path.exists() {
                std::fs::write(path, bytes).unwrap();
            }
        }
        assert_eq!(segment_files(&shard_dir).len(), files.len());
        let (shard, _) = Shard::open(&layout, 0, &small_opts()).await.unwrap();
        assert_eq!(
            segment_files(&shard_dir).len(),
            files.len() - deleted as usize,
        );
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&keep_loc).await.unwrap(), keep);
        assert_eq!(shard.reclaim().await.unwrap().segments_deleted, 0);
        shard.close().await.unwrap();
    });
}

#[test]
fn records_written_over_a_punched_tail_stay_live_across_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let first = bytes(1, 1_000_000);
    let (dir2, first2) = (dir.clone(), first.clone());

    // One process: a live blob, then a dead tail that is punched away;
    // then it dies without closing.
    let first_loc = run(move || async move {
        let layout = Layout::open_or_create(&dir2, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &big_segments()).await.unwrap();
        let loc = put_blob(&shard, &first2).await;
        cancelled_upload(&shard, 2, 5_000_000).await;
        settle().await;
        let report = shard.reclaim().await.unwrap();
        assert!(report.bytes_punched >= 5_000_000, "{report:?}");
        loc
    });

    // The next process resumes after the live blob, over the punched
    // blocks, and dies too.
    let (dir3, first3) = (dir.clone(), first.clone());
    let second = bytes(3, 3_000_000);
    let second3 = second.clone();
    let second_loc = run(move || async move {
        let layout = Layout::open_or_create(&dir3, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &big_segments()).await.unwrap();
        let loc = put_blob(&shard, &second3).await;
        assert_eq!(loc.segment(), first_loc.segment());
        settle().await;
        shard.reclaim().await.unwrap();
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.read_all(&loc).await.unwrap(), second3);
        assert_eq!(reader.read_all(&first_loc).await.unwrap(), first3);
        let live: u64 = shard.stats().segments.iter().map(|s| s.live_bytes).sum();
        assert!(live > 4_000_000, "new records counted dead: {live}");
        loc
    });

    // And again: the old dead marks must not come back from the log.
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &big_segments()).await.unwrap();
        settle().await;
        shard.reclaim().await.unwrap();
        let reader = Reader::new(&layout, 0);
        assert_eq!(reader.verify(&second_loc).await.unwrap(), sha(&second));
        assert_eq!(reader.verify(&first_loc).await.unwrap(), sha(&first));
        let live: u64 = shard.stats().segments.iter().map(|s| s.live_bytes).sum();
        assert!(live > 4_000_000, "new records counted dead: {live}");
        shard.close().await.unwrap();
    });
}
