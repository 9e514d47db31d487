//! Compiled rules, the topic index over them, and evaluation of a message into action outputs.
//!
//! [`RuleSet::evaluate`] is pure: it returns what should happen and performs nothing, which is
//! what `tern rules test` prints. [`RuleSet::process`] is what the broker calls for every PUBLISH:
//! it writes log lines, queues webhooks, and returns the republishes for the broker to inject.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::{ActionConfig, RuleConfig};
use crate::error::RuleError;
use crate::eval::{MessageContext, Scope, eval};
use crate::metrics::{MetricsSnapshot, RuleMetrics};
use crate::parser::{Query, SelectItem, parse_query};
use crate::template::Template;
use crate::topic::FilterTrie;
use crate::webhook::WebhookDispatcher;

/// Republished messages may trigger rules again; a message that already went through this many
/// republishes is not republished once more.
pub const DEFAULT_MAX_HOPS: u8 = 8;

/// Longest accepted webhook `timeout_ms` (5 minutes): a job holds a sending slot that long.
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 300_000;

/// Most accepted webhook `max_retries`.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;

/// HTTP method of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `POST`
    Post,
    /// `PUT`
    Put,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

/// Severity of a `log` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info`
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A message a rule asks the broker to publish. The broker routes it like a PUBLISH from a
/// client and, when it runs the rules on it, sets [`MessageContext::hops`] to `hops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republish {
    /// The rule that produced it.
    pub rule_id: Arc<str>,
    /// Topic Name (rendered, checked to hold no wildcard).
    pub topic: String,
    /// Application Message.
    pub payload: Bytes,
    /// QoS, 0 to 2.
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// User Properties.
    pub user_properties: Vec<(String, String)>,
    /// The triggering message's hop count plus one.
    pub hops: u8,
}

/// An HTTP request a rule asks for; hand it to [`WebhookDispatcher::submit`].
#[derive(Debug, Clone)]
pub struct WebhookJob {
    /// The rule that produced it.
    pub rule_id: Arc<str>,
    /// POST or PUT.
    pub method: HttpMethod,
    /// Rendered URL.
    pub url: String,
    /// Rendered headers.
    pub headers: Vec<(String, String)>,
    /// Rendered body.
    pub body: Bytes,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub max_retries: u32,
    pub(crate) metrics: Arc<RuleMetrics>,
}

/// A structured log line a rule asks for; [`LogLine::emit`] writes it with `tracing`.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The rule that produced it.
    pub rule_id: Arc<str>,
    /// Severity.
    pub level: LogLevel,
    /// Rendered message.
    pub message: String,
    /// Topic of the triggering message.
    pub topic: String,
    /// Client Identifier of the publisher.
    pub clientid: String,
    /// The rule's selected fields.
    pub selected: Value,
    metrics: Arc<RuleMetrics>,
}

impl LogLine {
    /// Writes the line (target `tern_rules::action`) and counts the action as succeeded.
    pub fn emit(&self) {
        let (rule_id, topic, client_id, selected) =
            (&*self.rule_id, &self.topic, &self.clientid, &self.selected);
        macro_rules! line {
            ($mac:ident) => {
                tracing::$mac!(target: "tern_rules::action", rule_id, topic, client_id, %selected, "{}", self.message)
            };
        }
        match self.level {
            LogLevel::Error => line!(error),
            LogLevel::Warn => line!(warn),
            LogLevel::Info => line!(info),
            LogLevel::Debug => line!(debug),
            LogLevel::Trace => line!(trace),
        }
        self.metrics.action_succeeded();
    }
}

/// One output of a passed rule, in the order of the rule's actions.
#[derive(Debug, Clone)]
pub enum ActionOutput {
    /// Inject this message.
    Republish(Republish),
    /// Queue this HTTP request.
    Webhook(WebhookJob),
    /// Write this log line.
    Log(LogLine),
}

