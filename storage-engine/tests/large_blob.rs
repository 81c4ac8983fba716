//! A blob of several GiB streams through an upload and back out in bounded
//! memory. Ignored by default (disk and time); run it with
//! `cargo test --release -p berth-storage --test large_blob -- --ignored`.
//! `BERTH_LARGE_GIB` sets the size (default 3).

mod common;

use berth_storage::{DigestAlgorithm, DigestHasher, Layout, Reader, Shard, ShardOptions};
use common::run;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Fills `buf` with the stream's bytes at piece number `n`.
fn piece(buf: &mut [u8], n: u64) {
    let mut x = (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in buf.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
}

#[test]
#[ignore = "writes several GiB; run explicitly in release"]
fn several_gib_blob_streams_in_bounded_memory() {
    let gib: u64 = std::env::var("BERTH_LARGE_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let layout = Layout::open_or_create(&dir, 1).unwrap();
        let (shard, _) = Shard::open(&layout, 0, &ShardOptions::default())
            .await
            .unwrap();
        let piece_bytes = 4usize << 20;
        let pieces = gib * 1024 / 4;
        let mut buf = vec![0u8; piece_bytes];
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        let start_rss = rss_bytes();
        let mut peak = start_rss;

        // One append per GiB, as a chunked upload would do.
        let id = shard.create_upload("big").await.unwrap();
        let per_append = 256;
        let mut n = 0;
        while n < pieces {
            let mut app = shard.append_upload(&id).await.unwrap();
            for _ in 0..per_append.min(pieces - n) {
                piece(&mut buf, n);
                hasher.update(&buf);
                app.write(&buf).await.unwrap();
                n += 1;
                peak = peak.max(rss_bytes());
            }
            app.finish().await.unwrap();
        }
        let digest = hasher.finish();
        let loc = shard.commit_upload(&id, &digest).await.unwrap();
        assert_eq!(loc.len(), gib << 30);

        let reader = Reader::new(&layout, 16 << 20);
        let mut read = reader.read_range(&loc, 0, loc.len()).await.unwrap();
        let mut check = DigestHasher::new(DigestAlgorithm::Sha256);
        let mut total = 0u64;
        while let Some(chunk) = read.next_chunk().await.unwrap() {
            total += chunk.len() as u64;
            check.update(&chunk);
            peak = peak.max(rss_bytes());
        }
        assert_eq!(total, loc.len());
        assert_eq!(check.finish(), digest);
        let growth = peak.saturating_sub(start_rss);
        eprintln!("{gib} GiB blob: peak RSS growth {} MiB", growth >> 20);
        assert!(growth < 128 << 20, "memory grew by {growth} bytes");
        shard.close().await.unwrap();
    });
}
