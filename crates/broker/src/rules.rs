//! The rules engine (`tern-rules`, docs/rules.md) running inside the broker.
//!
//! [`RulesRuntime`] owns a [`RuleEngine`] built from the `[[rules]]` of the configuration. Its
//! [`PublishHook`] sees every message the broker routes: when no rule's FROM matches the topic it
//! costs one trie walk and allocates nothing; otherwise the rules run right there (log lines
//! written, webhooks queued without waiting) and the republishes go on a bounded queue to a task
//! that publishes them through a [`BrokerHandle`], after the message that caused them. A
//! republished message carries its hop count ([`Message::hops`]) so the rules it meets in turn
//! stop at the engine's hop limit. This module does not parse configuration or handle signals:
//! the binary calls [`RulesRuntime::reload`] on SIGHUP.

use crate::broker::{BrokerHandle, PublishHook};
use crate::message::Message;
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tern_codec::{ByteStr, QoS};
use tern_rules::{
    DispatcherConfig, EngineError, MessageContext, MetricsSnapshot, Republish, RuleConfig,
    RuleEngine, RuleError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Republishes waiting to be routed; past this, new ones are dropped (counted and logged).
pub const REPUBLISH_QUEUE: usize = 4096;

/// How often the per-rule counters are written to the log, when they have changed.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// State shared by the runtime and its hook.
struct Inner {
    /// `None` once shut down: the hook then does nothing and the engine can be dropped.
    engine: ArcSwapOption<RuleEngine>,
    republish: mpsc::Sender<Republish>,
    dropped: AtomicU64,
}

/// The rules engine wired into a broker: build it, register [`RulesRuntime::hook`] with
/// [`crate::Broker::with_publish_hook`], start the broker, then [`RulesRuntime::run`] with its
/// handle. Needs a tokio runtime (the webhook dispatcher is a task).
pub struct RulesRuntime {
    inner: Arc<Inner>,
    queue: Option<mpsc::Receiver<Republish>>,
    webhook_task: Option<JoinHandle<()>>,
    republisher: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for RulesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesRuntime")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl RulesRuntime {
    /// Compiles `rules` and starts the webhook dispatcher with its default settings. The error
    /// names the rule (and the line and column in its SQL or template).
    pub fn start(rules: &[RuleConfig]) -> Result<RulesRuntime, EngineError> {
        Self::start_with(rules, DispatcherConfig::default())
    }

    /// As [`RulesRuntime::start`], with the webhook dispatcher's settings.
    pub fn start_with(
        rules: &[RuleConfig],
        webhooks: DispatcherConfig,
    ) -> Result<RulesRuntime, EngineError> {
        let (engine, webhook_task) = RuleEngine::start(rules, webhooks)?;
        let (tx, rx) = mpsc::channel(REPUBLISH_QUEUE);
        Ok(RulesRuntime {
            inner: Arc::new(Inner {
                engine: ArcSwapOption::from_pointee(engine),
                republish: tx,
                dropped: AtomicU64::new(0),
            }),
            queue: Some(rx),
            webhook_task: Some(webhook_task),
            republisher: None,
            stop: CancellationToken::new(),
        })
    }

    /// The hook to register with [`crate::Broker::with_publish_hook`].
    pub fn hook(&self) -> Arc<dyn PublishHook> {
        Arc::new(RulesHook {
            inner: self.inner.clone(),
        })
    }

    /// Starts routing republishes into the broker behind `handle`, and logging the rules'
    /// counters every [`METRICS_INTERVAL`] when they changed. Call once, after the broker started.
    pub fn run(&mut self, handle: BrokerHandle) {
        let Some(mut queue) = self.queue.take() else {
            tracing::warn!("rules runtime already running");
            return;
        };
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        self.republisher = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_INTERVAL);
            tick.tick().await;
            let mut last = Vec::new();
            loop {
                tokio::select! {
                    r = queue.recv() => match r {
                        Some(r) => republish(&handle, r),
                        None => break,
                    },
                    _ = tick.tick() => {
                        if let Some(engine) = inner.engine.load_full() {
                            let now = engine.rules().metrics();
                            if now != last && now.iter().any(|(_, m)| *m != MetricsSnapshot::default()) {
                                engine.rules().log_metrics();
                            }
                            last = now;
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        }));
    }

    /// Replaces the rules (SIGHUP). On error the rules in force stay, and the error (naming the
    /// rule) is logged and returned. Rules that keep their id keep their counters.
    pub fn reload(&self, rules: &[RuleConfig]) -> Result<(), RuleError> {
        match self.inner.engine.load_full() {
            Some(engine) => engine.reload(rules),
            None => Ok(()),
        }
    }

    /// The engine, until shutdown: its rules, counters and webhook dispatcher.
    pub fn engine(&self) -> Option<Arc<RuleEngine>> {
        self.inner.engine.load_full()
    }

    /// Every rule's id and counters.
    pub fn metrics(&self) -> Vec<(Arc<str>, MetricsSnapshot)> {
        self.engine()
            .map(|e| e.rules().metrics())
            .unwrap_or_default()
    }

    /// Republishes dropped because the queue to the broker was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Stops running rules, logs their counters, then waits up to `timeout` for queued webhooks.
    /// Call after the broker has shut down, so no message is routed meanwhile.
    pub async fn shutdown(mut self, timeout: Duration) {
        self.stop.cancel();
        if let Some(t) = self.republisher.take() {
            let _ = t.await;
        }
        // The hook may still hold a guard for an instant; the engine (and with it the webhook
        // queue) goes when the last reference does.
        if let Some(engine) = self.inner.engine.swap(None) {
            engine.rules().log_metrics();
        }
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "rule republishes dropped: queue to the broker full"
            );
        }
        if let Some(task) = self.webhook_task.take()
            && tokio::time::timeout(timeout, task).await.is_err()
        {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "webhooks still pending at shutdown, abandoned"
            );
        }
    }
}

