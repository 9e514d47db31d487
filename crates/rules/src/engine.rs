//! [`RuleEngine`]: the one object the broker holds. It owns the current [`RuleSet`] behind an
//! `ArcSwap` (so a SIGHUP reload swaps it without stopping the router) and the webhook dispatcher.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::RuleConfig;
use crate::error::RuleError;
use crate::eval::MessageContext;
use crate::ruleset::{Republish, RuleSet};
use crate::webhook::{DispatcherConfig, WebhookDispatcher, WebhookError};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A rule is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The webhook dispatcher could not start.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Rules plus webhook delivery, shareable across connection tasks (`Arc<RuleEngine>`).
#[derive(Debug)]
pub struct RuleEngine {
    rules: ArcSwap<RuleSet>,
    webhooks: WebhookDispatcher,
}

impl RuleEngine {
    /// Compiles `rules` and starts the webhook dispatcher on the current tokio runtime. The
    /// returned task ends once the engine is dropped and queued webhooks are done.
    pub fn start(
        rules: &[RuleConfig],
        webhooks: DispatcherConfig,
    ) -> Result<(RuleEngine, tokio::task::JoinHandle<()>), EngineError> {
        let set = RuleSet::from_config(rules)?;
        let (webhooks, task) = WebhookDispatcher::start(webhooks)?;
        tracing::info!(rules = set.rules().len(), "rules engine started");
        Ok((
            RuleEngine {
                rules: ArcSwap::from_pointee(set),
                webhooks,
            },
            task,
        ))
    }

    /// Runs the rules on one message: logs written, webhooks queued (never blocking), and the
    /// republishes returned for the broker to route (running the rules on each of them in turn,
    /// with [`MessageContext::hops`] set to [`Republish::hops`]).
    pub fn process(&self, msg: &MessageContext<'_>) -> Vec<Republish> {
        self.rules.load().process(msg, &self.webhooks)
    }

    /// Whether any enabled rule's FROM matches `topic`: lets the broker skip building a
    /// [`MessageContext`] for the messages no rule can see.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.rules.load().matches_topic(topic)
    }

    /// Replaces the rules (SIGHUP). On error the running rules stay and the error is returned;
    /// rules that keep their id keep their counters.
    pub fn reload(&self, rules: &[RuleConfig]) -> Result<(), RuleError> {
        let current = self.rules.load_full();
        match current.reload(rules) {
            Ok(next) => {
                tracing::info!(rules = next.rules().len(), "rules reloaded");
                self.rules.store(Arc::new(next));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "rules not reloaded; the previous rules stay in force");
                Err(e)
            }
        }
    }

    /// The rules in force (for metrics: [`RuleSet::metrics`], [`RuleSet::log_metrics`]).
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// The webhook dispatcher.
    pub fn webhooks(&self) -> &WebhookDispatcher {
        &self.webhooks
    }
}
