//! A shard's metadata in memory, and how each operation changes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::digest::{Digest, DigestAlgorithm, DigestHasher};
use crate::index::SortedIndex;
use crate::location::{BlobLocation, PACKED_LOCATION_BYTES};
use crate::meta::MetaOp;
use crate::record::{Extent, BLOCK_BYTES};
use crate::shard::ManifestLink;

/// An open upload session.
pub(crate) struct Upload {
    pub tag: u64,
    pub repo: String,
    pub created_secs: u64,
    pub updated_secs: u64,
    /// Durable length.
    pub len: u64,
    pub extents: Vec<Extent>,
    /// sha256 of the first `len` bytes, when it was computed in this
    /// process; `None` after a restart (commit then re-reads the bytes).
    pub hasher: Option<DigestHasher>,
    /// An append is in progress.
    pub busy: bool,
}

/// One repository's links and tags.
#[derive(Default)]
pub(crate) struct Repo {
    pub blobs: HashMap<Digest, u64>,
    pub manifests: HashMap<Digest, ManifestLink>,
    pub tags: BTreeMap<String, Digest>,
    /// subject digest -> manifests that name it as their subject.
    pub referrers: HashMap<Digest, BTreeSet<Digest>>,
}

impl Repo {
    fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.manifests.is_empty() && self.tags.is_empty()
    }
}

/// Space accounting of one of this shard's segments.
#[derive(Default)]
pub(crate) struct SegmentInfo {
    /// Bytes reserved by records, the segment header included.
    pub written_bytes: u64,
    pub sealed: bool,
    /// block -> record bytes, of records that hold nothing live.
    pub dead: HashMap<u32, u64>,
    pub dead_bytes: u64,
    /// Set by a clean close: where its records end, so no scan is needed.
    pub clean_tail: Option<u64>,
}

/// A dead record whose disk blocks are still to be given back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Punch {
    pub segment: u32,
    pub block: u32,
    pub bytes: u64,
    /// When it was marked dead in this process.
    pub marked: Instant,
    /// False for records found dead at recovery: an earlier process may
    /// already have given their blocks back, so they are not counted again.
    pub counted: bool,
}

/// Everything a shard knows about its metadata.
pub(crate) struct State {
    pub uploads: HashMap<u64, Upload>,
    pub repos: BTreeMap<String, Repo>,
    pub index256: SortedIndex<32>,
    pub index512: SortedIndex<64>,
    pub segments: BTreeMap<u32, SegmentInfo>,
    /// Segments whose every record was dead and whose file was deleted (or
    /// is being deleted). Ids are never reused.
    pub deleted: BTreeSet<u32>,
    /// Dead records not yet punched out of their segment file.
    pub to_punch: Vec<Punch>,
    /// Set while recovery replays: dead records found then are punched
    /// again but not counted as reclaimed.
    pub recovering: bool,
    pub next_upload_seq: u64,
    pub next_segment: u32,
}

impl State {
    pub fn new() -> State {
        State {
            uploads: HashMap::new(),
            repos: BTreeMap::new(),
            index256: SortedIndex::new(),
            index512: SortedIndex::new(),
            segments: BTreeMap::new(),
            deleted: BTreeSet::new(),
            to_punch: Vec::new(),
            recovering: false,
            next_upload_seq: 1,
            next_segment: 1,
        }
    }

    pub fn index_get(&self, d: &Digest) -> Option<BlobLocation> {
        match d.algorithm() {
            DigestAlgorithm::Sha256 => self.index256.get(&key32(d)),
            DigestAlgorithm::Sha512 => self.index512.get(&key64(d)),
        }
    }

    pub fn index_len(&self) -> usize {
        self.index256.len() + self.index512.len()
    }

