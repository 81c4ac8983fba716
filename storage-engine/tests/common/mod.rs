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
