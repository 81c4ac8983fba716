//! Opening a shard: checkpoint, log replay, tail cuts, segment scans.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{lseek, Whence};

use crate::checkpoint::{ckpt_path, decode_ckpt_header, parse_gen, CKPT_HEADER_BYTES};
use crate::error::{Result, StorageError};
use crate::layout::{sync_dir, Layout};
use crate::meta::{MetaDecodeError, MetaOp, FRAME_HEADER_BYTES, MAX_FRAME_BYTES, META_VERSION};
use crate::metalog::{
    decode_log_header, log_file_name, LogHeader, MetaLog, LOG_HEADER_BYTES, LOG_VERSION,
};
use crate::notify::Notify;
use crate::reader::Reader;
use crate::record::{le_u32, verify_record, RecordHeader, RecordKind, BLOCK_BYTES};
use crate::segment::{decode_segment_header, SegmentFile, SegmentHeader, SEGMENT_VERSION};
use crate::shard::{Active, Inner};
use crate::state::State;
use crate::types::{RecoveryReport, ShardOptions};

/// A scan gives up after this many bytes without a valid record: more than
/// can be in flight when a process dies.
const MAX_HOLE_BYTES: u64 = 256 << 20;

/// Recovers shard `id` and returns its live state.
pub(crate) async fn recover(
    layout: &Layout,
    id: u16,
    opts: &ShardOptions,
) -> Result<(Rc<Inner>, RecoveryReport)> {
    let started = Instant::now();
    let dir = layout.shard_dir(id);
    std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(id, "create shard dir", &dir, e))?;
    probe_direct_reads(id, &dir).await?;
    let lock = lock_shard(id, &dir)?;
    let mut report = RecoveryReport {
        shard: id,
        ..RecoveryReport::default()
    };

    let mut files = list_files(id, &dir)?;
    let mut state = State::new();
    state.recovering = true;

    // Newest complete checkpoint first; older ones only if it is damaged.
    let mut base_gen = 1;
    let mut checkpoint_bytes = 0;
    for &gen in files.checkpoints.iter().rev() {
        let path = ckpt_path(&dir, gen);
        match load_checkpoint(&path, &mut state) {
            Ok(frames) => {
                checkpoint_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                report.checkpoint = Some(gen);
                report.checkpoint_frames = frames;
                base_gen = gen;
                break;
            }
            Err(e @ StorageError::UnsupportedVersion { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(shard = id, generation = gen, error = %e, "checkpoint unusable");
                state = State::new();
                state.recovering = true;
            }
        }
    }

    // Replay the logs from the checkpoint's generation on.
    let logs: Vec<u32> = files
        .logs
        .iter()
        .copied()
        .filter(|&g| g >= base_gen)
        .collect();
    // IMPORTANT: a missing generation means lost operations (for example a
    // damaged newest checkpoint whose older logs are already deleted);
    // refuse to open rather than serve a silently older state.
    for (i, &gen) in logs.iter().enumerate() {
        if gen != base_gen + i as u32 {
            return Err(StorageError::corrupt(
                dir.join(log_file_name(gen)),
                0,
                format!(
                    "metadata log generation {} is missing (checkpoint {base_gen})",
                    base_gen + i as u32
                ),
            ));
        }
    }
    let mut last_log: Option<(u32, u64)> = None;
    for (i, &gen) in logs.iter().enumerate() {
        let path = dir.join(log_file_name(gen));
        let replay = replay_log(&path, gen, &mut state)?;
        report.log_frames += replay.frames;
        let cut = garbage_after(id, &path, replay.valid_len, replay.file_len)?;
        if cut > 0 {
            report.bytes_cut += cut;
            report.cuts.push(format!(
                "{}: {cut} bytes cut at offset {} ({})",
                path.display(),
                replay.valid_len,
                replay.reason
            ));
            tracing::warn!(
                shard = id,
                path = %path.display(),
                offset = replay.valid_len,
                bytes = cut,
                reason = replay.reason,
                "cut torn metadata log tail"
            );
            if i + 1 == logs.len() {
                cut_file(id, &path, replay.valid_len)?;
            }
        }
        last_log = Some((gen, replay.valid_len));
    }

    // A crash between logging a segment's deletion and removing its file
    // leaves the file behind: finish the deletion.
    let deleted = &state.deleted;
    let leftovers: Vec<u32> = files
        .segments
        .iter()
        .copied()
        .filter(|seg| deleted.contains(seg))
        .collect();
    for &seg in &leftovers {
        let path = layout.segment_path(id, seg);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(id, "delete dead segment", &path, e)),
        }
        tracing::info!(
            shard = id,
            segment = seg,
            "deleted a dead segment left by a crash"
        );
    }
    if !leftovers.is_empty() {
        files.segments.retain(|seg| !state.deleted.contains(seg));
        sync_dir(&dir).map_err(|e| StorageError::io(id, "sync shard dir", &dir, e))?;
    }
    report.segments = files.segments.len();

    // Segments that were still being written: find what they hold.
    let mut scanned = Vec::new();
    for &seg in &files.segments {
        state.next_segment = state.next_segment.max(seg + 1);
        let info = state.segments.get(&seg);
        if info.is_some_and(|s| s.sealed) {
            continue;
        }
        let path = layout.segment_path(id, seg);
        if let Some(written) = info.and_then(|s| s.clean_tail) {
            // A file shorter than its recorded end was damaged: scan it.
            if std::fs::metadata(&path).is_ok_and(|m| m.len() >= written) {
                scanned.push((seg, written));
                continue;
            }
        }
        let scan = scan_segment(id, seg, &path)?;
        report.segments_scanned += 1;
        report.records_scanned += scan.records.len() as u64;
        if scan.bytes_cut > 0 {
            report.bytes_cut += scan.bytes_cut;
            report.cuts.push(format!(
                "{}: {} bytes of torn or unreadable records",
                path.display(),
                scan.bytes_cut
            ));
        }
        report.uploads_truncated += truncate_uploads(&mut state, seg, &scan.records);
        scanned.push((seg, scan.written_bytes));
    }

    // Open the last log for appends (or start one).
    let meta = match last_log {
        Some((gen, len)) => {
            let path = dir.join(log_file_name(gen));
            let tail = read_tail(id, &path, len)?;
            MetaLog::open(&dir, gen, Some((len, tail))).await
        }
        None => MetaLog::open(&dir, base_gen, None).await,
    }
    .map_err(|e| StorageError::io(id, "open metadata log", &dir, e))?;

    state.recovering = false;
    let nonce = random_nonce();
    report.blobs_indexed = state.index_len();
    report.repositories = state.repos.len();
    report.uploads = state.uploads.len();
    let inner = Rc::new(Inner {
        id,
        dir: dir.clone(),
        opts: opts.clone(),
        state: RefCell::new(state),
        meta,
        active: RefCell::new(Active {
            seg: None,
            tail: 0,
            limit: 0,
        }),
        rolling: Cell::new(false),
        roll_notify: Notify::default(),
        poison: RefCell::new(None),
        nonce,
        reader: Reader::new(layout, 0),
        layout: layout.clone(),
        checkpointing: Cell::new(false),
        checkpoint_done: Notify::default(),
        segment_syncs: Rc::new(Cell::new(0)),
        checkpoint_bytes: Cell::new(checkpoint_bytes),
        reclaimed_bytes: Cell::new(0),
        segments_deleted: Cell::new(0),
        punch_unsupported: Cell::new(false),
        _lock: lock,
    });

    // NOTE: appends resume after the last valid record of the newest
    // segment, so a restart does not strand a preallocated segment. Torn
    // records past that point were never acknowledged and get overwritten;
    // older scanned segments are sealed durably.
    let newest = files.segments.last().copied();
    let mut seal = Vec::new();
    for &(segment, written_bytes) in &scanned {
        if Some(segment) == newest && resume_segment(&inner, segment, written_bytes).await {
            // IMPORTANT: durable before the first append, so that a crash
            // from now on makes the next open scan this segment.
            seal.push(MetaOp::SegmentDirty {
                segment,
                written_bytes,
            });
            continue;
        }
        seal.push(MetaOp::SegmentSealed {
            segment,
            written_bytes,
        });
    }
    if !seal.is_empty() {
        inner.log_with(|_| Ok((seal.clone(), ()))).await?;
    }

    report.duration = started.elapsed();
    tracing::info!(shard = id, report = %report, "shard recovered");
    Ok((inner, report))
}

