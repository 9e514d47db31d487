//! Errors: a located parse error, and the configuration error that names the rule it is in.

use crate::lexer::Pos;

/// A syntax or compile error in rule text, with the 1-based line and column it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line in the rule text.
    pub line: u32,
    /// 1-based column (in characters) in that line.
    pub column: u32,
    /// What was wrong and what would have been valid.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(pos: Pos, message: String) -> ParseError {
        ParseError {
            line: pos.line,
            column: pos.column,
            message,
        }
    }

    /// The error with the offending source line and a caret under the column, for terminals.
    pub fn render(&self, source: &str) -> String {
        let line_text = source
            .lines()
            .nth(self.line.saturating_sub(1) as usize)
            .unwrap_or("");
        let pad = " ".repeat(self.column.saturating_sub(1) as usize);
        format!("{self}\n  {line_text}\n  {pad}^")
    }
}

/// An error in a rule's configuration: which rule, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The rule's SQL does not parse.
    #[error("rule `{rule}`: sql: {error}")]
    Sql {
        /// The rule id.
        rule: String,
        /// The located error in the SQL text.
        error: ParseError,
    },
    /// An action's template (topic, payload, body, message…) does not parse.
    #[error("rule `{rule}`: action {action} ({kind}) field `{field}`: {error}")]
    Template {
        /// The rule id.
        rule: String,
        /// 1-based index of the action in the rule's `actions`.
        action: usize,
        /// The action type: republish, webhook or log.
        kind: &'static str,
        /// The action field holding the template.
        field: String,
        /// The located error inside the template.
        error: ParseError,
    },
    /// An action setting is out of range.
    #[error("rule `{rule}`: action {action} ({kind}): {message}")]
    Action {
        /// The rule id.
        rule: String,
        /// 1-based index of the action in the rule's `actions`.
        action: usize,
        /// The action type.
        kind: &'static str,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// Two rules share an id.
    #[error("rule `{0}`: duplicate rule id; every rule needs its own id")]
    DuplicateId(String),
    /// A rule id is empty.
    #[error("a rule has an empty id; give every rule a non-empty `id`")]
    EmptyId,
    /// `tern rules test --rule ID` named a rule that is not configured.
    #[error("no rule with id `{0}`")]
    UnknownRule(String),
}
