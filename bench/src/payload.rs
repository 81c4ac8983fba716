//! Blob content: fresh random bytes per run, sent without copying.
//!
//! A run draws one random buffer from its seed. Every blob of a given size
//! is that buffer's first `size - TAIL_BYTES` bytes followed by a tail that
//! holds the run's seed and a counter, so each blob has its own digest and no
//! registry can skip an upload by deduplication it did not earn.
//!
//! Hashing a shared body once per size and cloning the hasher state makes a
//! new blob's digest cost only the tail, so blobs can be minted during a
//! measurement without stalling the sender.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use sha2::{Digest as _, Sha256};

/// Bytes at the end of each blob that make its digest unique.
pub const TAIL_BYTES: u64 = 16;

/// Random content of one run and the digests state of each blob size.
pub struct Content {
    seed: u64,
    base: Bytes,
    prefix_states: HashMap<u64, Sha256>,
    next_blob: AtomicU64,
}

/// One blob: its bytes (as shared slices), size and digest.
#[derive(Clone)]
pub struct Blob {
    /// Bytes before the unique tail, a slice of the run's buffer.
    body: Bytes,
    /// The unique tail.
    tail: Bytes,
    /// `sha256:<hex>` of body followed by tail.
    pub digest: String,
}

impl Content {
    /// Draws the run's random buffer and hashes a prefix for every size.
    ///
    /// Sizes below `TAIL_BYTES` are raised to it; the buffer is as large as
    /// the largest size.
    pub fn new(seed: u64, sizes: &[u64]) -> Content {
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let largest = largest.max(TAIL_BYTES);
        let base = Bytes::from(random_bytes(seed, largest as usize));

        let mut prefix_states = HashMap::new();
        for &size in sizes {
            let size = size.max(TAIL_BYTES);
            prefix_states.entry(size).or_insert_with(|| {
                let body_len = (size - TAIL_BYTES) as usize;
                let mut state = Sha256::new();
                state.update(&base[..body_len]);
                state
            });
        }

        Content {
            seed,
            base,
            prefix_states,
            next_blob: AtomicU64::new(0),
        }
    }

    /// Mints a blob of `size` bytes that no earlier call returned.
    ///
    /// A size not given to [`Content::new`] is hashed in full here (and,
    /// when larger than all of them, drawn afresh), which costs time;
    /// callers list their sizes up front.
    pub fn blob(&self, size: u64) -> Blob {
        let size = size.max(TAIL_BYTES);
        let counter = self.next_blob.fetch_add(1, Ordering::Relaxed);
        let body_len = (size - TAIL_BYTES) as usize;
        // A size larger than every listed one gets its own buffer (slow,
        // but never out of bounds).
        let body = if body_len <= self.base.len() {
            self.base.slice(..body_len)
        } else {
            Bytes::from(random_bytes(self.seed ^ counter, body_len))
        };

        let mut tail = Vec::with_capacity(TAIL_BYTES as usize);
        tail.extend_from_slice(&self.seed.to_be_bytes());
        tail.extend_from_slice(&counter.to_be_bytes());

        let listed = self.prefix_states.get(&size);
        let mut state = match listed.filter(|_| body_len <= self.base.len()) {
            Some(state) => state.clone(),
            None => {
                let mut state = Sha256::new();
                state.update(&body);
                state
            }
        };
        state.update(&tail);

        Blob {
            body,
            tail: Bytes::from(tail),
            digest: sha256_digest_string(&state.finalize()),
        }
    }

    /// Mints a blob whose bytes are `bytes`, e.g. a config or manifest.
    pub fn blob_from(bytes: Vec<u8>) -> Blob {
        let digest = sha256_digest_string(&Sha256::digest(&bytes));
        Blob {
            body: Bytes::from(bytes),
            tail: Bytes::new(),
            digest,
        }
    }
}

impl Blob {
    /// Total bytes.
    pub fn size(&self) -> u64 {
        (self.body.len() + self.tail.len()) as u64
    }

    /// The blob as one contiguous buffer; copies only when it has a tail.
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.body.clone();
        }
        let mut all = Vec::with_capacity(self.size() as usize);
        all.extend_from_slice(&self.body);
        all.extend_from_slice(&self.tail);
        Bytes::from(all)
    }

    /// Whether `data` equals the blob's bytes from `offset` on.
    pub fn matches(&self, offset: u64, data: &[u8]) -> bool {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.size() {
            return false;
        }
        let split = self.body.len();
        let (start, end) = (offset as usize, end as usize);

        // The part of `data` that falls in the body, then in the tail.
        let in_body = end.min(split).saturating_sub(start);
        let (head, rest) = data.split_at(in_body);
        if in_body > 0 && self.body[start..start + in_body] != *head {
            return false;
        }
        if rest.is_empty() {
            return true;
        }
        let tail_start = start + in_body - split;
        self.tail[tail_start..tail_start + rest.len()] == *rest
    }

    /// A request body for the whole blob.
    pub fn body(&self) -> Payload {
        self.range(0, self.size())
    }

    /// A request body for bytes `start..end` of the blob.
    pub fn range(&self, start: u64, end: u64) -> Payload {
        let end = end.min(self.size());
        let start = start.min(end);
        let split = self.body.len() as u64;

        let first = if start < split {
            self.body.slice(start as usize..end.min(split) as usize)
        } else {
            Bytes::new()
        };
        let second = if end > split {
            let from = start.max(split) - split;
            self.tail.slice(from as usize..(end - split) as usize)
        } else {
            Bytes::new()
        };

        Payload {
            parts: [first, second],
            next: 0,
            streamed: false,
        }
    }

    /// A request body for the whole blob that hides its length, so it goes
    /// out with `Transfer-Encoding: chunked` in pieces of
    /// [`STREAM_FRAME_BYTES`], as a client streaming a layer sends it.
    pub fn streamed_body(&self) -> Payload {
        Payload {
            streamed: true,
            ..self.body()
        }
    }
}

