//! Metadata operations and their framing, shared by the metadata log and
//! the checkpoints.
//!
//! A frame is `[payload length u32][CRC32 of payload u32][payload]`, all
//! little endian; the payload starts with the format version and the
//! operation code. Every operation is an assignment (set or remove a key),
//! so replaying a log over a checkpoint that already contains part of it
//! yields the same state: checkpoints need not stop the world.

use crate::digest::{Digest, DigestAlgorithm};
use crate::location::{BlobLocation, PACKED_LOCATION_BYTES};
use crate::record::{le_u32, le_u64, Extent, EXTENT_BYTES};
use crate::shard::ManifestLink;

/// The metadata format version this build writes and reads.
pub(crate) const META_VERSION: u8 = 1;
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// The largest frame payload: 64 MiB.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;

/// One change to a shard's metadata.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MetaOp {
    UploadCreated {
        seq: u64,
        tag: u64,
        repo: String,
        created_secs: u64,
    },
    /// The upload's extents from `at_len` on are `extents`; it is now
    /// `new_len` bytes long.
    UploadAppended {
        seq: u64,
        at_len: u64,
        new_len: u64,
        updated_secs: u64,
        extents: Vec<Extent>,
    },
    UploadClosed {
        seq: u64,
        cancelled: bool,
    },
    IndexPut {
        digest: Digest,
        loc: BlobLocation,
    },
    IndexRemove {
        digest: Digest,
    },
    LinkBlob {
        repo: String,
        digest: Digest,
        size: u64,
    },
    UnlinkBlob {
        repo: String,
        digest: Digest,
    },
    LinkManifest {
        repo: String,
        link: ManifestLink,
    },
    UnlinkManifest {
        repo: String,
        digest: Digest,
        dropped_tags: Vec<String>,
    },
    SetTag {
        repo: String,
        tag: String,
        digest: Digest,
    },
    RemoveTag {
        repo: String,
        tag: String,
    },
    SegmentSealed {
        segment: u32,
        written_bytes: u64,
    },
    /// Records whose bytes no longer hold anything live.
    DeadRecords {
        records: Vec<(u32, u32, u64)>,
    },
    /// Checkpoint only: a whole upload.
    UploadState {
        seq: u64,
        tag: u64,
        repo: String,
        created_secs: u64,
        updated_secs: u64,
        len: u64,
        extents: Vec<Extent>,
    },
    /// Checkpoint only: sorted index entries, packed key then location.
    IndexBatch {
        algorithm: DigestAlgorithm,
        entries: Vec<u8>,
    },
    /// Counters that must never go back.
    NextIds {
        upload_seq: u64,
        segment: u32,
    },
    /// Checkpoint only: the last frame, with the count before it.
    End {
        frames: u64,
    },
    /// The shard closed cleanly with this segment active and its records
    /// ending at `written_bytes`: the next open need not scan it.
    SegmentClean {
        segment: u32,
        written_bytes: u64,
    },
    /// Appends resumed in this segment after `written_bytes`: a later open
    /// must scan it, and nothing past that point is dead any more.
    SegmentDirty {
        segment: u32,
        written_bytes: u64,
    },
    /// Every record of this sealed segment was dead; its file is deleted.
    SegmentDeleted {
        segment: u32,
    },
}

/// Why a frame payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MetaDecodeError {
    Version(u8),
    Malformed(&'static str),
}

impl MetaOp {
    /// Appends this operation as one frame to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        let mut w = Writer(out);
        w.u8(META_VERSION);
        self.encode_payload(&mut w);

