//! Streaming appends to an upload session.
//!
//! Bytes are copied into a chunk-sized aligned buffer and hashed as they
//! pass; each full buffer becomes one chunk record in the shard's active
//! segment. Appends of different uploads interleave their chunk records in
//! the same segment; each upload keeps its own list of extents. Nothing an
//! append wrote is reachable until `finish` has synced the chunks and logged
//! the new extents.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::digest::DigestHasher;
use crate::error::Result;
use crate::meta::MetaOp;
use crate::record::{
    encode_record, record_bytes_for, Extent, RecordKind, CHUNK_PAYLOAD_BYTES, CHUNK_RECORD_BYTES,
    HEADER_BYTES,
};
use crate::segment::SegmentRef;
use crate::shard::{check_blob_len, now_secs, Shard};

/// A streaming writer for one append (one PATCH or PUT body) to an upload.
///
/// Dropping it without [`UploadAppend::finish`] discards what it wrote: the
/// upload keeps its previous durable length.
pub struct UploadAppend<'a> {
    shard: &'a Shard,
    seq: u64,
    start_len: u64,
    len: u64,
    /// Upload offset of the first byte in `buf`.
    chunk_start: u64,
    hasher: Option<DigestHasher>,
    buf: Option<DmaBuffer>,
    filled: usize,
    extents: Vec<Extent>,
    tickets: Vec<(SegmentRef, u64)>,
    done: bool,
}

impl<'a> UploadAppend<'a> {
    pub(crate) fn new(
        shard: &'a Shard,
        seq: u64,
        start_len: u64,
        hasher: Option<DigestHasher>,
    ) -> UploadAppend<'a> {
        UploadAppend {
            shard,
            seq,
            start_len,
            len: start_len,
            chunk_start: start_len,
            hasher,
            buf: None,
            filled: 0,
            extents: Vec::new(),
            tickets: Vec::new(),
            done: false,
        }
    }

    /// Appends bytes. Memory stays bounded by one chunk whatever the total.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.shard.inner.writable()?;
        check_blob_len(self.len + bytes.len() as u64)?;
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }

        let mut rest = bytes;
        while !rest.is_empty() {
            let filled = self.filled;
            let buf = self
                .buf
                .get_or_insert_with(|| self.shard.inner.meta.alloc(CHUNK_RECORD_BYTES));
            let n = rest.len().min(CHUNK_PAYLOAD_BYTES - filled);
            let at = HEADER_BYTES + filled;
            buf.as_bytes_mut()[at..at + n].copy_from_slice(&rest[..n]);
            self.filled += n;
            self.len += n as u64;
            rest = &rest[n..];
            if self.filled == CHUNK_PAYLOAD_BYTES {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    /// Bytes the upload will have once this append finishes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when neither the upload nor this append holds a byte yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the appended bytes durable and reachable; returns the upload's
    /// new total length.
    pub async fn finish(mut self) -> Result<u64> {
        if self.filled > 0 {
            self.flush_chunk().await?;
        }
        let inner = self.shard.inner.clone();
        for (seg, ticket) in std::mem::take(&mut self.tickets) {
            inner.sync_segment(&seg, ticket).await?;
        }
        if self.extents.is_empty() {
            self.done = true;
            return Ok(self.len);
        }

        let op = MetaOp::UploadAppended {
            seq: self.seq,
            at_len: self.start_len,
            new_len: self.len,
            updated_secs: now_secs(),
            extents: self.extents.clone(),
        };
        inner.log_with(|_| Ok((vec![op.clone()], ()))).await?;
        self.done = true;

        // The log apply forgets the hash; this process still knows it.
        if let Some(u) = inner.state.borrow_mut().uploads.get_mut(&self.seq) {
            if u.len == self.len {
                u.hasher = self.hasher.take();
            }
        }
        Ok(self.len)
    }

    /// Writes the buffered bytes as one chunk record.
    async fn flush_chunk(&mut self) -> Result<()> {
        let Some(mut buf) = self.buf.take() else {
            return Ok(());
        };
        let payload = self.filled;
        encode_record(
            buf.as_bytes_mut(),
            RecordKind::Chunk,
            payload,
            self.seq,
            self.chunk_start,
            None,
        );
        buf.trim_to_size(record_bytes_for(payload) as usize);
        self.filled = 0;
        self.chunk_start += payload as u64;

        let inner: &Rc<_> = &self.shard.inner;
        let (seg, block, ticket) = inner.write_record(buf).await?;
        self.extents.push(Extent {
            segment: seg.id,
            block,
            len: payload as u32,
        });
        match self.tickets.iter_mut().find(|(s, _)| s.id == seg.id) {
            Some((_, t)) => *t = (*t).max(ticket),
            None => self.tickets.push((seg, ticket)),
        }
        Ok(())
    }
}

impl Drop for UploadAppend<'_> {
    fn drop(&mut self) {
        let inner = &self.shard.inner;
        if !self.done && !self.extents.is_empty() {
            let records = self
                .extents
                .iter()
                .map(|e| (e.segment, e.block, e.record_bytes()))
                .collect();
            inner.log_later(vec![MetaOp::DeadRecords { records }]);
        }
        inner.release_upload(self.seq);
    }
}
