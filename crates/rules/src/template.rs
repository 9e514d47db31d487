//! Action templates: text with `${expression}` placeholders (`${payload.room}`, `${t}`,
//! `${clientid}`, `${upper(topic_level(2))}`), compiled once with the rule.
//!
//! A placeholder is an expression of the rule language; SELECT aliases are in scope. Its value is
//! written as text: strings as they are, NULL as nothing, numbers, booleans, arrays and objects as
//! JSON. `$$` is not special; a `$` not followed by `{` is copied.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::ast::{Expr, Field};
use crate::error::ParseError;
use crate::eval::{Scope, eval, to_text};
use crate::lexer::Pos;

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Expr(Expr),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
    /// The whole template as bytes when it has no placeholders.
    constant: Option<Bytes>,
}

impl Template {
    /// Compiles `src`; errors are located in `src` (line 1, column of the fault).
    pub(crate) fn parse(
        src: &str,
        aliases: &HashMap<String, Arc<Expr>>,
    ) -> Result<Template, ParseError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        let mut col: u32 = 1;
        while let Some(at) = rest.find("${") {
            let (before, after) = rest.split_at(at);
            lit.push_str(before);
            col = col.saturating_add(char_len(before));
            let open = col;
            let inner_src = &after[2..];
            let Some(close) = inner_src.find('}') else {
                return Err(ParseError::new(
                    Pos {
                        line: 1,
                        column: open,
                    },
                    "unclosed `${`; expected `}`".to_owned(),
                ));
            };
            let inner = &inner_src[..close];
            if inner.trim().is_empty() {
                return Err(ParseError::new(
                    Pos {
                        line: 1,
                        column: open,
                    },
                    "empty `${}`; expected a field such as `${payload.x}`".to_owned(),
                ));
            }
            let expr = crate::parser::parse_expr(inner, aliases).map_err(|mut e| {
                if e.line == 1 {
                    e.column = e.column.saturating_add(open).saturating_add(1);
                }
                e
            })?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Expr(expr));
            col = open.saturating_add(3).saturating_add(char_len(inner));
            rest = &inner_src[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let constant = match parts.as_slice() {
            [] => Some(Bytes::new()),
            [Part::Lit(s)] => Some(Bytes::from(s.clone())),
            _ => None,
        };
        Ok(Template { parts, constant })
    }

    /// Renders to text.
    pub(crate) fn render_string(&self, sc: &Scope<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e) => out.push_str(&to_text(&eval(e, sc))),
            }
        }
        out
    }

    /// Renders to bytes; `${payload}` alone hands on the payload without copying.
    pub(crate) fn render_bytes(&self, sc: &Scope<'_>) -> Bytes {
        if let Some(c) = &self.constant {
            return c.clone();
        }
        if let [Part::Expr(Expr::Field(Field::Payload))] = self.parts.as_slice() {
            return sc.msg.payload.clone();
        }
        Bytes::from(self.render_string(sc))
    }
}

fn char_len(s: &str) -> u32 {
    u32::try_from(s.chars().count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::MessageContext;

    fn render(t: &str, msg: &MessageContext<'_>) -> String {
        let t = Template::parse(t, &HashMap::new()).unwrap();
        let sc = Scope::new(msg);
        t.render_string(&sc)
    }

    #[test]
    fn placeholders_are_expressions() {
        let mut m = MessageContext::new(
            "home/kitchen/temp",
            r#"{"room":"kitchen","t":21.5,"a":[1,2]}"#,
        );
        m.clientid = "c1";
        assert_eq!(render("x/${payload.room}/y", &m), "x/kitchen/y");
        assert_eq!(
            render("${clientid}:${payload.t}:${payload.a}", &m),
            "c1:21.5:[1,2]"
        );
        assert_eq!(render("${upper(topic_level(2))}", &m), "KITCHEN");
        assert_eq!(render("${payload.missing}|$x|", &m), "|$x|");
    }

    #[test]
    fn payload_alone_is_not_copied() {
        let m = MessageContext::new("t", Bytes::from_static(b"\xff\x00raw"));
        let t = Template::parse("${payload}", &HashMap::new()).unwrap();
        assert_eq!(
            t.render_bytes(&Scope::new(&m)),
            Bytes::from_static(b"\xff\x00raw")
        );
    }

    #[test]
    fn template_errors_are_located() {
        let e = Template::parse("a/${payload.x", &HashMap::new()).unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (3, "unclosed `${`; expected `}`")
        );
        let e = Template::parse("ab${}", &HashMap::new()).unwrap_err();
        assert_eq!(e.column, 3);
        let e = Template::parse("ab${nope}", &HashMap::new()).unwrap_err();
        assert_eq!(e.column, 5, "{e}");
        assert!(e.message.starts_with("unknown field `nope`"));
    }
}
