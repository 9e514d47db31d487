//! The evaluator: an expression and a message in, a `serde_json::Value` out.
//!
//! Type rules, as documented in `docs/rules.md`: there is no implicit conversion. An operator or
//! function given a value of the wrong type (including NULL from a missing field) yields NULL and
//! counts one type error; WHERE passes only on `true`. AND/OR/NOT follow SQL's three-valued logic.
//! Nothing here panics on any payload.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::cmp::Ordering;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::ast::{BinOp, Expr, Field, Func, Seg};

/// One MQTT message as the rules see it. Borrowed from the broker's PUBLISH: building one costs
/// no allocation beyond the user-property list.
#[derive(Debug, Clone, Default)]
pub struct MessageContext<'a> {
    /// Topic Name.
    pub topic: &'a str,
    /// Application Message.
    pub payload: Bytes,
    /// Client Identifier of the publisher.
    pub clientid: &'a str,
    /// User Name of the publisher, if it authenticated with one.
    pub username: Option<&'a str>,
    /// QoS of the PUBLISH (0, 1 or 2).
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// When the broker received the message, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// v5 User Properties, in order; keys may repeat.
    pub user_properties: Vec<(&'a str, &'a str)>,
    /// How many rule republishes led to this message: 0 for a message from a client. The broker
    /// sets it from [`crate::Republish::hops`] when it feeds a republished message back in.
    pub hops: u8,
}

impl<'a> MessageContext<'a> {
    /// A message on `topic` with `payload`, received now, from no particular client.
    pub fn new(topic: &'a str, payload: impl Into<Bytes>) -> MessageContext<'a> {
        MessageContext {
            topic,
            payload: payload.into(),
            timestamp_ms: u64::try_from(crate::time::now_ms()).unwrap_or(0),
            ..MessageContext::default()
        }
    }
}

/// Per-message evaluation state: the lazily parsed payload, shared by every rule the message
/// meets, and the type-error count of the rule being evaluated.
pub(crate) struct Scope<'m> {
    pub msg: &'m MessageContext<'m>,
    raw: OnceCell<Value>,
    json: OnceCell<Option<Value>>,
    now: OnceCell<i64>,
    pub type_errors: Cell<u32>,
}

impl<'m> Scope<'m> {
    pub(crate) fn new(msg: &'m MessageContext<'m>) -> Scope<'m> {
        Scope {
            msg,
            raw: OnceCell::new(),
            json: OnceCell::new(),
            now: OnceCell::new(),
            type_errors: Cell::new(0),
        }
    }

    /// The payload as a string value (invalid UTF-8 replaced), built once.
    pub(crate) fn raw_payload(&self) -> &Value {
        self.raw
            .get_or_init(|| Value::String(String::from_utf8_lossy(&self.msg.payload).into_owned()))
    }

    /// The payload parsed as JSON, once; `None` when it is not JSON.
    pub(crate) fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.msg.payload).ok())
            .as_ref()
    }

    fn now(&self) -> i64 {
        *self.now.get_or_init(crate::time::now_ms)
    }

    fn type_error<'s>(&self) -> Cow<'s, Value> {
        self.type_errors
            .set(self.type_errors.get().saturating_add(1));
        Cow::Owned(Value::Null)
    }

    /// A message field's value.
    pub(crate) fn field(&self, f: Field) -> Cow<'_, Value> {
        let m = self.msg;
        Cow::Owned(match f {
            Field::Topic => Value::String(m.topic.to_owned()),
            Field::Payload => return Cow::Borrowed(self.raw_payload()),
            Field::ClientId => Value::String(m.clientid.to_owned()),
            Field::Username => m
                .username
                .map_or(Value::Null, |u| Value::String(u.to_owned())),
            Field::Qos => Value::from(m.qos),
            Field::Retain => Value::Bool(m.retain),
            Field::Timestamp => Value::from(m.timestamp_ms),
            Field::UserProperties => {
                let mut map = Map::new();
                for (k, v) in &m.user_properties {
                    map.entry(*k)
                        .or_insert_with(|| Value::String((*v).to_owned()));
                }
                Value::Object(map)
            }
        })
    }

    /// Every message field, for `SELECT *`.
    pub(crate) fn all_fields(&self, out: &mut Map<String, Value>) {
        const ALL: [(&str, Field); 8] = [
            ("topic", Field::Topic),
            ("payload", Field::Payload),
            ("clientid", Field::ClientId),
            ("username", Field::Username),
            ("qos", Field::Qos),
            ("retain", Field::Retain),
            ("timestamp", Field::Timestamp),
            ("user_properties", Field::UserProperties),
        ];
        for (name, f) in ALL {
            out.insert(name.to_owned(), self.field(f).into_owned());
        }
    }
}