impl ActionOutput {
    /// The output as JSON, for `tern rules test` and debugging.
    pub fn to_json(&self) -> Value {
        match self {
            ActionOutput::Republish(r) => json!({
                "type": "republish",
                "topic": r.topic,
                "payload": String::from_utf8_lossy(&r.payload),
                "qos": r.qos,
                "retain": r.retain,
                "user_properties": r.user_properties.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "hops": r.hops,
            }),
            ActionOutput::Webhook(w) => json!({
                "type": "webhook",
                "method": w.method.as_str(),
                "url": w.url,
                "headers": w.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "body": String::from_utf8_lossy(&w.body),
                "timeout_ms": u64::try_from(w.timeout.as_millis()).unwrap_or(u64::MAX),
                "max_retries": w.max_retries,
            }),
            ActionOutput::Log(l) => json!({
                "type": "log",
                "level": l.level.as_str(),
                "message": l.message,
            }),
        }
    }
}

/// What one rule made of one message it passed.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    /// The rule.
    pub rule_id: Arc<str>,
    /// The SELECT output.
    pub selected: Map<String, Value>,
    /// The actions' outputs, in order (minus republishes stopped by the hop limit or a bad topic).
    pub actions: Vec<ActionOutput>,
    /// Type errors met while evaluating (each made some expression NULL).
    pub type_errors: u32,
}

/// The result of checking one rule against one message.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The topic matches none of the rule's FROM filters.
    NoMatch,
    /// The topic matched; WHERE was false or NULL.
    Filtered {
        /// Type errors met while evaluating WHERE.
        type_errors: u32,
    },
    /// WHERE was true.
    Passed(RuleOutcome),
}

impl Verdict {
    /// The verdict as JSON, for `tern rules test`: `result` (`passed`, `filtered` or
    /// `no_match`), and when passed the `selected` fields and the `actions` it would take.
    pub fn to_json(&self, rule_id: &str) -> Value {
        match self {
            Verdict::NoMatch => json!({
                "rule": rule_id,
                "result": "no_match",
                "reason": "the topic matches none of the FROM filters",
            }),
            Verdict::Filtered { type_errors } => json!({
                "rule": rule_id,
                "result": "filtered",
                "reason": "WHERE is false or NULL",
                "type_errors": type_errors,
            }),
            Verdict::Passed(o) => json!({
                "rule": rule_id,
                "result": "passed",
                "selected": o.selected,
                "actions": o.actions.iter().map(ActionOutput::to_json).collect::<Vec<_>>(),
                "type_errors": o.type_errors,
            }),
        }
    }
}

#[derive(Debug)]
enum Action {
    Republish {
        topic: Template,
        payload: Option<Template>,
        qos: u8,
        retain: bool,
        user_properties: Vec<(String, Template)>,
    },
    Webhook {
        url: Template,
        method: HttpMethod,
        headers: Vec<(String, Template)>,
        body: Option<Template>,
        timeout: Duration,
        max_retries: u32,
    },
    Log {
        level: LogLevel,
        message: Option<Template>,
    },
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    id: Arc<str>,
    sql: String,
    enabled: bool,
    query: Query,
    actions: Vec<Action>,
    metrics: Arc<RuleMetrics>,
}

impl Rule {
    /// Compiles one rule: parses the SQL, checks the topic filters, compiles the templates.
    pub fn compile(cfg: &RuleConfig) -> Result<Rule, RuleError> {
        if cfg.id.trim().is_empty() {
            return Err(RuleError::EmptyId);
        }
        let query = parse_query(&cfg.sql).map_err(|error| RuleError::Sql {
            rule: cfg.id.clone(),
            error,
        })?;
        let mut actions = Vec::with_capacity(cfg.actions.len());
        for (i, a) in cfg.actions.iter().enumerate() {
            actions.push(compile_action(&cfg.id, i + 1, a, &query)?);
        }
        Ok(Rule {
            id: Arc::from(cfg.id.as_str()),
            sql: cfg.sql.clone(),
            enabled: cfg.enabled,
            query,
            actions,
            metrics: Arc::default(),
        })
    }

    /// The rule's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rule's SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Whether the rule runs (`enabled = false` keeps it compiled but idle).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The FROM topic filters.
    pub fn filters(&self) -> impl Iterator<Item = &str> {
        self.query.filters.iter().map(|(f, _)| f.as_str())
    }

