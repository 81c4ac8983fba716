//! Reads of stored blobs and manifests, from any executor.
//!
//! A reader opens segment files of every shard read-only with direct I/O
//! and checks every record's CRC before a byte of it is returned. Since
//! direct I/O bypasses the page cache, each reader keeps a small cache of
//! hot records (manifests, blob maps, recently read chunks), bounded in
//! bytes.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};
use glommio::task::JoinHandle;

use crate::digest::{Digest, DigestAlgorithm, DigestHasher};
use crate::error::{Result, StorageError};
use crate::layout::Layout;
use crate::location::BlobLocation;
use crate::record::{
    decode_extents, record_bytes_for, verify_record, Extent, RecordError, RecordHeader, RecordKind,
    BLOCK_BYTES, HEADER_BYTES, RECORD_VERSION,
};

/// The most bytes one [`BlobRead::next_chunk`] returns.
pub const READ_CHUNK_BYTES: u64 = 1 << 20;
/// The most bytes [`Reader::read_all`] accepts.
pub const MAX_READ_ALL_BYTES: u64 = 64 << 20;
/// Bytes read first when the size of a record is unknown.
const FIRST_READ_BYTES: usize = 16 << 10;
/// Segment files kept open per reader.
const MAX_OPEN_FILES: usize = 1024;

type RecordKey = (u16, u32, u32);

/// Reads blobs and manifests of any shard. One per executor; clones share
/// the open files and the cache.
#[derive(Clone)]
pub struct Reader {
    inner: Rc<ReaderInner>,
}

struct ReaderInner {
    layout: Layout,
    files: RefCell<HashMap<(u16, u32), Rc<DmaFile>>>,
    cache: RefCell<Cache>,
}

/// What a location names, decoded and verified.
enum Described {
    Content {
        digest: Digest,
        payload: Vec<u8>,
    },
    Map {
        digest: Digest,
        owner: u64,
        extents: Vec<Extent>,
        /// Blob offset of each extent.
        starts: Vec<u64>,
    },
}

enum Cached {
    Described(Rc<Described>),
    Chunk(Rc<Vec<u8>>),
}

impl Reader {
    /// A reader with a cache of `cache_bytes` (0 disables it). Cheap: files
    /// are opened on first use.
    pub fn new(layout: &Layout, cache_bytes: u64) -> Reader {
        Reader {
            inner: Rc::new(ReaderInner {
                layout: layout.clone(),
                files: RefCell::new(HashMap::new()),
                cache: RefCell::new(Cache::new(cache_bytes)),
            }),
        }
    }

    /// Streams bytes `start..end_exclusive` of a blob or manifest.
    pub async fn read_range(
        &self,
        loc: &BlobLocation,
        start: u64,
        end_exclusive: u64,
    ) -> Result<BlobRead> {
        if start > end_exclusive || end_exclusive > loc.len() {
            return Err(StorageError::InvalidArgument {
                op: "read range",
                detail: format!("range {start}..{end_exclusive} of {} bytes", loc.len()),
            });
        }
        let desc = self.describe(loc).await?;
        Ok(BlobRead {
            reader: self.clone(),
            shard: loc.shard(),
            desc,
            pos: start,
            end: end_exclusive,
            ahead: None,
        })
    }

