//! Where a blob or a manifest lives: shard, segment, block, length.

use std::fmt;

use crate::record::BLOCK_BYTES;

/// The largest payload a location can describe (2^48 - 1 bytes).
pub const MAX_BLOB_BYTES: u64 = (1 << 48) - 1;

/// The position of a stored blob or manifest.
///
/// It names the record that describes the content: an inline content record
/// (manifests, small blobs) or a blob map that lists the blob's chunk
/// records. It is `Copy` and `Send`, so it can travel to any executor, whose
/// [`crate::Reader`] opens the segment file read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobLocation {
    shard: u16,
    segment: u32,
    block: u32,
    len: u64,
}

/// Bytes a packed location takes in the index and on disk.
pub(crate) const PACKED_LOCATION_BYTES: usize = 16;

impl BlobLocation {
    pub(crate) fn new(shard: u16, segment: u32, block: u32, len: u64) -> BlobLocation {
        BlobLocation {
            shard,
            segment,
            block,
            len,
        }
    }

    /// Payload bytes of the blob or manifest.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for empty content.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shard whose segment log holds the bytes.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The segment that holds the describing record.
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// Byte offset of the describing record in its segment file.
    pub fn offset(&self) -> u64 {
        u64::from(self.block) * BLOCK_BYTES
    }

    pub(crate) fn block(&self) -> u32 {
        self.block
    }

    /// The 16-byte packed form: shard, segment, block, 48-bit length.
    pub(crate) fn pack(&self) -> [u8; PACKED_LOCATION_BYTES] {
        let mut out = [0u8; PACKED_LOCATION_BYTES];
        out[0..2].copy_from_slice(&self.shard.to_le_bytes());
        out[2..6].copy_from_slice(&self.segment.to_le_bytes());
        out[6..10].copy_from_slice(&self.block.to_le_bytes());
        out[10..16].copy_from_slice(&self.len.to_le_bytes()[..6]);
        out
    }

    /// Inverse of [`BlobLocation::pack`].
    pub(crate) fn unpack(b: &[u8; PACKED_LOCATION_BYTES]) -> BlobLocation {
        let mut len = [0u8; 8];
        len[..6].copy_from_slice(&b[10..16]);
        BlobLocation {
            shard: u16::from_le_bytes([b[0], b[1]]),
            segment: u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
            block: u32::from_le_bytes([b[6], b[7], b[8], b[9]]),
            len: u64::from_le_bytes(len),
        }
    }
}

impl fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {} segment {} offset {} ({} bytes)",
            self.shard,
            self.segment,
            self.offset(),
            self.len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_location_round_trips() {
        let loc = BlobLocation::new(4095, 0xdead_beef, 77, MAX_BLOB_BYTES);
        assert_eq!(BlobLocation::unpack(&loc.pack()), loc);
    }
}