        let payload_len = out.len() - start - FRAME_HEADER_BYTES;
        let crc = crc32fast::hash(&out[start + FRAME_HEADER_BYTES..]);
        out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn encode_payload(&self, w: &mut Writer<'_>) {
        match self {
            MetaOp::UploadCreated {
                seq,
                tag,
                repo,
                created_secs,
            } => {
                w.u8(1);
                w.u64(*seq);
                w.u64(*tag);
                w.str(repo);
                w.u64(*created_secs);
            }
            MetaOp::UploadAppended {
                seq,
                at_len,
                new_len,
                updated_secs,
                extents,
            } => {
                w.u8(2);
                w.u64(*seq);
                w.u64(*at_len);
                w.u64(*new_len);
                w.u64(*updated_secs);
                w.extents(extents);
            }
            MetaOp::UploadClosed { seq, cancelled } => {
                w.u8(3);
                w.u64(*seq);
                w.u8(u8::from(*cancelled));
            }
            MetaOp::IndexPut { digest, loc } => {
                w.u8(4);
                w.digest(digest);
                w.loc(loc);
            }
            MetaOp::IndexRemove { digest } => {
                w.u8(5);
                w.digest(digest);
            }
            MetaOp::LinkBlob { repo, digest, size } => {
                w.u8(6);
                w.str(repo);
                w.digest(digest);
                w.u64(*size);
            }
            MetaOp::UnlinkBlob { repo, digest } => {
                w.u8(7);
                w.str(repo);
                w.digest(digest);
            }
            MetaOp::LinkManifest { repo, link } => {
                w.u8(8);
                w.str(repo);
                w.digest(&link.digest);
                w.str(&link.media_type);
                w.u64(link.size);
                w.loc(&link.location);
                w.opt_digest(link.subject.as_ref());
                w.opt_str(link.artifact_type.as_deref());
                w.opt_str(link.annotations_json.as_deref());
            }
            MetaOp::UnlinkManifest {
                repo,
                digest,
                dropped_tags,
            } => {
                w.u8(9);
                w.str(repo);
                w.digest(digest);
                w.u32(dropped_tags.len() as u32);
                for t in dropped_tags {
                    w.str(t);
                }
            }
            MetaOp::SetTag { repo, tag, digest } => {
                w.u8(10);
                w.str(repo);
                w.str(tag);
                w.digest(digest);
            }
            MetaOp::RemoveTag { repo, tag } => {
                w.u8(11);
                w.str(repo);
                w.str(tag);
            }
            MetaOp::SegmentSealed {
                segment,
                written_bytes,
            } => {
                w.u8(12);
                w.u32(*segment);
                w.u64(*written_bytes);
            }
            MetaOp::DeadRecords { records } => {
                w.u8(13);
                w.u32(records.len() as u32);
                for (segment, block, bytes) in records {
                    w.u32(*segment);
                    w.u32(*block);
                    w.u64(*bytes);
                }
            }
            MetaOp::UploadState {
                seq,
                tag,
                repo,
                created_secs,
                updated_secs,
                len,
                extents,
            } => {
                w.u8(14);
                w.u64(*seq);
                w.u64(*tag);
                w.str(repo);
                w.u64(*created_secs);
                w.u64(*updated_secs);
                w.u64(*len);
                w.extents(extents);
            }
            MetaOp::IndexBatch { algorithm, entries } => {
                w.u8(15);
                w.u8(algorithm.code());
                w.bytes(entries);
            }
            MetaOp::NextIds {
                upload_seq,
                segment,
            } => {
                w.u8(16);
                w.u64(*upload_seq);
                w.u32(*segment);
            }
            MetaOp::End { frames } => {
                w.u8(17);
                w.u64(*frames);
            }
            MetaOp::SegmentClean {
                segment,
                written_bytes,
            } => {
                w.u8(18);
                w.u32(*segment);
                w.u64(*written_bytes);
            }
            MetaOp::SegmentDirty {
                segment,
                written_bytes,
            } => {
                w.u8(19);
                w.u32(*segment);
                w.u64(*written_bytes);
            }
            MetaOp::SegmentDeleted { segment } => {
                w.u8(20);
                w.u32(*segment);
            }
        }
    }