    /// Applies one operation. Every operation is an assignment, so applying
    /// a suffix of the log twice gives the same state.
    pub fn apply(&mut self, op: MetaOp) {
        match op {
            MetaOp::UploadCreated {
                seq,
                tag,
                repo,
                created_secs,
            } => {
                self.bump_upload_seq(seq);
                self.uploads.insert(
                    seq,
                    Upload {
                        tag,
                        repo,
                        created_secs,
                        updated_secs: created_secs,
                        len: 0,
                        extents: Vec::new(),
                        hasher: None,
                        busy: false,
                    },
                );
            }
            MetaOp::UploadAppended {
                seq,
                at_len,
                new_len,
                updated_secs,
                extents,
            } => {
                if let Some(u) = self.uploads.get_mut(&seq) {
                    truncate_extents(&mut u.extents, at_len);
                    let have: u64 = u.extents.iter().map(|e| u64::from(e.len)).sum();
                    if have == at_len {
                        u.extents.extend_from_slice(&extents);
                        u.len = new_len;
                        u.updated_secs = updated_secs;
                        u.hasher = None;
                    }
                }
            }
            MetaOp::UploadClosed { seq, cancelled } => {
                if let Some(u) = self.uploads.remove(&seq) {
                    if cancelled {
                        let dead: Vec<_> = u
                            .extents
                            .iter()
                            .map(|e| (e.segment, e.block, e.record_bytes()))
                            .collect();
                        self.mark_dead(&dead);
                    }
                }
            }
            MetaOp::IndexPut { digest, loc } => {
                match digest.algorithm() {
                    DigestAlgorithm::Sha256 => self.index256.insert(&key32(&digest), &loc),
                    DigestAlgorithm::Sha512 => self.index512.insert(&key64(&digest), &loc),
                };
            }
            MetaOp::IndexRemove { digest } => {
                match digest.algorithm() {
                    DigestAlgorithm::Sha256 => self.index256.remove(&key32(&digest)),
                    DigestAlgorithm::Sha512 => self.index512.remove(&key64(&digest)),
                };
            }
            MetaOp::LinkBlob { repo, digest, size } => {
                self.repos
                    .entry(repo)
                    .or_default()
                    .blobs
                    .insert(digest, size);
            }
            MetaOp::UnlinkBlob { repo, digest } => {
                self.edit_repo(&repo, |r| {
                    r.blobs.remove(&digest);
                });
            }
            MetaOp::LinkManifest { repo, link } => {
                let r = self.repos.entry(repo).or_default();
                if let Some(old) = r.manifests.remove(&link.digest) {
                    remove_referrer(r, &old);
                }
                if let Some(subject) = link.subject {
                    r.referrers.entry(subject).or_default().insert(link.digest);
                }
                r.manifests.insert(link.digest, link);
            }
            MetaOp::UnlinkManifest {
                repo,
                digest,
                dropped_tags,
            } => {
                self.edit_repo(&repo, |r| {
                    if let Some(old) = r.manifests.remove(&digest) {
                        remove_referrer(r, &old);
                    }
                    for t in &dropped_tags {
                        r.tags.remove(t);
                    }
                });
            }
            MetaOp::SetTag { repo, tag, digest } => {
                self.repos.entry(repo).or_default().tags.insert(tag, digest);
            }
            MetaOp::RemoveTag { repo, tag } => {
                self.edit_repo(&repo, |r| {
                    r.tags.remove(&tag);
                });
            }
            MetaOp::SegmentSealed { segment, .. }
            | MetaOp::SegmentClean { segment, .. }
            | MetaOp::SegmentDirty { segment, .. }
                if self.deleted.contains(&segment) => {}
            MetaOp::SegmentSealed {
                segment,
                written_bytes,
            } => {
                self.cut_dead_after(segment, written_bytes);
                let s = self.segments.entry(segment).or_default();
                s.written_bytes = written_bytes;
                s.sealed = true;
                self.next_segment = self.next_segment.max(segment.saturating_add(1));
            }
            MetaOp::DeadRecords { records } => self.mark_dead(&records),
            MetaOp::UploadState {
                seq,
                tag,
                repo,
                created_secs,
                updated_secs,
                len,
                extents,
            } => {
                self.bump_upload_seq(seq);
                self.uploads.insert(
                    seq,
                    Upload {
                        tag,
                        repo,
                        created_secs,
                        updated_secs,
                        len,
                        extents,
                        hasher: None,
                        busy: false,
                    },
                );
            }
            MetaOp::IndexBatch { algorithm, entries } => {
                let each = algorithm.byte_len() + PACKED_LOCATION_BYTES;
                for e in entries.chunks_exact(each) {
                    let (k, l) = e.split_at(algorithm.byte_len());
                    let mut packed = [0u8; PACKED_LOCATION_BYTES];
                    packed.copy_from_slice(l);
                    let loc = BlobLocation::unpack(&packed);
                    match algorithm {
                        DigestAlgorithm::Sha256 => {
                            let mut key = [0u8; 32];
                            key.copy_from_slice(k);
                            self.index256.insert(&key, &loc);
                        }
                        DigestAlgorithm::Sha512 => {
                            let mut key = [0u8; 64];
                            key.copy_from_slice(k);
                            self.index512.insert(&key, &loc);
                        }
                    }
                }
            }
            MetaOp::NextIds {
                upload_seq,
                segment,
            } => {
                self.next_upload_seq = self.next_upload_seq.max(upload_seq);
                self.next_segment = self.next_segment.max(segment);
            }
            MetaOp::End { .. } => {}
            MetaOp::SegmentClean {
                segment,
                written_bytes,
            } => {
                let s = self.segments.entry(segment).or_default();
                s.clean_tail = Some(written_bytes);
                s.written_bytes = written_bytes;
                self.next_segment = self.next_segment.max(segment.saturating_add(1));
            }
            MetaOp::SegmentDirty {
                segment,
                written_bytes,
            } => {
                self.cut_dead_after(segment, written_bytes);
                let s = self.segments.entry(segment).or_default();
                s.clean_tail = None;
                s.written_bytes = written_bytes;
            }
            MetaOp::SegmentDeleted { segment } => {
                self.segments.remove(&segment);
                self.deleted.insert(segment);
                self.to_punch.retain(|p| p.segment != segment);
                self.next_segment = self.next_segment.max(segment.saturating_add(1));
            }
        }
    }

