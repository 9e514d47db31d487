//! Property tests: no rule text panics the parser, and no payload panics the evaluator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;
use tern_rules::{MessageContext, RuleConfig, RuleSet, check_sql};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z0-9]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Rules that read the payload in every way the language allows.
const RULES: &[&str] = &[
    "SELECT * FROM \"#\" WHERE payload.a > 1 OR payload.b = 'x' OR payload.a.b[0] IN (1, 'a', NULL)",
    "SELECT payload.a + payload.b * 2 - payload.c / payload.d % payload.e AS x, payload.a DIV payload.b AS y FROM \"#\"",
    "SELECT lower(payload.a), upper(payload.b), concat(payload.a, payload.b, 1), substr(payload.a, payload.b, payload.c), trim(payload.a) FROM \"#\"",
    "SELECT split(payload.a, payload.b), replace(payload.a, payload.b, payload.c), regex_match(payload.a, '^[a-z]+$'), regex_replace(payload.a, payload.b, 'x') FROM \"#\"",
    "SELECT abs(payload.a), round(payload.a), round(payload.a, payload.b), floor(payload.a), ceil(payload.a), -payload.a FROM \"#\"",
    "SELECT json_encode(payload), json_decode(payload.a), json_decode(payload).a[-1], format_time(payload.a), format_time(payload.a, payload.b) FROM \"#\"",
    "SELECT coalesce(payload.a, payload.b), if(payload.a, payload.b, payload.c), nth(payload.a, payload.b), length(payload.a), str(payload.a), num(payload.a) FROM \"#\"",
    "SELECT CASE payload.a WHEN 1 THEN payload.b WHEN 'x' THEN 2 ELSE payload.c END, CASE WHEN payload.a THEN 1 END FROM \"#\" WHERE NOT payload.a AND payload.b LIKE payload.c",
    "SELECT topic_level(payload.a), user_properties.a, payload.a IS NULL, payload.b IS NOT NULL FROM \"#\" WHERE payload.a =~ payload.b",
];

fn ruleset() -> RuleSet {
    let cfgs: Vec<RuleConfig> = RULES
        .iter()
        .enumerate()
        .map(|(i, sql)| RuleConfig {
            id: format!("r{i}"),
            sql: (*sql).to_owned(),
            actions: vec![],
            enabled: true,
            description: None,
        })
        .collect();
    RuleSet::from_config(&cfgs).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_never_panics_on_json_payloads(v in arb_json()) {
        let set = ruleset();
        let payload = serde_json::to_vec(&v).unwrap();
        let out = set.evaluate(&MessageContext::new("a/b", payload));
        prop_assert!(out.len() <= RULES.len());
    }

    #[test]
    fn evaluator_never_panics_on_raw_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let set = ruleset();
        set.evaluate(&MessageContext::new("a/b", bytes));
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = check_sql(&text);
    }

    #[test]
    fn parser_never_panics_on_rule_like_text(
        parts in prop::collection::vec(prop_oneof![
            Just("SELECT"), Just("FROM"), Just("WHERE"), Just("*"), Just("payload"), Just("."),
            Just("a"), Just("["), Just("]"), Just("("), Just(")"), Just(","), Just("'x'"),
            Just("\"t/#\""), Just("1"), Just("-"), Just("+"), Just("="), Just("=~"), Just("AND"),
            Just("OR"), Just("NOT"), Just("IN"), Just("IS"), Just("NULL"), Just("LIKE"),
            Just("CASE"), Just("WHEN"), Just("THEN"), Just("ELSE"), Just("END"), Just("AS"),
            Just("lower"), Just("concat"), Just("regex_match"), Just("topic"), Just("DIV"),
            Just("SELECT * FROM \"t/#\" WHERE"), Just("payload.a"), Just("payload.a[0]"),
            Just("<"), Just("/"), Just("%"), Just("coalesce"), Just("if"), Just("json_decode"),
        ], 0..40)
    ) {
        let text = parts.join(" ");
        match check_sql(&text) {
            Err(e) => {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(!e.message.is_empty());
            }
            Ok(()) => {
                // Whatever parses also evaluates without panicking.
                let set = RuleSet::from_config(&[RuleConfig {
                    id: "p".into(),
                    sql: text.clone(),
                    actions: vec![],
                    enabled: true,
                    description: None,
                }]).unwrap();
                for payload in ["", "x", r#"{"a":[1,"t/#",{"a":null}]}"#, "[1,2]", "3"] {
                    set.evaluate(&MessageContext::new("t/a", payload));
                }
            }
        }
    }
}