    /// Reads small content (a manifest) whole.
    pub async fn read_all(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        if loc.len() > MAX_READ_ALL_BYTES {
            return Err(StorageError::InvalidArgument {
                op: "read all",
                detail: format!("{} bytes, limit {MAX_READ_ALL_BYTES}", loc.len()),
            });
        }
        let mut out = Vec::with_capacity(loc.len() as usize);
        let mut read = self.read_range(loc, 0, loc.len()).await?;
        while let Some(chunk) = read.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Re-reads and re-hashes the whole content (for scrubbing); fails with
    /// [`StorageError::DigestMismatch`] when it no longer matches.
    pub async fn verify(&self, loc: &BlobLocation) -> Result<Digest> {
        let desc = self.describe(loc).await?;
        let expected = match &*desc {
            Described::Content { digest, .. } | Described::Map { digest, .. } => *digest,
        };
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut read = BlobRead {
            reader: self.clone(),
            shard: loc.shard(),
            desc,
            pos: 0,
            end: loc.len(),
            ahead: None,
        };
        while let Some(chunk) = read.next_chunk().await? {
            hasher.update(&chunk);
        }
        let actual = hasher.finish();
        if actual != expected {
            return Err(StorageError::DigestMismatch {
                expected: Box::new(expected),
                actual: Box::new(actual),
            });
        }
        Ok(actual)
    }

    /// Hashes the bytes of an upload's extents, bypassing the cache.
    pub(crate) async fn hash_extents(
        &self,
        shard: u16,
        owner: u64,
        extents: &[Extent],
        algorithm: DigestAlgorithm,
    ) -> Result<Digest> {
        let mut hasher = DigestHasher::new(algorithm);
        let mut offset = 0u64;
        for e in extents {
            let data = self.read_chunk_record(shard, owner, e, offset).await?;
            hasher.update(&data[HEADER_BYTES..HEADER_BYTES + e.len as usize]);
            offset += u64::from(e.len);
        }
        Ok(hasher.finish())
    }

    /// The records (segment, block, bytes) a location keeps alive.
    pub(crate) async fn record_footprint(
        &self,
        loc: &BlobLocation,
    ) -> Result<Vec<(u32, u32, u64)>> {
        let desc = self.describe(loc).await?;
        let mut out = Vec::new();
        match &*desc {
            Described::Content { payload, .. } => {
                out.push((loc.segment(), loc.block(), record_bytes_for(payload.len())));
            }
            Described::Map { extents, .. } => {
                let map_bytes = record_bytes_for(extents.len() * crate::record::EXTENT_BYTES);
                out.push((loc.segment(), loc.block(), map_bytes));
                for e in extents {
                    out.push((e.segment, e.block, e.record_bytes()));
                }
            }
        }
        Ok(out)
    }

    /// Reads and checks a chunk record of upload `owner` expected at blob
    /// offset `offset`.
    async fn read_chunk_record(
        &self,
        shard: u16,
        owner: u64,
        e: &Extent,
        offset: u64,
    ) -> Result<ReadResult> {
        let hint = record_bytes_for(e.len as usize) as usize;
        let (h, data) = self.read_record(shard, e.segment, e.block, hint).await?;
        if h.kind != RecordKind::Chunk
            || h.owner != owner
            || h.value != offset
            || h.payload_len != e.len
        {
            let path = self.inner.layout.segment_path(shard, e.segment);
            return Err(StorageError::corrupt(
                path,
                u64::from(e.block) * BLOCK_BYTES,
                format!("chunk record does not match its blob map (expected offset {offset})"),
            ));
        }
        Ok(data)
    }

    /// The decoded record a location names, from the cache or the disk.
    async fn describe(&self, loc: &BlobLocation) -> Result<Rc<Described>> {
        let key = (loc.shard(), loc.segment(), loc.block());
        if let Some(Cached::Described(d)) = self.inner.cache.borrow_mut().get(&key) {
            return Ok(d);
        }

        let (h, data) = self
            .read_record(loc.shard(), loc.segment(), loc.block(), FIRST_READ_BYTES)
            .await?;
        let payload = &data[HEADER_BYTES..HEADER_BYTES + h.payload_len as usize];
        let bad = |detail: String| StorageError::BadLocation {
            location: loc.to_string(),
            detail,
        };
        let digest = h.digest.ok_or_else(|| bad("record has no digest".into()))?;
        if h.value != loc.len() {
            return Err(bad(format!("record holds {} bytes", h.value)));
        }
        let desc = match h.kind {
            RecordKind::Content => Described::Content {
                digest,
                payload: payload.to_vec(),
            },
            RecordKind::BlobMap => {
                let extents = decode_extents(payload).map_err(|e| bad(e.to_string()))?;
                let mut starts = Vec::with_capacity(extents.len());
                let mut at = 0u64;
                for e in &extents {
                    starts.push(at);
                    at += u64::from(e.len);
                }
                if at != loc.len() {
                    return Err(bad(format!("blob map covers {at} bytes")));
                }
                Described::Map {
                    digest,
                    owner: h.owner,
                    extents,
                    starts,
                }
            }
            RecordKind::Chunk => return Err(bad("a chunk, not a blob".into())),
        };
        let desc = Rc::new(desc);
        let cost = data.len() as u64;
        self.inner
            .cache
            .borrow_mut()
            .put(key, Cached::Described(desc.clone()), cost);
        Ok(desc)
    }

    /// Reads one record whole and checks its header and CRC. `hint` is the
    /// size to read first when the record length is not known.
    async fn read_record(
        &self,
        shard: u16,
        segment: u32,
        block: u32,
        hint: usize,
    ) -> Result<(RecordHeader, ReadResult)> {
        let file = self.file(shard, segment).await?;
        let path = || self.inner.layout.segment_path(shard, segment);
        let pos = u64::from(block) * BLOCK_BYTES;
        let hint = hint.max(BLOCK_BYTES as usize);

        let first = file
            .read_at_aligned(pos, hint)
            .await
            .map_err(|e| StorageError::io(shard, "read segment", path(), e.into()))?;
        let header = RecordHeader::decode(&first).map_err(|e| record_error(path(), pos, e))?;
        let total = header.record_bytes() as usize;
        let data = if total <= first.len() {
            first
        } else {
            file.read_at_aligned(pos, total)
                .await
                .map_err(|e| StorageError::io(shard, "read segment", path(), e.into()))?
        };
        verify_record(&header, &data).map_err(|e| record_error(path(), pos, e))?;
        Ok((header, data))
    }

    async fn file(&self, shard: u16, segment: u32) -> Result<Rc<DmaFile>> {
        if let Some(f) = self.inner.files.borrow().get(&(shard, segment)) {
            return Ok(f.clone());
        }
        let path = self.inner.layout.segment_path(shard, segment);
        let file = OpenOptions::new()
            .read(true)
            .dma_open(&path)
            .await
            .map_err(|e| StorageError::io(shard, "open segment", &path, e.into()))?;
        let file = Rc::new(file);
        let mut files = self.inner.files.borrow_mut();
        if files.len() >= MAX_OPEN_FILES {
            // NOTE: dropping every handle is crude but bounded; a reader
            // that touches more than this many segments pays reopens.
            files.clear();
        }
        files.insert((shard, segment), file.clone());
        Ok(file)
    }

    /// A chunk's payload, from the cache or the disk.
    async fn chunk(&self, shard: u16, owner: u64, e: &Extent, offset: u64) -> Result<ChunkBytes> {
        let key = (shard, e.segment, e.block);
        if let Some(Cached::Chunk(c)) = self.inner.cache.borrow_mut().get(&key) {
            return Ok(ChunkBytes::Cached(c));
        }
        let data = self.read_chunk_record(shard, owner, e, offset).await?;
        let cache_it = {
            let cache = self.inner.cache.borrow();
            cache.capacity >= 8 * u64::from(e.len)
        };
        if cache_it {
            let payload = Rc::new(data[HEADER_BYTES..HEADER_BYTES + e.len as usize].to_vec());
            let cost = payload.len() as u64;
            self.inner
                .cache
                .borrow_mut()
                .put(key, Cached::Chunk(payload.clone()), cost);
            return Ok(ChunkBytes::Cached(payload));
        }
        Ok(ChunkBytes::Read(data))
    }
}

enum ChunkBytes {
    Cached(Rc<Vec<u8>>),
    Read(ReadResult),
}

impl ChunkBytes {
    fn payload(&self) -> &[u8] {
        match self {
            ChunkBytes::Cached(c) => c,
            ChunkBytes::Read(r) => &r[HEADER_BYTES..],
        }
    }
}

/// A range of a blob being read, chunk by chunk, in bounded memory.
pub struct BlobRead {
    reader: Reader,
    shard: u16,
    desc: Rc<Described>,
    pos: u64,
    end: u64,
    /// The read of the next extent, started before it is asked for.
    ahead: Option<(usize, JoinHandle<Result<ChunkBytes>>)>,
}

impl BlobRead {
    /// The next piece of the range (at most [`READ_CHUNK_BYTES`]), `None`
    /// at the end. Every byte comes from a record whose CRC was checked.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let desc = self.desc.clone();
        let out = match &*desc {
            Described::Content { payload, .. } => {
                let n = (self.end - self.pos).min(READ_CHUNK_BYTES) as usize;
                let at = self.pos as usize;
                payload[at..at + n].to_vec()
            }
            Described::Map {
                owner,
                extents,
                starts,
                ..
            } => {
                let i = starts.partition_point(|&s| s <= self.pos) - 1;
                let e = extents[i];
                let chunk = match self.ahead.take() {
                    Some((j, handle)) if j == i => match handle.await {
                        Some(result) => result?,
                        None => self.reader.chunk(self.shard, *owner, &e, starts[i]).await?,
                    },
                    _ => self.reader.chunk(self.shard, *owner, &e, starts[i]).await?,
                };

                // NOTE: one extent of read-ahead keeps the device busy
                // while the caller sends this one; memory stays bounded.
                if let (Some(&next), Some(&start)) = (extents.get(i + 1), starts.get(i + 1)) {
                    if start < self.end {
                        let reader = self.reader.clone();
                        let (shard, owner) = (self.shard, *owner);
                        let handle = glommio::spawn_local(async move {
                            reader.chunk(shard, owner, &next, start).await
                        })
                        .detach();
                        self.ahead = Some((i + 1, handle));
                    }
                }

                let off = (self.pos - starts[i]) as usize;
                let n = ((u64::from(e.len) - off as u64).min(self.end - self.pos)) as usize;
                chunk.payload()[off..off + n].to_vec()
            }
        };
        self.pos += out.len() as u64;
        Ok(Some(out))
    }