fn step<'v>(v: &'v Value, seg: &Seg) -> Option<&'v Value> {
    match (v, seg) {
        (Value::Object(m), Seg::Key(k)) => m.get(k),
        (Value::Object(m), Seg::Index(i)) => m.get(&i.to_string()),
        (Value::Array(a), Seg::Index(i)) => {
            let idx = if *i < 0 {
                a.len()
                    .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
            } else {
                usize::try_from(*i).ok()?
            };
            a.get(idx)
        }
        _ => None,
    }
}

fn navigate<'v>(v: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    segs.iter().try_fold(v, step)
}

fn null<'s>() -> Cow<'s, Value> {
    Cow::Owned(Value::Null)
}

/// A number as the evaluator computes with it.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

fn num(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    Some(match n.as_i64() {
        Some(i) => Num::I(i),
        None => Num::F(n.as_f64()?),
    })
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

fn from_f64<'s>(f: f64, sc: &Scope<'_>) -> Cow<'s, Value> {
    if f.is_finite() {
        Cow::Owned(Value::from(f))
    } else {
        sc.type_error()
    }
}

/// An integral float as an integer when it is exactly representable, else the float.
fn integral<'s>(f: f64, sc: &Scope<'_>) -> Cow<'s, Value> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.is_finite() && f.abs() <= LIMIT {
        Cow::Owned(Value::from(f as i64))
    } else {
        from_f64(f, sc)
    }
}

/// Orders two values of the same type; `None` when their types differ or either is NULL.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (num(a)?, num(b)?) {
            (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
            (x, y) => x.f().partial_cmp(&y.f()),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            if a == b {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Equality for IN and CASE: values of different types are simply unequal.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => a == b,
        _ => compare(a, b) == Some(Ordering::Equal),
    }
}

/// SQL truth value: `Some(bool)`, or `None` for NULL (and, counted, for a non-boolean).
fn truth(v: &Value, sc: &Scope<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Null => None,
        _ => {
            sc.type_error();
            None
        }
    }
}

fn tri<'s>(t: Option<bool>) -> Cow<'s, Value> {
    Cow::Owned(t.map_or(Value::Null, Value::Bool))
}

/// `LIKE` with `%` (any run of characters) and `_` (one character).
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '_' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '%'))
}

