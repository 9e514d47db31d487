//! `tern-rules`: SQL-like rules on MQTT topics and payloads, with actions.
//!
//! A rule reads like EMQX's rule SQL:
//! `SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE payload.temp > 30`.
//! This crate parses and checks rules ([`RuleSet::from_config`]), indexes them by topic filter so
//! a message only meets the rules whose FROM matches its topic, evaluates a message into action
//! outputs ([`RuleSet::evaluate`], pure) or performs them ([`RuleSet::process`]: log lines written,
//! webhooks queued on a [`WebhookDispatcher`], republishes returned for the broker to inject).
//!
//! [`RuleEngine`] bundles both for the broker: the rule set behind an `ArcSwap` for SIGHUP reloads
//! and the webhook dispatcher.
//!
//! It does no MQTT I/O: the broker builds a [`MessageContext`] for each PUBLISH and routes the
//! returned [`Republish`] messages itself. The language is documented in `docs/rules.md`.

#![forbid(unsafe_code)]

mod ast;
mod config;
mod engine;
mod error;
mod eval;
mod lexer;
mod metrics;
mod parser;
mod ruleset;
mod template;
mod time;
pub mod topic;
mod webhook;

pub use config::{
    ActionConfig, LogConfig, RepublishConfig, RuleConfig, WebhookConfig, rules_from_toml,
};
pub use engine::{EngineError, RuleEngine};
pub use error::{ParseError, RuleError};
pub use eval::MessageContext;
pub use lexer::Pos;
pub use metrics::{MetricsSnapshot, RuleMetrics};
pub use ruleset::{
    ActionOutput, DEFAULT_MAX_HOPS, HttpMethod, LogLevel, LogLine, MAX_WEBHOOK_RETRIES,
    MAX_WEBHOOK_TIMEOUT_MS, Republish, Rule, RuleOutcome, RuleSet, Verdict, WebhookJob,
};
pub use webhook::{DispatcherConfig, WebhookDispatcher, WebhookError};

/// Parses and checks rule text alone (no actions), for editors and `tern rules test --sql`.
pub fn check_sql(sql: &str) -> Result<(), ParseError> {
    parser::parse_query(sql).map(|_| ())
}
