//! Helpers shared by the storage tests.

#![allow(dead_code)]

use std::future::Future;

use berth_storage::{digest_of, Digest, DigestAlgorithm, ShardOptions};

/// Runs `f` on a fresh glommio executor and returns its output.
pub fn run<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor panicked")
}

/// Small segments and frequent checkpoints, to exercise rollover.
pub fn small_opts() -> ShardOptions {
    ShardOptions {
        segment_bytes: 4 << 20,
        checkpoint_every_bytes: 64 << 10,
        max_segments: None,
        hash_while_writing: true,
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// sha256 of `b`.
pub fn sha(b: &[u8]) -> Digest {
    digest_of(DigestAlgorithm::Sha256, b)
}

/// Copies every file of `src` into `dst` (one level of shard directories),
/// truncating the file named `cut` to `cut_at` bytes.
pub fn copy_tree(
    src: &std::path::Path,
    dst: &std::path::Path,
    cut: Option<(&std::path::Path, u64)>,
) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&from, &to, cut);
            continue;
        }
        match cut {
            Some((path, len)) if path == from => {
                let bytes = std::fs::read(&from).unwrap();
                std::fs::write(&to, &bytes[..len as usize]).unwrap();
            }
            _ => {
                std::fs::copy(&from, &to).unwrap();
            }
        }
    }
}

/// The shard's metadata log files, oldest first.
pub fn meta_logs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("meta-") && name.ends_with(".log")
        })
        .collect();
    logs.sort();
    logs
}
