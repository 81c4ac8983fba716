//! Plain values the shard API takes and returns.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::digest::Digest;
use crate::location::BlobLocation;

/// Tuning of one shard.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// Size of each preallocated segment file. At least 2 MiB; records
    /// larger than a segment are refused.
    pub segment_bytes: u64,
    /// A checkpoint starts when the metadata log has grown this much since
    /// the last one, or a quarter of the last checkpoint's size if that is
    /// more; this bounds the log replayed at recovery to a fraction of the
    /// state.
    pub checkpoint_every_bytes: u64,
    /// Capacity limit: the most segment files this shard may hold. Creating
    /// one more fails with [`crate::StorageError::NoSpace`]. `None`: only
    /// the disk limits it.
    pub max_segments: Option<u32>,
    /// Hash upload bytes as they arrive (the default). When false, commit
    /// re-reads the upload to hash it, as it does after a restart.
    pub hash_while_writing: bool,
}

/// The smallest accepted segment size.
pub const MIN_SEGMENT_BYTES: u64 = 2 << 20;

impl Default for ShardOptions {
    fn default() -> ShardOptions {
        ShardOptions {
            segment_bytes: 256 << 20,
            checkpoint_every_bytes: 8 << 20,
            max_segments: None,
            hash_while_writing: true,
        }
    }
}

/// The id of an upload session: the shard, a sequence number and an
/// unguessable tag.
///
/// Its text form (36 lower-case hex digits) is safe in a URL path and
/// names the shard, so any executor can route a request to the owner.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId {
    pub(crate) shard: u16,
    pub(crate) seq: u64,
    pub(crate) tag: u64,
}

impl UploadId {
    /// The shard that owns the upload.
    pub fn shard(&self) -> u16 {
        self.shard
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}{:016x}{:016x}", self.shard, self.seq, self.tag)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({self})")
    }
}

/// Why an upload id string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed upload id")]
pub struct UploadIdError;

impl FromStr for UploadId {
    type Err = UploadIdError;

    fn from_str(s: &str) -> Result<UploadId, UploadIdError> {
        if s.len() != 36 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UploadIdError);
        }
        let shard = u16::from_str_radix(&s[0..4], 16).map_err(|_| UploadIdError)?;
        let seq = u64::from_str_radix(&s[4..20], 16).map_err(|_| UploadIdError)?;
        let tag = u64::from_str_radix(&s[20..36], 16).map_err(|_| UploadIdError)?;
        Ok(UploadId { shard, seq, tag })
    }
}

/// What is known about an open upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadInfo {
    /// The repository the upload was started in.
    pub repo: String,
    /// Bytes durably appended so far.
    pub len: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_secs: u64,
    /// Time of the last durable append, seconds since the Unix epoch.
    pub updated_secs: u64,
}

/// A manifest linked into a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestLink {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type (`mediaType` or the `Content-Type` it was pushed with).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where [`crate::Shard::put_content`] stored its bytes.
    pub location: BlobLocation,
    /// The `subject` it refers to, for the referrers API.
    pub subject: Option<Digest>,
    /// Its `artifactType` (or config media type), for referrers.
    pub artifact_type: Option<String>,
    /// Its `annotations` object, verbatim JSON, for referrers responses.
    pub annotations_json: Option<String>,
}

/// What [`crate::Shard::open`] found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The shard.
    pub shard: u16,
    /// Segment files present.
    pub segments: usize,
    /// Segments that were not sealed and were scanned record by record.
    pub segments_scanned: usize,
    /// Valid records found in the scanned segments.
    pub records_scanned: u64,
    /// The checkpoint generation loaded, if any.
    pub checkpoint: Option<u32>,
    /// Frames read from the checkpoint.
    pub checkpoint_frames: u64,
    /// Metadata log frames replayed.
    pub log_frames: u64,
    /// Blobs in the index after recovery.
    pub blobs_indexed: usize,
    /// Repositories with links or tags.
    pub repositories: usize,
    /// Open uploads.
    pub uploads: usize,
    /// Uploads shortened because their last chunks were damaged.
    pub uploads_truncated: usize,
    /// Bytes of torn or corrupt data cut off (metadata log tail and
    /// damaged segment blocks).
    pub bytes_cut: u64,
    /// One line per cut: where and why.
    pub cuts: Vec<String>,
    /// Wall time of the recovery.
    pub duration: Duration,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {}: {} segments ({} scanned, {} records), checkpoint {}, \
             {} log frames, {} blobs indexed, {} repositories, {} uploads, \
             {} bytes cut, {:.3}s",
            self.shard,
            self.segments,
            self.segments_scanned,
            self.records_scanned,
            match self.checkpoint {
                Some(g) => format!("#{g} ({} frames)", self.checkpoint_frames),
                None => "none".to_string(),
            },
            self.log_frames,
            self.blobs_indexed,
            self.repositories,
            self.uploads,
            self.bytes_cut,
            self.duration.as_secs_f64()
        )
    }
}

/// Space accounting of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStats {
    /// Segment id.
    pub id: u32,
    /// Bytes reserved by records (header block included).
    pub written_bytes: u64,
    /// Written bytes not marked dead.
    pub live_bytes: u64,
    /// No longer appended to.
    pub sealed: bool,
}

/// A snapshot of a shard's counters.
#[derive(Clone, Debug)]
pub struct ShardStats {
    /// The shard.
    pub shard: u16,
    /// Every segment of this shard, by id.
    pub segments: Vec<SegmentStats>,
    /// Entries in the blob index.
    pub index_entries: usize,
    /// Heap bytes of the blob index (entries and directory).
    pub index_heap_bytes: usize,
    /// Open uploads.
    pub uploads: usize,
    /// Repositories with links or tags.
    pub repositories: usize,
    /// Current metadata log generation.
    pub meta_generation: u32,
    /// Bytes appended to it.
    pub meta_bytes: u64,
    /// Whether writes are refused after a failed sync.
    pub poisoned: bool,
    /// fdatasync calls on segments since open (group commit: fewer than
    /// durable writes).
    pub segment_syncs: u64,
    /// fdatasync calls on the metadata log since open.
    pub meta_syncs: u64,
    /// Dead bytes given back to the file system since open (punched
    /// records and deleted segments).
    pub reclaimed_bytes: u64,
    /// Segments deleted since open because nothing in them was live.
    pub segments_deleted: u64,
    /// Dead records whose space is not given back yet.
    pub dead_records_waiting: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_id_round_trips_as_text() {
        let id = UploadId {
            shard: 7,
            seq: 42,
            tag: 0xfeed_f00d_dead_beef,
        };
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(s.parse::<UploadId>().unwrap(), id);
        assert!("xyz".parse::<UploadId>().is_err());
        assert!(s.to_uppercase().parse::<UploadId>().is_err());
    }
}
