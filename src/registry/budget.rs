//! A per-executor cap on request bodies held whole in memory.
//!
//! A manifest is read whole before it is checked and stored, so each
//! manifest push in flight holds up to `max_manifest_bytes`. Without a
//! cap, a few hundred clients that send most of a large manifest and then
//! dribble the rest would pin gigabytes; with it, the executor answers
//! 503 once the cap is reached and memory stays bounded.

use std::cell::Cell;
use std::rc::Rc;

/// How many manifests of the largest accepted size one executor buffers
/// at once; its budget is this times `max_manifest_bytes`.
pub const BUFFERED_MANIFESTS_PER_CORE: usize = 64;

/// The bytes one executor may hold in buffered bodies.
#[derive(Clone, Debug)]
pub struct BufferBudget {
    inner: Rc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit_bytes: usize,
    held_bytes: Cell<usize>,
}

/// Bytes held against a [`BufferBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Held {
    inner: Rc<Inner>,
    bytes: usize,
}

impl BufferBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        BufferBudget {
            inner: Rc::new(Inner {
                limit_bytes,
                held_bytes: Cell::new(0),
            }),
        }
    }

    /// Holds `bytes`, or `None` when that would pass the limit.
    pub fn hold(&self, bytes: usize) -> Option<Held> {
        let mut held = Held {
            inner: self.inner.clone(),
            bytes: 0,
        };
        held.grow(bytes).then_some(held)
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.inner.held_bytes.get()
    }
}

impl Held {
    /// Holds at least `bytes` in all; false (holding nothing more) past
    /// the limit.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        self.grow(bytes.saturating_sub(self.bytes))
    }

    /// Holds `more` bytes too; false (holding nothing more) past the limit.
    pub fn grow(&mut self, more: usize) -> bool {
        let now = self.inner.held_bytes.get();
        match now.checked_add(more) {
            Some(total) if total <= self.inner.limit_bytes => {
                self.inner.held_bytes.set(total);
                self.bytes += more;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = self.inner.held_bytes.get();
        self.inner.held_bytes.set(now.saturating_sub(self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_the_limit_and_gives_back_on_drop() {
        let budget = BufferBudget::new(100);
        let mut a = budget.hold(60).unwrap();
        assert!(budget.hold(41).is_none());
        let b = budget.hold(40).unwrap();
        assert_eq!(budget.held_bytes(), 100);
        assert!(!a.grow(1));

        drop(b);
        assert!(a.grow_to(100));
        assert!(a.grow_to(50));
        assert_eq!(budget.held_bytes(), 100);
        drop(a);
        assert_eq!(budget.held_bytes(), 0);
    }

    #[test]
    fn an_overflowing_request_holds_nothing() {
        let budget = BufferBudget::new(10);
        let _a = budget.hold(5).unwrap();
        assert!(budget.hold(usize::MAX).is_none());
        assert_eq!(budget.held_bytes(), 5);
    }
}
