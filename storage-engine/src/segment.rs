//! Data segment files: creation, aligned record writes and group commit.
//!
//! A segment starts with a one-block header and then holds records, each
//! block-aligned. Space is reserved synchronously (a bump pointer on the
//! owning executor), so concurrent uploads write disjoint ranges of the same
//! file without coordination; a record becomes reachable only after a sync
//! that covers it, so the order in which writes complete does not matter.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::notify::Notify;
use crate::record::{le_u32, BLOCK_BYTES};

const SEGMENT_MAGIC: [u8; 8] = *b"BRTHSEG\0";
/// The segment header version this build writes and reads.
pub(crate) const SEGMENT_VERSION: u32 = 1;

/// One segment file open for writing, with its group-commit state.
pub(crate) struct SegmentFile {
    pub id: u32,
    pub file: DmaFile,
    pub path: PathBuf,
    /// Count of writes completed so far.
    completed: Cell<u64>,
    /// Every write counted up to this value is durable.
    synced: Cell<u64>,
    syncing: Cell<bool>,
    failed: Cell<bool>,
    notify: Notify,
    /// fdatasync calls, shared by the shard's segments.
    syncs: Rc<Cell<u64>>,
}

/// Why a sync could not be confirmed.
#[derive(Debug)]
pub(crate) enum SyncError {
    /// This call's fdatasync failed.
    Io(std::io::Error),
    /// An earlier fdatasync of this file failed.
    Failed,
}

impl SegmentFile {
    /// Creates and preallocates a new segment file, header written.
    ///
    /// The caller fsyncs the directory before the segment's first record is
    /// acknowledged.
    pub async fn create(
        path: &Path,
        shard: u16,
        id: u32,
        bytes: u64,
        syncs: Rc<Cell<u64>>,
    ) -> std::io::Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(path)
            .await?;

        // NOTE: preallocation is where a full disk shows up, before any
        // record is accepted into the segment.
        if let Err(e) = file.pre_allocate(bytes, false).await {
            let _ = file.close().await;
            let _ = std::fs::remove_file(path);
            return Err(e.into());
        }

        let seg = SegmentFile::new(id, file, path, syncs);
        seg.write_header(shard).await?;
        Ok(seg)
    }

    /// A segment over an open file, with nothing written or synced yet.
    fn new(id: u32, file: DmaFile, path: &Path, syncs: Rc<Cell<u64>>) -> SegmentFile {
        SegmentFile {
            id,
            file,
            path: path.to_path_buf(),
            completed: Cell::new(0),
            synced: Cell::new(0),
            syncing: Cell::new(false),
            failed: Cell::new(false),
            notify: Notify::default(),
            syncs,
        }
    }

    /// Opens an existing segment to append after its last valid record.
    pub async fn open_existing(
        path: &Path,
        id: u32,
        syncs: Rc<Cell<u64>>,
    ) -> std::io::Result<(SegmentFile, u64)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await?;
        let size = file.file_size().await?;
        let seg = SegmentFile::new(id, file, path, syncs);
        Ok((seg, size))
    }

    /// Writes (again) the header block; durable with the next sync.
    pub async fn write_header(&self, shard: u16) -> std::io::Result<()> {
        let mut buf = self.file.alloc_dma_buffer(BLOCK_BYTES as usize);
        encode_segment_header(buf.as_bytes_mut(), shard, self.id);
        self.write(buf, 0).await.map(|_| ())
    }

    /// Writes a block-aligned record at `block`; returns the ticket to pass
    /// to [`SegmentFile::sync_through`].
    pub async fn write(&self, buf: DmaBuffer, block: u32) -> std::io::Result<u64> {
        let len = buf.len();
        let n = self
            .file
            .write_at(buf, u64::from(block) * BLOCK_BYTES)
            .await?;
        if n != len {
            return Err(short_write(n));
        }
        self.completed.set(self.completed.get() + 1);
        Ok(self.completed.get())
    }

    /// Returns once every write up to `ticket` is durable. Concurrent
    /// callers share one fdatasync (group commit).
    pub async fn sync_through(&self, ticket: u64) -> Result<(), SyncError> {
        loop {
            if self.failed.get() {
                return Err(SyncError::Failed);
            }
            if self.synced.get() >= ticket {
                return Ok(());
            }
            if self.syncing.get() {
                self.notify.wait().await;
                continue;
            }

            // IMPORTANT: the target is taken before the sync starts, so it
            // covers only writes that had completed by then.
            self.syncing.set(true);
            let target = self.completed.get();
            let started = std::time::Instant::now();
            let result = self.file.fdatasync().await;
            crate::sync_times::record(started.elapsed());
            self.syncs.set(self.syncs.get() + 1);
            self.syncing.set(false);
            match result {
                Ok(()) => self.synced.set(target),
                Err(e) => {
                    self.failed.set(true);
                    self.notify.notify_all();
                    return Err(SyncError::Io(e.into()));
                }
            }
            self.notify.notify_all();
        }
    }
}

fn encode_segment_header(b: &mut [u8], shard: u16, id: u32) {
    b.fill(0);
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    b[12..14].copy_from_slice(&shard.to_le_bytes());
    b[16..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&b[0..20]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// What a segment header says, when it is valid.
pub(crate) enum SegmentHeader {
    Valid { shard: u16, id: u32 },
    UnknownVersion(u32),
    Invalid,
}

/// Decodes a segment header block.
pub(crate) fn decode_segment_header(b: &[u8]) -> SegmentHeader {
    if b.len() < 24 || b[0..8] != SEGMENT_MAGIC {
        return SegmentHeader::Invalid;
    }
    if crc32fast::hash(&b[0..20]) != le_u32(&b[20..24]) {
        return SegmentHeader::Invalid;
    }
    let version = le_u32(&b[8..12]);
    if version != SEGMENT_VERSION {
        return SegmentHeader::UnknownVersion(version);
    }
    SegmentHeader::Valid {
        shard: u16::from_le_bytes([b[12], b[13]]),
        id: le_u32(&b[16..20]),
    }
}

fn short_write(n: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!("short direct write of {n} bytes"),
    )
}

/// A shared handle on the segment being appended.
pub(crate) type SegmentRef = Rc<SegmentFile>;