    /// The rule's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Checks this rule alone against `msg`, whether enabled or not (for `tern rules test`).
    pub fn check(&self, msg: &MessageContext<'_>, max_hops: u8) -> Verdict {
        if !self
            .query
            .filters
            .iter()
            .any(|(f, _)| crate::topic::matches(f, msg.topic))
        {
            return Verdict::NoMatch;
        }
        let sc = Scope::new(msg);
        match self.run(&sc, max_hops) {
            Ok(outcome) => Verdict::Passed(outcome),
            Err(type_errors) => Verdict::Filtered { type_errors },
        }
    }

    /// Evaluates a message whose topic matched; `Err(type errors)` when WHERE did not pass.
    fn run(&self, sc: &Scope<'_>, max_hops: u8) -> Result<RuleOutcome, u32> {
        let m = &*self.metrics;
        m.matched();
        sc.type_errors.set(0);
        let pass = self
            .query
            .where_
            .as_ref()
            .is_none_or(|w| matches!(*eval(w, sc), Value::Bool(true)));
        if !pass {
            let errors = sc.type_errors.get();
            if errors > 0 {
                m.failed();
            }
            m.no_result();
            return Err(errors);
        }
        m.passed();
        let mut selected = Map::new();
        for item in &self.query.items {
            match item {
                SelectItem::Star => sc.all_fields(&mut selected),
                SelectItem::Expr { key, expr } => {
                    selected.insert(key.clone(), eval(expr, sc).into_owned());
                }
            }
        }
        let mut selected_json: Option<Bytes> = None;
        let mut selected_bytes = |selected: &Map<String, Value>| {
            selected_json
                .get_or_insert_with(|| {
                    Bytes::from(serde_json::to_vec(selected).unwrap_or_default())
                })
                .clone()
        };
        let mut outputs = Vec::with_capacity(self.actions.len());
        for action in &self.actions {
            match action {
                Action::Republish {
                    topic,
                    payload,
                    qos,
                    retain,
                    user_properties,
                } => {
                    if sc.msg.hops >= max_hops {
                        m.action_dropped();
                        tracing::warn!(
                            rule_id = &*self.id,
                            topic = sc.msg.topic,
                            hops = sc.msg.hops,
                            max_hops,
                            "republish dropped by the loop guard (hop limit reached)"
                        );
                        continue;
                    }
                    let topic = topic.render_string(sc);
                    if let Err(why) = crate::topic::validate_topic_name(&topic) {
                        m.action_failed();
                        tracing::warn!(
                            rule_id = &*self.id,
                            topic,
                            reason = %why,
                            "republish failed: bad topic"
                        );
                        continue;
                    }
                    let payload = match payload {
                        Some(t) => t.render_bytes(sc),
                        None => selected_bytes(&selected),
                    };
                    m.action_succeeded();
                    outputs.push(ActionOutput::Republish(Republish {
                        rule_id: Arc::clone(&self.id),
                        topic,
                        payload,
                        qos: *qos,
                        retain: *retain,
                        user_properties: user_properties
                            .iter()
                            .map(|(k, v)| (k.clone(), v.render_string(sc)))
                            .collect(),
                        hops: sc.msg.hops.saturating_add(1),
                    }));
                }
                Action::Webhook {
                    url,
                    method,
                    headers,
                    body,
                    timeout,
                    max_retries,
                } => {
                    let body = match body {
                        Some(t) => t.render_bytes(sc),
                        None => selected_bytes(&selected),
                    };
                    outputs.push(ActionOutput::Webhook(WebhookJob {
                        rule_id: Arc::clone(&self.id),
                        method: *method,
                        url: url.render_string(sc),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.render_string(sc)))
                            .collect(),
                        body,
                        timeout: *timeout,
                        max_retries: *max_retries,
                        metrics: Arc::clone(&self.metrics),
                    }));
                }
                Action::Log { level, message } => {
                    outputs.push(ActionOutput::Log(LogLine {
                        rule_id: Arc::clone(&self.id),
                        level: *level,
                        message: message
                            .as_ref()
                            .map_or_else(|| "rule passed".to_owned(), |t| t.render_string(sc)),
                        topic: sc.msg.topic.to_owned(),
                        clientid: sc.msg.clientid.to_owned(),
                        selected: Value::Object(selected.clone()),
                        metrics: Arc::clone(&self.metrics),
                    }));
                }
            }
        }
        let type_errors = sc.type_errors.get();
        if type_errors > 0 {
            m.failed();
        }
        Ok(RuleOutcome {
            rule_id: Arc::clone(&self.id),
            selected,
            actions: outputs,
            type_errors,
        })
    }
}

