//! Just enough of cJSON 1.7's behaviour to print what `mosquitto_sub -F %J` prints: its parser
//! (lenient numbers, duplicate keys kept in order, any byte <= 0x20 is white space) and its
//! unformatted printer (numbers through `%d` / `%1.15g` / `%1.17g`, strings escaped its way).

/// A parsed JSON value, objects keeping key order and duplicates like cJSON does.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, as a double.
    Number(f64),
    /// A string, as bytes (cJSON does not check UTF-8).
    String(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// An object.
    Object(Vec<(Vec<u8>, Value)>),
}

const NESTING_LIMIT: usize = 1000;

/// Parses a whole payload as cJSON_ParseWithOpts(require_null_terminated) would, with the
/// extra check mosquitto_sub makes that the parse ended at the payload's end.
pub fn parse(input: &[u8]) -> Option<Value> {
    // The payload is a C string to cJSON: a NUL ends it, and then the end check fails.
    if input.contains(&0) {
        return None;
    }
    let mut p = Parser { s: input, i: 0 };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.i != input.len() {
        return None;
    }
    Some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c > 32 {
                break;
            }
            self.i += 1;
        }
    }

    fn starts_with(&self, lit: &[u8]) -> bool {
        self.s.get(self.i..).is_some_and(|r| r.starts_with(lit))
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if self.starts_with(b"null") {
            self.i += 4;
            return Some(Value::Null);
        }
        if self.starts_with(b"false") {
            self.i += 5;
            return Some(Value::Bool(false));
        }
        if self.starts_with(b"true") {
            self.i += 4;
            return Some(Value::Bool(true));
        }
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => self.array(depth),
            b'{' => self.object(depth),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        // cJSON copies the run of number characters, then lets strtod take what it can.
        let start = self.i;
        let mut end = start;
        while let Some(c) = self.s.get(end) {
            if matches!(c, b'0'..=b'9' | b'+' | b'-' | b'e' | b'E' | b'.') {
                end += 1;
            } else {
                break;
            }
        }
        let run = self.s.get(start..end)?;
        let used = strtod_prefix(run);
        if used == 0 {
            return None;
        }
        let text = std::str::from_utf8(run.get(..used)?).ok()?;
        let n: f64 = text.parse().ok()?;
        self.i = start + used;
        Some(Value::Number(n))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.s.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        u32::from_str_radix(text, 16).ok()
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        // Opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'u' => {
                            let first = self.hex4(self.i)?;
                            self.i += 4;
                            let code = if (0xDC00..=0xDFFF).contains(&first) || first == 0 {
                                return None;
                            } else if (0xD800..=0xDBFF).contains(&first) {
                                if !self.starts_with(b"\\u") {
                                    return None;
                                }
                                let second = self.hex4(self.i + 2)?;
                                if !(0xDC00..=0xDFFF).contains(&second) {
                                    return None;
                                }
                                self.i += 6;
                                0x10000 + (((first & 0x3FF) << 10) | (second & 0x3FF))
                            } else {
                                first
                            };
                            let ch = char::from_u32(code)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                _ => out.push(c),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        if depth >= NESTING_LIMIT {
            return None;
        }
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        if depth >= NESTING_LIMIT {
            return None;
        }
        self.i += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Value::Object(members));
                }
                _ => return None,
            }
        }
    }
}

/// How many bytes of `s` C's strtod would consume as a decimal number (0 if none).
fn strtod_prefix(s: &[u8]) -> usize {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let int_start = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if s.get(i) == Some(&b'.') {
        let mut j = i + 1;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - (i + 1);
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return 0;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

/// Prints a value as cJSON_PrintUnformatted does.
pub fn print(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(print_number(*n).as_bytes()),
        Value::String(s) => print_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                print(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (k, (key, item)) in members.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                print_string(key, out);
                out.push(b':');
                print(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Prints a value as cJSON_Print does (tabs and new lines); `depth` is 1 for the root.
pub fn print_formatted(value: &Value, depth: usize, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.extend_from_slice(b", ");
                }
                print_formatted(item, depth + 1, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.extend_from_slice(b"{\n");
            for (k, (key, item)) in members.iter().enumerate() {
                out.extend(std::iter::repeat_n(b'\t', depth));
                print_string(key, out);
                out.extend_from_slice(b":\t");
                print_formatted(item, depth + 1, out);
                if k + 1 < members.len() {
                    out.push(b',');
                }
                out.push(b'\n');
            }
            out.extend(std::iter::repeat_n(b'\t', depth.saturating_sub(1)));
            out.push(b'}');
        }
        other => print(other, out),
    }
}

/// A string as cJSON escapes it: `"`, `\`, the five named controls, `\u00xx` for other bytes
/// below 0x20, every other byte as is.
pub fn print_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 32 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// cJSON's number printing: integers that fit an `int` with `%d`, others with `%1.15g`, or
/// `%1.17g` when 15 digits do not round-trip.
pub fn print_number(d: f64) -> String {
    if !d.is_finite() {
        return "null".to_owned();
    }
    let valueint = if d >= f64::from(i32::MAX) {
        i32::MAX
    } else if d <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        d as i32
    };
    if d == f64::from(valueint) {
        return valueint.to_string();
    }
    let short = format_g(d, 15);
    match short.parse::<f64>() {
        Ok(back) if (back - d).abs() <= back.abs().max(d.abs()) * f64::EPSILON => short,
        _ => format_g(d, 17),
    }
}

/// C's `%1.<precision>g`.
pub fn format_g(d: f64, precision: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let p = precision.max(1);
    let sci = format!("{:.*e}", p - 1, d);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    if x >= -4 && x < p as i32 {
        let decimals = (p as i32 - 1 - x).max(0) as usize;
        strip_zeros(&format!("{d:.decimals$}"))
    } else {
        let m = strip_zeros(mantissa);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", x.abs())
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reprint(s: &str) -> Option<String> {
        let v = parse(s.as_bytes())?;
        let mut out = Vec::new();
        print(&v, &mut out);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn prints_like_cjson() {
        assert_eq!(
            reprint(r#"{"a": [1, 2.50, "x"]}"#).unwrap(),
            r#"{"a":[1,2.5,"x"]}"#
        );
        assert_eq!(reprint(" 1e20 ").unwrap(), "1e+20");
        assert_eq!(reprint("0.1").unwrap(), "0.1");
        assert_eq!(reprint("1.5e-7").unwrap(), "1.5e-07");
        assert_eq!(reprint("-0").unwrap(), "0");
        assert_eq!(reprint("01").unwrap(), "1");
        assert_eq!(reprint(r#""a\/b\u00e9\n""#).unwrap(), "\"a/b\u{e9}\\n\"");
        assert_eq!(reprint(r#"{"k":1,"k":2}"#).unwrap(), r#"{"k":1,"k":2}"#);
        assert_eq!(reprint("2147483648").unwrap(), "2147483648");
        assert_eq!(reprint("3.141592653589793").unwrap(), "3.1415926535897931");
    }

    #[test]
    fn rejects_what_cjson_rejects() {
        for bad in [
            "",
            "nul",
            "[1,]",
            "{\"a\" 1}",
            "1.2.3",
            ".5",
            "'x'",
            "[1] x",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
