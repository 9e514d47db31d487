//! The recursive-descent parser: `SELECT … FROM "filter", … [WHERE …]` into a [`Query`].
//!
//! Precedence, loosest first: `OR`; `AND`; `NOT`; comparisons (`=`, `!=`/`<>`, `<`, `<=`, `>`,
//! `>=`, `=~`, `[NOT] IN`, `[NOT] LIKE`, `IS [NOT] NULL`, non-associative); `+ -`;
//! `* / % DIV MOD`; unary `-`; postfix `.key`, `[index]`. Nesting is limited to
//! [`MAX_DEPTH`] so hostile text cannot exhaust the stack.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::ast::{BinOp, Expr, Field, Func, Seg};
use crate::error::ParseError;
use crate::lexer::{Pos, Tok, Token, lex};

/// How deeply expressions may nest.
pub(crate) const MAX_DEPTH: u32 = 64;

/// Largest compiled size of a regular expression in a rule.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "TRUE",
    "FALSE", "CASE", "WHEN", "THEN", "ELSE", "END", "DIV", "MOD",
];

/// One item of the SELECT list.
#[derive(Debug, Clone)]
pub(crate) enum SelectItem {
    /// `*`: every message field.
    Star,
    /// An expression and the key it is output under (its alias, or its source text).
    Expr { key: String, expr: Expr },
}

/// A parsed rule.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub items: Vec<SelectItem>,
    /// Topic filters of the FROM clause with where each one is written.
    pub filters: Vec<(String, Pos)>,
    pub where_: Option<Expr>,
    /// SELECT aliases, usable in WHERE and in action templates.
    pub aliases: HashMap<String, Arc<Expr>>,
}

/// Parses a whole rule.
pub(crate) fn parse_query(src: &str) -> Result<Query, ParseError> {
    let mut p = Parser::new(src, HashMap::new())?;
    p.query()
}

/// Parses one expression (the inside of a template's `${…}`), resolving `aliases`.
pub(crate) fn parse_expr(
    src: &str,
    aliases: &HashMap<String, Arc<Expr>>,
) -> Result<Expr, ParseError> {
    let mut p = Parser::new(src, aliases.clone())?;
    let e = p.expr()?;
    p.expect_eof("end of the expression")?;
    Ok(e)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: u32,
    aliases: HashMap<String, Arc<Expr>>,
}

fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, aliases: HashMap<String, Arc<Expr>>) -> Result<Parser<'a>, ParseError> {
        Ok(Parser {
            src,
            toks: lex(src)?,
            i: 0,
            depth: 0,
            aliases,
        })
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.i + n).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> Pos {
        self.toks
            .get(self.i)
            .or_else(|| self.toks.last())
            .map_or_else(Pos::default, |t| t.pos)
    }

    fn start_offset(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |t| t.start)
    }

    fn prev_end(&self) -> usize {
        self.i
            .checked_sub(1)
            .and_then(|j| self.toks.get(j))
            .map_or(0, |t| t.end)
    }

    fn advance(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len().saturating_sub(1) {
            self.i += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    fn err<T>(&self, expected: &str) -> Result<T, ParseError> {
        Err(ParseError::new(
            self.pos(),
            format!("expected {expected}, found {}", self.peek().describe()),
        ))
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            self.err(expected)
        }
    }

    fn expect_kw(&mut self, kw: &str, expected: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.err(expected)
        }
    }

    fn expect_eof(&self, expected: &str) -> Result<(), ParseError> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            self.err(expected)
        }
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        self.expect_kw("SELECT", "SELECT")?;
        let mut items = Vec::new();
        let mut pending_aliases = Vec::new();
        loop {
            if self.eat(&Tok::Star) {
                items.push(SelectItem::Star);
            } else {
                let start = self.start_offset();
                let expr = self.expr()?;
                let text = self.src.get(start..self.prev_end()).unwrap_or("").trim();
                let key = if self.eat_kw("AS") {
                    let pos = self.pos();
                    let name = match self.advance() {
                        Tok::Ident(name) if !is_keyword(&name) => name,
                        Tok::Str(name) | Tok::DStr(name) => name,
                        other => {
                            return Err(ParseError::new(
                                pos,
                                format!(
                                    "expected an alias name after AS, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    };
                    if Field::from_name(&name).is_some() {
                        return Err(ParseError::new(
                            pos,
                            format!(
                                "alias `{name}` is the name of a message field; choose another name"
                            ),
                        ));
                    }
                    pending_aliases.push((name.clone(), expr.clone()));
                    name
                } else {
                    text.to_owned()
                };
                items.push(SelectItem::Expr { key, expr });
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_kw("FROM", "`,` or FROM")?;
        let mut filters = Vec::new();
        loop {
            let pos = self.pos();
            match self.advance() {
                Tok::Str(f) | Tok::DStr(f) => {
                    if let Err(why) = crate::topic::validate_topic_filter(&f) {
                        return Err(ParseError::new(
                            pos,
                            format!("invalid topic filter \"{f}\": {why}"),
                        ));
                    }
                    filters.push((f, pos));
                }
                other => {
                    return Err(ParseError::new(
                        pos,
                        format!(
                            "expected a quoted topic filter such as \"sensors/+/temp\", found {}",
                            other.describe()
                        ),
                    ));
                }
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        for (name, expr) in pending_aliases {
            self.aliases.insert(name, Arc::new(expr));
        }
        let where_ = if self.eat_kw("WHERE") {
            let e = self.expr()?;
            self.expect_eof("an operator, AND, OR or end of input")?;
            Some(e)
        } else {
            self.expect_eof("`,`, WHERE or end of input")?;
            None
        };
        Ok(Query {
            items,
            filters,
            where_,
            aliases: std::mem::take(&mut self.aliases),
        })
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.pos(),
                format!("expression nested too deeply (the limit is {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let r = self.or();
        self.leave();
        r
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_kw("OR") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.eat_kw("AND") {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_kw("NOT") {
            self.enter()?;
            let inner = self.not();
            self.leave();
            return Ok(Expr::Not(Box::new(inner?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Tok::Eq => Some(BinOp::Eq),
            Tok::Ne => Some(BinOp::Ne),
            Tok::Lt => Some(BinOp::Lt),
            Tok::Le => Some(BinOp::Le),
            Tok::Gt => Some(BinOp::Gt),
            Tok::Ge => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.additive()?;
            return Ok(Expr::Bin(op, Box::new(left), Box::new(right)));
        }
        if self.eat(&Tok::Match) {
            let right = self.additive()?;
            return Ok(Expr::TopicMatch(Box::new(left), Box::new(right)));
        }
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            self.expect_kw(
                "NULL",
                if negated {
                    "NULL after IS NOT"
                } else {
                    "NULL or NOT NULL after IS"
                },
            )?;
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = if self.is_kw("NOT") {
            match self.peek_at(1) {
                Tok::Ident(s) if s.eq_ignore_ascii_case("IN") || s.eq_ignore_ascii_case("LIKE") => {
                    self.advance();
                    true
                }
                _ => {
                    self.advance();
                    return self.err("IN or LIKE after NOT");
                }
            }
        } else {
            false
        };
        if self.eat_kw("IN") {
            self.expect(&Tok::LParen, "`(` after IN")?;
            let mut list = Vec::new();
            if *self.peek() != Tok::RParen {
                loop {
                    list.push(self.expr()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
            }
            self.expect(&Tok::RParen, "`,` or `)` to close the IN list")?;
            return Ok(Expr::In {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        if self.eat_kw("LIKE") {
            let pattern = self.additive()?;
            return Ok(Expr::Like {
                expr: Box::new(left),
                pattern: Box::new(pattern),
                negated,
            });
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.multiplicative()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Mod,
                Tok::Ident(s) if s.eq_ignore_ascii_case("DIV") => BinOp::IntDiv,
                Tok::Ident(s) if s.eq_ignore_ascii_case("MOD") => BinOp::Mod,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat(&Tok::Minus) {
            self.enter()?;
            let inner = self.unary();
            self.leave();
            let inner = inner?;
            // Fold `-3` into a literal so `IN (-1, 2)` and `[-1]` stay cheap.
            return Ok(match inner {
                Expr::Lit(Value::Number(n)) if n.as_i64().is_some_and(|i| i != i64::MIN) => {
                    Expr::Lit(Value::from(-n.as_i64().unwrap_or_default()))
                }
                Expr::Lit(Value::Number(n)) if n.is_f64() => {
                    Expr::Lit(Value::from(-n.as_f64().unwrap_or_default()))
                }
                other => Expr::Neg(Box::new(other)),
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn segments(&mut self) -> Result<Vec<Seg>, ParseError> {
        let mut segs = Vec::new();
        loop {
            if self.eat(&Tok::Dot) {
                let pos = self.pos();
                match self.advance() {
                    Tok::Ident(k) | Tok::DStr(k) => segs.push(Seg::Key(k)),
                    Tok::Int(i) => segs.push(Seg::Index(i)),
                    other => {
                        return Err(ParseError::new(
                            pos,
                            format!(
                                "expected a field name after `.`, found {}",
                                other.describe()
                            ),
                        ));
                    }
                }
            } else if self.eat(&Tok::LBracket) {
                let pos = self.pos();
                let neg = self.eat(&Tok::Minus);
                match self.advance() {
                    Tok::Int(i) => segs.push(Seg::Index(if neg { i.saturating_neg() } else { i })),
                    Tok::Str(k) | Tok::DStr(k) if !neg => segs.push(Seg::Key(k)),
                    other => {
                        return Err(ParseError::new(
                            pos,
                            format!(
                                "expected an integer index or a quoted key inside `[]`, found {}",
                                other.describe()
                            ),
                        ));
                    }
                }
                self.expect(&Tok::RBracket, "`]`")?;
            } else {
                return Ok(segs);
            }
        }
    }

    fn postfix(&mut self, e: Expr) -> Result<Expr, ParseError> {
        let segs = self.segments()?;
        if segs.is_empty() {
            return Ok(e);
        }
        Ok(match e {
            Expr::Field(Field::Payload) => Expr::Payload(segs),
            Expr::Field(Field::UserProperties) => {
                let mut it = segs.into_iter();
                match it.next() {
                    Some(Seg::Key(k)) => {
                        let rest: Vec<Seg> = it.collect();
                        let prop = Expr::UserProp(k);
                        if rest.is_empty() {
                            prop
                        } else {
                            Expr::Get(Box::new(prop), rest)
                        }
                    }
                    Some(first) => {
                        let mut all = vec![first];
                        all.extend(it);
                        Expr::Get(Box::new(Expr::Field(Field::UserProperties)), all)
                    }
                    None => Expr::Field(Field::UserProperties),
                }
            }
            other => Expr::Get(Box::new(other), segs),
        })
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Int(n) => {
                self.advance();
                Ok(Expr::Lit(Value::from(n)))
            }
            Tok::Float(f) => {
                self.advance();
                Ok(Expr::Lit(Value::from(f)))
            }
            Tok::Str(s) | Tok::DStr(s) => {
                self.advance();
                Ok(Expr::Lit(Value::String(s)))
            }
            Tok::LParen => {
                self.advance();
                let e = self.expr()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.advance();
                if *self.peek() == Tok::LParen && !is_keyword(&name) {
                    return self.call(&name, pos);
                }
                let upper = name.to_ascii_uppercase();
                match upper.as_str() {
                    "NULL" => return Ok(Expr::Lit(Value::Null)),
                    "TRUE" => return Ok(Expr::Lit(Value::Bool(true))),
                    "FALSE" => return Ok(Expr::Lit(Value::Bool(false))),
                    "CASE" => return self.case(),
                    _ => {}
                }
                if is_keyword(&name) {
                    self.i -= 1;
                    return self.err("an expression");
                }
                if let Some(field) = Field::from_name(&name) {
                    return Ok(Expr::Field(field));
                }
                if let Some(alias) = self.aliases.get(&name) {
                    return Ok(Expr::Alias(Arc::clone(alias)));
                }
                Err(ParseError::new(
                    pos,
                    format!(
                        "unknown field `{name}`; expected one of {}, or a SELECT alias (aliases are usable in WHERE and templates)",
                        Field::NAMES.join(", ")
                    ),
                ))
            }
            _ => self.err("an expression"),
        }
    }

    fn call(&mut self, name: &str, pos: Pos) -> Result<Expr, ParseError> {
        let Some((func, min, max)) = Func::lookup(name) else {
            let names: Vec<&str> = Func::TABLE.iter().map(|(n, ..)| *n).collect();
            return Err(ParseError::new(
                pos,
                format!(
                    "unknown function `{name}`; expected one of {}",
                    names.join(", ")
                ),
            ));
        };
        self.expect(&Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        let mut arg_pos = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                arg_pos.push(self.pos());
                args.push(self.expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect(&Tok::RParen, "`,` or `)` to close the argument list")?;
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else if max == usize::MAX {
                format!("at least {min} argument{}", if min == 1 { "" } else { "s" })
            } else {
                format!("{min} to {max} arguments")
            };
            return Err(ParseError::new(
                pos,
                format!(
                    "function `{}` takes {want}, found {}",
                    name.to_ascii_lowercase(),
                    args.len()
                ),
            ));
        }
        let mut regex = None;
        if matches!(func, Func::RegexMatch | Func::RegexReplace)
            && let Some(Expr::Lit(Value::String(pattern))) = args.get(1)
        {
            let compiled = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    let at = arg_pos.get(1).copied().unwrap_or(pos);
                    let why = e.to_string();
                    let last = why.lines().last().unwrap_or("").trim().to_owned();
                    ParseError::new(at, format!("invalid regular expression: {last}"))
                })?;
            regex = Some(compiled);
        }
        Ok(Expr::Call { func, args, regex })
    }

    fn case(&mut self) -> Result<Expr, ParseError> {
        let operand = if self.is_kw("WHEN") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let cond = self.expr()?;
            self.expect_kw("THEN", "THEN")?;
            let value = self.expr()?;
            whens.push((cond, value));
        }
        if whens.is_empty() {
            return self.err("WHEN");
        }
        let default = if self.eat_kw("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("END", "WHEN, ELSE or END")?;
        Ok(Expr::Case {
            operand,
            whens,
            default,
        })
    }
}
