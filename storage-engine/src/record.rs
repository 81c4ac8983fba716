//! The data record codec: the header in front of every blob chunk,
//! manifest and blob map in a segment.
//!
//! ```text
//! 0..4    magic "BRTR"
//! 4       version (1)
//! 5       kind: 1 chunk, 2 content, 3 blob map
//! 6       digest algorithm (0 none, 1 sha256, 2 sha512)
//! 7       reserved, zero
//! 8..12   payload length, little endian
//! 12..16  CRC32 of the header (this field zeroed) and the payload
//! 16..24  owner: the upload that wrote a chunk or a blob map
//! 24..32  value: a chunk's offset in its upload, a blob map's blob length
//! 32..96  digest bytes (content and blob maps)
//! 96..128 reserved, zero
//! ```
//!
//! The payload follows the header, and the record is padded with zeros to a
//! multiple of [`BLOCK_BYTES`] so that every record starts block-aligned for
//! direct I/O.

use crate::digest::{Digest, DigestAlgorithm};

/// Alignment and allocation unit of segments.
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes of a record header.
pub const HEADER_BYTES: usize = 128;
/// Bytes of a full chunk record; a blob is written as a list of these.
pub const CHUNK_RECORD_BYTES: usize = 1 << 20;
/// Payload bytes of a full chunk record.
pub const CHUNK_PAYLOAD_BYTES: usize = CHUNK_RECORD_BYTES - HEADER_BYTES;
/// The largest inline content record (manifests): 16 MiB.
pub const MAX_CONTENT_BYTES: usize = 16 << 20;
/// The largest blob map payload: 64 MiB, about 5.6 million extents.
pub const MAX_MAP_BYTES: usize = 64 << 20;

const MAGIC: [u8; 4] = *b"BRTR";
/// The record version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Bytes of one extent in a blob map.
pub const EXTENT_BYTES: usize = 12;

/// What a data record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A piece of an upload.
    Chunk,
    /// Inline content (a manifest, a small blob).
    Content,
    /// The list of chunks of a committed blob.
    BlobMap,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Chunk => 1,
            RecordKind::Content => 2,
            RecordKind::BlobMap => 3,
        }
    }

    fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            1 => Some(RecordKind::Chunk),
            2 => Some(RecordKind::Content),
            3 => Some(RecordKind::BlobMap),
            _ => None,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// The stored CRC32.
    pub crc: u32,
    /// The upload that wrote the record (0 for content).
    pub owner: u64,
    /// Chunk offset in its upload, or blob length of a blob map.
    pub value: u64,
    /// The content digest (content and blob maps).
    pub digest: Option<Digest>,
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// No magic: not a record (often zeros past the end of a log).
    NoMagic,
    /// A record version this build does not read.
    Version(u8),
    /// Header fields out of bounds or inconsistent.
    Malformed(&'static str),
    /// Fewer bytes than the header promises.
    Short,
    /// The CRC does not match.
    Checksum,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::NoMagic => write!(f, "no record magic"),
            RecordError::Version(v) => write!(f, "unknown record version {v}"),
            RecordError::Malformed(what) => write!(f, "malformed header: {what}"),
            RecordError::Short => write!(f, "record truncated"),
            RecordError::Checksum => write!(f, "record checksum mismatch"),
        }
    }
}

impl RecordHeader {
    /// Bytes the whole record takes on disk, padding included.
    pub fn record_bytes(&self) -> u64 {
        record_bytes_for(self.payload_len as usize)
    }

    /// Decodes and bounds-checks a header (the CRC is checked by
    /// [`verify_record`]).
    pub fn decode(b: &[u8]) -> Result<RecordHeader, RecordError> {
        if b.len() < HEADER_BYTES {
            return Err(RecordError::Short);
        }
        if b[0..4] != MAGIC {
            return Err(RecordError::NoMagic);
        }
        if b[4] != RECORD_VERSION {
            return Err(RecordError::Version(b[4]));
        }
        let kind = RecordKind::from_code(b[5]).ok_or(RecordError::Malformed("kind"))?;
        if b[7] != 0 || b[96..128].iter().any(|&x| x != 0) {
            return Err(RecordError::Malformed("reserved bytes"));
        }

        let payload_len = le_u32(&b[8..12]);
        let max = match kind {
            RecordKind::Chunk => CHUNK_PAYLOAD_BYTES,
            RecordKind::Content => MAX_CONTENT_BYTES,
            RecordKind::BlobMap => MAX_MAP_BYTES,
        };
        if payload_len as usize > max {
            return Err(RecordError::Malformed("payload length"));
        }

        let digest = match b[6] {
            0 => None,
            code => {
                let alg = DigestAlgorithm::from_code(code)
                    .ok_or(RecordError::Malformed("digest algorithm"))?;
                Digest::from_bytes(alg, &b[32..32 + alg.byte_len()])
            }
        };
        if kind != RecordKind::Chunk && digest.is_none() {
            return Err(RecordError::Malformed("missing digest"));
        }

        Ok(RecordHeader {
            kind,
            payload_len,
            crc: le_u32(&b[12..16]),
            owner: le_u64(&b[16..24]),
            value: le_u64(&b[24..32]),
            digest,
        })
    }
}

/// Bytes a record with `payload_len` payload bytes takes on disk.
pub fn record_bytes_for(payload_len: usize) -> u64 {
    align_up((HEADER_BYTES + payload_len) as u64)
}

