//! Measures what one blob index entry costs in heap bytes, with a counting
//! allocator around the system one: every byte the index asks for counts,
//! directory and growth slack included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_storage::probe::IndexProbe;
use berth_storage::{digest_of, DigestAlgorithm};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same layout;
// the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn key(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(digest_of(DigestAlgorithm::Sha256, &i.to_le_bytes()).as_bytes());
    k
}

#[test]
fn index_entry_costs_at_most_100_bytes() {
    // Keys are made first so that only the index is counted.
    let n = 1_000_000u64;
    let keys: Vec<[u8; 32]> = (0..n).map(key).collect();

    let before = LIVE.load(Ordering::Relaxed);
    let mut index = IndexProbe::default();
    let mut worst = 0.0f64;
    for (i, k) in keys.iter().enumerate() {
        index.insert(k, i as u64);
        let count = i + 1;
        if count % 50_000 == 0 {
            let bytes = LIVE.load(Ordering::Relaxed) - before;
            let per = bytes as f64 / count as f64;
            worst = worst.max(per);
            eprintln!("{count:>9} entries: {per:.1} bytes/entry");
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let per = bytes as f64 / n as f64;
    eprintln!("1M entries: {bytes} bytes, {per:.1} bytes/entry, worst {worst:.1}");
    assert!(
        per <= 100.0 && worst <= 100.0,
        "{per} / {worst} bytes per entry"
    );
    assert!(keys.iter().step_by(997).all(|k| index.contains(k)));
}
