//! The metadata log: an append-only file of CRC-framed operations, written
//! with direct I/O and synced by group commit.
//!
//! Frames are packed back to back. The last partial block is kept in memory
//! and written again with the next batch, so each batch is one aligned write
//! followed by one fdatasync. Only one batch is in flight at a time, so the
//! log never has holes: recovery reads frames until the first bad one and
//! cuts the file there.
//!
//! NOTE: rewriting the last block relies on a device writing a block either
//! whole or not at all for the part that does not change; the unchanged
//! prefix is identical in both versions, so a torn block keeps it.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::layout::sync_dir;
use crate::notify::Notify;
use crate::record::{le_u32, BLOCK_BYTES};

const LOG_MAGIC: [u8; 8] = *b"BRTHMLOG";
/// The metadata log header version this build writes and reads.
pub(crate) const LOG_VERSION: u32 = 1;
/// Bytes before the first frame of a log file.
pub(crate) const LOG_HEADER_BYTES: u64 = 16;
/// Log files grow their preallocation by this much at a time.
const PREALLOCATE_STEP: u64 = 16 << 20;

/// The file name of metadata log generation `gen`.
pub(crate) fn log_file_name(gen: u32) -> String {
    format!("meta-{gen:08}.log")
}

/// The header of a log file.
pub(crate) fn encode_log_header(gen: u32) -> [u8; LOG_HEADER_BYTES as usize] {
    let mut h = [0u8; LOG_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&LOG_MAGIC);
    h[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&gen.to_le_bytes());
    h
}

/// What a log header says.
pub(crate) enum LogHeader {
    Valid(u32),
    UnknownVersion(u32),
    Invalid,
}

/// Decodes a log header.
pub(crate) fn decode_log_header(b: &[u8]) -> LogHeader {
    if b.len() < LOG_HEADER_BYTES as usize || b[0..8] != LOG_MAGIC {
        return LogHeader::Invalid;
    }
    let version = le_u32(&b[8..12]);
    if version != LOG_VERSION {
        return LogHeader::UnknownVersion(version);
    }
    LogHeader::Valid(le_u32(&b[12..16]))
}

struct LogFile {
    gen: u32,
    file: DmaFile,
    path: PathBuf,
    /// Bytes of valid log in the file.
    len: Cell<u64>,
    /// The bytes of the last, partial block (`len % BLOCK_BYTES` of them).
    tail: RefCell<Vec<u8>>,
    preallocated: Cell<u64>,
}

impl LogFile {
    async fn open(path: &Path, gen: u32, len: u64, tail: Vec<u8>) -> std::io::Result<LogFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await?;
        Ok(LogFile {
            gen,
            file,
            path: path.to_path_buf(),
            len: Cell::new(len),
            tail: RefCell::new(tail),
            preallocated: Cell::new(len),
        })
    }

    async fn create(dir: &Path, gen: u32) -> std::io::Result<LogFile> {
        let path = dir.join(log_file_name(gen));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await?;
        let log = LogFile {
            gen,
            file,
            path,
            len: Cell::new(0),
            tail: RefCell::new(Vec::new()),
            preallocated: Cell::new(0),
        };
        log.append(&encode_log_header(gen)).await?;
        log.file.fdatasync().await?;
        // IMPORTANT: the new file must survive a crash before frames in it
        // are acknowledged.
        sync_dir(dir)?;
        Ok(log)
    }

    /// Writes `bytes` after the valid end (not synced).
    async fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let len = self.len.get();
        let start = len - len % BLOCK_BYTES;
        let end = len + bytes.len() as u64;
        if end > self.preallocated.get() {
            let want = end + PREALLOCATE_STEP;
            self.file.pre_allocate(want, true).await?;
            self.preallocated.set(want);
        }

        let total = (end - start).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let mut buf = self.file.alloc_dma_buffer(total as usize);
        {
            let b = buf.as_bytes_mut();
            let tail = self.tail.borrow();
            b[..tail.len()].copy_from_slice(&tail);
            b[tail.len()..tail.len() + bytes.len()].copy_from_slice(bytes);
            b[tail.len() + bytes.len()..].fill(0);
        }
        let keep_from = ((end - start) / BLOCK_BYTES * BLOCK_BYTES) as usize;
        let new_tail = buf.as_bytes()[keep_from..(end - start) as usize].to_vec();

        let n = self.file.write_at(buf, start).await?;
        if n as u64 != total {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short write to metadata log",
            ));
        }
        self.len.set(end);
        *self.tail.borrow_mut() = new_tail;
        Ok(())
    }
}

/// The metadata log of one shard, across its generations.
pub(crate) struct MetaLog {
    dir: PathBuf,
    file: RefCell<Rc<LogFile>>,
    /// Frames not yet written, by generation.
    batches: RefCell<Vec<(u32, Vec<u8>)>>,
    appending_gen: Cell<u32>,
    appended_lsn: Cell<u64>,
    durable_lsn: Cell<u64>,
    bytes_in_gen: Cell<u64>,
    flushing: Cell<bool>,
    failed: RefCell<Option<String>>,
    notify: Notify,
    syncs: Cell<u64>,
    /// Test hook: the next batch sync reports a failure.
    pub(crate) fail_next_sync: Cell<bool>,
}

