//! Giving the disk space of dead records back.
//!
//! A record becomes dead when nothing can reach it any more: the chunks of
//! a cancelled or expired upload, the second copy of a blob the store
//! already had, a write that failed. Its blocks are then punched out of the
//! segment file (`fallocate` with `PUNCH_HOLE`): the file keeps its size
//! and every other record keeps its offset, so no location changes and no
//! other shard has to be told, yet the file system gets the blocks back at
//! once. A sealed segment in which every record is dead is deleted.
//!
//! Punching is safe because a dead record is never read: the index, the
//! repository links and the open uploads only name live records, and the
//! dead mark is durable before the blocks go. A recovery scan skips the
//! holes as it skips the unwritten parts of a preallocated segment.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};

use crate::error::{Result, StorageError};
use crate::layout::sync_dir;
use crate::meta::MetaOp;
use crate::record::BLOCK_BYTES;
use crate::segment::SegmentRef;
use crate::shard::Inner;
use crate::state::Punch;

/// How long a record stays dead before its blocks are punched. An append
/// that was dropped mid-body marks its chunks dead while their writes may
/// still be landing; punching after they landed gives all the space back.
pub(crate) const PUNCH_SETTLE: Duration = Duration::from_secs(1);

/// What one [`crate::Shard::reclaim`] pass gave back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Dead records punched out of their segment files.
    pub records_punched: u64,
    /// Their bytes (records found dead at recovery are punched again, in
    /// case the previous process stopped first, but not counted).
    pub bytes_punched: u64,
    /// Sealed segments deleted because nothing in them was live.
    pub segments_deleted: u64,
    /// Bytes of those segment files.
    pub bytes_deleted: u64,
    /// Dead records not punched yet: they died less than a second ago,
    /// and writes may still be landing on them.
    pub records_waiting: u64,
}

/// One reclaim pass over a shard; see [`crate::Shard::reclaim`].
pub(crate) async fn reclaim(inner: &Rc<Inner>) -> Result<ReclaimReport> {
    inner.writable()?;
    let mut report = ReclaimReport::default();

    let settled_before = Instant::now().checked_sub(PUNCH_SETTLE);
    let due: Vec<Punch> = {
        let mut st = inner.state.borrow_mut();
        let (due, waiting): (Vec<Punch>, Vec<Punch>) = std::mem::take(&mut st.to_punch)
            .into_iter()
            .partition(|p| settled_before.is_some_and(|t| p.marked <= t));
        st.to_punch = waiting;
        report.records_waiting = st.to_punch.len() as u64;
        due
    };

    // IMPORTANT: the dead marks must be durable before the blocks go, or a
    // crash could bring back an upload whose chunks are holes.
    inner
        .meta
        .flush()
        .await
        .map_err(|cause| inner.poisoned_by(cause))?;

    if !due.is_empty() && !inner.punch_unsupported.get() {
        punch(inner, due, &mut report).await;
    }
    delete_dead_segments(inner, &mut report).await?;

    inner
        .reclaimed_bytes
        .set(inner.reclaimed_bytes.get() + report.bytes_punched + report.bytes_deleted);
    inner
        .segments_deleted
        .set(inner.segments_deleted.get() + report.segments_deleted);
    if report.bytes_punched + report.bytes_deleted > 0 {
        tracing::debug!(
            shard = inner.id,
            records = report.records_punched,
            punched = report.bytes_punched,
            segments_deleted = report.segments_deleted,
            deleted = report.bytes_deleted,
            "reclaimed dead space"
        );
    }
    Ok(report)
}

