//! Streaming appends to an upload session.
//!
//! Bytes are copied into a chunk-sized aligned buffer and hashed as they
//! pass; each full buffer becomes one chunk record in the shard's active
//! segment. Appends of different uploads interleave their chunk records in
//! the same segment; each upload keeps its own list of extents. Nothing an
//! append wrote is reachable until `finish` has synced the chunks and logged
//! the new extents.

use std::cell::Cell;
use std::collections::VecDeque;

use glommio::io::DmaBuffer;
use glommio::task::JoinHandle;

use crate::digest::DigestHasher;
use crate::error::{Result, StorageError};
use crate::meta::MetaOp;
use crate::record::{
    encode_record, record_bytes_for, Extent, RecordKind, CHUNK_PAYLOAD_BYTES, CHUNK_RECORD_BYTES,
    HEADER_BYTES,
};
use crate::segment::SegmentRef;
use crate::shard::{check_blob_len, now_secs, Shard};

/// Chunk writes one append keeps in flight: enough to keep the device busy
/// with one stream, and a bound on the memory an append holds.
const WRITES_IN_FLIGHT: usize = 4;

type WriteResult = std::io::Result<u64>;

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
    in_flight: VecDeque<(SegmentRef, JoinHandle<WriteResult>)>,
    done: bool,
    /// The extents were handed to the metadata log.
    applied: Cell<bool>,
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
            in_flight: VecDeque::new(),
            done: false,
            applied: Cell::new(false),
        }
    }

    /// Appends bytes. Memory stays bounded by a few chunks whatever the
    /// total. After an error, drop the append: the upload keeps its
    /// previous durable length.
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
        while !self.in_flight.is_empty() {
            self.complete_one().await?;
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
        // IMPORTANT: once the new extents are applied they belong to the
        // upload, even if this future is dropped before the sync returns,
        // so `Drop` must not mark them dead from then on.
        let applied = &self.applied;
        inner
            .log_with(|_| {
                applied.set(true);
                Ok((vec![op.clone()], ()))
            })
            .await?;
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

        // NOTE: space is reserved in order, but the writes run
        // concurrently; the extents are reachable only after all of them
        // completed and were synced, in `finish`.
        let inner = self.shard.inner.clone();
        let bytes = buf.len() as u64;
        let (seg, block) = inner.reserve_space(bytes).await?;
        self.extents.push(Extent {
            segment: seg.id,
            block,
            len: payload as u32,
        });
        let task_seg = seg.clone();
        let handle = glommio::spawn_local(async move { task_seg.write(buf, block).await }).detach();
        self.in_flight.push_back((seg, handle));
        if self.in_flight.len() >= WRITES_IN_FLIGHT {
            self.complete_one().await?;
        }
        Ok(())
    }

    /// Waits for the oldest chunk write and records its sync ticket.
    async fn complete_one(&mut self) -> Result<()> {
        let Some((seg, handle)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let inner = &self.shard.inner;
        match handle.await {
            Some(Ok(ticket)) => {
                match self.tickets.iter_mut().find(|(s, _)| s.id == seg.id) {
                    Some((_, t)) => *t = (*t).max(ticket),
                    None => self.tickets.push((seg, ticket)),
                }
                Ok(())
            }
            Some(Err(e)) => Err(StorageError::io(inner.id, "write segment", &seg.path, e)),
            None => Err(StorageError::io(
                inner.id,
                "write segment",
                &seg.path,
                std::io::Error::other("chunk write task cancelled"),
            )),
        }
    }
}

impl Drop for UploadAppend<'_> {
    fn drop(&mut self) {
        let inner = &self.shard.inner;
        if !self.done && !self.applied.get() && !self.extents.is_empty() {
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
