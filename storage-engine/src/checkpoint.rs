//! Checkpoints: the whole metadata of a shard, written in the background so
//! that recovery replays only the log written since.
//!
//! Starting a checkpoint switches the metadata log to a new generation `g`
//! and takes a synchronous snapshot of everything but the blob index. The
//! index, which may hold tens of millions of entries, is then copied a slice
//! at a time while the shard keeps serving; entries changed meanwhile are
//! also in log `g`, and every operation is an assignment, so replaying log
//! `g` over the checkpoint yields the exact state. The file becomes
//! `ckpt-g.dat` only once complete, synced, and once log `g - 1` is durable;
//! then older logs and checkpoints are deleted.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::digest::DigestAlgorithm;
use crate::layout::sync_dir;
use crate::location::PACKED_LOCATION_BYTES;
use crate::meta::MetaOp;
use crate::record::{le_u32, BLOCK_BYTES};
use crate::shard::Inner;

const CKPT_MAGIC: [u8; 8] = *b"BRTHCKPT";
/// The checkpoint header version this build writes and reads.
pub(crate) const CKPT_VERSION: u32 = 1;
/// Bytes before the first frame of a checkpoint file.
pub(crate) const CKPT_HEADER_BYTES: usize = 16;
/// Index entries per checkpoint frame.
const INDEX_BATCH: usize = 16 * 1024;
/// Checkpoint bytes buffered before a write.
const WRITE_BYTES: usize = 4 << 20;

/// The file name of checkpoint generation `gen`.
pub(crate) fn ckpt_file_name(gen: u32) -> String {
    format!("ckpt-{gen:08}.dat")
}

/// Decodes a checkpoint header into its generation.
pub(crate) fn decode_ckpt_header(b: &[u8]) -> Result<u32, Option<u32>> {
    if b.len() < CKPT_HEADER_BYTES || b[0..8] != CKPT_MAGIC {
        return Err(None);
    }
    let version = le_u32(&b[8..12]);
    if version != CKPT_VERSION {
        return Err(Some(version));
    }
    Ok(le_u32(&b[12..16]))
}

/// Starts a checkpoint in the background when the log has grown enough
/// (or always, when `force`). Does nothing if one is running.
pub(crate) fn start(inner: &Rc<Inner>, force: bool) {
    if inner.checkpointing.get() || inner.writable().is_err() {
        return;
    }
    // NOTE: the log may grow to a quarter of the last checkpoint before the
    // next one, so replay stays a fraction of the state whatever its size,
    // and a large index is not rewritten for every few MiB of log.
    let threshold = inner
        .opts
        .checkpoint_every_bytes
        .max(inner.checkpoint_bytes.get() / 4);
    if !force && inner.meta.bytes_in_generation() < threshold {
        return;
    }
    inner.checkpointing.set(true);

    let (gen, old_end) = inner.meta.rotate();
    let mut head = Vec::with_capacity(1 << 16);
    head.extend_from_slice(&CKPT_MAGIC);
    head.extend_from_slice(&CKPT_VERSION.to_le_bytes());
    head.extend_from_slice(&gen.to_le_bytes());
    let small = inner.state.borrow().snapshot_without_index();
    let mut frames = 0u64;
    for op in &small {
        op.encode_frame(&mut head);
        frames += 1;
    }

    let task_inner = inner.clone();
    glommio::spawn_local(async move {
        let inner = task_inner;
        let started = std::time::Instant::now();
        match write(&inner, gen, head, frames, old_end).await {
            Ok((entries, bytes)) => {
                inner.checkpoint_bytes.set(bytes);
                tracing::info!(
                    shard = inner.id,
                    generation = gen,
                    index_entries = entries,
                    bytes,
                    secs = started.elapsed().as_secs_f64(),
                    "checkpoint written"
                );
            }
            Err(e) => tracing::warn!(
                shard = inner.id,
                generation = gen,
                error = %e,
                "checkpoint failed; the log keeps growing until the next one"
            ),
        }
        inner.checkpointing.set(false);
        inner.checkpoint_done.notify_all();
    })
    .detach();
}