/// Punches the blocks of `due` out of their segment files, merging
/// neighbouring records into one call.
async fn punch(inner: &Rc<Inner>, due: Vec<Punch>, report: &mut ReclaimReport) {
    let mut by_segment: BTreeMap<u32, Vec<Punch>> = BTreeMap::new();
    for p in due {
        by_segment.entry(p.segment).or_default().push(p);
    }
    for (segment, mut punches) in by_segment {
        if !inner.state.borrow().segments.contains_key(&segment) {
            continue; // deleted meanwhile: nothing left to punch
        }
        punches.sort_by_key(|p| p.block);
        let file = match segment_file(inner, segment).await {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(shard = inner.id, segment, error = %e, "cannot open segment to reclaim space");
                continue;
            }
        };
        let mut i = 0;
        while i < punches.len() {
            let start = u64::from(punches[i].block) * BLOCK_BYTES;
            let mut end = start + punches[i].bytes;
            let mut j = i + 1;
            while j < punches.len() && u64::from(punches[j].block) * BLOCK_BYTES == end {
                end += punches[j].bytes;
                j += 1;
            }
            match file.file().deallocate(start, end - start).await {
                Ok(()) => {
                    for p in &punches[i..j] {
                        report.records_punched += 1;
                        if p.counted {
                            report.bytes_punched += p.bytes;
                        }
                    }
                }
                Err(e) => {
                    let e: std::io::Error = e.into();
                    if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) {
                        tracing::warn!(
                            shard = inner.id,
                            "the file system cannot punch holes; dead space comes back only \
                             when a whole segment is dead"
                        );
                        inner.punch_unsupported.set(true);
                        file.close().await;
                        return;
                    }
                    tracing::warn!(shard = inner.id, segment, error = %e, "punching dead records failed");
                }
            }
            i = j;
            glommio::yield_if_needed().await;
        }
        file.close().await;
    }
}

/// Deletes sealed segments whose every record is dead: the deletion is
/// logged first, then the blocks are punched (so space comes back even
/// while a reader on another executor still has the file open), then the
/// file is removed.
async fn delete_dead_segments(inner: &Rc<Inner>, report: &mut ReclaimReport) -> Result<()> {
    let candidates: Vec<u32> = {
        let st = inner.state.borrow();
        let waiting: Vec<u32> = st.to_punch.iter().map(|p| p.segment).collect();
        st.dead_segments()
            .into_iter()
            .filter(|s| !waiting.contains(s))
            .collect()
    };
    if candidates.is_empty() {
        return Ok(());
    }
    let ops = candidates
        .iter()
        .map(|&segment| MetaOp::SegmentDeleted { segment })
        .collect::<Vec<_>>();
    inner.log_with(|_| Ok((ops.clone(), ()))).await?;

    for &segment in &candidates {
        let path = inner.layout.segment_path(inner.id, segment);
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        if !inner.punch_unsupported.get() {
            if let Ok(file) = segment_file(inner, segment).await {
                let _ = file.file().deallocate(0, bytes).await;
                file.close().await;
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(inner.id, "delete dead segment", &path, e)),
        }
        report.segments_deleted += 1;
        report.bytes_deleted += bytes;
        tracing::info!(
            shard = inner.id,
            segment,
            bytes,
            "deleted a segment with nothing live"
        );
        glommio::yield_if_needed().await;
    }
    sync_dir(&inner.dir).map_err(|e| StorageError::io(inner.id, "sync shard dir", &inner.dir, e))
}

/// A writable handle on one of the shard's segment files.
enum SegmentHandle {
    /// The segment being appended: its own handle.
    Active(SegmentRef),
    /// A sealed segment, opened for this pass and closed after it.
    Opened(DmaFile),
}

impl SegmentHandle {
    fn file(&self) -> &DmaFile {
        match self {
            SegmentHandle::Active(seg) => &seg.file,
            SegmentHandle::Opened(file) => file,
        }
    }

    async fn close(self) {
        if let SegmentHandle::Opened(file) = self {
            let _ = file.close().await;
        }
    }
}

async fn segment_file(inner: &Inner, segment: u32) -> Result<SegmentHandle> {
    let active = inner.active.borrow().seg.clone();
    if let Some(seg) = active.filter(|s| s.id == segment) {
        return Ok(SegmentHandle::Active(seg));
    }
    let path = inner.layout.segment_path(inner.id, segment);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&path)
        .await
        .map_err(|e| StorageError::io(inner.id, "open segment", &path, e.into()))?;
    Ok(SegmentHandle::Opened(file))
}
