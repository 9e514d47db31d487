//! The `[[rules]]` tables of `tern.toml`, as serde types. Unknown keys are rejected so a typo
//! (`paylod = …`) is an error that names the key rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One `[[rules]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id, used in logs, metrics and errors.
    pub id: String,
    /// The rule text: `SELECT … FROM "filter", … [WHERE …]`.
    pub sql: String,
    /// Actions run in order for every message the rule passes.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    /// `false` keeps the rule (it is still checked) without running it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text for people reading the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// One action of a rule, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ActionConfig {
    /// Publish a new message through the broker.
    Republish(RepublishConfig),
    /// Send an HTTP request.
    Webhook(WebhookConfig),
    /// Write a structured log line.
    Log(LogConfig),
}

impl ActionConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionConfig::Republish(_) => "republish",
            ActionConfig::Webhook(_) => "webhook",
            ActionConfig::Log(_) => "log",
        }
    }
}

/// `{ type = "republish", topic = "…", payload = "…", qos = 0, retain = false, user_properties = {…} }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepublishConfig {
    /// Topic template; must render to a topic name without wildcards.
    pub topic: String,
    /// Payload template; absent: the selected fields as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// QoS of the republished message (0, 1 or 2).
    #[serde(default)]
    pub qos: u8,
    /// RETAIN flag of the republished message.
    #[serde(default)]
    pub retain: bool,
    /// User properties; values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_properties: BTreeMap<String, String>,
}

/// `{ type = "webhook", url = "…", method = "POST", headers = {…}, body = "…", timeout_ms = 5000, max_retries = 3 }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL template (`http://` or `https://`).
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "post")]
    pub method: String,
    /// Extra headers; values are templates. `content-type` defaults to `application/json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body template; absent: the selected fields as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Timeout of one attempt, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts after the first one, on a connection error, a timeout, 429 or 5xx.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

fn post() -> String {
    "POST".to_owned()
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_retries() -> u32 {
    3
}

/// `{ type = "log", level = "info", message = "…" }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default = "info")]
    pub level: String,
    /// Message template; absent: `rule passed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn info() -> String {
    "info".to_owned()
}

/// The `[[rules]]` array of a whole `tern.toml`; every other key and table is ignored (the broker
/// owns them). Errors name the line and column in the file.
pub fn rules_from_toml(text: &str) -> Result<Vec<RuleConfig>, toml::de::Error> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        rules: Vec<RuleConfig>,
    }
    toml::from_str::<File>(text).map(|f| f.rules)
}
