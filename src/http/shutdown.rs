//! A per-executor signal that tells the accept loop and idle
//! connections to stop.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A one-shot signal shared by the tasks of one executor.
///
/// Clones share the signal. [`ShutdownSignal::trigger`] stops the accept
/// loop; connections finish the request in flight and then close.
/// Another thread (a signal handler) reaches the executor through a
/// channel and triggers the signal there.
#[derive(Clone, Default)]
pub struct ShutdownSignal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: Cell<bool>,
    /// Wakers of pending waits; a slot is freed when its wait ends.
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl ShutdownSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        ShutdownSignal::default()
    }

    /// Fires the signal and wakes every task waiting on it.
    pub fn trigger(&self) {
        self.inner.triggered.set(true);
        let wakers: Vec<Waker> = self
            .inner
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// Completes once the signal has fired.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            slot: None,
        }
    }
}

/// The future of [`ShutdownSignal::wait`].
pub struct Wait {
    inner: Rc<Inner>,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.triggered.get() {
            return Poll::Ready(());
        }
        let waker = Some(cx.waker().clone());
        match self.slot {
            Some(slot) => self.inner.waiters.borrow_mut()[slot] = waker,
            None => {
                let slot = self.inner.free.borrow_mut().pop();
                let mut waiters = self.inner.waiters.borrow_mut();
                let slot = match slot {
                    Some(slot) => {
                        waiters[slot] = waker;
                        slot
                    }
                    None => {
                        waiters.push(waker);
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            if let Some(waiter) = self.inner.waiters.borrow_mut().get_mut(slot) {
                *waiter = None;
            }
            self.inner.free.borrow_mut().push(slot);
        }
    }
}