    /// Decodes a frame payload (after the frame header).
    pub fn decode_payload(p: &[u8]) -> Result<MetaOp, MetaDecodeError> {
        let mut r = Reader { b: p, at: 0 };
        let version = r.u8()?;
        if version != META_VERSION {
            return Err(MetaDecodeError::Version(version));
        }
        let op = match r.u8()? {
            1 => MetaOp::UploadCreated {
                seq: r.u64()?,
                tag: r.u64()?,
                repo: r.str()?,
                created_secs: r.u64()?,
            },
            2 => MetaOp::UploadAppended {
                seq: r.u64()?,
                at_len: r.u64()?,
                new_len: r.u64()?,
                updated_secs: r.u64()?,
                extents: r.extents()?,
            },
            3 => MetaOp::UploadClosed {
                seq: r.u64()?,
                cancelled: r.u8()? != 0,
            },
            4 => MetaOp::IndexPut {
                digest: r.digest()?,
                loc: r.loc()?,
            },
            5 => MetaOp::IndexRemove {
                digest: r.digest()?,
            },
            6 => MetaOp::LinkBlob {
                repo: r.str()?,
                digest: r.digest()?,
                size: r.u64()?,
            },
            7 => MetaOp::UnlinkBlob {
                repo: r.str()?,
                digest: r.digest()?,
            },
            8 => MetaOp::LinkManifest {
                repo: r.str()?,
                link: ManifestLink {
                    digest: r.digest()?,
                    media_type: r.str()?,
                    size: r.u64()?,
                    location: r.loc()?,
                    subject: r.opt_digest()?,
                    artifact_type: r.opt_str()?,
                    annotations_json: r.opt_str()?,
                },
            },
            9 => {
                let repo = r.str()?;
                let digest = r.digest()?;
                let n = r.u32()? as usize;
                let mut dropped_tags = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    dropped_tags.push(r.str()?);
                }
                MetaOp::UnlinkManifest {
                    repo,
                    digest,
                    dropped_tags,
                }
            }
            10 => MetaOp::SetTag {
                repo: r.str()?,
                tag: r.str()?,
                digest: r.digest()?,
            },
            11 => MetaOp::RemoveTag {
                repo: r.str()?,
                tag: r.str()?,
            },
            12 => MetaOp::SegmentSealed {
                segment: r.u32()?,
                written_bytes: r.u64()?,
            },
            13 => {
                let n = r.u32()? as usize;
                let mut records = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    records.push((r.u32()?, r.u32()?, r.u64()?));
                }
                MetaOp::DeadRecords { records }
            }
            14 => MetaOp::UploadState {
                seq: r.u64()?,
                tag: r.u64()?,
                repo: r.str()?,
                created_secs: r.u64()?,
                updated_secs: r.u64()?,
                len: r.u64()?,
                extents: r.extents()?,
            },
            15 => {
                let algorithm = DigestAlgorithm::from_code(r.u8()?)
                    .ok_or(MetaDecodeError::Malformed("digest algorithm"))?;
                let entries = r.bytes()?.to_vec();
                let each = algorithm.byte_len() + PACKED_LOCATION_BYTES;
                if entries.len() % each != 0 {
                    return Err(MetaDecodeError::Malformed("index batch length"));
                }
                MetaOp::IndexBatch { algorithm, entries }
            }
            16 => MetaOp::NextIds {
                upload_seq: r.u64()?,
                segment: r.u32()?,
            },
            17 => MetaOp::End { frames: r.u64()? },
            18 => MetaOp::SegmentClean {
                segment: r.u32()?,
                written_bytes: r.u64()?,
            },
            19 => MetaOp::SegmentDirty {
                segment: r.u32()?,
                written_bytes: r.u64()?,
            },
            20 => MetaOp::SegmentDeleted { segment: r.u32()? },
            _ => return Err(MetaDecodeError::Malformed("operation code")),
        };
        if r.at != p.len() {
            return Err(MetaDecodeError::Malformed("trailing bytes"));
        }
        Ok(op)
    }
}