impl Drop for RulesRuntime {
    /// Without [`RulesRuntime::shutdown`], the republishing task still stops.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Routes one rule output as a message from the broker itself.
fn republish(handle: &BrokerHandle, r: Republish) {
    let Some(qos) = QoS::from_u8(r.qos) else {
        tracing::warn!(
            rule_id = &*r.rule_id,
            qos = r.qos,
            "republish with an invalid QoS dropped"
        );
        return;
    };
    let mut message = Message::new(r.topic, r.payload, qos, r.retain);
    message.properties.user_properties = r
        .user_properties
        .into_iter()
        .map(|(k, v)| (ByteStr::from(k), ByteStr::from(v)))
        .collect();
    message.hops = r.hops;
    let topic = message.topic.clone();
    if let Err(e) = handle.publish(message) {
        tracing::warn!(rule_id = &*r.rule_id, topic = %topic, error = %e, "republish to an invalid topic dropped");
    }
}

/// The [`PublishHook`] of a [`RulesRuntime`].
struct RulesHook {
    inner: Arc<Inner>,
}

impl PublishHook for RulesHook {
    fn on_publish(&self, message: &Arc<Message>) {
        let engine = self.inner.engine.load();
        let Some(engine) = engine.as_ref() else {
            return;
        };
        // The common case: no rule looks at this topic. One trie walk, no allocation.
        if !engine.matches_topic(&message.topic) {
            return;
        }
        let ctx = MessageContext {
            topic: &message.topic,
            payload: message.payload.clone(),
            clientid: message.publisher.as_deref().unwrap_or(""),
            username: message.username.as_deref(),
            qos: message.qos as u8,
            retain: message.retain,
            timestamp_ms: now_ms(),
            user_properties: message
                .properties
                .user_properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            hops: message.hops,
        };
        for r in engine.process(&ctx) {
            if let Err(e) = self.inner.republish.try_send(r) {
                let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Logged at the first drop and then at every power of two, not per message.
                if n.is_power_of_two() {
                    let r = match &e {
                        mpsc::error::TrySendError::Full(r)
                        | mpsc::error::TrySendError::Closed(r) => r,
                    };
                    tracing::warn!(rule_id = &*r.rule_id, topic = %r.topic, dropped = n, "rule republish dropped: queue to the broker full");
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