fn compile_action(
    rule: &str,
    index: usize,
    a: &ActionConfig,
    query: &Query,
) -> Result<Action, RuleError> {
    let kind = a.kind();
    let tpl = |field: &str, src: &str| {
        Template::parse(src, &query.aliases).map_err(|error| RuleError::Template {
            rule: rule.to_owned(),
            action: index,
            kind,
            field: field.to_owned(),
            error,
        })
    };
    let bad = |message: String| RuleError::Action {
        rule: rule.to_owned(),
        action: index,
        kind,
        message,
    };
    Ok(match a {
        ActionConfig::Republish(r) => {
            if r.qos > 2 {
                return Err(bad(format!(
                    "qos = {} is not a QoS; expected 0, 1 or 2",
                    r.qos
                )));
            }
            if r.topic.trim().is_empty() {
                return Err(bad(
                    "topic is empty; expected a topic name or template".to_owned()
                ));
            }
            let mut user_properties = Vec::new();
            for (k, v) in &r.user_properties {
                user_properties.push((k.clone(), tpl(&format!("user_properties.{k}"), v)?));
            }
            Action::Republish {
                topic: tpl("topic", &r.topic)?,
                payload: r
                    .payload
                    .as_deref()
                    .map(|p| tpl("payload", p))
                    .transpose()?,
                qos: r.qos,
                retain: r.retain,
                user_properties,
            }
        }
        ActionConfig::Webhook(w) => {
            let method = match w.method.to_ascii_uppercase().as_str() {
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                other => {
                    return Err(bad(format!(
                        "method = \"{other}\"; expected \"POST\" or \"PUT\""
                    )));
                }
            };
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(bad(format!(
                    "url = \"{}\"; expected an http:// or https:// URL",
                    w.url
                )));
            }
            if !(1..=MAX_WEBHOOK_TIMEOUT_MS).contains(&w.timeout_ms) {
                return Err(bad(format!(
                    "timeout_ms = {}; expected 1 to {MAX_WEBHOOK_TIMEOUT_MS}",
                    w.timeout_ms
                )));
            }
            if w.max_retries > MAX_WEBHOOK_RETRIES {
                return Err(bad(format!(
                    "max_retries = {}; expected at most {MAX_WEBHOOK_RETRIES}",
                    w.max_retries
                )));
            }
            let mut headers = Vec::new();
            for (k, v) in &w.headers {
                headers.push((k.clone(), tpl(&format!("headers.{k}"), v)?));
            }
            Action::Webhook {
                url: tpl("url", &w.url)?,
                method,
                headers,
                body: w.body.as_deref().map(|b| tpl("body", b)).transpose()?,
                timeout: Duration::from_millis(w.timeout_ms),
                max_retries: w.max_retries,
            }
        }
        ActionConfig::Log(l) => Action::Log {
            level: LogLevel::parse(&l.level).ok_or_else(|| {
                bad(format!(
                    "level = \"{}\"; expected error, warn, info, debug or trace",
                    l.level
                ))
            })?,
            message: l
                .message
                .as_deref()
                .map(|m| tpl("message", m))
                .transpose()?,
        },
    })
}

/// All configured rules, indexed by their FROM topic filters.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: FilterTrie,
    max_hops: u8,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            index: FilterTrie::default(),
            max_hops: DEFAULT_MAX_HOPS,
        }
    }
}

