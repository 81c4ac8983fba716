//! A shard: one executor's share of the store, with its segment log,
//! metadata log, blob index partition and repository metadata.
//!
//! Every write follows the same order: bytes to a segment, fdatasync of the
//! segment, then the metadata record that makes them reachable, fdatasync of
//! the metadata log, then the reply. Metadata is applied in memory when its
//! record is queued, so the log order and the memory order are the same;
//! the caller gets its answer only once the record is durable.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::types::ManifestLink;

use glommio::io::DmaBuffer;

use crate::digest::{digest_of, Digest, DigestAlgorithm, DigestHasher};
use crate::error::{Result, StorageError};
use crate::layout::{sync_dir, Layout};
use crate::location::{BlobLocation, MAX_BLOB_BYTES};
use crate::meta::MetaOp;
use crate::metalog::MetaLog;
use crate::notify::Notify;
use crate::reader::Reader;
use crate::reclaim::ReclaimReport;
use crate::record::{
    encode_record, record_bytes_for, RecordKind, BLOCK_BYTES, HEADER_BYTES, MAX_CONTENT_BYTES,
    MAX_MAP_BYTES,
};
use crate::segment::{SegmentFile, SegmentRef, SyncError};
use crate::state::State;
use crate::types::{
    RecoveryReport, SegmentStats, ShardOptions, ShardStats, UploadId, UploadInfo, MIN_SEGMENT_BYTES,
};
use crate::upload::UploadAppend;

/// [`Shard::close`] writes a checkpoint when the metadata log has grown by
/// more than this since the last one.
pub const CLOSE_CHECKPOINT_BYTES: u64 = 1 << 20;

/// One shard of the store. Lives on one executor (`!Send`).
pub struct Shard {
    pub(crate) inner: Rc<Inner>,
}

/// The segment being appended and its reserved length.
pub(crate) struct Active {
    pub seg: Option<SegmentRef>,
    pub tail: u64,
    /// Size of the active segment file.
    pub limit: u64,
}

pub(crate) struct Inner {
    pub id: u16,
    pub dir: PathBuf,
    pub opts: ShardOptions,
    pub state: RefCell<State>,
    pub meta: MetaLog,
    pub active: RefCell<Active>,
    pub rolling: Cell<bool>,
    pub roll_notify: Notify,
    pub poison: RefCell<Option<String>>,
    pub nonce: [u8; 32],
    pub reader: Reader,
    pub layout: Layout,
    pub checkpointing: Cell<bool>,
    pub checkpoint_done: Notify,
    pub segment_syncs: Rc<Cell<u64>>,
    /// Size of the last checkpoint written or loaded.
    pub checkpoint_bytes: Cell<u64>,
    /// Dead bytes given back to the file system since open.
    pub reclaimed_bytes: Cell<u64>,
    /// Segments deleted since open.
    pub segments_deleted: Cell<u64>,
    /// The file system refused to punch holes; only whole dead segments
    /// are given back.
    pub punch_unsupported: Cell<bool>,
    pub _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Shard {
    /// Opens (recovering) or creates shard `shard` of `layout`.
    ///
    /// Loads the newest checkpoint, replays the metadata log after it, cuts
    /// a torn log tail, and scans segments that were still being written.
    /// Recovery reads with blocking calls: it runs before the shard serves.
    pub async fn open(
        layout: &Layout,
        shard: u16,
        opts: &ShardOptions,
    ) -> Result<(Shard, RecoveryReport)> {
        if shard >= layout.shard_count() {
            return Err(StorageError::InvalidArgument {
                op: "open shard",
                detail: format!("shard {shard} of {}", layout.shard_count()),
            });
        }
        if opts.segment_bytes < MIN_SEGMENT_BYTES || opts.segment_bytes % BLOCK_BYTES != 0 {
            return Err(StorageError::InvalidArgument {
                op: "open shard",
                detail: format!(
                    "segment_bytes {} must be a multiple of {BLOCK_BYTES} and at least \
                     {MIN_SEGMENT_BYTES}",
                    opts.segment_bytes
                ),
            });
        }
        let (inner, report) = crate::recovery::recover(layout, shard, opts).await?;
        Ok((Shard { inner }, report))
    }

    /// The shard's number.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// True after a failed sync: writes are refused until the shard is
    /// reopened; reads are still served.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poison.borrow().is_some()
    }