struct Files {
    segments: Vec<u32>,
    logs: Vec<u32>,
    checkpoints: Vec<u32>,
}

fn list_files(id: u16, dir: &Path) -> Result<Files> {
    let mut files = Files {
        segments: Vec::new(),
        logs: Vec::new(),
        checkpoints: Vec::new(),
    };
    let list =
        std::fs::read_dir(dir).map_err(|e| StorageError::io(id, "list shard dir", dir, e))?;
    for entry in list {
        let entry = entry.map_err(|e| StorageError::io(id, "list shard dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = parse_gen(name, "seg-", ".dat") {
            files.segments.push(g);
        } else if let Some(g) = parse_gen(name, "meta-", ".log") {
            files.logs.push(g);
        } else if let Some(g) = parse_gen(name, "ckpt-", ".dat") {
            files.checkpoints.push(g);
        } else if parse_gen(name, "ckpt-", ".tmp").is_some() {
            // An unfinished checkpoint: never used.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    files.segments.sort_unstable();
    files.logs.sort_unstable();
    files.checkpoints.sort_unstable();
    Ok(files)
}

fn lock_shard(id: u16, dir: &Path) -> Result<Flock<File>> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(id, "open lock file", &path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => Err(StorageError::ShardLocked { shard: id, path }),
        Err((_, e)) => Err(StorageError::io(id, "lock shard", &path, e.into())),
    }
}

/// Reads frames one at a time from a file, in bounded memory.
struct Frames {
    r: BufReader<File>,
    offset: u64,
    payload: Vec<u8>,
}

enum Next {
    /// A valid frame; its payload is in `Frames::payload`.
    Frame,
    End(&'static str),
}

impl Frames {
    fn next(&mut self) -> std::io::Result<Next> {
        let mut head = [0u8; FRAME_HEADER_BYTES];
        if !read_full(&mut self.r, &mut head)? {
            return Ok(Next::End("end of file"));
        }
        let len = le_u32(&head[0..4]) as usize;
        if len == 0 {
            return Ok(Next::End("zero length"));
        }
        if len > MAX_FRAME_BYTES {
            return Ok(Next::End("frame length out of bounds"));
        }
        self.payload.resize(len, 0);
        if !read_full(&mut self.r, &mut self.payload)? {
            return Ok(Next::End("torn frame"));
        }
        if crc32fast::hash(&self.payload) != le_u32(&head[4..8]) {
            return Ok(Next::End("frame checksum mismatch"));
        }
        self.offset += (FRAME_HEADER_BYTES + len) as u64;
        Ok(Next::Frame)
    }
}

/// Fills `buf`; false when the file ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn decode(path: &Path, offset: u64, payload: &[u8]) -> Result<MetaOp> {
    MetaOp::decode_payload(payload).map_err(|e| match e {
        MetaDecodeError::Version(v) => StorageError::UnsupportedVersion {
            what: "metadata record",
            path: path.to_path_buf(),
            found: u32::from(v),
            supported: u32::from(META_VERSION),
        },
        MetaDecodeError::Malformed(what) => StorageError::corrupt(path, offset, what),
    })
}

/// Loads a checkpoint into `state`; it must end with its `End` frame.
fn load_checkpoint(path: &Path, state: &mut State) -> Result<u64> {
    let io = |e| StorageError::io(0, "read checkpoint", path, e);
    let file = File::open(path).map_err(io)?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; CKPT_HEADER_BYTES];
    if !read_full(&mut r, &mut head).map_err(io)? {
        return Err(StorageError::corrupt(path, 0, "short checkpoint header"));
    }
    match decode_ckpt_header(&head) {
        Ok(_) => {}
        Err(Some(v)) => {
            return Err(StorageError::UnsupportedVersion {
                what: "checkpoint",
                path: path.to_path_buf(),
                found: v,
                supported: crate::checkpoint::CKPT_VERSION,
            })
        }
        Err(None) => return Err(StorageError::corrupt(path, 0, "not a checkpoint")),
    }

    let mut frames = Frames {
        r,
        offset: CKPT_HEADER_BYTES as u64,
        payload: Vec::new(),
    };
    let mut count = 0u64;
    loop {
        let offset = frames.offset;
        match frames.next().map_err(io)? {
            Next::Frame => match decode(path, offset, &frames.payload)? {
                MetaOp::End { frames: n } if n == count => return Ok(count),
                MetaOp::End { .. } => {
                    return Err(StorageError::corrupt(path, offset, "frame count mismatch"))
                }
                op => {
                    state.apply(op);
                    count += 1;
                }
            },
            Next::End(why) => return Err(StorageError::corrupt(path, offset, why)),
        }
    }
}

struct Replay {
    frames: u64,
    valid_len: u64,
    file_len: u64,
    reason: &'static str,
}

/// Replays one log file into `state`, stopping at the first bad frame.
fn replay_log(path: &Path, gen: u32, state: &mut State) -> Result<Replay> {
    let io = |e| StorageError::io(0, "read metadata log", path, e);
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; LOG_HEADER_BYTES as usize];
    if !read_full(&mut r, &mut head).map_err(io)? {
        // Created but its header never made it: an empty log.
        return Ok(Replay {
            frames: 0,
            valid_len: 0,
            file_len,
            reason: "no header",
        });
    }
    match decode_log_header(&head) {
        LogHeader::Valid(g) if g == gen => {}
        LogHeader::Valid(_) => {
            return Err(StorageError::corrupt(path, 0, "log generation mismatch"))
        }
        LogHeader::UnknownVersion(v) => {
            return Err(StorageError::UnsupportedVersion {
                what: "metadata log",
                path: path.to_path_buf(),
                found: v,
                supported: LOG_VERSION,
            })
        }
        LogHeader::Invalid => {
            return Ok(Replay {
                frames: 0,
                valid_len: 0,
                file_len,
                reason: "bad header",
            })
        }
    }

    let mut frames = Frames {
        r,
        offset: LOG_HEADER_BYTES,
        payload: Vec::new(),
    };
    let mut count = 0;
    loop {
        let offset = frames.offset;
        match frames.next().map_err(io)? {
            Next::Frame => {
                state.apply(decode(path, offset, &frames.payload)?);
                count += 1;
            }
            Next::End(reason) => {
                return Ok(Replay {
                    frames: count,
                    valid_len: offset,
                    file_len,
                    reason,
                })
            }
        }
    }
}