/// Evaluates `e` against the message in `sc`.
pub(crate) fn eval<'s>(e: &'s Expr, sc: &'s Scope<'_>) -> Cow<'s, Value> {
    match e {
        Expr::Lit(v) => Cow::Borrowed(v),
        Expr::Field(f) => sc.field(*f),
        Expr::Payload(segs) => match sc.json().and_then(|j| navigate(j, segs)) {
            Some(v) => Cow::Borrowed(v),
            None => null(),
        },
        Expr::UserProp(key) => sc
            .msg
            .user_properties
            .iter()
            .find(|(k, _)| *k == key)
            .map_or_else(null, |(_, v)| Cow::Owned(Value::String((*v).to_owned()))),
        Expr::Get(inner, segs) => match eval(inner, sc) {
            Cow::Borrowed(v) => navigate(v, segs).map_or_else(null, Cow::Borrowed),
            Cow::Owned(v) => navigate(&v, segs).map_or_else(null, |x| Cow::Owned(x.clone())),
        },
        Expr::Alias(inner) => eval(inner, sc),
        Expr::Neg(inner) => match num(&eval(inner, sc)) {
            Some(Num::I(i)) => match i.checked_neg() {
                Some(n) => Cow::Owned(Value::from(n)),
                None => from_f64(-(i as f64), sc),
            },
            Some(Num::F(f)) => from_f64(-f, sc),
            None => sc.type_error(),
        },
        Expr::Not(inner) => {
            let v = eval(inner, sc);
            tri(truth(&v, sc).map(|b| !b))
        }
        Expr::And(a, b) => {
            let l = truth(&eval(a, sc), sc);
            if l == Some(false) {
                return tri(Some(false));
            }
            let r = truth(&eval(b, sc), sc);
            tri(match (l, r) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            })
        }
        Expr::Or(a, b) => {
            let l = truth(&eval(a, sc), sc);
            if l == Some(true) {
                return tri(Some(true));
            }
            let r = truth(&eval(b, sc), sc);
            tri(match (l, r) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            })
        }
        Expr::Bin(op, a, b) => {
            let l = eval(a, sc);
            let r = eval(b, sc);
            binary(*op, &l, &r, sc)
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, sc);
            if v.is_null() {
                return sc.type_error();
            }
            let found = list.iter().any(|item| loosely_equal(&v, &eval(item, sc)));
            Cow::Owned(Value::Bool(found != *negated))
        }
        Expr::IsNull { expr, negated } => {
            Cow::Owned(Value::Bool(eval(expr, sc).is_null() != *negated))
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => match (&*eval(expr, sc), &*eval(pattern, sc)) {
            (Value::String(t), Value::String(p)) => Cow::Owned(Value::Bool(like(t, p) != *negated)),
            _ => sc.type_error(),
        },
        Expr::TopicMatch(topic, filter) => match (&*eval(topic, sc), &*eval(filter, sc)) {
            (Value::String(t), Value::String(f)) => {
                Cow::Owned(Value::Bool(crate::topic::matches(f, t)))
            }
            _ => sc.type_error(),
        },
        Expr::Case {
            operand,
            whens,
            default,
        } => {
            let subject = operand.as_ref().map(|o| eval(o, sc));
            for (cond, value) in whens {
                let c = eval(cond, sc);
                let hit = match &subject {
                    Some(s) => loosely_equal(s, &c),
                    None => matches!(&*c, Value::Bool(true)),
                };
                if hit {
                    return eval(value, sc);
                }
            }
            default.as_ref().map_or_else(null, |d| eval(d, sc))
        }
        Expr::Call { func, args, regex } => call(*func, args, regex.as_ref(), sc),
    }
}

fn binary<'s>(op: BinOp, l: &Value, r: &Value, sc: &Scope<'_>) -> Cow<'s, Value> {
    let cmp = |want: fn(Ordering) -> bool| match compare(l, r) {
        Some(o) => Cow::Owned(Value::Bool(want(o))),
        None => sc.type_error(),
    };
    match op {
        BinOp::Eq => cmp(|o| o == Ordering::Equal),
        BinOp::Ne => cmp(|o| o != Ordering::Equal),
        BinOp::Lt => cmp(|o| o == Ordering::Less),
        BinOp::Le => cmp(|o| o != Ordering::Greater),
        BinOp::Gt => cmp(|o| o == Ordering::Greater),
        BinOp::Ge => cmp(|o| o != Ordering::Less),
        _ => {
            let (Some(x), Some(y)) = (num(l), num(r)) else {
                return sc.type_error();
            };
            arith(op, x, y, sc)
        }
    }
}

fn arith<'s>(op: BinOp, x: Num, y: Num, sc: &Scope<'_>) -> Cow<'s, Value> {
    let int = |r: Option<i64>, fallback: f64| match r {
        Some(n) => Cow::Owned(Value::from(n)),
        None => from_f64(fallback, sc),
    };
    match (op, x, y) {
        (BinOp::Add, Num::I(a), Num::I(b)) => int(a.checked_add(b), a as f64 + b as f64),
        (BinOp::Sub, Num::I(a), Num::I(b)) => int(a.checked_sub(b), a as f64 - b as f64),
        (BinOp::Mul, Num::I(a), Num::I(b)) => int(a.checked_mul(b), a as f64 * b as f64),
        (BinOp::Add, a, b) => from_f64(a.f() + b.f(), sc),
        (BinOp::Sub, a, b) => from_f64(a.f() - b.f(), sc),
        (BinOp::Mul, a, b) => from_f64(a.f() * b.f(), sc),
        (BinOp::Div, a, b) => {
            if b.f() == 0.0 {
                sc.type_error()
            } else {
                from_f64(a.f() / b.f(), sc)
            }
        }
        (BinOp::IntDiv, Num::I(a), Num::I(b)) => match a.checked_div(b) {
            Some(n) => Cow::Owned(Value::from(n)),
            None => sc.type_error(),
        },
        (BinOp::Mod, Num::I(a), Num::I(b)) => match a.checked_rem(b) {
            Some(n) => Cow::Owned(Value::from(n)),
            None => sc.type_error(),
        },
        (BinOp::Mod, a, b) => {
            if b.f() == 0.0 {
                sc.type_error()
            } else {
                from_f64(a.f() % b.f(), sc)
            }
        }
        _ => sc.type_error(),
    }
}

