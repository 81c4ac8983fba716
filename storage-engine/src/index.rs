//! The in-memory blob index: digest to packed location.
//!
//! NOTE: not a hash map. A hash table of 48-byte entries costs 55 to 125
//! bytes per entry depending on where it sits between two resizes. Here the
//! entries live in sorted vectors, one per bucket of a radix directory keyed
//! by the top bits of the digest (digests are uniform). A bucket holds about
//! 128 to 256 entries, so an insert moves a few KiB and a lookup is a short
//! binary search. Vectors grow by an eighth at a time, so an entry costs its
//! 48 bytes (32-byte sha256 + 16-byte location) plus at most ~13% slack and
//! the directory's share; `index_memory` tests measure it.

use crate::location::{BlobLocation, PACKED_LOCATION_BYTES};

/// The directory doubles when buckets hold this many entries on average.
const SPLIT_AT_AVERAGE: usize = 64;
/// The directory never grows past 2^24 buckets.
const MAX_BITS: u32 = 24;

/// One index entry: the raw digest and the packed location.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Entry<const K: usize> {
    pub key: [u8; K],
    pub loc: [u8; PACKED_LOCATION_BYTES],
}

/// A sorted, bucketed map from a `K`-byte digest to a location.
pub(crate) struct SortedIndex<const K: usize> {
    bits: u32,
    buckets: Vec<Vec<Entry<K>>>,
    len: usize,
}

impl<const K: usize> SortedIndex<K> {
    /// An empty index with one bucket.
    pub fn new() -> Self {
        SortedIndex {
            bits: 0,
            buckets: vec![Vec::new()],
            len: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The location stored for `key`.
    pub fn get(&self, key: &[u8; K]) -> Option<BlobLocation> {
        let bucket = &self.buckets[self.bucket_of(key)];
        let i = bucket.binary_search_by(|e| e.key.cmp(key)).ok()?;
        Some(BlobLocation::unpack(&bucket[i].loc))
    }

    /// Inserts or replaces; returns the previous location.
    pub fn insert(&mut self, key: &[u8; K], loc: &BlobLocation) -> Option<BlobLocation> {
        let b = self.bucket_of(key);
        let bucket = &mut self.buckets[b];
        match bucket.binary_search_by(|e| e.key.cmp(key)) {
            Ok(i) => {
                let old = BlobLocation::unpack(&bucket[i].loc);
                bucket[i].loc = loc.pack();
                Some(old)
            }
            Err(i) => {
                if bucket.len() == bucket.capacity() {
                    bucket.reserve_exact((bucket.len() / 8).max(4));
                }
                let entry = Entry {
                    key: *key,
                    loc: loc.pack(),
                };
                bucket.insert(i, entry);
                self.len += 1;
                self.maybe_split();
                None
            }
        }
    }

    /// Removes `key`; returns the location it had.
    pub fn remove(&mut self, key: &[u8; K]) -> Option<BlobLocation> {
        let b = self.bucket_of(key);
        let bucket = &mut self.buckets[b];
        let i = bucket.binary_search_by(|e| e.key.cmp(key)).ok()?;
        let old = bucket.remove(i);
        if bucket.capacity() > bucket.len() + bucket.len() / 4 + 8 {
            bucket.shrink_to_fit();
        }
        self.len -= 1;
        Some(BlobLocation::unpack(&old.loc))
    }

    /// Copies up to `max` entries with keys strictly after `after` (from the
    /// start when `None`), in key order. Used to write checkpoints a piece at
    /// a time while the index keeps changing.
    pub fn entries_after(&self, after: Option<&[u8; K]>, max: usize) -> Vec<Entry<K>> {
        let mut out = Vec::with_capacity(max.min(self.len));
        let (mut b, mut start) = match after {
            None => (0, 0),
            Some(key) => {
                let b = self.bucket_of(key);
                let i = match self.buckets[b].binary_search_by(|e| e.key.cmp(key)) {
                    Ok(i) => i + 1,
                    Err(i) => i,
                };
                (b, i)
            }
        };
        while b < self.buckets.len() && out.len() < max {
            let bucket = &self.buckets[b];
            let take = (max - out.len()).min(bucket.len().saturating_sub(start));
            out.extend_from_slice(&bucket[start..start + take]);
            b += 1;
            start = 0;
        }
        out
    }

    /// Heap bytes held by the index, entries and directory (allocator
    /// overhead not included; the tests measure that separately).
    pub fn heap_bytes(&self) -> usize {
        let entries: usize = self.buckets.iter().map(|b| b.capacity()).sum();
        entries * std::mem::size_of::<Entry<K>>()
            + self.buckets.capacity() * std::mem::size_of::<Vec<Entry<K>>>()
    }

    fn bucket_of(&self, key: &[u8; K]) -> usize {
        if self.bits == 0 {
            return 0;
        }
        let top = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
        (top >> (32 - self.bits)) as usize
    }

    /// Doubles the directory: every bucket splits on the next key bit.
    fn maybe_split(&mut self) {
        if self.bits >= MAX_BITS || self.len <= self.buckets.len() * SPLIT_AT_AVERAGE {
            return;
        }
        let bits = self.bits + 1;
        let shift = 32 - bits;
        let mut next = Vec::with_capacity(self.buckets.len() * 2);
        for bucket in self.buckets.drain(..) {
            let split = bucket.partition_point(|e| {
                let top = u32::from_be_bytes([e.key[0], e.key[1], e.key[2], e.key[3]]);
                (top >> shift) & 1 == 0
            });
            next.push(exact_copy(&bucket[..split]));
            next.push(exact_copy(&bucket[split..]));
        }
        self.buckets = next;
        self.bits = bits;
    }
}

fn exact_copy<T: Copy>(items: &[T]) -> Vec<T> {
    let mut v = Vec::with_capacity(items.len());
    v.extend_from_slice(items);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{digest_of, DigestAlgorithm};

    fn key(i: u64) -> [u8; 32] {
        let d = digest_of(DigestAlgorithm::Sha256, &i.to_le_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_bytes());
        k
    }

    #[test]
    fn index_behaves_like_a_map() {
        let mut idx = SortedIndex::<32>::new();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..20_000u64 {
            let loc = BlobLocation::new(1, i as u32, 2, i);
            idx.insert(&key(i), &loc);
            model.insert(key(i), loc);
        }
        for i in (0..20_000u64).step_by(3) {
            assert_eq!(idx.remove(&key(i)), model.remove(&key(i)));
        }
        assert_eq!(idx.len(), model.len());
        for i in 0..20_000u64 {
            assert_eq!(idx.get(&key(i)), model.get(&key(i)).copied());
        }

        let mut all = Vec::new();
        let mut after: Option<[u8; 32]> = None;
        loop {
            let chunk = idx.entries_after(after.as_ref(), 777);
            let Some(last) = chunk.last() else { break };
            after = Some(last.key);
            all.extend(chunk.iter().map(|e| e.key));
        }
        let want: Vec<_> = model.keys().copied().collect();
        assert_eq!(all, want);
    }
}
