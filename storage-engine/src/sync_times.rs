//! Durations of the fdatasync calls made on this thread, for metrics.
//!
//! Every shard lives on one executor thread, so the durations are kept
//! per thread, without locks; the server drains them into its per-core
//! metrics with [`take_sync_durations`].

use std::cell::RefCell;
use std::time::Duration;

/// Durations kept between two drains; older ones are dropped past this,
/// so a server that never drains them holds bounded memory.
const MAX_KEPT: usize = 1 << 16;

thread_local! {
    static SYNC_DURATIONS: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
}

/// Records one fdatasync that took `took`.
pub(crate) fn record(took: Duration) {
    SYNC_DURATIONS.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < MAX_KEPT {
            kept.push(took);
        }
    });
}

/// The durations of the fdatasync calls this thread made since the last
/// call (segments and metadata logs alike).
pub fn take_sync_durations() -> Vec<Duration> {
    SYNC_DURATIONS.with(|kept| std::mem::take(&mut *kept.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_drained_once() {
        record(Duration::from_micros(5));
        record(Duration::from_micros(7));
        assert_eq!(take_sync_durations().len(), 2);
        assert!(take_sync_durations().is_empty());
    }
}