/// Piece size of a streamed body.
pub const STREAM_FRAME_BYTES: usize = 1 << 20;

/// A request body of up to two shared slices.
pub struct Payload {
    parts: [Bytes; 2],
    next: usize,
    /// Length unknown to the receiver; sent in pieces.
    streamed: bool,
}

impl Payload {
    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        self.parts[self.next.min(2)..]
            .iter()
            .map(|p| p.len() as u64)
            .sum()
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl http_body::Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        while self.next < 2 {
            let index = self.next;
            let streamed = self.streamed;
            let part = &mut self.parts[index];
            if streamed && part.len() > STREAM_FRAME_BYTES {
                // Splitting a shared slice copies nothing.
                let piece = part.split_to(STREAM_FRAME_BYTES);
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            let part = std::mem::take(part);
            self.next += 1;
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.streamed {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.len())
    }
}

/// Formats a SHA-256 digest as `sha256:<hex>`.
pub fn sha256_digest_string(hash: &[u8]) -> String {
    let mut out = String::with_capacity(7 + hash.len() * 2);
    out.push_str("sha256:");
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Fills `len` bytes from a xorshift generator seeded by `seed`.
///
/// NOTE: not cryptographic on purpose; the bytes only need to be unlike
/// any other run's and incompressible, and filling 64 MiB must be fast.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One step of the SplitMix64 generator.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(blob: &Blob) -> Vec<u8> {
        let mut all = blob.body.to_vec();
        all.extend_from_slice(&blob.tail);
        all
    }

    #[test]
    fn every_blob_has_a_distinct_digest() {
        let content = Content::new(7, &[1024]);
        let a = content.blob(1024);
        let b = content.blob(1024);
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.size(), 1024);
    }

    #[test]
    fn digest_matches_the_bytes_sent() {
        let content = Content::new(9, &[100]);
        for size in [100, 16, 3000] {
            let blob = content.blob(size);
            let bytes = concat(&blob);
            let want = sha256_digest_string(&Sha256::digest(&bytes));
            assert_eq!(blob.digest, want, "size {size}");
        }
    }

    #[test]
    fn ranges_cover_the_tail_boundary() {
        let content = Content::new(3, &[64]);
        let blob = content.blob(64);
        let all = concat(&blob);
        for (start, end) in [(0, 64), (40, 56), (47, 49), (50, 64), (60, 90)] {
            let mut payload = blob.range(start, end);
            let mut got = Vec::new();
            for part in payload.parts.iter_mut() {
                got.extend_from_slice(part);
            }
            let end = end.min(64) as usize;
            assert_eq!(got, all[start as usize..end], "{start}..{end}");
        }
    }

    #[test]
    fn streamed_bodies_come_in_pieces_of_unknown_length() {
        use http_body::Body as _;
        use std::task::Waker;

        let content = Content::new(5, &[3 << 20]);
        let blob = content.blob(3 << 20);
        let mut payload = blob.streamed_body();
        assert_eq!(payload.size_hint().exact(), None);

        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut payload).poll_frame(&mut cx) {
            let data = frame.into_data().unwrap();
            assert!(data.len() <= STREAM_FRAME_BYTES);
            got.extend_from_slice(&data);
        }
        assert_eq!(got, concat(&blob));
    }

    #[test]
    fn matching_compares_across_the_tail_boundary() {
        let content = Content::new(4, &[64]);
        let blob = content.blob(64);
        let all = concat(&blob);
        for (start, end) in [(0, 64), (40, 56), (47, 49), (48, 64), (0, 0), (63, 64)] {
            assert!(
                blob.matches(start, &all[start as usize..end]),
                "{start}..{end}"
            );
        }
        let mut wrong = all.clone();
        wrong[50] ^= 1;
        assert!(!blob.matches(0, &wrong));
        assert!(!blob.matches(40, &wrong[40..56]));
        assert!(!blob.matches(60, &all[..8]));
        assert!(!blob.matches(0, &[0; 65]));
    }

    #[test]
    fn different_seeds_give_different_content() {
        assert_ne!(random_bytes(1, 64), random_bytes(2, 64));
    }
}