/// Bytes from `from` up to the last non-zero byte before `len`: what a
/// torn write left behind the valid frames (zero padding is not a cut).
fn garbage_after(id: u16, path: &Path, from: u64, len: u64) -> Result<u64> {
    let io = |e| StorageError::io(id, "read metadata log", path, e);
    let file = File::open(path).map_err(io)?;
    let mut last_nonzero = None;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < len {
        let n = ((len - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at).map_err(io)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            last_nonzero = Some(at + i as u64);
        }
        at += n as u64;
    }
    Ok(last_nonzero.map_or(0, |i| i + 1 - from))
}

/// Cuts a log file to `len` bytes, durably.
fn cut_file(id: u16, path: &Path, len: u64) -> Result<()> {
    let cut = || -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    };
    cut().map_err(|e| StorageError::io(id, "cut metadata log", path, e))
}

/// The bytes of the last partial block before `len`.
fn read_tail(id: u16, path: &Path, len: u64) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; (len % BLOCK_BYTES) as usize];
    let start = len - len % BLOCK_BYTES;
    let f = File::open(path).map_err(|e| StorageError::io(id, "read metadata log", path, e))?;
    f.read_exact_at(&mut bytes, start)
        .map_err(|e| StorageError::io(id, "read metadata log", path, e))?;
    Ok(bytes)
}