async fn write(
    inner: &Rc<Inner>,
    gen: u32,
    head: Vec<u8>,
    mut frames: u64,
    old_end: u64,
) -> std::io::Result<(u64, u64)> {
    let tmp = inner.dir.join(format!("ckpt-{gen:08}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp)
        .await?;
    let mut out = Out {
        file,
        buf: head,
        pos: 0,
    };

    let mut entries = 0u64;
    for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = index_batch(inner, algorithm, after.as_deref());
            let Some(last) = batch.last_key() else {
                break;
            };
            after = Some(last);
            entries += batch.count() as u64;
            batch.op.encode_frame(&mut out.buf);
            frames += 1;
            if out.buf.len() >= WRITE_BYTES {
                out.write_full_blocks().await?;
            }
        }
    }
    MetaOp::End { frames }.encode_frame(&mut out.buf);
    let bytes = out.pos + out.buf.len() as u64;
    out.finish().await?;

    // IMPORTANT: the checkpoint stands for everything up to log `gen - 1`;
    // it may replace that log only once the log's last frames are durable.
    inner
        .meta
        .wait_durable(old_end)
        .await
        .map_err(std::io::Error::other)?;
    let path = inner.dir.join(ckpt_file_name(gen));
    std::fs::rename(&tmp, &path)?;
    sync_dir(&inner.dir)?;
    remove_older(&inner.dir, gen);
    Ok((entries, bytes))
}

struct Batch {
    op: MetaOp,
    key_bytes: usize,
}

impl Batch {
    fn count(&self) -> usize {
        match &self.op {
            MetaOp::IndexBatch { entries, .. } => {
                entries.len() / (self.key_bytes + PACKED_LOCATION_BYTES)
            }
            _ => 0,
        }
    }

    fn last_key(&self) -> Option<Vec<u8>> {
        let MetaOp::IndexBatch { entries, .. } = &self.op else {
            return None;
        };
        let each = self.key_bytes + PACKED_LOCATION_BYTES;
        let last = entries.len().checked_sub(each)?;
        Some(entries[last..last + self.key_bytes].to_vec())
    }
}

/// Copies the next slice of the index, synchronously.
fn index_batch(inner: &Inner, algorithm: DigestAlgorithm, after: Option<&[u8]>) -> Batch {
    let st = inner.state.borrow();
    let mut entries = Vec::new();
    match algorithm {
        DigestAlgorithm::Sha256 => {
            let after = after.and_then(|a| <[u8; 32]>::try_from(a).ok());
            for e in st.index256.entries_after(after.as_ref(), INDEX_BATCH) {
                entries.extend_from_slice(&e.key);
                entries.extend_from_slice(&e.loc);
            }
        }
        DigestAlgorithm::Sha512 => {
            let after = after.and_then(|a| <[u8; 64]>::try_from(a).ok());
            for e in st.index512.entries_after(after.as_ref(), INDEX_BATCH) {
                entries.extend_from_slice(&e.key);
                entries.extend_from_slice(&e.loc);
            }
        }
    }
    Batch {
        op: MetaOp::IndexBatch { algorithm, entries },
        key_bytes: algorithm.byte_len(),
    }
}

/// Deletes logs and checkpoints older than generation `gen`.
fn remove_older(dir: &Path, gen: u32) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let old = parse_gen(name, "meta-", ".log")
            .or_else(|| parse_gen(name, "ckpt-", ".dat"))
            .or_else(|| parse_gen(name, "ckpt-", ".tmp"))
            .is_some_and(|g| g < gen);
        if old {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove old file");
            }
        }
    }
}

/// The generation in a file name like `meta-00000003.log`.
pub(crate) fn parse_gen(name: &str, prefix: &str, suffix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Buffered sequential direct writes.
struct Out {
    file: DmaFile,
    buf: Vec<u8>,
    pos: u64,
}

impl Out {
    async fn write_full_blocks(&mut self) -> std::io::Result<()> {
        let n = self.buf.len() / BLOCK_BYTES as usize * BLOCK_BYTES as usize;
        if n == 0 {
            return Ok(());
        }
        self.write_bytes(n).await
    }

    async fn write_bytes(&mut self, n: usize) -> std::io::Result<()> {
        let mut dma = self.file.alloc_dma_buffer(n);
        dma.as_bytes_mut().copy_from_slice(&self.buf[..n]);
        let written = self.file.write_at(dma, self.pos).await?;
        if written != n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short checkpoint write",
            ));
        }
        self.pos += n as u64;
        self.buf.drain(..n);
        Ok(())
    }

    async fn finish(mut self) -> std::io::Result<()> {
        let padded = self.buf.len().div_ceil(BLOCK_BYTES as usize) * BLOCK_BYTES as usize;
        self.buf.resize(padded, 0);
        if padded > 0 {
            self.write_bytes(padded).await?;
        }
        self.file.fdatasync().await?;
        self.file.close().await?;
        Ok(())
    }
}

/// The path of a checkpoint.
pub(crate) fn ckpt_path(dir: &Path, gen: u32) -> PathBuf {
    dir.join(ckpt_file_name(gen))
}