/// Rounds up to a multiple of [`BLOCK_BYTES`].
pub fn align_up(v: u64) -> u64 {
    v.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// Writes a header into `buf[..HEADER_BYTES]` for the payload already in
/// `buf[HEADER_BYTES..HEADER_BYTES + payload_len]`, and zeroes the padding
/// up to `record_bytes_for(payload_len)` (which `buf` must cover).
pub fn encode_record(
    buf: &mut [u8],
    kind: RecordKind,
    payload_len: usize,
    owner: u64,
    value: u64,
    digest: Option<&Digest>,
) {
    let end = HEADER_BYTES + payload_len;
    let total = record_bytes_for(payload_len) as usize;
    buf[end..total].fill(0);

    let h = &mut buf[..HEADER_BYTES];
    h.fill(0);
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = RECORD_VERSION;
    h[5] = kind.code();
    h[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&owner.to_le_bytes());
    h[24..32].copy_from_slice(&value.to_le_bytes());
    if let Some(d) = digest {
        h[6] = d.algorithm().code();
        h[32..32 + d.as_bytes().len()].copy_from_slice(d.as_bytes());
    }

    let crc = record_crc(&buf[..end]);
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Checks the CRC of a whole record (header and payload; padding ignored).
pub fn verify_record(header: &RecordHeader, record: &[u8]) -> Result<(), RecordError> {
    let end = HEADER_BYTES + header.payload_len as usize;
    if record.len() < end {
        return Err(RecordError::Short);
    }
    if record_crc(&record[..end]) != header.crc {
        return Err(RecordError::Checksum);
    }
    Ok(())
}

/// CRC32 of header (CRC field taken as zero) and payload.
fn record_crc(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..12]);
    h.update(&[0u8; 4]);
    h.update(&bytes[16..]);
    h.finalize()
}

/// One chunk record of a blob or an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Segment that holds the chunk record.
    pub segment: u32,
    /// Block of the chunk record in that segment.
    pub block: u32,
    /// Payload bytes of the chunk.
    pub len: u32,
}

impl Extent {
    /// Bytes the chunk record takes on disk.
    pub fn record_bytes(&self) -> u64 {
        record_bytes_for(self.len as usize)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&self.block.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    pub(crate) fn decode(b: &[u8]) -> Extent {
        Extent {
            segment: le_u32(&b[0..4]),
            block: le_u32(&b[4..8]),
            len: le_u32(&b[8..12]),
        }
    }
}

/// Decodes the payload of a blob map into its extents.
pub fn decode_extents(payload: &[u8]) -> Result<Vec<Extent>, RecordError> {
    if payload.len() % EXTENT_BYTES != 0 {
        return Err(RecordError::Malformed("blob map length"));
    }
    Ok(payload
        .chunks_exact(EXTENT_BYTES)
        .map(Extent::decode)
        .collect())
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest_of;

    fn sample(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xee; record_bytes_for(payload.len()) as usize];
        buf[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
        let d = digest_of(DigestAlgorithm::Sha256, payload);
        encode_record(&mut buf, RecordKind::Content, payload.len(), 0, 0, Some(&d));
        buf
    }

    #[test]
    fn record_round_trips() {
        for len in [0usize, 1, 3967, 3968, 3969, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let buf = sample(&payload);
            assert_eq!(buf.len() as u64 % BLOCK_BYTES, 0);
            let h = RecordHeader::decode(&buf).unwrap();
            assert_eq!(h.kind, RecordKind::Content);
            assert_eq!(h.payload_len as usize, len);
            assert_eq!(h.digest, Some(digest_of(DigestAlgorithm::Sha256, &payload)));
            verify_record(&h, &buf).unwrap();
        }
    }

    #[test]
    fn corrupted_records_are_refused() {
        let good = sample(b"hello manifest");
        type Mutate = fn(&mut Vec<u8>);
        let cases: Vec<(&str, Mutate, RecordError)> = vec![
            ("zeroed", |b| b.fill(0), RecordError::NoMagic),
            ("magic", |b| b[0] = b'X', RecordError::NoMagic),
            ("version", |b| b[4] = 2, RecordError::Version(2)),
            ("kind", |b| b[5] = 9, RecordError::Malformed("kind")),
            (
                "algorithm",
                |b| b[6] = 7,
                RecordError::Malformed("digest algorithm"),
            ),
            (
                "reserved",
                |b| b[100] = 1,
                RecordError::Malformed("reserved bytes"),
            ),
            (
                "huge length",
                |b| b[8..12].copy_from_slice(&u32::MAX.to_le_bytes()),
                RecordError::Malformed("payload length"),
            ),
            ("length", |b| b[8] ^= 1, RecordError::Checksum),
            ("crc", |b| b[12] ^= 1, RecordError::Checksum),
            ("owner", |b| b[16] ^= 1, RecordError::Checksum),
            ("digest", |b| b[40] ^= 1, RecordError::Checksum),
            (
                "payload",
                |b| b[HEADER_BYTES + 3] ^= 0x10,
                RecordError::Checksum,
            ),
            (
                "short",
                |b| b.truncate(HEADER_BYTES + 4),
                RecordError::Short,
            ),
        ];
        for (name, mutate, want) in cases {
            let mut buf = good.clone();
            mutate(&mut buf);
            let got = RecordHeader::decode(&buf).and_then(|h| verify_record(&h, &buf));
            assert_eq!(got, Err(want), "case {name}");
        }
    }

    #[test]
    fn extents_round_trip() {
        let e = Extent {
            segment: 3,
            block: 99,
            len: 12345,
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        e.encode(&mut out);
        assert_eq!(decode_extents(&out).unwrap(), vec![e, e]);
        assert!(decode_extents(&out[..5]).is_err());
    }
}