/// A valid record found by a scan.
pub(crate) struct ScannedRecord {
    kind: RecordKind,
    owner: u64,
    value: u64,
    payload_len: u32,
}

struct Scan {
    records: HashMap<u32, ScannedRecord>,
    written_bytes: u64,
    bytes_cut: u64,
}

/// Reads every record of a segment that was being written, skipping holes
/// left by writes that never completed.
fn scan_segment(id: u16, seg: u32, path: &Path) -> Result<Scan> {
    let io = |e| StorageError::io(id, "scan segment", path, e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut scan = Scan {
        records: HashMap::new(),
        written_bytes: BLOCK_BYTES,
        bytes_cut: 0,
    };

    let mut block = vec![0u8; BLOCK_BYTES as usize];
    if len < BLOCK_BYTES || file.read_exact_at(&mut block, 0).is_err() {
        return Ok(scan);
    }
    match decode_segment_header(&block) {
        SegmentHeader::Valid { shard, id: sid } if shard == id && sid == seg => {}
        SegmentHeader::UnknownVersion(v) => {
            return Err(StorageError::UnsupportedVersion {
                what: "segment",
                path: path.to_path_buf(),
                found: v,
                supported: SEGMENT_VERSION,
            })
        }
        // NOTE: a header lost in a crash before the segment's first sync
        // does not hide records synced later: the records are still read.
        _ => {
            if block.iter().any(|&b| b != 0) {
                scan.bytes_cut = BLOCK_BYTES;
            }
        }
    }

    // NOTE: only the regions the file system reports as written are read;
    // the rest of a preallocated segment reads as zeros anyway. File systems
    // without SEEK_DATA report the whole file as one region.
    let mut pos = BLOCK_BYTES;
    let mut hole = 0u64;
    let mut window = Window::new(&file, len);
    let regions = data_regions(&file, BLOCK_BYTES, len);
    let mut region = 0;
    while pos + BLOCK_BYTES <= len && hole < MAX_HOLE_BYTES {
        while region < regions.len() && regions[region].1 <= pos {
            region += 1;
        }
        let Some(&(start, region_end)) = regions.get(region) else {
            break;
        };
        if pos < start {
            pos = start;
            continue;
        }
        let block = window.get(pos, BLOCK_BYTES, region_end).map_err(io)?;
        let header = match RecordHeader::decode(block) {
            Ok(h) if pos + h.record_bytes() <= len => Some(h),
            _ => None,
        };
        let nonzero = block.iter().any(|&b| b != 0);
        let valid = match header {
            Some(h) => {
                let record = window.get(pos, h.record_bytes(), region_end).map_err(io)?;
                verify_record(&h, record).ok().map(|()| h)
            }
            None => None,
        };
        match valid {
            Some(h) => {
                scan.records.insert(
                    (pos / BLOCK_BYTES) as u32,
                    ScannedRecord {
                        kind: h.kind,
                        owner: h.owner,
                        value: h.value,
                        payload_len: h.payload_len,
                    },
                );
                pos += h.record_bytes();
                scan.written_bytes = pos;
                hole = 0;
            }
            None => {
                if nonzero {
                    scan.bytes_cut += BLOCK_BYTES;
                }
                pos += BLOCK_BYTES;
                hole += BLOCK_BYTES;
            }
        }
    }

    // A file that ends inside a block (cut by hand) ends with a torn piece.
    if len - pos < BLOCK_BYTES && pos < len {
        let mut rest = vec![0u8; (len - pos) as usize];
        file.read_exact_at(&mut rest, pos).map_err(io)?;
        if rest.iter().any(|&b| b != 0) {
            scan.bytes_cut += len - pos;
        }
    }
    Ok(scan)
}

/// The written regions of a file from `from` on, block-aligned.
pub(crate) fn data_regions(file: &File, from: u64, len: u64) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = from;
    while pos < len {
        let start = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(Errno::ENXIO) => break,
            Err(_) => {
                out.push((pos, len));
                break;
            }
        };
        let end = match lseek(fd, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(len),
            Err(_) => len,
        };
        if end <= start {
            break;
        }
        let aligned = start - start % BLOCK_BYTES;
        out.push((aligned.max(from), end));
        pos = end;
    }
    out
}