    /// Starts an upload session in `repo`; durable before it returns.
    pub async fn create_upload(&self, repo: &str) -> Result<UploadId> {
        let inner = &self.inner;
        let created_secs = now_secs();
        let (seq, tag) = inner
            .log_with(|st| {
                let seq = st.next_upload_seq;
                let tag = inner.upload_tag(seq);
                let op = MetaOp::UploadCreated {
                    seq,
                    tag,
                    repo: repo.to_string(),
                    created_secs,
                };
                Ok((vec![op], (seq, tag)))
            })
            .await?;
        Ok(UploadId {
            shard: inner.id,
            seq,
            tag,
        })
    }

    /// Starts appending to an upload. One append at a time per upload;
    /// a second gets [`StorageError::UploadBusy`].
    pub async fn append_upload(&self, id: &UploadId) -> Result<UploadAppend<'_>> {
        self.inner.writable()?;
        let (len, hasher) = {
            let mut st = self.inner.state.borrow_mut();
            let u = self.inner.upload_mut(&mut st, id)?;
            if u.busy {
                return Err(StorageError::UploadBusy { id: id.to_string() });
            }
            u.busy = true;
            let hasher = match (&u.hasher, u.len) {
                _ if !self.inner.opts.hash_while_writing => None,
                (Some(h), _) => Some(h.clone()),
                (None, 0) => Some(DigestHasher::new(DigestAlgorithm::Sha256)),
                (None, _) => None,
            };
            (u.len, hasher)
        };
        Ok(UploadAppend::new(self, id.seq, len, hasher))
    }

    /// The state of an upload, if it is open on this shard.
    pub fn upload(&self, id: &UploadId) -> Option<UploadInfo> {
        let st = self.inner.state.borrow();
        let u = st.uploads.get(&id.seq)?;
        if id.shard != self.inner.id || u.tag != id.tag {
            return None;
        }
        Some(UploadInfo {
            repo: u.repo.clone(),
            len: u.len,
            created_secs: u.created_secs,
            updated_secs: u.updated_secs,
        })
    }

    /// Every open upload, for expiry.
    pub fn uploads(&self) -> Vec<(UploadId, UploadInfo)> {
        let st = self.inner.state.borrow();
        let mut out: Vec<_> = st
            .uploads
            .iter()
            .map(|(&seq, u)| {
                let id = UploadId {
                    shard: self.inner.id,
                    seq,
                    tag: u.tag,
                };
                let info = UploadInfo {
                    repo: u.repo.clone(),
                    len: u.len,
                    created_secs: u.created_secs,
                    updated_secs: u.updated_secs,
                };
                (id, info)
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Finishes an upload as a blob with digest `expected`.
    ///
    /// On a digest mismatch nothing becomes visible and the upload stays
    /// open. On success the blob map is durable and the upload is closed;
    /// the caller then indexes the location on the digest's shard.
    pub async fn commit_upload(&self, id: &UploadId, expected: &Digest) -> Result<BlobLocation> {
        let inner = &self.inner;
        inner.writable()?;
        let (len, extents, hasher) = {
            let mut st = inner.state.borrow_mut();
            let u = inner.upload_mut(&mut st, id)?;
            if u.busy {
                return Err(StorageError::UploadBusy { id: id.to_string() });
            }
            u.busy = true;
            (u.len, u.extents.clone(), u.hasher.clone())
        };
        let _busy = BusyGuard { inner, seq: id.seq };

        let actual = match hasher {
            Some(h) if h.algorithm() == expected.algorithm() => h.finish(),
            _ => {
                inner
                    .reader
                    .hash_extents(inner.id, id.seq, &extents, expected.algorithm())
                    .await?
            }
        };
        if actual != *expected {
            return Err(StorageError::DigestMismatch {
                expected: Box::new(*expected),
                actual: Box::new(actual),
            });
        }

        let mut payload = Vec::with_capacity(extents.len() * 12);
        for e in &extents {
            e.encode(&mut payload);
        }
        if payload.len() > MAX_MAP_BYTES {
            return Err(StorageError::InvalidArgument {
                op: "commit upload",
                detail: format!("blob of {len} bytes has too many chunks"),
            });
        }
        let mut buf = inner.alloc(record_bytes_for(payload.len()));
        let b = buf.as_bytes_mut();
        b[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(&payload);
        encode_record(
            b,
            RecordKind::BlobMap,
            payload.len(),
            id.seq,
            len,
            Some(expected),
        );
        let (seg, block) = inner.write_durable(buf).await?;

        inner
            .log_with(|_| {
                let op = MetaOp::UploadClosed {
                    seq: id.seq,
                    cancelled: false,
                };
                Ok((vec![op], ()))
            })
            .await?;
        Ok(BlobLocation::new(inner.id, seg, block, len))
    }

    /// Drops an upload; its bytes become dead space.
    pub async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        let inner = &self.inner;
        inner
            .log_with(|st| {
                let u = st
                    .uploads
                    .get(&id.seq)
                    .filter(|u| u.tag == id.tag && id.shard == inner.id)
                    .ok_or_else(|| inner.unknown(id))?;
                if u.busy {
                    return Err(StorageError::UploadBusy { id: id.to_string() });
                }
                let op = MetaOp::UploadClosed {
                    seq: id.seq,
                    cancelled: true,
                };
                Ok((vec![op], ()))
            })
            .await
    }

    /// Stores small content (a manifest) in one record after checking its
    /// digest; durable before it returns.
    pub async fn put_content(&self, bytes: &[u8], digest: &Digest) -> Result<BlobLocation> {
        let inner = &self.inner;
        inner.writable()?;
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(StorageError::InvalidArgument {
                op: "put content",
                detail: format!("{} bytes, limit {MAX_CONTENT_BYTES}", bytes.len()),
            });
        }
        let actual = digest_of(digest.algorithm(), bytes);
        if actual != *digest {
            return Err(StorageError::DigestMismatch {
                expected: Box::new(*digest),
                actual: Box::new(actual),
            });
        }

        let mut buf = inner.alloc(record_bytes_for(bytes.len()));
        let b = buf.as_bytes_mut();
        b[HEADER_BYTES..HEADER_BYTES + bytes.len()].copy_from_slice(bytes);
        let len = bytes.len() as u64;
        encode_record(b, RecordKind::Content, bytes.len(), 0, len, Some(digest));
        let (seg, block) = inner.write_durable(buf).await?;
        Ok(BlobLocation::new(inner.id, seg, block, len))
    }

    /// Records where the blob `digest` lives; durable before it returns.
    pub async fn index_put(&self, digest: &Digest, loc: BlobLocation) -> Result<()> {
        self.inner
            .log_with(|_| {
                let op = MetaOp::IndexPut {
                    digest: *digest,
                    loc,
                };
                Ok((vec![op], ()))
            })
            .await
    }

    /// Records many index entries with one sync (bulk loads, repairs);
    /// durable before it returns.
    pub async fn index_put_batch(&self, entries: &[(Digest, BlobLocation)]) -> Result<()> {
        self.inner
            .log_with(|_| {
                let ops = entries
                    .iter()
                    .map(|&(digest, loc)| MetaOp::IndexPut { digest, loc })
                    .collect();
                Ok((ops, ()))
            })
            .await
    }

    /// Where the blob `digest` lives, if it is indexed here.
    ///
    /// NOTE: a change is visible here as soon as it is logged, up to one
    /// group commit before it is durable. A caller that acknowledges
    /// something on the strength of what it read calls [`Shard::settle`]
    /// first.
    pub fn index_get(&self, digest: &Digest) -> Option<BlobLocation> {
        self.inner.state.borrow().index_get(digest)
    }

    /// Waits until every metadata change visible on this shard is
    /// durable; returns at once when none is pending.
    ///
    /// A reader that found an entry and is about to acknowledge a client
    /// because of it (a mount, a second upload of a blob already stored)
    /// calls this first, so that a crash cannot take back what the
    /// acknowledgement relied on.
    pub async fn settle(&self) -> Result<()> {
        self.inner.writable()?;
        self.inner
            .meta
            .flush()
            .await
            .map_err(|cause| self.inner.poisoned_by(cause))
    }

    /// Removes the index entry; returns whether there was one.
    pub async fn index_remove(&self, digest: &Digest) -> Result<bool> {
        self.inner
            .log_with(|st| {
                if st.index_get(digest).is_none() {
                    return Ok((vec![], false));
                }
                Ok((vec![MetaOp::IndexRemove { digest: *digest }], true))
            })
            .await
    }

    /// Entries in this shard's blob index.
    pub fn index_len(&self) -> usize {
        self.inner.state.borrow().index_len()
    }

    /// Links a blob into a repository.
    pub async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        self.inner
            .log_with(|_| {
                let op = MetaOp::LinkBlob {
                    repo: repo.to_string(),
                    digest: *digest,
                    size,
                };
                Ok((vec![op], ()))
            })
            .await
    }

    /// Unlinks a blob from a repository; returns whether it was linked.
    pub async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.inner
            .log_with(|st| {
                let linked = st
                    .repos
                    .get(repo)
                    .is_some_and(|r| r.blobs.contains_key(digest));
                if !linked {
                    return Ok((vec![], false));
                }
                let op = MetaOp::UnlinkBlob {
                    repo: repo.to_string(),
                    digest: *digest,
                };
                Ok((vec![op], true))
            })
            .await
    }

    /// The size of a blob linked into `repo`.
    pub fn blob_link(&self, repo: &str, digest: &Digest) -> Option<u64> {
        let st = self.inner.state.borrow();
        st.repos.get(repo)?.blobs.get(digest).copied()
    }

    /// Links a manifest into a repository (replacing a previous link of the
    /// same digest).
    pub async fn link_manifest(&self, repo: &str, link: ManifestLink) -> Result<()> {
        self.inner
            .log_with(|_| {
                let op = MetaOp::LinkManifest {
                    repo: repo.to_string(),
                    link: link.clone(),
                };
                Ok((vec![op], ()))
            })
            .await
    }

    /// Unlinks a manifest and drops the tags that point at it; returns
    /// whether it was linked.
    pub async fn unlink_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.inner
            .log_with(|st| {
                let Some(r) = st.repos.get(repo) else {
                    return Ok((vec![], false));
                };
                if !r.manifests.contains_key(digest) {
                    return Ok((vec![], false));
                }
                let dropped_tags = r
                    .tags
                    .iter()
                    .filter(|(_, d)| *d == digest)
                    .map(|(t, _)| t.clone())
                    .collect();
                let op = MetaOp::UnlinkManifest {
                    repo: repo.to_string(),
                    digest: *digest,
                    dropped_tags,
                };
                Ok((vec![op], true))
            })
            .await
    }

    /// The link of a manifest in `repo`.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Option<ManifestLink> {
        let st = self.inner.state.borrow();
        st.repos.get(repo)?.manifests.get(digest).cloned()
    }

    /// Points `tag` at a manifest.
    pub async fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        self.inner
            .log_with(|_| {
                let op = MetaOp::SetTag {
                    repo: repo.to_string(),
                    tag: tag.to_string(),
                    digest: *digest,
                };
                Ok((vec![op], ()))
            })
            .await
    }

    /// Removes a tag; returns whether it existed.
    pub async fn remove_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.inner
            .log_with(|st| {
                let exists = st.repos.get(repo).is_some_and(|r| r.tags.contains_key(tag));
                if !exists {
                    return Ok((vec![], false));
                }
                let op = MetaOp::RemoveTag {
                    repo: repo.to_string(),
                    tag: tag.to_string(),
                };
                Ok((vec![op], true))
            })
            .await
    }

    /// The manifest a tag points at.
    pub fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        let st = self.inner.state.borrow();
        st.repos.get(repo)?.tags.get(tag).copied()
    }

    /// The tags of a repository in lexical order; `None` when the
    /// repository is unknown on this shard.
    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let st = self.inner.state.borrow();
        Some(st.repos.get(repo)?.tags.keys().cloned().collect())
    }

    /// Repositories with at least one link or tag, sorted.
    pub fn repositories(&self) -> Vec<String> {
        self.inner.state.borrow().repos.keys().cloned().collect()
    }

    /// Manifests in `repo` whose subject is `subject`, by digest.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Vec<ManifestLink> {
        let st = self.inner.state.borrow();
        let Some(r) = st.repos.get(repo) else {
            return Vec::new();
        };
        let Some(set) = r.referrers.get(subject) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|d| r.manifests.get(d).cloned())
            .collect()
    }

    /// Blobs linked into `repo`, with their sizes, sorted by digest.
    pub fn blob_links(&self, repo: &str) -> Vec<(Digest, u64)> {
        let st = self.inner.state.borrow();
        let Some(r) = st.repos.get(repo) else {
            return Vec::new();
        };
        let mut links: Vec<(Digest, u64)> = r.blobs.iter().map(|(d, s)| (*d, *s)).collect();
        links.sort();
        links
    }

    /// Manifests linked into `repo`, sorted by digest.
    pub fn manifests(&self, repo: &str) -> Vec<ManifestLink> {
        let st = self.inner.state.borrow();
        let Some(r) = st.repos.get(repo) else {
            return Vec::new();
        };
        let mut links: Vec<ManifestLink> = r.manifests.values().cloned().collect();
        links.sort_by_key(|link| link.digest);
        links
    }

    /// Counters: segments and their live bytes, index size, uploads.
    pub fn stats(&self) -> ShardStats {
        let st = self.inner.state.borrow();
        let segments = st
            .segments
            .iter()
            .map(|(&id, s)| SegmentStats {
                id,
                written_bytes: s.written_bytes,
                live_bytes: s.written_bytes.saturating_sub(s.dead_bytes),
                sealed: s.sealed,
            })
            .collect();
        ShardStats {
            shard: self.inner.id,
            segments,
            index_entries: st.index_len(),
            index_heap_bytes: st.index256.heap_bytes() + st.index512.heap_bytes(),
            uploads: st.uploads.len(),
            repositories: st.repos.len(),
            meta_generation: self.inner.meta.generation(),
            meta_bytes: self.inner.meta.bytes_in_generation(),
            poisoned: self.is_poisoned(),
            segment_syncs: self.inner.segment_syncs.get(),
            meta_syncs: self.inner.meta.syncs(),
            reclaimed_bytes: self.inner.reclaimed_bytes.get(),
            segments_deleted: self.inner.segments_deleted.get(),
            dead_records_waiting: st.to_punch.len() as u64,
        }
    }

    /// Marks the bytes behind a location dead for space accounting (the
    /// record and, for a blob, its chunks). Call it on the shard that wrote
    /// the location (`loc.shard()`), after the last reference is gone.
    pub async fn mark_dead(&self, loc: &BlobLocation) -> Result<()> {
        let inner = &self.inner;
        if loc.shard() != inner.id {
            return Err(StorageError::InvalidArgument {
                op: "mark dead",
                detail: format!("{loc} belongs to another shard than {}", inner.id),
            });
        }
        let records = inner.reader.record_footprint(loc).await?;
        inner
            .log_with(|_| {
                Ok((
                    vec![MetaOp::DeadRecords {
                        records: records.clone(),
                    }],
                    (),
                ))
            })
            .await
    }

    /// Gives the disk space of dead records back: punches them out of
    /// their segment files (once they have been dead for a second, so that
    /// writes of a dropped append have landed) and deletes sealed segments
    /// in which nothing is live. Cheap when there is nothing to do; run it
    /// periodically, in a low-priority task queue.
    ///
    /// Fails only on a poisoned shard or when a deletion cannot be logged;
    /// a record that could not be punched is logged and skipped (its space
    /// comes back when its whole segment is deleted).
    pub async fn reclaim(&self) -> Result<ReclaimReport> {
        crate::reclaim::reclaim(&self.inner).await
    }

    /// Test hook: the next metadata sync of this shard fails, as a failing
    /// disk would make it. Not for production use.
    #[doc(hidden)]
    pub fn inject_sync_failure(&self) {
        self.inner.meta.fail_next_sync.set(true);
    }

    /// Writes what is queued, waits for a running checkpoint, writes a
    /// final one when the log has grown past [`CLOSE_CHECKPOINT_BYTES`] (so
    /// a clean restart replays little), and closes.
    ///
    /// Dropping a shard instead loses nothing acknowledged, but a background
    /// checkpoint then keeps the shard's lock until it finishes, so opening
    /// the shard again in the same process may fail with `ShardLocked`.
    pub async fn close(self) -> Result<()> {
        while self.inner.checkpointing.get() {
            self.inner.checkpoint_done.wait().await;
        }
        if self.inner.meta.bytes_in_generation() > CLOSE_CHECKPOINT_BYTES {
            self.checkpoint().await?;
        }

        // Every acknowledged record is synced; record where the active
        // segment ends so the next open resumes it without a scan.
        let active = {
            let a = self.inner.active.borrow();
            a.seg.as_ref().map(|s| (s.id, a.tail))
        };
        if let (Some((segment, written_bytes)), Ok(())) = (active, self.inner.writable()) {
            self.inner
                .log_with(|_| {
                    let op = MetaOp::SegmentClean {
                        segment,
                        written_bytes,
                    };
                    Ok((vec![op], ()))
                })
                .await?;
        }
        self.inner
            .meta
            .flush()
            .await
            .map_err(|cause| self.inner.poisoned_by(cause))
    }

    /// Starts a checkpoint now (normally they start on their own) and waits
    /// for it. A failed checkpoint is logged, not returned: the log it would
    /// have replaced stays and is replayed instead.
    pub async fn checkpoint(&self) -> Result<()> {
        self.inner.writable()?;
        while self.inner.checkpointing.get() {
            self.inner.checkpoint_done.wait().await;
        }
        crate::checkpoint::start(&self.inner, true);
        while self.inner.checkpointing.get() {
            self.inner.checkpoint_done.wait().await;
        }
        Ok(())
    }
}

