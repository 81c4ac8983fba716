//! A wake-everyone event for tasks of one executor.
//!
//! Group commit parks writers until a sync finishes; this is the parking
//! spot. It is `!Send` on purpose: a shard never shares it across threads.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiting task when notified.
#[derive(Default)]
pub(crate) struct Notify {
    epoch: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes all tasks waiting now.
    pub fn notify_all(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// Resolves after the next [`Notify::notify_all`].
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            notify: self,
            epoch: self.epoch.get(),
        }
    }
}

/// The future returned by [`Notify::wait`].
pub(crate) struct Wait<'a> {
    notify: &'a Notify,
    epoch: u64,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.epoch.get() != self.epoch {
            return Poll::Ready(());
        }
        self.notify.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
