//! The rule language: every construct parsed and evaluated, every error message located.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tern_rules::{ActionConfig, MessageContext, Rule, RuleConfig, Verdict, check_sql};

fn msg(topic: &str, payload: &str) -> MessageContext<'static> {
    let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
    let mut m = MessageContext::new(topic, payload.to_owned());
    m.clientid = "dev-1";
    m.username = Some("alice");
    m.qos = 1;
    m.retain = false;
    m.timestamp_ms = 1_700_000_000_123;
    m.user_properties = vec![("unit", "C"), ("unit", "F"), ("site", "lyon")];
    m
}

fn rule(sql: &str) -> Rule {
    rule_with(sql, vec![])
}

fn rule_with(sql: &str, actions: Vec<ActionConfig>) -> Rule {
    Rule::compile(&RuleConfig {
        id: "r".into(),
        sql: sql.into(),
        actions,
        enabled: true,
        description: None,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The selected output, or None when the rule did not pass.
fn run(sql: &str, m: &MessageContext<'_>) -> Option<Value> {
    match rule(sql).check(m, 8) {
        Verdict::Passed(o) => Some(Value::Object(o.selected)),
        _ => None,
    }
}

/// Evaluates one expression against a JSON payload on topic `sensors/k1/temp`.
fn ev(expr: &str, payload: &str) -> Value {
    let out = run(
        &format!("SELECT {expr} AS v FROM \"#\""),
        &msg("sensors/k1/temp", payload),
    )
    .unwrap_or_else(|| panic!("{expr} did not pass"));
    out["v"].clone()
}

fn passes(where_: &str, payload: &str) -> bool {
    run(
        &format!("SELECT * FROM \"#\" WHERE {where_}"),
        &msg("sensors/k1/temp", payload),
    )
    .is_some()
}

fn type_errors(sql: &str, m: &MessageContext<'_>) -> u32 {
    match rule(sql).check(m, 8) {
        Verdict::Passed(o) => o.type_errors,
        Verdict::Filtered { type_errors } => type_errors,
        Verdict::NoMatch => panic!("no match"),
    }
}

fn err(sql: &str) -> (u32, u32, String) {
    let e = check_sql(sql).expect_err(sql);
    (e.line, e.column, e.message)
}

#[test]
fn issue_example_selects_alias_clientid_topic() {
    let sql = "SELECT payload.temp AS t, clientid, topic FROM \"sensors/+/temp\", \"plant/#\" \
               WHERE payload.temp > 30 AND topic =~ 'sensors/+/temp'";
    let out = run(sql, &msg("sensors/k1/temp", r#"{"temp": 31.5}"#)).unwrap();
    assert_eq!(
        out,
        json!({"t": 31.5, "clientid": "dev-1", "topic": "sensors/k1/temp"})
    );
    assert!(run(sql, &msg("sensors/k1/temp", r#"{"temp": 20}"#)).is_none());
    // Matches FROM "plant/#" but not the =~ filter.
    assert!(run(sql, &msg("plant/a", r#"{"temp": 40}"#)).is_none());
    assert!(matches!(
        rule(sql).check(&msg("other", "{}"), 8),
        Verdict::NoMatch
    ));
}

#[test]
fn select_star_has_every_field() {
    let out = run("SELECT * FROM \"a/#\"", &msg("a/b", "No presence")).unwrap();
    assert_eq!(
        out,
        json!({
            "topic": "a/b", "payload": "No presence", "clientid": "dev-1", "username": "alice",
            "qos": 1, "retain": false, "timestamp": 1_700_000_000_123u64,
            "user_properties": {"unit": "C", "site": "lyon"}
        })
    );
}

#[test]
fn star_combines_with_expressions_and_unaliased_keys_are_source_text() {
    let out = run(
        "SELECT *, payload.a + 1, lower(clientid) FROM \"#\"",
        &msg("t", r#"{"a":1}"#),
    )
    .unwrap();
    assert_eq!(out["payload.a + 1"], json!(2));
    assert_eq!(out["lower(clientid)"], json!("dev-1"));
    assert_eq!(out["topic"], json!("t"));
}

#[test]
fn kitchen_light_raw_and_json_payloads() {
    let raw = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'No presence'";
    assert!(run(raw, &msg("home/presence/kitchen", "No presence")).is_some());
    assert!(run(raw, &msg("home/presence/kitchen", "Presence")).is_none());
    let json_rule = "SELECT * FROM \"home/presence/kitchen\" WHERE payload.present = false";
    assert!(
        run(
            json_rule,
            &msg("home/presence/kitchen", r#"{"present": false}"#)
        )
        .is_some()
    );
    assert!(
        run(
            json_rule,
            &msg("home/presence/kitchen", r#"{"present": true}"#)
        )
        .is_none()
    );
    let both = "SELECT * FROM \"home/presence/kitchen\" \
                WHERE payload = 'No presence' OR payload.present = false";
    assert!(run(both, &msg("home/presence/kitchen", "No presence")).is_some());
    assert!(run(both, &msg("home/presence/kitchen", r#"{"present": false}"#)).is_some());
}

#[test]
fn fields() {
    let p = r#"{"a":{"b":[10,20,{"c":"x"}]},"k-1":5,"0":"zero"}"#;
    assert_eq!(ev("topic", p), json!("sensors/k1/temp"));
    assert_eq!(ev("payload", "raw text"), json!("raw text"));
    assert_eq!(ev("payload.a.b[0]", p), json!(10));
    assert_eq!(ev("payload.a.b[-1].c", p), json!("x"));
    assert_eq!(ev("payload.a.b[9]", p), Value::Null);
    assert_eq!(ev("payload['k-1']", p), json!(5));
    assert_eq!(ev("payload.\"k-1\"", p), json!(5));
    assert_eq!(ev("payload.0", p), json!("zero"));
    assert_eq!(ev("payload.a.missing.deeper", p), Value::Null);
    assert_eq!(ev("payload.a", "not json"), Value::Null);
    assert_eq!(ev("clientid", p), json!("dev-1"));
    assert_eq!(ev("username", p), json!("alice"));
    assert_eq!(ev("qos", p), json!(1));
    assert_eq!(ev("retain", p), json!(false));
    assert_eq!(ev("timestamp", p), json!(1_700_000_000_123u64));
    assert_eq!(
        ev("user_properties.unit", p),
        json!("C"),
        "first of repeated keys"
    );
    assert_eq!(ev("user_properties['site']", p), json!("lyon"));
    assert_eq!(ev("user_properties.none", p), Value::Null);
    assert_eq!(
        ev("user_properties", p),
        json!({"unit": "C", "site": "lyon"})
    );
    assert_eq!(ev("topic_level(2)", p), json!("k1"));
    assert_eq!(ev("topic_level(9)", p), Value::Null);
    assert_eq!(ev("json_decode('{\"x\":[1,2]}').x[1]", p), json!(2));
}

#[test]
fn literals() {
    assert_eq!(ev("1", "{}"), json!(1));
    assert_eq!(ev("-2.5", "{}"), json!(-2.5));
    assert_eq!(ev("1e3", "{}"), json!(1000.0));
    assert_eq!(ev("'it''s'", "{}"), json!("it's"));
    assert_eq!(ev("\"dq\"", "{}"), json!("dq"));
    assert_eq!(ev("TRUE", "{}"), json!(true));
    assert_eq!(ev("false", "{}"), json!(false));
    assert_eq!(ev("NULL", "{}"), Value::Null);
}

#[test]
fn comparisons() {
    let p = r#"{"t":31,"f":1.5,"s":"abc","b":true}"#;
    for (e, want) in [
        ("payload.t > 30", true),
        ("payload.t >= 31", true),
        ("payload.t < 31", false),
        ("payload.t <= 31", true),
        ("payload.t = 31.0", true),
        ("payload.t != 31", false),
        ("payload.t <> 30", true),
        ("payload.f < payload.t", true),
        ("payload.s = 'abc'", true),
        ("payload.s < 'abd'", true),
        ("payload.b = true", true),
        ("payload = '{}'", false),
    ] {
        assert_eq!(passes(e, p), want, "{e}");
    }
}

#[test]
fn type_mismatch_and_missing_field_are_null_and_counted() {
    let m = msg("t", r#"{"t":"31"}"#);
    let sql = "SELECT * FROM \"t\" WHERE payload.t > 30";
    assert!(run(sql, &m).is_none(), "string vs number is not true");
    assert_eq!(type_errors(sql, &m), 1);
    let sql = "SELECT * FROM \"t\" WHERE payload.missing = 1";
    assert_eq!(type_errors(sql, &m), 1);
    let sql = "SELECT * FROM \"t\" WHERE payload.missing IS NULL";
    assert!(run(sql, &m).is_some());
    assert_eq!(type_errors(sql, &m), 0);
}

#[test]
fn three_valued_logic() {
    let p = r#"{"x":1}"#;
    assert!(passes("TRUE AND TRUE", p));
    assert!(!passes("TRUE AND FALSE", p));
    assert!(passes("FALSE OR TRUE", p));
    assert!(!passes("NOT TRUE", p));
    assert!(passes("NOT NOT TRUE", p));
    assert!(
        passes("payload.nope = 1 OR TRUE", p),
        "NULL OR TRUE is TRUE"
    );
    assert!(
        !passes("payload.nope = 1 AND TRUE", p),
        "NULL AND TRUE is NULL"
    );
    assert!(!passes("NOT (payload.nope = 1)", p), "NOT NULL is NULL");
    assert!(
        passes("NOT (payload.nope = 1 AND FALSE)", p),
        "NULL AND FALSE is FALSE"
    );
    assert_eq!(ev("payload.nope = 1 OR FALSE", p), Value::Null);
    // AND binds tighter than OR.
    assert!(passes("TRUE OR FALSE AND FALSE", p));
    assert!(!passes("(TRUE OR FALSE) AND FALSE", p));
    // Keywords are case-insensitive.
    assert!(passes("true and not false", p));
}

#[test]
fn arithmetic() {
    assert_eq!(ev("1 + 2 * 3", "{}"), json!(7));
    assert_eq!(ev("(1 + 2) * 3", "{}"), json!(9));
    assert_eq!(ev("7 - 10", "{}"), json!(-3));
    assert_eq!(ev("7 / 2", "{}"), json!(3.5));
    assert_eq!(ev("7 DIV 2", "{}"), json!(3));
    assert_eq!(ev("7 % 4", "{}"), json!(3));
    assert_eq!(ev("7 mod 4", "{}"), json!(3));
    assert_eq!(ev("7.5 % 2", "{}"), json!(1.5));
    assert_eq!(ev("1.5 + 1", "{}"), json!(2.5));
    assert_eq!(ev("-payload.a", r#"{"a":4}"#), json!(-4));
    assert_eq!(ev("- -3", "{}"), json!(3));
    assert_eq!(
        ev("9223372036854775807 + 1", "{}"),
        json!(9_223_372_036_854_775_808.0)
    );
    assert_eq!(ev("1 / 0", "{}"), Value::Null);
    assert_eq!(ev("1 DIV 0", "{}"), Value::Null);
    assert_eq!(ev("1 % 0", "{}"), Value::Null);
    assert_eq!(ev("'a' + 1", "{}"), Value::Null);
    assert_eq!(ev("1e308 * 10", "{}"), Value::Null);
}

#[test]
fn in_is_null_like_and_topic_match() {
    let p = r#"{"s":"sensor-12","n":2}"#;
    assert!(passes("payload.n IN (1, 2, 3)", p));
    assert!(
        !passes("payload.n IN ('2', 3)", p),
        "IN does not convert types"
    );
    assert!(passes("payload.n NOT IN (5)", p));
    assert!(!passes("qos IN ()", p));
    assert!(passes("payload.x IS NULL", p));
    assert!(passes("payload.s IS NOT NULL", p));
    assert!(passes("payload.s LIKE 'sensor-%'", p));
    assert!(passes("payload.s LIKE 'sensor-__'", p));
    assert!(passes("payload.s NOT LIKE '%x%'", p));
    assert!(passes("topic =~ 'sensors/+/temp'", p));
    assert!(passes("topic =~ 'sensors/#'", p));
    assert!(!passes("topic =~ 'sensors/+'", p));
}

#[test]
fn string_functions() {
    let p = r#"{"s":"  Hello World  ","csv":"a,b,c"}"#;
    assert_eq!(ev("lower('AbC')", p), json!("abc"));
    assert_eq!(ev("upper('AbC')", p), json!("ABC"));
    assert_eq!(ev("trim(payload.s)", p), json!("Hello World"));
    assert_eq!(ev("concat('a', 1, true, 'b')", p), json!("a1trueb"));
    assert_eq!(ev("concat('a', payload.nope)", p), Value::Null);
    assert_eq!(ev("substr('abcdef', 2)", p), json!("cdef"));
    assert_eq!(ev("substr('abcdef', 2, 3)", p), json!("cde"));
    assert_eq!(ev("substr('abcdef', -2)", p), json!("ef"));
    assert_eq!(ev("substr('héllo', 1, 2)", p), json!("él"));
    assert_eq!(ev("substr('abc', 10)", p), json!(""));
    assert_eq!(ev("split(payload.csv, ',')", p), json!(["a", "b", "c"]));
    assert_eq!(ev("nth(2, split(payload.csv, ','))", p), json!("b"));
    assert_eq!(ev("replace('a-b-c', '-', '+')", p), json!("a+b+c"));
    assert_eq!(
        ev("regex_match('sensor-12', '^sensor-\\d+$')", p),
        json!(true)
    );
    assert_eq!(
        ev("regex_match('sensor-x', concat('^sensor-', '\\d+$'))", p),
        json!(false)
    );
    assert_eq!(ev("regex_replace('a1b22', '\\d+', '#')", p), json!("a#b#"));
    assert_eq!(
        ev("regex_replace('2024-05', '(\\d+)-(\\d+)', '$2/$1')", p),
        json!("05/2024")
    );
    assert_eq!(ev("length('héllo')", p), json!(5));
    assert_eq!(ev("length(split(payload.csv, ','))", p), json!(3));
    assert_eq!(ev("str(12)", p), json!("12"));
    assert_eq!(ev("num(' 12 ')", p), json!(12));
    assert_eq!(ev("num('1.5')", p), json!(1.5));
    assert_eq!(ev("num('x')", p), Value::Null);
    assert_eq!(
        ev("LOWER('X')", p),
        json!("x"),
        "function names are case-insensitive"
    );
}

#[test]
fn number_functions() {
    assert_eq!(ev("abs(-3)", "{}"), json!(3));
    assert_eq!(ev("abs(-2.5)", "{}"), json!(2.5));
    assert_eq!(ev("round(2.5)", "{}"), json!(3));
    assert_eq!(ev("round(2.345, 2)", "{}"), json!(2.35));
    assert_eq!(ev("round(7)", "{}"), json!(7));
    assert_eq!(ev("floor(-1.5)", "{}"), json!(-2));
    assert_eq!(ev("ceil(1.2)", "{}"), json!(2));
    assert_eq!(ev("ceil('x')", "{}"), Value::Null);
}

#[test]
fn json_time_and_conditionals() {
    let p = r#"{"a":[1,{"b":null}],"t":25}"#;
    assert_eq!(ev("json_encode(payload.a)", p), json!("[1,{\"b\":null}]"));
    assert_eq!(ev("json_decode('[1,2]')", p), json!([1, 2]));
    assert_eq!(ev("json_decode('nope')", p), Value::Null);
    assert!(ev("now()", p).as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        ev("format_time(timestamp)", p),
        json!("2023-11-14T22:13:20.123Z")
    );
    assert_eq!(
        ev("format_time(0, '%Y/%m/%d %H:%M:%S')", p),
        json!("1970/01/01 00:00:00")
    );
    assert_eq!(
        ev("coalesce(payload.x, payload.y, 'dflt')", p),
        json!("dflt")
    );
    assert_eq!(ev("coalesce(payload.x)", p), Value::Null);
    assert_eq!(ev("if(payload.t > 20, 'hot', 'cold')", p), json!("hot"));
    assert_eq!(ev("if(payload.nope > 20, 'hot', 'cold')", p), json!("cold"));
    assert_eq!(
        ev(
            "CASE WHEN payload.t > 30 THEN 'hot' WHEN payload.t > 20 THEN 'warm' ELSE 'cold' END",
            p
        ),
        json!("warm")
    );
    assert_eq!(
        ev("CASE payload.t WHEN 25 THEN 'x' ELSE 'y' END", p),
        json!("x")
    );
    assert_eq!(ev("CASE WHEN FALSE THEN 1 END", p), Value::Null);
}

#[test]
fn aliases_are_usable_in_where() {
    let sql = "SELECT payload.temp * 2 AS t2 FROM \"#\" WHERE t2 > 60";
    assert_eq!(
        run(sql, &msg("x", r#"{"temp":31}"#)).unwrap(),
        json!({"t2": 62})
    );
    assert!(run(sql, &msg("x", r#"{"temp":29}"#)).is_none());
    let sql = "SELECT payload AS 'p q' FROM \"#\"";
    assert_eq!(run(sql, &msg("x", "v")).unwrap(), json!({"p q": "v"}));
}

#[test]
fn multiline_rules_and_comments_free_whitespace() {
    let sql = "SELECT\n  payload.temp AS t\nFROM\n  \"sensors/#\"\nWHERE\n  t > 1";
    assert!(run(sql, &msg("sensors/a", r#"{"temp":2}"#)).is_some());
}

#[test]
fn templates_see_aliases_and_payload_fields() {
    let r = rule_with(
        "SELECT payload.temp AS t FROM \"sensors/+/temp\" WHERE t > 30",
        vec![ActionConfig::Republish(tern_rules::RepublishConfig {
            topic: "alerts/${topic_level(2)}/${payload.room}".into(),
            payload: Some("${clientid}: ${t}".into()),
            qos: 1,
            retain: true,
            user_properties: [("src".to_owned(), "${topic}".to_owned())].into(),
        })],
    );
    let Verdict::Passed(o) = r.check(
        &msg("sensors/k1/temp", r#"{"temp":31,"room":"kitchen"}"#),
        8,
    ) else {
        panic!("did not pass");
    };
    let a = o.actions[0].to_json();
    assert_eq!(a["topic"], "alerts/k1/kitchen");
    assert_eq!(a["payload"], "dev-1: 31");
    assert_eq!(a["qos"], 1);
    assert_eq!(a["retain"], true);
    assert_eq!(a["user_properties"], json!([["src", "sensors/k1/temp"]]));
    assert_eq!(a["hops"], 1);
}

// ---- every parse error, located ----

#[test]
fn error_expected_select() {
    assert_eq!(
        err("SELEC * FROM \"a\""),
        (1, 1, "expected SELECT, found `SELEC`".into())
    );
    assert_eq!(
        err(""),
        (1, 1, "expected SELECT, found end of input".into())
    );
}

#[test]
fn error_expected_expression() {
    assert_eq!(
        err("SELECT FROM \"a\""),
        (1, 8, "expected an expression, found `FROM`".into())
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE"),
        (1, 24, "expected an expression, found end of input".into())
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE )"),
        (1, 25, "expected an expression, found `)`".into())
    );
}

#[test]
fn error_expected_from() {
    assert_eq!(
        err("SELECT qos"),
        (1, 11, "expected `,` or FROM, found end of input".into())
    );
    assert_eq!(
        err("SELECT * \"a\""),
        (1, 10, "expected `,` or FROM, found string \"a\"".into())
    );
}

#[test]
fn error_topic_filter() {
    assert_eq!(
        err("SELECT * FROM sensors"),
        (
            1,
            15,
            "expected a quoted topic filter such as \"sensors/+/temp\", found `sensors`".into()
        )
    );
    assert_eq!(
        err("SELECT * FROM \"a/#/b\""),
        (
            1,
            15,
            "invalid topic filter \"a/#/b\": '#' must be the last character and alone in its level"
                .into()
        )
    );
    assert_eq!(
        err("SELECT * FROM \"a\", \"b+\""),
        (
            1,
            20,
            "invalid topic filter \"b+\": '+' must occupy an entire level".into()
        )
    );
    assert_eq!(
        err("SELECT * FROM \"\"").2,
        "invalid topic filter \"\": empty"
    );
}

#[test]
fn error_trailing_input() {
    assert_eq!(
        err("SELECT * FROM \"a\" junk"),
        (
            1,
            19,
            "expected `,`, WHERE or end of input, found `junk`".into()
        )
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos = 1 qos"),
        (
            1,
            33,
            "expected an operator, AND, OR or end of input, found `qos`".into()
        )
    );
    // Comparisons do not chain.
    assert_eq!(err("SELECT * FROM \"a\" WHERE 1 < 2 < 3").1, 31);
}

#[test]
fn error_unknown_field_and_function() {
    let (l, c, m) = err("SELECT * FROM \"a\"\nWHERE temp > 1");
    assert_eq!((l, c), (2, 7));
    assert!(
        m.starts_with("unknown field `temp`; expected one of topic, payload, clientid"),
        "{m}"
    );
    let (l, c, m) = err("SELECT nope(1) FROM \"a\"");
    assert_eq!((l, c), (1, 8));
    assert!(
        m.starts_with("unknown function `nope`; expected one of lower, upper"),
        "{m}"
    );
}

#[test]
fn error_function_arity() {
    assert_eq!(
        err("SELECT lower(1, 2) FROM \"a\"").2,
        "function `lower` takes 1 argument, found 2"
    );
    assert_eq!(
        err("SELECT now(1) FROM \"a\"").2,
        "function `now` takes 0 arguments, found 1"
    );
    assert_eq!(
        err("SELECT substr('a') FROM \"a\"").2,
        "function `substr` takes 2 to 3 arguments, found 1"
    );
    assert_eq!(
        err("SELECT concat() FROM \"a\"").2,
        "function `concat` takes at least 1 argument, found 0"
    );
    assert_eq!(
        err("SELECT lower(1 FROM \"a\"").2,
        "expected `,` or `)` to close the argument list, found `FROM`"
    );
}

#[test]
fn error_bad_regex_points_at_the_pattern() {
    let (l, c, m) = err("SELECT * FROM \"a\" WHERE regex_match(topic, '(')");
    assert_eq!((l, c), (1, 44));
    assert!(m.starts_with("invalid regular expression:"), "{m}");
}

#[test]
fn error_lexer() {
    assert_eq!(
        err("SELECT 'abc FROM"),
        (1, 8, "unterminated string; expected a closing '".into())
    );
    assert_eq!(
        err("SELECT \"abc"),
        (1, 8, "unterminated string; expected a closing \"".into())
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos @ 1"),
        (1, 29, "unexpected character `@`".into())
    );
    assert_eq!(
        err("SELECT 12ab FROM \"a\"").2,
        "invalid number; expected digits, `.` or an exponent"
    );
}

#[test]
fn error_paths_and_parens() {
    assert_eq!(
        err("SELECT payload.+ FROM \"a\"").2,
        "expected a field name after `.`, found `+`"
    );
    assert_eq!(
        err("SELECT payload[x] FROM \"a\"").2,
        "expected an integer index or a quoted key inside `[]`, found `x`"
    );
    assert_eq!(
        err("SELECT payload[1 FROM \"a\"").2,
        "expected `]`, found `FROM`"
    );
    assert_eq!(
        err("SELECT (1 + 2 FROM \"a\"").2,
        "expected `)`, found `FROM`"
    );
}

#[test]
fn error_alias() {
    assert_eq!(
        err("SELECT 1 AS FROM \"a\"").2,
        "expected an alias name after AS, found `FROM`"
    );
    assert_eq!(
        err("SELECT 1 AS topic FROM \"a\"").2,
        "alias `topic` is the name of a message field; choose another name"
    );
    // Aliases are not visible inside the SELECT list itself.
    assert!(
        err("SELECT 1 AS a, a + 1 AS b FROM \"x\"")
            .2
            .starts_with("unknown field `a`")
    );
}

#[test]
fn error_in_is_like_not() {
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos IN 1").2,
        "expected `(` after IN, found number 1"
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos IN (1").2,
        "expected `,` or `)` to close the IN list, found end of input"
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos IS 1").2,
        "expected NULL or NOT NULL after IS, found number 1"
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos IS NOT 1").2,
        "expected NULL after IS NOT, found number 1"
    );
    assert_eq!(
        err("SELECT * FROM \"a\" WHERE qos NOT 1").2,
        "expected IN or LIKE after NOT, found number 1"
    );
}

#[test]
fn error_case() {
    assert_eq!(
        err("SELECT CASE END FROM \"a\"").2,
        "expected an expression, found `END`"
    );
    assert_eq!(
        err("SELECT CASE qos END FROM \"a\"").2,
        "expected WHEN, found `END`"
    );
    assert_eq!(
        err("SELECT CASE WHEN TRUE 1 END FROM \"a\"").2,
        "expected THEN, found number 1"
    );
    assert_eq!(
        err("SELECT CASE WHEN TRUE THEN 1 FROM \"a\"").2,
        "expected WHEN, ELSE or END, found `FROM`"
    );
}

#[test]
fn error_nesting_limit() {
    let deep = format!("SELECT {}1{} FROM \"a\"", "(".repeat(100), ")".repeat(100));
    assert!(err(&deep).2.starts_with("expression nested too deeply"));
    let nots = format!("SELECT * FROM \"a\" WHERE {} TRUE", "NOT ".repeat(100));
    assert!(err(&nots).2.starts_with("expression nested too deeply"));
    let negs = format!("SELECT {}1 FROM \"a\"", "-".repeat(100));
    assert!(err(&negs).2.starts_with("expression nested too deeply"));
}

#[test]
fn parse_error_render_shows_a_caret() {
    let sql = "SELECT *\nFROM \"a\"\nWHERE qos > > 1";
    let e = check_sql(sql).unwrap_err();
    assert_eq!(
        e.render(sql),
        "line 3, column 13: expected an expression, found `>`\n  WHERE qos > > 1\n              ^"
    );
}
