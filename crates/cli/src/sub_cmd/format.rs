//! The output of `tern sub`, byte for byte what `mosquitto_sub` 2.0 prints for the same flags:
//! the default (payload only), `-v` (topic and payload), `-N` (no end of line), and `-F`
//! format strings with every `%` specifier (with `-`, `0`, width and precision), the `@`
//! strftime specifiers and the `\` escapes. Plus `--json`, Tern's one JSON object per line.

use super::cjson;
use chrono::{DateTime, Local};
use tern_client::Message;

/// How messages are printed.
#[derive(Debug, Clone)]
pub enum Style {
    /// Payload only (mosquitto_sub without -v/-F).
    Plain,
    /// `topic payload` (-v).
    Verbose,
    /// A -F format string; `pretty` (--pretty) prints `%j`/`%J` as cJSON's formatted output.
    Format {
        /// The format string.
        format: Vec<u8>,
        /// --pretty.
        pretty: bool,
    },
    /// One JSON object per line (--json).
    Json,
}

impl Style {
    /// The style the flags ask for: `--json`, else `-F` (checked as mosquitto_sub does, with its
    /// message), else `-v`, else the payload alone.
    pub fn from_flags(
        json: bool,
        format: Option<&str>,
        pretty: bool,
        verbose: bool,
    ) -> Result<Style, String> {
        Ok(if json {
            Style::Json
        } else if let Some(f) = format {
            check_format(f.as_bytes())?;
            Style::Format {
                format: f.as_bytes().to_vec(),
                pretty,
            }
        } else if verbose {
            Style::Verbose
        } else {
            Style::Plain
        })
    }
}

/// The time a message is printed at: taken once per message, like mosquitto_sub does.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Local time.
    pub local: DateTime<Local>,
}

impl Stamp {
    /// The current time.
    pub fn now() -> Stamp {
        Stamp {
            local: Local::now(),
        }
    }

    fn nanos(&self) -> u32 {
        self.local.timestamp_subsec_nanos().min(999_999_999)
    }

    /// C's strftime with one conversion, through chrono; nothing for what chrono cannot do.
    fn strftime(&self, spec: &str) -> String {
        use chrono::format::{Item, StrftimeItems};
        let items: Vec<Item<'_>> = StrftimeItems::new(spec).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return String::new();
        }
        let mut s = String::new();
        use std::fmt::Write;
        if write!(s, "{}", self.local.format_with_items(items.into_iter())).is_err() {
            return String::new();
        }
        s
    }
}

/// Writes one message in `style` to `out`. `eol` is false with -N.
pub fn print_message(
    style: &Style,
    eol: bool,
    m: &Message,
    now: &Stamp,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) {
    match style {
        Style::Plain => {
            if !m.payload.is_empty() {
                out.extend_from_slice(&m.payload);
                if eol {
                    out.push(b'\n');
                }
            }
        }
        Style::Verbose => {
            if !m.payload.is_empty() {
                out.extend_from_slice(m.topic.as_bytes());
                out.push(b' ');
                out.extend_from_slice(&m.payload);
                if eol {
                    out.push(b'\n');
                }
            } else if eol {
                out.extend_from_slice(m.topic.as_bytes());
                out.extend_from_slice(b" (null)\n");
            }
        }
        Style::Format { format, pretty } => {
            formatted_print(format, *pretty, m, now, out, err);
            if eol {
                out.push(b'\n');
            }
        }
        Style::Json => {
            out.extend_from_slice(tern_json(m).as_bytes());
            out.push(b'\n');
        }
    }
}

