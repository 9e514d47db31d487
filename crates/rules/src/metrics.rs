//! Per-rule counters: plain atomics, bumped on the hot path with relaxed ordering and read as a
//! [`MetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one rule. Shared (`Arc`) with webhook jobs, which finish after `evaluate` returns.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    matched: AtomicU64,
    passed: AtomicU64,
    no_result: AtomicU64,
    failed: AtomicU64,
    actions_succeeded: AtomicU64,
    actions_failed: AtomicU64,
    actions_dropped: AtomicU64,
}

/// A copy of a rule's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Messages whose topic matched the rule's FROM.
    pub matched: u64,
    /// Matched messages for which WHERE was true (the actions ran).
    pub passed: u64,
    /// Matched messages for which WHERE was false or NULL.
    pub no_result: u64,
    /// Matched messages whose evaluation met a type error (some expression became NULL).
    pub failed: u64,
    /// Actions that completed: republish handed to the broker, webhook answered 2xx, log written.
    pub actions_succeeded: u64,
    /// Actions that failed: bad rendered topic, webhook error after all retries.
    pub actions_failed: u64,
    /// Actions not attempted: webhook queue full, republish stopped by the hop limit.
    pub actions_dropped: u64,
}

impl RuleMetrics {
    pub(crate) fn matched(&self) {
        self.matched.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passed(&self) {
        self.passed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn no_result(&self) {
        self.no_result.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts an action that completed.
    pub fn action_succeeded(&self) {
        self.actions_succeeded.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts an action that failed.
    pub fn action_failed(&self) {
        self.actions_failed.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts an action that was dropped without being attempted.
    pub fn action_dropped(&self) {
        self.actions_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            matched: self.matched.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            no_result: self.no_result.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            actions_succeeded: self.actions_succeeded.load(Ordering::Relaxed),
            actions_failed: self.actions_failed.load(Ordering::Relaxed),
            actions_dropped: self.actions_dropped.load(Ordering::Relaxed),
        }
    }
}