impl Inner {
    /// Refuses writes on a poisoned shard.
    pub fn writable(&self) -> Result<()> {
        match &*self.poison.borrow() {
            Some(cause) => Err(StorageError::Poisoned {
                shard: self.id,
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the shard (logging once) and returns the error to report.
    pub fn poisoned_by(&self, cause: String) -> StorageError {
        let mut p = self.poison.borrow_mut();
        if p.is_none() {
            tracing::error!(
                shard = self.id,
                cause = %cause,
                "sync failed; shard refuses writes until it is reopened"
            );
            *p = Some(cause.clone());
        }
        StorageError::Poisoned {
            shard: self.id,
            cause: p.clone().unwrap_or(cause),
        }
    }

    /// Builds metadata operations from the current state, applies them,
    /// logs them, and returns once they are durable.
    pub async fn log_with<R>(
        self: &Rc<Self>,
        mut build: impl FnMut(&State) -> Result<(Vec<MetaOp>, R)>,
    ) -> Result<R> {
        let mut room = 64 << 10;
        loop {
            self.writable()?;
            self.meta
                .reserve(room)
                .await
                .map_err(|e| StorageError::io(self.id, "grow metadata log", &self.dir, e))?;
            self.writable()?;

            // NOTE: building, applying and queueing happen without an await
            // in between, so no other task sees a state the log does not.
            let (ops, result) = build(&self.state.borrow())?;
            if ops.is_empty() {
                return Ok(result);
            }
            let mut frames = Vec::new();
            for op in &ops {
                op.encode_frame(&mut frames);
            }
            if frames.len() as u64 > room {
                room = frames.len() as u64 + (64 << 10);
                continue;
            }
            {
                let mut st = self.state.borrow_mut();
                for op in ops {
                    st.apply(op);
                }
            }
            let lsn = self.meta.append(&frames);
            crate::checkpoint::start(self, false);

            self.meta
                .wait_durable(lsn)
                .await
                .map_err(|cause| self.poisoned_by(cause))?;
            return Ok(result);
        }
    }

    /// Queues operations without waiting for them to be durable (space
    /// accounting after a failed or dropped write).
    pub fn log_later(&self, ops: Vec<MetaOp>) {
        if self.writable().is_err() {
            return;
        }
        let mut frames = Vec::new();
        for op in &ops {
            op.encode_frame(&mut frames);
        }
        {
            let mut st = self.state.borrow_mut();
            for op in ops {
                st.apply(op);
            }
        }
        self.meta.append(&frames);
    }

    /// An aligned buffer for a record of `bytes`.
    pub fn alloc(&self, bytes: u64) -> DmaBuffer {
        let mut buf = self.meta.alloc(bytes as usize);
        buf.as_bytes_mut().fill(0);
        buf
    }

    /// Writes one record and makes it durable; returns (segment, block).
    pub async fn write_durable(&self, buf: DmaBuffer) -> Result<(u32, u32)> {
        let (seg, block, ticket) = self.write_record(buf).await?;
        self.sync_segment(&seg, ticket).await?;
        Ok((seg.id, block))
    }

    /// Writes one record (not yet durable); returns its segment, block and
    /// sync ticket.
    pub async fn write_record(&self, buf: DmaBuffer) -> Result<(SegmentRef, u32, u64)> {
        let bytes = buf.len() as u64;
        let (seg, block) = self.reserve_space(bytes).await?;
        match seg.write(buf, block).await {
            Ok(ticket) => Ok((seg, block, ticket)),
            Err(e) => {
                self.log_later(vec![MetaOp::DeadRecords {
                    records: vec![(seg.id, block, bytes)],
                }]);
                Err(StorageError::io(self.id, "write segment", &seg.path, e))
            }
        }
    }

    /// Makes the writes of `seg` up to `ticket` durable, poisoning the
    /// shard if the sync fails.
    pub async fn sync_segment(&self, seg: &SegmentFile, ticket: u64) -> Result<()> {
        match seg.sync_through(ticket).await {
            Ok(()) => Ok(()),
            Err(SyncError::Io(e)) => {
                Err(self.poisoned_by(format!("fdatasync {}: {e}", seg.path.display())))
            }
            Err(SyncError::Failed) => Err(self.poisoned_by(format!(
                "earlier fdatasync of {} failed",
                seg.path.display()
            ))),
        }
    }

    /// Reserves `bytes` at the end of the active segment, starting a new
    /// segment when it is full.
    pub async fn reserve_space(&self, bytes: u64) -> Result<(SegmentRef, u32)> {
        if bytes > self.opts.segment_bytes - BLOCK_BYTES {
            return Err(StorageError::InvalidArgument {
                op: "write record",
                detail: format!(
                    "record of {bytes} bytes does not fit a segment of {}",
                    self.opts.segment_bytes
                ),
            });
        }
        loop {
            self.writable()?;
            {
                let mut active = self.active.borrow_mut();
                let tail = active.tail;
                if let Some(seg) = &active.seg {
                    if tail + bytes <= active.limit {
                        let seg = seg.clone();
                        active.tail = tail + bytes;
                        let mut st = self.state.borrow_mut();
                        st.segments.entry(seg.id).or_default().written_bytes = tail + bytes;
                        return Ok((seg, (tail / BLOCK_BYTES) as u32));
                    }
                }
            }
            if self.rolling.get() {
                self.roll_notify.wait().await;
                continue;
            }
            self.rolling.set(true);
            let result = self.roll().await;
            self.rolling.set(false);
            self.roll_notify.notify_all();
            result?;
        }
    }

    /// Seals the active segment and starts the next one.
    async fn roll(&self) -> Result<()> {
        let id = {
            let st = self.state.borrow();
            if let Some(max) = self.opts.max_segments {
                if st.segments.len() as u64 >= u64::from(max) {
                    return Err(StorageError::NoSpace {
                        shard: self.id,
                        op: "start segment",
                        detail: format!("capacity limit of {max} segments reached"),
                    });
                }
            }
            st.next_segment
        };
        self.state.borrow_mut().next_segment = id + 1;

        let path = self.layout.segment_path(self.id, id);
        let seg = SegmentFile::create(
            &path,
            self.id,
            id,
            self.opts.segment_bytes,
            self.segment_syncs.clone(),
        )
        .await
        .map_err(|e| StorageError::io(self.id, "create segment", &path, e))?;
        sync_dir(&self.dir)
            .map_err(|e| StorageError::io(self.id, "sync shard dir", &self.dir, e))?;

        let old = {
            let mut active = self.active.borrow_mut();
            let old = active
                .seg
                .replace(Rc::new(seg))
                .map(|s| (s.id, active.tail));
            active.tail = BLOCK_BYTES;
            active.limit = self.opts.segment_bytes;
            old
        };
        self.state
            .borrow_mut()
            .segments
            .entry(id)
            .or_default()
            .written_bytes = BLOCK_BYTES;
        if let Some((old_id, tail)) = old {
            self.log_later(vec![MetaOp::SegmentSealed {
                segment: old_id,
                written_bytes: tail,
            }]);
        }
        tracing::debug!(shard = self.id, segment = id, "started segment");
        Ok(())
    }

    fn upload_mut<'s>(
        &self,
        st: &'s mut State,
        id: &UploadId,
    ) -> Result<&'s mut crate::state::Upload> {
        match st.uploads.get_mut(&id.seq) {
            Some(u) if u.tag == id.tag && id.shard == self.id => Ok(u),
            _ => Err(self.unknown(id)),
        }
    }

    fn unknown(&self, id: &UploadId) -> StorageError {
        StorageError::UploadUnknown {
            shard: self.id,
            id: id.to_string(),
        }
    }

    /// The unguessable part of an upload id.
    fn upload_tag(&self, seq: u64) -> u64 {
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(&self.nonce);
        h.update(&seq.to_le_bytes());
        let d = h.finish();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d.as_bytes()[..8]);
        u64::from_le_bytes(b)
    }

    /// Clears the busy mark of an upload.
    pub fn release_upload(&self, seq: u64) {
        if let Some(u) = self.state.borrow_mut().uploads.get_mut(&seq) {
            u.busy = false;
        }
    }
}

struct BusyGuard<'a> {
    inner: &'a Inner,
    seq: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.inner.release_upload(self.seq);
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses blobs larger than a location can describe.
pub(crate) fn check_blob_len(len: u64) -> Result<()> {
    if len > MAX_BLOB_BYTES {
        return Err(StorageError::InvalidArgument {
            op: "append upload",
            detail: format!("upload would exceed {MAX_BLOB_BYTES} bytes"),
        });
    }
    Ok(())
}