/// Large sequential reads for a scan that looks at every block.
struct Window<'a> {
    file: &'a File,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

/// Bytes a scan reads at a time.
const WINDOW_BYTES: u64 = 8 << 20;

impl<'a> Window<'a> {
    fn new(file: &'a File, len: u64) -> Window<'a> {
        Window {
            file,
            len,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes `pos..pos + n` of the file (which the caller checked exist),
    /// reading ahead up to `ahead_until`.
    fn get(&mut self, pos: u64, n: u64, ahead_until: u64) -> std::io::Result<&[u8]> {
        let end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + n > end {
            let ahead = WINDOW_BYTES.min(ahead_until.saturating_sub(pos));
            let want = n.max(ahead).min(self.len - pos);
            self.buf.resize(want as usize, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + n as usize])
    }
}

/// Shortens uploads whose chunks in `seg` are missing or damaged; returns
/// how many were shortened.
fn truncate_uploads(state: &mut State, seg: u32, records: &HashMap<u32, ScannedRecord>) -> usize {
    let mut truncated = 0;
    for (&seq, u) in state.uploads.iter_mut() {
        let mut offset = 0u64;
        let mut keep = u.extents.len();
        for (i, e) in u.extents.iter().enumerate() {
            if e.segment == seg {
                let ok = records.get(&e.block).is_some_and(|r| {
                    r.kind == RecordKind::Chunk
                        && r.owner == seq
                        && r.value == offset
                        && r.payload_len == e.len
                });
                if !ok {
                    keep = i;
                    break;
                }
            }
            offset += u64::from(e.len);
        }
        if keep < u.extents.len() {
            u.extents.truncate(keep);
            u.len = offset;
            truncated += 1;
        }
    }
    truncated
}

/// Makes `segment` the active one, appending after `written_bytes`; false
/// when it cannot be (full, or it fails to open).
async fn resume_segment(inner: &Rc<Inner>, segment: u32, written_bytes: u64) -> bool {
    let path = inner.layout.segment_path(inner.id, segment);
    let opened = SegmentFile::open_existing(&path, segment, inner.segment_syncs.clone()).await;
    let (seg, size) = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot reopen segment");
            return false;
        }
    };
    if written_bytes + crate::record::CHUNK_RECORD_BYTES as u64 > size {
        return false;
    }
    // The header may never have been synced; the next sync covers this.
    if let Err(e) = seg.write_header(inner.id).await {
        tracing::warn!(path = %path.display(), error = %e, "cannot rewrite segment header");
        return false;
    }
    let mut active = inner.active.borrow_mut();
    active.seg = Some(Rc::new(seg));
    active.tail = written_bytes;
    active.limit = size;
    inner
        .state
        .borrow_mut()
        .segments
        .entry(segment)
        .or_default()
        .written_bytes = written_bytes;
    true
}

/// Opens a file that holds real data before any other direct-I/O file.
///
/// NOTE: glommio decides once per device and process whether reads may use
/// the polled ring, by reading the first block of the first file it opens.
/// If that file is empty (a new log), the read succeeds without touching
/// the device and every later read fails with EOPNOTSUPP on devices without
/// poll queues. A probe file with one written block makes the test honest.
async fn probe_direct_reads(id: u16, dir: &Path) -> Result<()> {
    let path = dir.join("direct-io-probe");
    let write = || -> std::io::Result<()> {
        let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == BLOCK_BYTES);
        if !ok {
            std::fs::write(&path, vec![0x5a; BLOCK_BYTES as usize])?;
            File::open(&path)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| StorageError::io(id, "write probe file", &path, e))?;
    let file = glommio::io::DmaFile::open(&path)
        .await
        .map_err(|e| StorageError::io(id, "open probe file", &path, e.into()))?;
    let _ = file.close().await;
    Ok(())
}

/// 32 random bytes for unguessable upload ids.
fn random_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    if let Ok(mut f) = File::open("/dev/urandom") {
        if f.read_exact(&mut nonce).is_ok() {
            return nonce;
        }
    }
    // NOTE: without /dev/urandom the ids stay unique but become guessable.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nonce[..16].copy_from_slice(&t.to_le_bytes());
    nonce[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    nonce
}