/// A value as text for `concat` and templates: strings as they are, others as JSON.
pub(crate) fn to_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

fn string<'s>(s: String) -> Cow<'s, Value> {
    Cow::Owned(Value::String(s))
}

fn int_arg(v: &Value) -> Option<i64> {
    match num(v)? {
        Num::I(i) => Some(i),
        Num::F(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        Num::F(_) => None,
    }
}

fn call<'s>(
    func: Func,
    args: &'s [Expr],
    regex: Option<&'s regex::Regex>,
    sc: &'s Scope<'_>,
) -> Cow<'s, Value> {
    // Lazy functions first: their arguments are evaluated only when needed.
    match func {
        Func::Coalesce => {
            for a in args {
                let v = eval(a, sc);
                if !v.is_null() {
                    return v;
                }
            }
            return null();
        }
        Func::If => {
            let (Some(c), Some(t), Some(f)) = (args.first(), args.get(1), args.get(2)) else {
                return sc.type_error();
            };
            let cond = eval(c, sc);
            return match truth(&cond, sc) {
                Some(true) => eval(t, sc),
                _ => eval(f, sc),
            };
        }
        Func::Now => return Cow::Owned(Value::from(sc.now())),
        _ => {}
    }
    let vals: Vec<Cow<'s, Value>> = args.iter().map(|a| eval(a, sc)).collect();
    let arg = |i: usize| vals.get(i).map_or(&Value::Null, |v| &**v);
    let s0 = arg(0).as_str();
    match func {
        Func::Lower => s0.map_or_else(|| sc.type_error(), |s| string(s.to_lowercase())),
        Func::Upper => s0.map_or_else(|| sc.type_error(), |s| string(s.to_uppercase())),
        Func::Trim => s0.map_or_else(|| sc.type_error(), |s| string(s.trim().to_owned())),
        Func::Concat => {
            let mut out = String::new();
            for v in &vals {
                if v.is_null() {
                    return sc.type_error();
                }
                out.push_str(&to_text(v));
            }
            string(out)
        }
        Func::Substr => {
            let (Some(s), Some(start)) = (s0, int_arg(arg(1))) else {
                return sc.type_error();
            };
            let count = s.chars().count();
            let start = if start < 0 {
                count.saturating_sub(usize::try_from(start.unsigned_abs()).unwrap_or(usize::MAX))
            } else {
                usize::try_from(start).unwrap_or(usize::MAX)
            };
            let len = match vals.get(2) {
                None => usize::MAX,
                Some(v) => match int_arg(v).and_then(|l| usize::try_from(l).ok()) {
                    Some(l) => l,
                    None => return sc.type_error(),
                },
            };
            string(s.chars().skip(start).take(len).collect())
        }
        Func::Split => match (s0, arg(1).as_str()) {
            (Some(s), Some(sep)) if !sep.is_empty() => Cow::Owned(Value::Array(
                s.split(sep).map(|p| Value::String(p.to_owned())).collect(),
            )),
            _ => sc.type_error(),
        },
        Func::Replace => match (s0, arg(1).as_str(), arg(2).as_str()) {
            (Some(s), Some(from), Some(to)) if !from.is_empty() => string(s.replace(from, to)),
            (Some(s), Some(_), Some(_)) => string(s.to_owned()),
            _ => sc.type_error(),
        },
        Func::RegexMatch | Func::RegexReplace => {
            let compiled;
            let re = match regex {
                Some(re) => re,
                None => {
                    let Some(p) = arg(1).as_str() else {
                        return sc.type_error();
                    };
                    match regex::RegexBuilder::new(p)
                        .size_limit(crate::parser::REGEX_SIZE_LIMIT)
                        .build()
                    {
                        Ok(re) => {
                            compiled = re;
                            &compiled
                        }
                        Err(_) => return sc.type_error(),
                    }
                }
            };
            let Some(s) = s0 else {
                return sc.type_error();
            };
            if func == Func::RegexMatch {
                Cow::Owned(Value::Bool(re.is_match(s)))
            } else {
                match arg(2).as_str() {
                    Some(rep) => string(re.replace_all(s, rep).into_owned()),
                    None => sc.type_error(),
                }
            }
        }
        Func::Abs => match num(arg(0)) {
            Some(Num::I(i)) => match i.checked_abs() {
                Some(n) => Cow::Owned(Value::from(n)),
                None => from_f64((i as f64).abs(), sc),
            },
            Some(Num::F(f)) => from_f64(f.abs(), sc),
            None => sc.type_error(),
        },
        Func::Round | Func::Floor | Func::Ceil => {
            let Some(n) = num(arg(0)) else {
                return sc.type_error();
            };
            let f = match n {
                Num::I(i) => return Cow::Owned(Value::from(i)),
                Num::F(f) => f,
            };
            if func == Func::Round
                && let Some(d) = vals.get(1)
            {
                let Some(d) = int_arg(d).filter(|d| (0..=15).contains(d)) else {
                    return sc.type_error();
                };
                let scale = 10f64.powi(i32::try_from(d).unwrap_or(0));
                return from_f64((f * scale).round() / scale, sc);
            }
            let r = match func {
                Func::Floor => f.floor(),
                Func::Ceil => f.ceil(),
                _ => f.round(),
            };
            integral(r, sc)
        }
        Func::JsonEncode => string(arg(0).to_string()),
        Func::JsonDecode => match s0.and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            Some(v) => Cow::Owned(v),
            None => sc.type_error(),
        },
        Func::FormatTime => {
            let Some(ms) = num(arg(0)).map(|n| match n {
                Num::I(i) => i,
                Num::F(f) => f as i64,
            }) else {
                return sc.type_error();
            };
            let fmt = match vals.get(1) {
                None => crate::time::RFC3339,
                Some(v) => match v.as_str() {
                    Some(f) => f,
                    None => return sc.type_error(),
                },
            };
            crate::time::format_ms(ms, fmt).map_or_else(|| sc.type_error(), string)
        }
        Func::TopicLevel => {
            let Some(n) = int_arg(arg(0)).filter(|n| *n >= 1) else {
                return sc.type_error();
            };
            let idx = usize::try_from(n - 1).unwrap_or(usize::MAX);
            sc.msg
                .topic
                .split('/')
                .nth(idx)
                .map_or_else(null, |l| string(l.to_owned()))
        }
        Func::Nth => match (int_arg(arg(0)), arg(1)) {
            (Some(n), Value::Array(a)) if n >= 1 => usize::try_from(n - 1)
                .ok()
                .and_then(|i| a.get(i))
                .map_or_else(null, |v| Cow::Owned(v.clone())),
            _ => sc.type_error(),
        },
        Func::Length => match arg(0) {
            Value::String(s) => Cow::Owned(Value::from(s.chars().count())),
            Value::Array(a) => Cow::Owned(Value::from(a.len())),
            Value::Object(o) => Cow::Owned(Value::from(o.len())),
            _ => sc.type_error(),
        },
        Func::Str => match arg(0) {
            Value::Null => null(),
            v => string(to_text(v).into_owned()),
        },
        Func::Num => match arg(0) {
            Value::Number(_) => Cow::Owned(arg(0).clone()),
            Value::Bool(b) => Cow::Owned(Value::from(i64::from(*b))),
            Value::String(s) => {
                let t = s.trim();
                if let Ok(i) = t.parse::<i64>() {
                    Cow::Owned(Value::from(i))
                } else if let Ok(f) = t.parse::<f64>() {
                    from_f64(f, sc)
                } else {
                    sc.type_error()
                }
            }
            _ => sc.type_error(),
        },
        Func::Coalesce | Func::If | Func::Now => sc.type_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_wildcards() {
        assert!(like("sensor-12", "sensor-%"));
        assert!(like("abc", "a_c"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(!like("abc", "a_"));
        assert!(like("aXbXc", "%b%c"));
        assert!(!like("abc", "abcd"));
        assert!(like("mississippi", "%iss%ppi"));
    }
}
