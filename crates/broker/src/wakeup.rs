//! What wakes a connected client's task from other tasks: a delivery put in its mailbox, or a
//! session takeover.
//!
//! One waker slot and a few bits inside the client's [`crate::broker::Online`] entry. The
//! connection's task polls it ([`Wakeup::poll`]) with the rest of its wait, so its future holds
//! no waiter of its own: a tokio `Notified` is 64 bytes of every idle connection's future and a
//! [`crate::latch::Latch`] wait 104. Only the one connection task waits here; a delivery wakes it
//! only while it asked for deliveries and at most once until it looks. Not here: the broker's
//! shutdown (a `CancellationToken` every task waits on) and timers.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Something was put in the mailbox since the task last looked.
const MAIL: u8 = 1;
/// The task waits for deliveries (it has room for them).
const LISTEN: u8 = 2;
/// The session is being taken over: the connection must close (set once, never cleared).
const KICK: u8 = 4;

/// Why [`Wakeup::poll`] is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Deliveries may be waiting in the mailbox.
    Mail,
    /// The session is being taken over by a new connection.
    Kicked,
}

/// The waker of a connected client's task, with what it is woken for.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    waker: AtomicWaker,
    state: AtomicU8,
}

impl Wakeup {
    /// A delivery was put in the mailbox: wakes the task if it waits for deliveries and has not
    /// been told yet (a busy subscriber is not woken once per message).
    pub(crate) fn mail(&self) {
        let before = self.state.fetch_or(MAIL, Ordering::AcqRel);
        if before & (MAIL | LISTEN) == LISTEN {
            self.waker.wake();
        }
    }

    /// Asks the connection to close because a new one takes its session over.
    pub(crate) fn kick(&self) {
        self.state.fetch_or(KICK, Ordering::AcqRel);
        self.waker.wake();
    }

    /// True once [`Wakeup::kick`] was called.
    #[cfg(test)]
    pub(crate) fn is_kicked(&self) -> bool {
        self.state.load(Ordering::Acquire) & KICK != 0
    }

    /// For the connection's task only: ready once kicked, or, when `wants_mail`, once a delivery
    /// arrived since the last [`Signal::Mail`]. Registers the task's waker first, so a signal
    /// sent in between is not missed.
    pub(crate) fn poll(&self, cx: &mut Context<'_>, wants_mail: bool) -> Poll<Signal> {
        self.waker.register(cx.waker());
        let state = if wants_mail {
            self.state.fetch_or(LISTEN, Ordering::AcqRel)
        } else {
            self.state.fetch_and(!LISTEN, Ordering::AcqRel)
        };
        if state & KICK != 0 {
            return Poll::Ready(Signal::Kicked);
        }
        if wants_mail && state & MAIL != 0 {
            // Whatever was pushed before this is in the mailbox for the task's next pull.
            self.state.fetch_and(!(MAIL | LISTEN), Ordering::AcqRel);
            return Poll::Ready(Signal::Mail);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;

    /// Polls once, with a waker that does nothing.
    fn poll_now(w: &Wakeup, wants_mail: bool) -> Poll<Signal> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        w.poll(&mut cx, wants_mail)
    }

    #[test]
    fn mail_is_seen_only_while_wanted_and_only_once() {
        let w = Wakeup::default();
        assert_eq!(poll_now(&w, true), Poll::Pending);
        w.mail();
        // Not wanted now (e.g. the in-flight window is full): kept for later.
        assert_eq!(poll_now(&w, false), Poll::Pending);
        assert_eq!(poll_now(&w, true), Poll::Ready(Signal::Mail));
        assert_eq!(poll_now(&w, true), Poll::Pending);
    }

    #[test]
    fn a_kick_stays_set_and_wins_over_mail() {
        let w = Wakeup::default();
        w.mail();
        w.kick();
        assert!(w.is_kicked());
        assert_eq!(poll_now(&w, true), Poll::Ready(Signal::Kicked));
        assert_eq!(poll_now(&w, false), Poll::Ready(Signal::Kicked));
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_mail_and_by_a_kick() {
        let w = Arc::new(Wakeup::default());
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { poll_fn(|cx| w.poll(cx, true)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        w.mail();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Signal::Mail);

        // Not listening for mail: only the kick wakes it.
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { poll_fn(|cx| w.poll(cx, false)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        w.mail();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        w.kick();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Signal::Kicked);
    }
}