impl RuleSet {
    /// Compiles every rule (disabled ones too, so their errors show at start-up) and indexes the
    /// enabled ones. The first error names the rule and, for SQL, the line and column.
    pub fn from_config(cfgs: &[RuleConfig]) -> Result<RuleSet, RuleError> {
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(cfgs.len());
        for cfg in cfgs {
            if !seen.insert(cfg.id.as_str()) {
                return Err(RuleError::DuplicateId(cfg.id.clone()));
            }
            rules.push(Rule::compile(cfg)?);
        }
        let mut index = FilterTrie::default();
        for (i, rule) in rules.iter().enumerate() {
            if rule.enabled {
                for (f, _) in &rule.query.filters {
                    index.insert(f, i);
                }
            }
        }
        Ok(RuleSet {
            rules,
            index,
            max_hops: DEFAULT_MAX_HOPS,
        })
    }

    /// Compiles a new set for a reload (SIGHUP). Rules keeping their id keep their counters; the
    /// hop limit carries over. On error the caller keeps using `self`.
    pub fn reload(&self, cfgs: &[RuleConfig]) -> Result<RuleSet, RuleError> {
        let mut next = RuleSet::from_config(cfgs)?.with_max_hops(self.max_hops);
        let old: HashMap<&str, &Arc<RuleMetrics>> =
            self.rules.iter().map(|r| (&*r.id, &r.metrics)).collect();
        for rule in &mut next.rules {
            if let Some(m) = old.get(&*rule.id) {
                rule.metrics = Arc::clone(m);
            }
        }
        Ok(next)
    }

    /// Sets the hop limit of the loop guard (default [`DEFAULT_MAX_HOPS`]).
    pub fn with_max_hops(mut self, max_hops: u8) -> RuleSet {
        self.max_hops = max_hops;
        self
    }

    /// The hop limit of the loop guard.
    pub fn max_hops(&self) -> u8 {
        self.max_hops
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.id == id)
    }

    /// Whether no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any enabled rule's FROM matches `topic` (cheap: one trie walk).
    pub fn matches_topic(&self, topic: &str) -> bool {
        // The broker asks for every message; with no rules (the default) that is all it costs.
        if self.rules.is_empty() {
            return false;
        }
        let mut hits = Vec::new();
        self.index.matches_into(topic, &mut hits);
        !hits.is_empty()
    }

    /// Evaluates every enabled rule whose FROM matches `msg.topic`, in configuration order, and
    /// returns the outcome of each rule that passed. Performs no action; see [`RuleSet::process`].
    pub fn evaluate(&self, msg: &MessageContext<'_>) -> Vec<RuleOutcome> {
        let mut hits = Vec::new();
        self.index.matches_into(msg.topic, &mut hits);
        if hits.is_empty() {
            return Vec::new();
        }
        let sc = Scope::new(msg);
        hits.iter()
            .filter_map(|&i| self.rules.get(i))
            .filter_map(|rule| rule.run(&sc, self.max_hops).ok())
            .collect()
    }

    /// Evaluates `msg` and performs the actions in order: log lines are written, webhooks queued
    /// on `webhooks` (never blocking), and the republishes returned for the broker to inject.
    pub fn process(
        &self,
        msg: &MessageContext<'_>,
        webhooks: &WebhookDispatcher,
    ) -> Vec<Republish> {
        let mut republish = Vec::new();
        for outcome in self.evaluate(msg) {
            for action in outcome.actions {
                match action {
                    ActionOutput::Republish(r) => republish.push(r),
                    ActionOutput::Webhook(job) => {
                        webhooks.submit(job);
                    }
                    ActionOutput::Log(line) => line.emit(),
                }
            }
        }
        republish
    }

    /// Every rule's id and counters.
    pub fn metrics(&self) -> Vec<(Arc<str>, MetricsSnapshot)> {
        self.rules
            .iter()
            .map(|r| (Arc::clone(&r.id), r.metrics.snapshot()))
            .collect()
    }

    /// Writes every rule's counters to the log (target `tern_rules::metrics`, level info).
    pub fn log_metrics(&self) {
        for r in &self.rules {
            let s = r.metrics.snapshot();
            tracing::info!(
                target: "tern_rules::metrics",
                rule_id = &*r.id,
                enabled = r.enabled,
                matched = s.matched,
                passed = s.passed,
                no_result = s.no_result,
                failed = s.failed,
                actions_succeeded = s.actions_succeeded,
                actions_failed = s.actions_failed,
                actions_dropped = s.actions_dropped,
                "rule metrics"
            );
        }
    }
}
