//! The syntax tree the parser builds and the evaluator walks.

use std::sync::Arc;

use serde_json::Value;

/// One step into a JSON value: `.key`, `['key']` or `[index]` (negative counts from the end).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(i64),
}

/// A message field that needs no JSON parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Topic,
    /// The raw payload, as a string (invalid UTF-8 replaced).
    Payload,
    ClientId,
    Username,
    Qos,
    Retain,
    Timestamp,
    /// All user properties as an object.
    UserProperties,
}

impl Field {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "topic",
        "payload",
        "clientid",
        "username",
        "qos",
        "retain",
        "timestamp",
        "user_properties",
    ];

    pub(crate) fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "topic" => Field::Topic,
            "payload" => Field::Payload,
            "clientid" => Field::ClientId,
            "username" => Field::Username,
            "qos" => Field::Qos,
            "retain" => Field::Retain,
            "timestamp" => Field::Timestamp,
            "user_properties" => Field::UserProperties,
            _ => return None,
        })
    }
}

/// Binary operators other than AND/OR (which short-circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Lower,
    Upper,
    Concat,
    Substr,
    Trim,
    Split,
    Replace,
    RegexMatch,
    RegexReplace,
    Abs,
    Round,
    Floor,
    Ceil,
    JsonEncode,
    JsonDecode,
    Now,
    FormatTime,
    Coalesce,
    If,
    TopicLevel,
    Nth,
    Length,
    Str,
    Num,
}

impl Func {
    /// Name, function, minimum and maximum argument count (`usize::MAX`: any).
    pub(crate) const TABLE: &'static [(&'static str, Func, usize, usize)] = &[
        ("lower", Func::Lower, 1, 1),
        ("upper", Func::Upper, 1, 1),
        ("concat", Func::Concat, 1, usize::MAX),
        ("substr", Func::Substr, 2, 3),
        ("trim", Func::Trim, 1, 1),
        ("split", Func::Split, 2, 2),
        ("replace", Func::Replace, 3, 3),
        ("regex_match", Func::RegexMatch, 2, 2),
        ("regex_replace", Func::RegexReplace, 3, 3),
        ("abs", Func::Abs, 1, 1),
        ("round", Func::Round, 1, 2),
        ("floor", Func::Floor, 1, 1),
        ("ceil", Func::Ceil, 1, 1),
        ("json_encode", Func::JsonEncode, 1, 1),
        ("json_decode", Func::JsonDecode, 1, 1),
        ("now", Func::Now, 0, 0),
        ("format_time", Func::FormatTime, 1, 2),
        ("coalesce", Func::Coalesce, 1, usize::MAX),
        ("if", Func::If, 3, 3),
        ("topic_level", Func::TopicLevel, 1, 1),
        ("nth", Func::Nth, 2, 2),
        ("length", Func::Length, 1, 1),
        ("str", Func::Str, 1, 1),
        ("num", Func::Num, 1, 1),
    ];

    pub(crate) fn lookup(name: &str) -> Option<(Func, usize, usize)> {
        Func::TABLE
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .map(|&(_, f, min, max)| (f, min, max))
    }
}

/// An expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Value),
    Field(Field),
    /// `payload.a.b[0]`: parses the payload as JSON (once per message) and walks into it.
    Payload(Vec<Seg>),
    /// `user_properties.key`
    UserProp(String),
    /// Postfix steps into any other value.
    Get(Box<Expr>, Vec<Seg>),
    /// A reference to a SELECT alias, shared rather than copied.
    Alias(Arc<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    /// `topic =~ 'a/+/b'`
    TopicMatch(Box<Expr>, Box<Expr>),
    Call {
        func: Func,
        args: Vec<Expr>,
        /// The pattern of `regex_match`/`regex_replace`, compiled once when it is a literal.
        regex: Option<regex::Regex>,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        default: Option<Box<Expr>>,
    },
}
