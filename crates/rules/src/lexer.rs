//! The lexer: rule text in, tokens with their line and column out.
//!
//! Strings follow SQL: `'single'` and `"double"` quotes, a quote doubled inside is one quote, and a
//! backslash is an ordinary character (so `'\d+'` is a regular expression as written). The lexer
//! knows no keywords; the parser compares identifiers case-insensitively.

use crate::error::ParseError;

/// Where a token starts: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// `'…'`
    Str(String),
    /// `"…"`
    DStr(String),
    Int(i64),
    Float(f64),
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~`, the topic-filter match.
    Match,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eof,
}

impl Tok {
    /// How an error message names this token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::DStr(s) => format!("string \"{s}\""),
            Tok::Int(n) => format!("number {n}"),
            Tok::Float(n) => format!("number {n}"),
            Tok::Eq => "`=`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Match => "`=~`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token and where it starts; `start`/`end` are byte offsets into the source.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
    pub start: usize,
    pub end: usize,
}

/// Splits `src` into tokens; the last one is always [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    Lexer {
        src,
        chars: src.char_indices().peekable(),
        line: 1,
        column: 1,
    }
    .run()
}

struct Lexer<'a> {
    src: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    line: u32,
    column: u32,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<(usize, char)> {
        let next = self.chars.next();
        if let Some((_, c)) = next {
            if c == '\n' {
                self.line = self.line.saturating_add(1);
                self.column = 1;
            } else {
                self.column = self.column.saturating_add(1);
            }
        }
        next
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn offset(&mut self) -> usize {
        self.chars.peek().map_or(self.src.len(), |&(i, _)| i)
    }

    fn run(mut self) -> Result<Vec<Token>, ParseError> {
        let mut out = Vec::new();
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            }
            let pos = Pos {
                line: self.line,
                column: self.column,
            };
            let start = self.offset();
            let Some((_, c)) = self.bump() else {
                out.push(Token {
                    tok: Tok::Eof,
                    pos,
                    start,
                    end: start,
                });
                return Ok(out);
            };
            let tok = match c {
                '=' if self.peek() == Some('~') => {
                    self.bump();
                    Tok::Match
                }
                '=' => Tok::Eq,
                '!' if self.peek() == Some('=') => {
                    self.bump();
                    Tok::Ne
                }
                '<' if self.peek() == Some('=') => {
                    self.bump();
                    Tok::Le
                }
                '<' if self.peek() == Some('>') => {
                    self.bump();
                    Tok::Ne
                }
                '<' => Tok::Lt,
                '>' if self.peek() == Some('=') => {
                    self.bump();
                    Tok::Ge
                }
                '>' => Tok::Gt,
                '+' => Tok::Plus,
                '-' => Tok::Minus,
                '*' => Tok::Star,
                '/' => Tok::Slash,
                '%' => Tok::Percent,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ',' => Tok::Comma,
                '.' => Tok::Dot,
                '\'' | '"' => {
                    let s = self.string(c, pos)?;
                    if c == '\'' { Tok::Str(s) } else { Tok::DStr(s) }
                }
                c if c.is_ascii_digit() => self.number(start, pos)?,
                c if c.is_alphabetic() || c == '_' => {
                    while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        self.bump();
                    }
                    let end = self.offset();
                    Tok::Ident(self.src.get(start..end).unwrap_or_default().to_owned())
                }
                other => {
                    return Err(ParseError::new(
                        pos,
                        format!("unexpected character `{other}`"),
                    ));
                }
            };
            let end = self.offset();
            out.push(Token {
                tok,
                pos,
                start,
                end,
            });
        }
    }

    fn string(&mut self, quote: char, pos: Pos) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError::new(
                        pos,
                        format!("unterminated string; expected a closing {quote}"),
                    ));
                }
                Some((_, c)) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        s.push(quote);
                    } else {
                        return Ok(s);
                    }
                }
                Some((_, c)) => s.push(c),
            }
        }
    }

    fn number(&mut self, start: usize, pos: Pos) -> Result<Tok, ParseError> {
        let mut float = false;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') {
            // `1.5` is a number; `a[1].b` has a dot after an integer that starts a field.
            let mut ahead = self.chars.clone();
            ahead.next();
            if ahead.peek().is_some_and(|&(_, c)| c.is_ascii_digit()) {
                float = true;
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mut ahead = self.chars.clone();
            ahead.next();
            if matches!(ahead.peek(), Some(&(_, '+' | '-'))) {
                ahead.next();
            }
            if ahead.peek().is_some_and(|&(_, c)| c.is_ascii_digit()) {
                float = true;
                self.bump();
                if matches!(self.peek(), Some('+' | '-')) {
                    self.bump();
                }
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            }
        }
        if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return Err(ParseError::new(
                pos,
                "invalid number; expected digits, `.` or an exponent".to_owned(),
            ));
        }
        let end = self.offset();
        let text = self.src.get(start..end).unwrap_or_default();
        if !float && let Ok(n) = text.parse::<i64>() {
            return Ok(Tok::Int(n));
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Tok::Float(f)),
            _ => Err(ParseError::new(
                pos,
                format!("number `{text}` is out of range"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_and_literals() {
        assert_eq!(
            toks("a=~'x' <> != <= >= < > = 1 2.5 1e3 \"t\""),
            vec![
                Tok::Ident("a".into()),
                Tok::Match,
                Tok::Str("x".into()),
                Tok::Ne,
                Tok::Ne,
                Tok::Le,
                Tok::Ge,
                Tok::Lt,
                Tok::Gt,
                Tok::Eq,
                Tok::Int(1),
                Tok::Float(2.5),
                Tok::Float(1000.0),
                Tok::DStr("t".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn doubled_quote_is_one_quote_and_backslash_is_literal() {
        assert_eq!(toks(r"'it''s \d'")[0], Tok::Str(r"it's \d".into()));
    }

    #[test]
    fn index_then_dot_is_not_a_float() {
        assert_eq!(
            toks("a[1].b"),
            vec![
                Tok::Ident("a".into()),
                Tok::LBracket,
                Tok::Int(1),
                Tok::RBracket,
                Tok::Dot,
                Tok::Ident("b".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn positions_count_lines_and_columns() {
        let t = lex("SELECT\n  *").unwrap();
        assert_eq!(t[1].pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn unterminated_string_is_located() {
        let e = lex("SELECT 'abc").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8));
        assert!(e.message.contains("unterminated string"), "{e}");
    }

    #[test]
    fn unexpected_character_is_located() {
        let e = lex("a @ b").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
        assert_eq!(e.message, "unexpected character `@`");
    }

    #[test]
    fn bad_numbers_are_rejected() {
        assert!(lex("12abc").unwrap_err().message.contains("invalid number"));
        assert!(
            lex("99999999999999999999e999")
                .unwrap_err()
                .message
                .contains("out of range")
        );
        assert_eq!(toks("99999999999999999999")[0], Tok::Float(1e20));
    }
}