    /// Marks records dead, once each, and queues their blocks to be
    /// punched out of the segment file.
    pub fn mark_dead(&mut self, records: &[(u32, u32, u64)]) {
        let marked = Instant::now();
        for &(segment, block, bytes) in records {
            if self.deleted.contains(&segment) {
                continue;
            }
            let s = self.segments.entry(segment).or_default();
            if s.dead.insert(block, bytes).is_none() {
                s.dead_bytes += bytes;
                self.to_punch.push(Punch {
                    segment,
                    block,
                    bytes,
                    marked,
                    counted: !self.recovering,
                });
            }
        }
    }

    /// Forgets dead records at or past `written_bytes` of `segment`.
    ///
    /// IMPORTANT: recovery ends a segment after its last valid record, and
    /// dead records past that point may have been punched away; appends
    /// then write new, live records over the same blocks, which must not
    /// count (or be punched) as dead.
    fn cut_dead_after(&mut self, segment: u32, written_bytes: u64) {
        let first = written_bytes.div_ceil(BLOCK_BYTES);
        if let Some(s) = self.segments.get_mut(&segment) {
            let before = s.dead.len();
            s.dead.retain(|&block, _| u64::from(block) < first);
            if s.dead.len() != before {
                s.dead_bytes = s.dead.values().sum();
            }
        }
        self.to_punch
            .retain(|p| p.segment != segment || u64::from(p.block) < first);
    }

    /// Sealed segments that hold nothing live any more: only their header
    /// block is not dead.
    pub fn dead_segments(&self) -> Vec<u32> {
        self.segments
            .iter()
            .filter(|(_, s)| s.sealed && s.written_bytes <= s.dead_bytes + BLOCK_BYTES)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Every operation that rebuilds this state except the index, for a
    /// checkpoint. Runs synchronously, so it is one consistent cut.
    pub fn snapshot_without_index(&self) -> Vec<MetaOp> {
        let mut ops = vec![MetaOp::NextIds {
            upload_seq: self.next_upload_seq,
            segment: self.next_segment,
        }];
        for &segment in &self.deleted {
            ops.push(MetaOp::SegmentDeleted { segment });
        }
        for (&segment, s) in &self.segments {
            if s.sealed {
                ops.push(MetaOp::SegmentSealed {
                    segment,
                    written_bytes: s.written_bytes,
                });
            } else if let Some(written_bytes) = s.clean_tail {
                ops.push(MetaOp::SegmentClean {
                    segment,
                    written_bytes,
                });
            }
            let dead: Vec<_> = s.dead.iter().map(|(&b, &n)| (segment, b, n)).collect();
            for part in dead.chunks(4096) {
                ops.push(MetaOp::DeadRecords {
                    records: part.to_vec(),
                });
            }
        }
        for (&seq, u) in &self.uploads {
            ops.push(MetaOp::UploadState {
                seq,
                tag: u.tag,
                repo: u.repo.clone(),
                created_secs: u.created_secs,
                updated_secs: u.updated_secs,
                len: u.len,
                extents: u.extents.clone(),
            });
        }
        for (name, r) in &self.repos {
            for (d, &size) in &r.blobs {
                ops.push(MetaOp::LinkBlob {
                    repo: name.clone(),
                    digest: *d,
                    size,
                });
            }
            for link in r.manifests.values() {
                ops.push(MetaOp::LinkManifest {
                    repo: name.clone(),
                    link: link.clone(),
                });
            }
            for (tag, d) in &r.tags {
                ops.push(MetaOp::SetTag {
                    repo: name.clone(),
                    tag: tag.clone(),
                    digest: *d,
                });
            }
        }
        ops
    }

    fn bump_upload_seq(&mut self, seq: u64) {
        self.next_upload_seq = self.next_upload_seq.max(seq.saturating_add(1));
    }

    fn edit_repo(&mut self, repo: &str, f: impl FnOnce(&mut Repo)) {
        if let Some(r) = self.repos.get_mut(repo) {
            f(r);
            if r.is_empty() {
                self.repos.remove(repo);
            }
        }
    }
}

fn remove_referrer(r: &mut Repo, old: &ManifestLink) {
    if let Some(subject) = &old.subject {
        if let Some(set) = r.referrers.get_mut(subject) {
            set.remove(&old.digest);
            if set.is_empty() {
                r.referrers.remove(subject);
            }
        }
    }
}

/// Drops the extents at or after byte `len` of an upload.
fn truncate_extents(extents: &mut Vec<Extent>, len: u64) {
    let mut at = 0u64;
    let mut keep = 0;
    for e in extents.iter() {
        if at >= len {
            break;
        }
        at += u64::from(e.len);
        keep += 1;
    }
    extents.truncate(keep);
}

/// The raw key of a sha256 digest.
pub(crate) fn key32(d: &Digest) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&d.as_bytes()[..32]);
    k
}

/// The raw key of a sha512 digest.
pub(crate) fn key64(d: &Digest) -> [u8; 64] {
    let mut k = [0u8; 64];
    k.copy_from_slice(d.as_bytes());
    k
}
