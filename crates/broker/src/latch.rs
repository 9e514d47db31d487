//! A one-shot signal that lives inside the struct that owns it.
//!
//! `tokio_util`'s `CancellationToken` allocates a tree node per token (about 110 bytes with the
//! allocator's overhead); every connected client's [`crate::broker::Online`] holds one (it held
//! two before the takeover signal moved to [`crate::wakeup`]). A latch is a flag and a `Notify`
//! inline, with the same two calls. Not here: hierarchies of tokens (the broker's shutdown token
//! is still a `CancellationToken`).

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Set once; every waiter, past or future, then resolves.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: AtomicBool,
    notify: Notify,
}

impl Latch {
    /// A latch not set yet.
    pub(crate) fn new() -> Self {
        Latch::default()
    }

    /// Sets the latch and wakes every waiter.
    pub(crate) fn cancel(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// True once [`Latch::cancel`] was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once the latch is set (at once if it already is).
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a `cancel` in between is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_before_and_after_cancel_resolve() {
        let latch = Arc::new(Latch::new());
        let l = latch.clone();
        let early = tokio::spawn(async move { l.cancelled().await });
        tokio::task::yield_now().await;
        assert!(!latch.is_cancelled());
        latch.cancel();
        assert!(early.await.is_ok());
        latch.cancelled().await;
        assert!(latch.is_cancelled());
    }
}