/// What [`next_frame`] found at one offset.
#[cfg(test)]
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// A frame with a valid CRC: its payload and total length.
    Valid(&'a [u8], usize),
    /// Zeros, a short tail or a bad CRC: the log ends here.
    End(&'static str),
}

/// Reads the frame at the start of `b`.
#[cfg(test)]
pub(crate) fn next_frame(b: &[u8]) -> Frame<'_> {
    if b.len() < FRAME_HEADER_BYTES {
        return Frame::End("short frame header");
    }
    let len = le_u32(&b[0..4]) as usize;
    if len == 0 {
        return Frame::End("zero length");
    }
    if len > MAX_FRAME_BYTES {
        return Frame::End("frame length out of bounds");
    }
    let Some(payload) = b.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return Frame::End("torn frame");
    };
    if crc32fast::hash(payload) != le_u32(&b[4..8]) {
        return Frame::End("frame checksum mismatch");
    }
    Frame::Valid(payload, FRAME_HEADER_BYTES + len)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn digest(&mut self, d: &Digest) {
        self.u8(d.algorithm().code());
        self.0.extend_from_slice(d.as_bytes());
    }
    fn opt_digest(&mut self, d: Option<&Digest>) {
        match d {
            None => self.u8(0),
            Some(d) => self.digest(d),
        }
    }
    fn loc(&mut self, l: &BlobLocation) {
        self.0.extend_from_slice(&l.pack());
    }
    fn extents(&mut self, extents: &[Extent]) {
        self.u32(extents.len() as u32);
        for e in extents {
            e.encode(self.0);
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MetaDecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(MetaDecodeError::Malformed("truncated field"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, MetaDecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, MetaDecodeError> {
        Ok(le_u32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64, MetaDecodeError> {
        Ok(le_u64(self.take(8)?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], MetaDecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, MetaDecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| MetaDecodeError::Malformed("utf-8"))
    }
    fn opt_str(&mut self) -> Result<Option<String>, MetaDecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.str()?)),
        }
    }
    fn digest_with(&mut self, code: u8) -> Result<Digest, MetaDecodeError> {
        let alg = DigestAlgorithm::from_code(code)
            .ok_or(MetaDecodeError::Malformed("digest algorithm"))?;
        let raw = self.take(alg.byte_len())?;
        Digest::from_bytes(alg, raw).ok_or(MetaDecodeError::Malformed("digest"))
    }
    fn digest(&mut self) -> Result<Digest, MetaDecodeError> {
        let code = self.u8()?;
        self.digest_with(code)
    }
    fn opt_digest(&mut self) -> Result<Option<Digest>, MetaDecodeError> {
        match self.u8()? {
            0 => Ok(None),
            code => Ok(Some(self.digest_with(code)?)),
        }
    }
    fn loc(&mut self) -> Result<BlobLocation, MetaDecodeError> {
        let mut a = [0u8; PACKED_LOCATION_BYTES];
        a.copy_from_slice(self.take(PACKED_LOCATION_BYTES)?);
        Ok(BlobLocation::unpack(&a))
    }
    fn extents(&mut self) -> Result<Vec<Extent>, MetaDecodeError> {
        let n = self.u32()? as usize;
        let raw = self.take(
            n.checked_mul(EXTENT_BYTES)
                .ok_or(MetaDecodeError::Malformed("extent count"))?,
        )?;
        Ok(raw.chunks_exact(EXTENT_BYTES).map(Extent::decode).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest_of;

    fn ops() -> Vec<MetaOp> {
        let d = digest_of(DigestAlgorithm::Sha256, b"x");
        let d5 = digest_of(DigestAlgorithm::Sha512, b"y");
        let loc = BlobLocation::new(1, 2, 3, 4);
        let ext = Extent {
            segment: 1,
            block: 2,
            len: 3,
        };
        vec![
            MetaOp::UploadCreated {
                seq: 1,
                tag: 2,
                repo: "a/b".into(),
                created_secs: 3,
            },
            MetaOp::UploadAppended {
                seq: 1,
                at_len: 0,
                new_len: 3,
                updated_secs: 4,
                extents: vec![ext, ext],
            },
            MetaOp::UploadClosed {
                seq: 1,
                cancelled: true,
            },
            MetaOp::IndexPut { digest: d5, loc },
            MetaOp::IndexRemove { digest: d },
            MetaOp::LinkBlob {
                repo: "r".into(),
                digest: d,
                size: 9,
            },
            MetaOp::UnlinkBlob {
                repo: "r".into(),
                digest: d,
            },
            MetaOp::LinkManifest {
                repo: "r".into(),
                link: ManifestLink {
                    digest: d,
                    media_type: "m".into(),
                    size: 5,
                    location: loc,
                    subject: Some(d5),
                    artifact_type: None,
                    annotations_json: Some("{}".into()),
                },
            },
            MetaOp::UnlinkManifest {
                repo: "r".into(),
                digest: d,
                dropped_tags: vec!["v1".into(), "latest".into()],
            },
            MetaOp::SetTag {
                repo: "r".into(),
                tag: "t".into(),
                digest: d,
            },
            MetaOp::RemoveTag {
                repo: "r".into(),
                tag: "t".into(),
            },
            MetaOp::SegmentSealed {
                segment: 4,
                written_bytes: 5,
            },
            MetaOp::DeadRecords {
                records: vec![(1, 2, 3)],
            },
            MetaOp::IndexBatch {
                algorithm: DigestAlgorithm::Sha256,
                entries: vec![7; 96],
            },
            MetaOp::NextIds {
                upload_seq: 5,
                segment: 6,
            },
            MetaOp::End { frames: 7 },
            MetaOp::SegmentClean {
                segment: 3,
                written_bytes: 8192,
            },
            MetaOp::SegmentDirty {
                segment: 3,
                written_bytes: 16384,
            },
            MetaOp::SegmentDeleted { segment: 2 },
        ]
    }

    #[test]
    fn every_operation_round_trips() {
        for op in ops() {
            let mut buf = Vec::new();
            op.encode_frame(&mut buf);
            let Frame::Valid(payload, len) = next_frame(&buf) else {
                panic!("frame of {op:?} not valid");
            };
            assert_eq!(len, buf.len());
            assert_eq!(MetaOp::decode_payload(payload).unwrap(), op);
        }
    }

    #[test]
    fn damaged_frames_end_the_log() {
        let mut buf = Vec::new();
        ops()[5].encode_frame(&mut buf);
        for cut in 0..buf.len() {
            assert!(
                matches!(next_frame(&buf[..cut]), Frame::End(why) if !why.is_empty()),
                "cut {cut}"
            );
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            if let Frame::Valid(p, _) = next_frame(&bad) {
                panic!("flipped byte {i} still valid: {p:?}");
            }
        }
    }

    #[test]
    fn unknown_meta_version_is_refused() {
        let mut buf = Vec::new();
        ops()[0].encode_frame(&mut buf);
        let mut payload = buf[FRAME_HEADER_BYTES..].to_vec();
        payload[0] = 9;
        assert_eq!(
            MetaOp::decode_payload(&payload),
            Err(MetaDecodeError::Version(9))
        );
    }
}
