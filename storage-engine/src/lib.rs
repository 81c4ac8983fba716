//! berth-storage: the log-structured segment store under berth.
//!
//! A data directory ([`Layout`]) holds a fixed number of shards. Each
//! [`Shard`] lives on one glommio executor and owns:
//!
//! - a log of preallocated **segment** files written with direct I/O, where
//!   every blob chunk, manifest and blob map is a CRC-checked record (the
//!   crate README describes the header);
//! - a **metadata log** of CRC-framed operations (upload sessions, blob
//!   index entries, repository links, tags), with background
//!   **checkpoints** that bound recovery time;
//! - a partition of the in-memory **blob index** (digest to
//!   [`BlobLocation`]), about 50 bytes per sha256 entry.
//!
//! Every write returns only after its bytes and the records that make them
//! reachable are fdatasync'ed; concurrent writers share syncs (group
//! commit). A failed sync poisons the shard. A [`Reader`] on any executor
//! reads any shard's locations, checking every record's CRC.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod checkpoint;
mod digest;
mod error;
mod index;
mod layout;
mod location;
mod meta;
mod metalog;
mod notify;
mod reader;
mod reclaim;
mod record;
mod recovery;
mod segment;
mod segment_check;
mod shard;
mod state;
mod sync_times;
mod types;
mod upload;

pub use digest::{digest_of, Digest, DigestAlgorithm, DigestError, DigestHasher};
pub use error::{Result, StorageError};
pub use layout::{Layout, MAX_SHARDS};
pub use location::{BlobLocation, MAX_BLOB_BYTES};
pub use reader::{BlobRead, Reader, MAX_READ_ALL_BYTES, READ_CHUNK_BYTES};
pub use reclaim::ReclaimReport;
pub use record::{BLOCK_BYTES, CHUNK_PAYLOAD_BYTES, MAX_CONTENT_BYTES};
pub use segment_check::{check_segments, BadRecord, SegmentCheck};
pub use shard::{Shard, CLOSE_CHECKPOINT_BYTES};
pub use sync_times::take_sync_durations;
pub use types::{
    ManifestLink, RecoveryReport, SegmentStats, ShardOptions, ShardStats, UploadId, UploadIdError,
    UploadInfo, MIN_SEGMENT_BYTES,
};
pub use upload::UploadAppend;

/// Measurement hooks for the bench binary and the memory tests; not part of
/// the supported API.
#[doc(hidden)]
pub mod probe {
    use crate::index::SortedIndex;
    use crate::location::BlobLocation;

    /// A bare sha256 blob index, to measure what one entry costs.
    pub struct IndexProbe(SortedIndex<32>);

    impl Default for IndexProbe {
        fn default() -> Self {
            IndexProbe(SortedIndex::new())
        }
    }

    impl IndexProbe {
        /// Inserts `key` with a location derived from `n`.
        pub fn insert(&mut self, key: &[u8; 32], n: u64) {
            let loc = BlobLocation::new((n % 7) as u16, n as u32, (n >> 8) as u32, n);
            self.0.insert(key, &loc);
        }

        /// True if `key` is present.
        pub fn contains(&self, key: &[u8; 32]) -> bool {
            self.0.get(key).is_some()
        }

        /// Entries.
        pub fn len(&self) -> usize {
            self.0.len()
        }

        /// True when empty.
        pub fn is_empty(&self) -> bool {
            self.0.len() == 0
        }

        /// Heap bytes as the index counts them.
        pub fn heap_bytes(&self) -> usize {
            self.0.heap_bytes()
        }
    }
}