    /// Bytes of the range not yet returned.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

fn record_error(path: std::path::PathBuf, offset: u64, e: RecordError) -> StorageError {
    match e {
        RecordError::Version(v) => StorageError::UnsupportedVersion {
            what: "record",
            path,
            found: u32::from(v),
            supported: u32::from(RECORD_VERSION),
        },
        other => StorageError::corrupt(path, offset, other.to_string()),
    }
}

/// A byte-bounded least-recently-used cache.
struct Cache {
    capacity: u64,
    used: u64,
    clock: u64,
    entries: HashMap<RecordKey, (Rc<CachedEntry>, u64)>,
    order: BTreeMap<u64, RecordKey>,
}

struct CachedEntry {
    value: Cached,
    cost: u64,
}

impl Cache {
    fn new(capacity: u64) -> Cache {
        Cache {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &RecordKey) -> Option<Cached> {
        self.clock += 1;
        let clock = self.clock;
        let (entry, stamp) = self.entries.get_mut(key)?;
        self.order.remove(stamp);
        *stamp = clock;
        self.order.insert(clock, *key);
        Some(match &entry.value {
            Cached::Described(d) => Cached::Described(d.clone()),
            Cached::Chunk(c) => Cached::Chunk(c.clone()),
        })
    }

    fn put(&mut self, key: RecordKey, value: Cached, cost: u64) {
        if cost > self.capacity / 2 || self.entries.contains_key(&key) {
            return;
        }
        while self.used + cost > self.capacity {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((e, _)) = self.entries.remove(&old) {
                self.used -= e.cost;
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.entries
            .insert(key, (Rc::new(CachedEntry { value, cost }), self.clock));
        self.used += cost;
    }
}