/// Rejects a `-F` format the way mosquitto_sub's `check_format` does, with its messages.
pub fn check_format(fmt: &[u8]) -> Result<(), String> {
    let len = fmt.len();
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let incomplete = || Err("Incomplete format specifier.".to_owned());
    let mut i = 0;
    while i < len {
        match at(i) {
            b'%' => {
                if i == len - 1 {
                    return incomplete();
                }
                if at(i + 1) == b'0' || at(i + 1) == b'-' {
                    i += 1;
                    if i == len - 1 {
                        return incomplete();
                    }
                }
                while at(i + 1).is_ascii_digit() {
                    i += 1;
                    if i == len - 1 {
                        return incomplete();
                    }
                }
                if at(i + 1) == b'.' {
                    i += 1;
                    if i == len - 1 {
                        return incomplete();
                    }
                    while at(i + 1).is_ascii_digit() {
                        i += 1;
                        if i == len - 1 {
                            return incomplete();
                        }
                    }
                }
                let spec = at(i + 1);
                if !b"%ACDEFIlmPpqRSrtjJUxX".contains(&spec) {
                    return Err(format!("Invalid format specifier '{}'.", char::from(spec)));
                }
                i += 1;
            }
            b'@' => {
                if i == len - 1 {
                    return incomplete();
                }
                i += 1;
            }
            b'\\' => {
                if i == len - 1 {
                    return Err("Incomplete escape specifier.".to_owned());
                }
                let e = at(i + 1);
                if !b"\\0aenrtv".contains(&e) {
                    return Err(format!("Invalid escape specifier '{}'.", char::from(e)));
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn formatted_print(
    fmt: &[u8],
    pretty: bool,
    m: &Message,
    now: &Stamp,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) {
    let len = fmt.len();
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < len {
        let c = at(i);
        if c == b'%' {
            let mut align = 0u8;
            let mut pad = b' ';
            let mut width: usize = 0;
            let mut precision: Option<usize> = None;
            if i < len - 1 {
                i += 1;
                if at(i) == b'-' {
                    align = b'-';
                    if i < len - 1 {
                        i += 1;
                    }
                }
                if at(i) == b'0' {
                    pad = b'0';
                    if i < len - 1 {
                        i += 1;
                    }
                }
                while i < len - 1 && at(i).is_ascii_digit() {
                    width = width
                        .saturating_mul(10)
                        .saturating_add(usize::from(at(i) - b'0'));
                    i += 1;
                }
                if at(i) == b'.' && i < len - 1 {
                    i += 1;
                    let mut p: usize = 0;
                    while i < len - 1 && at(i).is_ascii_digit() {
                        p = p
                            .saturating_mul(10)
                            .saturating_add(usize::from(at(i) - b'0'));
                        i += 1;
                    }
                    precision = Some(p);
                }
                if i < len {
                    let spec = Spec {
                        align,
                        pad,
                        width: width.min(1 << 20),
                        precision,
                    };
                    print_percent(at(i), spec, pretty, m, now, out, err);
                }
            }
        } else if c == b'@' {
            if i < len - 1 {
                i += 1;
                let s = at(i);
                if s == b'@' {
                    out.push(b'@');
                } else if s == b'N' {
                    out.extend_from_slice(format!("{:09}", now.nanos()).as_bytes());
                } else if s.is_ascii() {
                    let spec = format!("%{}", char::from(s));
                    out.extend_from_slice(now.strftime(&spec).as_bytes());
                }
            }
        } else if c == b'\\' {
            if i < len - 1 {
                i += 1;
                match at(i) {
                    b'\\' => out.push(b'\\'),
                    b'0' => out.push(0),
                    b'a' => out.push(7),
                    b'e' => out.push(0x1b),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    _ => {}
                }
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    align: u8,
    pad: u8,
    width: usize,
    precision: Option<usize>,
}

fn print_blank(pad: u8, width: usize, out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(pad, width));
}

/// printf("%d") with C's `-`, `0` and width.
fn print_int(value: i64, s: Spec, out: &mut Vec<u8>) {
    let text = value.to_string();
    if s.width == 0 || text.len() >= s.width {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let fill = s.width - text.len();
    if s.align == b'-' {
        out.extend_from_slice(text.as_bytes());
        print_blank(b' ', fill, out);
    } else if s.pad == b'0' {
        let (sign, digits) = match text.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", text.as_str()),
        };
        out.extend_from_slice(sign.as_bytes());
        print_blank(b'0', fill, out);
        out.extend_from_slice(digits.as_bytes());
    } else {
        print_blank(b' ', fill, out);
        out.extend_from_slice(text.as_bytes());
    }
}

/// printf("%*.*s") on bytes.
fn print_str(value: &[u8], s: Spec, out: &mut Vec<u8>) {
    let shown = match s.precision {
        Some(p) => value.get(..p.min(value.len())).unwrap_or(value),
        None => value,
    };
    let fill = s.width.saturating_sub(shown.len());
    if s.align == b'-' {
        out.extend_from_slice(shown);
        print_blank(b' ', fill, out);
    } else {
        print_blank(b' ', fill, out);
        out.extend_from_slice(shown);
    }
}

/// mosquitto's write_payload, quirks included (hex with a width halves the shown bytes).
fn write_payload(payload: &[u8], hex: u8, s: Spec, out: &mut Vec<u8>) {
    let width = i64::try_from(s.width).unwrap_or(i64::MAX);
    let mut len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
    let padlen;
    if width > 0 {
        if len > width {
            len = width;
        }
        if hex > 0 {
            len /= 2;
            padlen = width - len * 2;
        } else {
            padlen = width - len;
        }
    } else {
        padlen = width - len;
    }
    if s.align != b'-' && padlen > 0 {
        print_blank(s.pad, usize::try_from(padlen).unwrap_or(0), out);
    }
    let shown = payload
        .get(..usize::try_from(len).unwrap_or(0))
        .unwrap_or(payload);
    match hex {
        0 => out.extend_from_slice(shown),
        1 => {
            for b in shown {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        _ => {
            for b in shown {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
        }
    }
    if s.align == b'-' {
        // printf("%*s", padlen, ""): a negative width left-justifies, so |padlen| spaces.
        print_blank(
            b' ',
            usize::try_from(padlen.unsigned_abs()).unwrap_or(0),
            out,
        );
    }
}

fn print_percent(
    c: u8,
    s: Spec,
    pretty: bool,
    m: &Message,
    now: &Stamp,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) {
    let p = &m.properties;
    match c {
        b'%' => out.push(b'%'),
        b'A' => match p.topic_alias {
            Some(a) => print_int(i64::from(a), s, out),
            None => print_blank(s.pad, s.width, out),
        },
        b'C' => match &p.content_type {
            Some(ct) => print_str(ct.as_bytes(), s, out),
            None => print_blank(b' ', s.width, out),
        },
        b'D' => {
            if let Some(cd) = &p.correlation_data {
                out.extend_from_slice(cd);
            }
        }
        b'E' => match p.message_expiry_interval {
            // mosquitto casts to int.
            Some(e) => print_int(i64::from(e as i32), s, out),
            None => print_blank(s.pad, s.width, out),
        },
        b'F' => match p.payload_format_indicator {
            Some(f) => print_int(i64::from(u8::from(f)), s, out),
            None => print_blank(s.pad, s.width, out),
        },
        b'I' => {
            let t = now.strftime("%Y-%m-%dT%H:%M:%S%z");
            if t.is_empty() {
                print_blank(b' ', s.width, out);
            } else {
                print_str(t.as_bytes(), s, out);
            }
        }
        b'j' => json_print(m, now, true, pretty, out, err),
        b'J' => json_print(m, now, false, pretty, out, err),
        b'l' => print_int(i64::try_from(m.payload.len()).unwrap_or(i64::MAX), s, out),
        b'm' => print_int(i64::from(m.packet_id), s, out),
        b'P' => {
            for (k, (name, value)) in p.user_properties.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
            }
        }
        b'p' => write_payload(&m.payload, 0, s, out),
        b'q' => out.push(b'0' + m.qos as u8),
        b'R' => {
            if let Some(rt) = &p.response_topic {
                print_str(rt.as_bytes(), s, out);
            }
        }
        b'r' => out.push(if m.retain { b'1' } else { b'0' }),
        b'S' => match p.subscription_identifiers.first() {
            Some(id) => print_int(i64::from(*id as i32), s, out),
            None => print_blank(s.pad, s.width, out),
        },
        b't' => print_str(m.topic.as_bytes(), s, out),
        b'U' => {
            let secs = now.local.timestamp();
            out.extend_from_slice(format!("{secs}.{:09}", now.nanos()).as_bytes());
        }
        b'x' => write_payload(&m.payload, 1, s, out),
        b'X' => write_payload(&m.payload, 2, s, out),
        _ => {}
    }
}

/// mosquitto_sub's `%j` / `%J` object (cJSON build): tst, topic, qos, retain, payloadlen, mid
/// (QoS > 0), properties (v5, when present), payload.
fn json_print(
    m: &Message,
    now: &Stamp,
    escaped: bool,
    pretty: bool,
    out: &mut Vec<u8>,
    err: &mut Vec<u8>,
) {
    let payload = if m.payload.is_empty() {
        // libmosquitto hands over a NULL payload, printed as null.
        cjson::Value::Null
    } else if escaped {
        // cJSON_CreateString on a C string: the payload up to its first NUL.
        let end = m
            .payload
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(m.payload.len());
        cjson::Value::String(m.payload.get(..end).unwrap_or(&[]).to_vec())
    } else {
        match cjson::parse(&m.payload) {
            Some(v) => v,
            None => {
                err.extend_from_slice(
                    format!(
                        "Error: Message payload is not valid JSON on topic {}.\n",
                        m.topic.as_str()
                    )
                    .as_bytes(),
                );
                return;
            }
        }
    };
    let tst = format!(
        "{}.{:06}Z{}",
        now.strftime("%Y-%m-%dT%H:%M:%S"),
        now.nanos() / 1000,
        now.strftime("%z")
    );
    let mut members: Vec<(Vec<u8>, cjson::Value)> = vec![
        (b"tst".to_vec(), cjson::Value::String(tst.into_bytes())),
        (
            b"topic".to_vec(),
            cjson::Value::String(m.topic.as_bytes().to_vec()),
        ),
        (
            b"qos".to_vec(),
            cjson::Value::Number(f64::from(m.qos as u8)),
        ),
        (
            b"retain".to_vec(),
            cjson::Value::Number(f64::from(u8::from(m.retain))),
        ),
        (
            b"payloadlen".to_vec(),
            cjson::Value::Number(m.payload.len() as f64),
        ),
    ];
    if m.qos as u8 > 0 {
        members.push((
            b"mid".to_vec(),
            cjson::Value::Number(f64::from(m.packet_id)),
        ));
    }
    if let Some(props) = json_properties(m) {
        members.push((b"properties".to_vec(), props));
    }
    members.push((b"payload".to_vec(), payload));
    let root = cjson::Value::Object(members);
    if pretty {
        cjson::print_formatted(&root, 1, out);
    } else {
        cjson::print(&root, out);
    }
}

/// The `properties` object of `%j`, as mosquitto_sub builds it with cJSON: one member per
/// property in the order the properties were on the wire (the codec records it), except that
/// all user properties go into one `user-properties` object placed where the first one was.
/// Absent when the message has none.
fn json_properties(m: &Message) -> Option<cjson::Value> {
    use cjson::Value;
    use tern_codec::PropertyId as Id;
    let p = &m.properties;
    if p.is_empty() {
        return None;
    }
    // Properties built by hand (no wire order) follow the order Tern's encoder writes them in,
    // which is also what a subscriber of Tern's broker receives.
    let canonical = [
        Id::PayloadFormatIndicator,
        Id::MessageExpiryInterval,
        Id::TopicAlias,
        Id::ResponseTopic,
        Id::CorrelationData,
        Id::UserProperty,
    ]
    .into_iter()
    .chain(
        p.subscription_identifiers
            .iter()
            .map(|_| Id::SubscriptionIdentifier),
    )
    .chain([Id::ContentType]);
    let order: Vec<Id> = if p.wire_order.is_empty() {
        canonical.collect()
    } else {
        p.wire_order.ids().collect()
    };
    let mut members: Vec<(Vec<u8>, Value)> = Vec::new();
    let mut sub_ids = p.subscription_identifiers.iter();
    let mut users_done = false;
    let number = |name: &str, v: f64| Some((name.as_bytes().to_vec(), Value::Number(v)));
    let string = |name: &str, v: &[u8]| Some((name.as_bytes().to_vec(), Value::String(v.to_vec())));
    for id in order {
        let member = match id {
            Id::PayloadFormatIndicator => p
                .payload_format_indicator
                .and_then(|f| number("payload-format-indicator", f64::from(u8::from(f)))),
            Id::MessageExpiryInterval => p
                .message_expiry_interval
                .and_then(|e| number("message-expiry-interval", f64::from(e))),
            Id::TopicAlias => p
                .topic_alias
                .and_then(|a| number("topic-alias", f64::from(a))),
            Id::ResponseTopic => p
                .response_topic
                .as_ref()
                .and_then(|rt| string("response-topic", rt.as_bytes())),
            Id::CorrelationData => p.correlation_data.as_ref().and_then(|cd| {
                // cJSON_CreateString on the C string: up to the first NUL.
                let end = cd.iter().position(|b| *b == 0).unwrap_or(cd.len());
                string("correlation-data", cd.get(..end).unwrap_or(&[]))
            }),
            Id::UserProperty if !users_done && !p.user_properties.is_empty() => {
                users_done = true;
                let users = p
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), Value::String(v.as_bytes().to_vec())))
                    .collect();
                Some((b"user-properties".to_vec(), Value::Object(users)))
            }
            Id::SubscriptionIdentifier => sub_ids
                .next()
                .and_then(|id| number("subscription-identifier", f64::from(*id))),
            Id::ContentType => p
                .content_type
                .as_ref()
                .and_then(|ct| string("content-type", ct.as_bytes())),
            _ => None,
        };
        members.extend(member);
    }
    Some(Value::Object(members))
}

/// Tern's `--json` line: topic, qos, retain, payload (a string when UTF-8, otherwise
/// `payload_base64`... as hex in `payload_hex`), and the v5 properties that are present.
fn tern_json(m: &Message) -> String {
    use serde_json::{Map, Value, json};
    let mut o = Map::new();
    o.insert("topic".into(), json!(m.topic.as_str()));
    o.insert("qos".into(), json!(m.qos as u8));
    o.insert("retain".into(), json!(m.retain));
    if m.qos as u8 > 0 {
        o.insert("mid".into(), json!(m.packet_id));
    }
    match std::str::from_utf8(&m.payload) {
        Ok(s) => {
            o.insert("payload".into(), json!(s));
        }
        Err(_) => {
            let hex: String = m.payload.iter().map(|b| format!("{b:02x}")).collect();
            o.insert("payload_hex".into(), json!(hex));
        }
    }
    let p = &m.properties;
    if !p.is_empty() {
        let mut props = Map::new();
        if let Some(f) = p.payload_format_indicator {
            props.insert("payload_format_indicator".into(), json!(u8::from(f)));
        }
        if let Some(e) = p.message_expiry_interval {
            props.insert("message_expiry_interval".into(), json!(e));
        }
        if let Some(ct) = &p.content_type {
            props.insert("content_type".into(), json!(ct.as_str()));
        }
        if let Some(rt) = &p.response_topic {
            props.insert("response_topic".into(), json!(rt.as_str()));
        }
        if let Some(cd) = &p.correlation_data {
            props.insert(
                "correlation_data".into(),
                json!(String::from_utf8_lossy(cd)),
            );
        }
        if !p.subscription_identifiers.is_empty() {
            props.insert(
                "subscription_identifiers".into(),
                json!(p.subscription_identifiers),
            );
        }
        if !p.user_properties.is_empty() {
            let users: Vec<Value> = p
                .user_properties
                .iter()
                .map(|(k, v)| json!([k.as_str(), v.as_str()]))
                .collect();
            props.insert("user_properties".into(), Value::Array(users));
        }
        o.insert("properties".into(), Value::Object(props));
    }
    Value::Object(o).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tern_client::QoS;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload),
            qos: QoS::AtLeastOnce,
            packet_id: 7,
            retain: true,
            ..Default::default()
        }
    }

    fn render(format: &str, m: &Message) -> String {
        let mut out = Vec::new();
        let mut err = Vec::new();
        formatted_print(
            format.as_bytes(),
            false,
            m,
            &Stamp::now(),
            &mut out,
            &mut err,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn specifiers_widths_and_escapes() {
        let m = msg("a/b", b"hello");
        assert_eq!(render("%t %p %q %r %m %l", &m), "a/b hello 1 1 7 5");
        assert_eq!(render("[%8t][%-8t][%.1t]", &m), "[     a/b][a/b     ][a]");
        assert_eq!(render("[%05l][%-5l][%5l]", &m), "[00005][5    ][    5]");
        assert_eq!(render("%x|%X", &msg("t", b"\x01\xab")), "01ab|01AB");
        assert_eq!(render("[%8p][%-8p][%3p]", &m), "[   hello][hello   ][hel]");
        assert_eq!(render("[%-p]", &m), "[hello     ]");
        assert_eq!(render("%%\\t\\n@@%", &m), "%\t\n@");
        assert_eq!(render("%Z%", &m), "");
    }
}