impl MetaLog {
    /// Opens generation `gen` to append after `len` valid bytes, given the
    /// bytes of its last partial block, or creates it when `existing` is
    /// `None`.
    pub async fn open(
        dir: &Path,
        gen: u32,
        existing: Option<(u64, Vec<u8>)>,
    ) -> std::io::Result<MetaLog> {
        let file = match existing {
            Some((len, tail)) => {
                LogFile::open(&dir.join(log_file_name(gen)), gen, len, tail).await?
            }
            None => LogFile::create(dir, gen).await?,
        };
        let len = file.len.get();
        Ok(MetaLog {
            dir: dir.to_path_buf(),
            file: RefCell::new(Rc::new(file)),
            batches: RefCell::new(Vec::new()),
            appending_gen: Cell::new(gen),
            appended_lsn: Cell::new(0),
            durable_lsn: Cell::new(0),
            bytes_in_gen: Cell::new(len),
            flushing: Cell::new(false),
            failed: RefCell::new(None),
            notify: Notify::default(),
            syncs: Cell::new(0),
            fail_next_sync: Cell::new(false),
        })
    }

    /// Queues encoded frames; returns the sequence number to wait for.
    pub fn append(&self, frames: &[u8]) -> u64 {
        let gen = self.appending_gen.get();
        let mut batches = self.batches.borrow_mut();
        match batches.last_mut() {
            Some((g, bytes)) if *g == gen => bytes.extend_from_slice(frames),
            _ => batches.push((gen, frames.to_vec())),
        }
        let n = frames.len() as u64;
        self.bytes_in_gen.set(self.bytes_in_gen.get() + n);
        self.appended_lsn.set(self.appended_lsn.get() + n);
        self.appended_lsn.get()
    }

    /// Frames appended after this call go to a new generation; returns it
    /// and the sequence number that ends the old one.
    pub fn rotate(&self) -> (u32, u64) {
        let gen = self.appending_gen.get() + 1;
        self.appending_gen.set(gen);
        self.bytes_in_gen.set(LOG_HEADER_BYTES);
        // An empty batch makes the next flush create the new file.
        self.batches.borrow_mut().push((gen, Vec::new()));
        (gen, self.appended_lsn.get())
    }

    /// An aligned buffer of `bytes` for direct writes.
    pub fn alloc(&self, bytes: usize) -> glommio::io::DmaBuffer {
        self.file.borrow().file.alloc_dma_buffer(bytes)
    }

    /// Bytes of the current generation's file once everything queued is
    /// written (header included).
    pub fn bytes_in_generation(&self) -> u64 {
        self.bytes_in_gen.get()
    }

    /// fdatasync calls made for batches since open.
    pub fn syncs(&self) -> u64 {
        self.syncs.get()
    }

    /// The generation frames are appended to.
    pub fn generation(&self) -> u32 {
        self.appending_gen.get()
    }

    /// The first failure, when a write or sync of the log failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Makes sure the current file has room for `bytes` more, so that a
    /// full disk is reported before an operation is applied.
    pub async fn reserve(&self, bytes: u64) -> std::io::Result<()> {
        let file = self.file.borrow().clone();
        let pending: u64 = self
            .batches
            .borrow()
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum();
        let want = file.len.get() + pending + bytes;
        if want <= file.preallocated.get() {
            return Ok(());
        }
        // A nearly full disk may still have room for the exact need.
        let mut target = want + PREALLOCATE_STEP;
        if file.file.pre_allocate(target, true).await.is_err() {
            target = want.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
            file.file.pre_allocate(target, true).await?;
        }
        file.preallocated.set(file.preallocated.get().max(target));
        Ok(())
    }

    /// Returns once everything up to `lsn` is durable; concurrent callers
    /// share one write and one fdatasync.
    pub async fn wait_durable(&self, lsn: u64) -> Result<(), String> {
        loop {
            if let Some(f) = self.failure() {
                return Err(f);
            }
            if self.durable_lsn.get() >= lsn {
                return Ok(());
            }
            if self.flushing.get() {
                self.notify.wait().await;
                continue;
            }

            self.flushing.set(true);
            let batches = std::mem::take(&mut *self.batches.borrow_mut());
            let target = self.appended_lsn.get();
            let result = self.write_batches(batches).await;
            self.flushing.set(false);
            match result {
                Ok(()) => self.durable_lsn.set(target),
                Err(e) => {
                    let path = self.file.borrow().path.display().to_string();
                    let msg = format!("metadata log {path}: {e}");
                    *self.failed.borrow_mut() = Some(msg.clone());
                    self.notify.notify_all();
                    return Err(msg);
                }
            }
            self.notify.notify_all();
        }
    }

    /// Writes and syncs everything queued so far.
    pub async fn flush(&self) -> Result<(), String> {
        self.wait_durable(self.appended_lsn.get()).await
    }

    async fn write_batches(&self, batches: Vec<(u32, Vec<u8>)>) -> std::io::Result<()> {
        for (gen, bytes) in batches {
            let mut file = self.file.borrow().clone();
            if file.gen != gen {
                // The previous generation was synced at the end of its
                // batch, so the new file can start.
                file = Rc::new(LogFile::create(&self.dir, gen).await?);
                *self.file.borrow_mut() = file.clone();
            }
            file.append(&bytes).await?;
            // IMPORTANT: nothing in this batch is acknowledged before this.
            let started = std::time::Instant::now();
            file.file.fdatasync().await?;
            crate::sync_times::record(started.elapsed());
            self.syncs.set(self.syncs.get() + 1);
            if self.fail_next_sync.replace(false) {
                return Err(std::io::Error::other("injected fdatasync failure"));
            }
        }
        Ok(())
    }
}
