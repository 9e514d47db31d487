//! Rule sets: configuration, errors that name the rule, the topic index, actions, metrics, the loop
//! guard, reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use serde::Deserialize;
use tern_rules::{
    ActionOutput, DispatcherConfig, MessageContext, Republish, RuleConfig, RuleError, RuleSet,
    WebhookDispatcher,
};

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

fn parse(toml_text: &str) -> Vec<RuleConfig> {
    toml::from_str::<File>(toml_text).unwrap().rules
}

fn set(toml_text: &str) -> RuleSet {
    RuleSet::from_config(&parse(toml_text)).unwrap_or_else(|e| panic!("{e}"))
}

const KITCHEN: &str = r#"
[listener]
port = 1883

[[rules]]
id = "kitchen-light-off"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'No presence'"
actions = [ { type = "republish", topic = "home/light/kitchen/set", payload = "turn_off" } ]

[[rules]]
id = "kitchen-light-off-json"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload.present = false"
actions = [
  { type = "republish", topic = "home/light/kitchen/set", payload = "turn_off" },
  { type = "log", level = "info", message = "light off after ${payload}" },
  { type = "webhook", url = "http://127.0.0.1:9/hook", method = "POST", body = "${payload}" },
]

[[rules]]
id = "kept"
enabled = false
sql = "SELECT * FROM \"home/#\""
actions = [ { type = "log" } ]
"#;

fn republishes(set: &RuleSet, m: &MessageContext<'_>) -> Vec<Republish> {
    set.evaluate(m)
        .into_iter()
        .flat_map(|o| o.actions)
        .filter_map(|a| match a {
            ActionOutput::Republish(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn issue_config_shape_parses_and_kitchen_rule_turns_light_off() {
    let s = set(KITCHEN);
    assert_eq!(s.rules().len(), 3);
    let r = republishes(
        &s,
        &MessageContext::new("home/presence/kitchen", "No presence"),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].topic, "home/light/kitchen/set");
    assert_eq!(r[0].payload, Bytes::from_static(b"turn_off"));
    assert_eq!((r[0].qos, r[0].retain, r[0].hops), (0, false, 1));
    assert_eq!(&*r[0].rule_id, "kitchen-light-off");

    let out = s.evaluate(&MessageContext::new(
        "home/presence/kitchen",
        r#"{"present": false}"#,
    ));
    assert_eq!(out.len(), 1);
    let kinds: Vec<&str> = out[0]
        .actions
        .iter()
        .map(|a| a.to_json()["type"].as_str().unwrap().to_owned())
        .map(|s| &*Box::leak(s.into_boxed_str()))
        .collect();
    assert_eq!(kinds, ["republish", "log", "webhook"], "actions in order");
    assert_eq!(
        out[0].actions[1].to_json()["message"],
        r#"light off after {"present": false}"#
    );
    assert_eq!(out[0].actions[2].to_json()["body"], r#"{"present": false}"#);

    assert!(
        s.evaluate(&MessageContext::new("home/presence/kitchen", "Presence"))
            .is_empty()
    );
}

#[test]
fn disabled_rule_is_compiled_but_not_run() {
    let s = set(KITCHEN);
    assert!(!s.rule("kept").unwrap().enabled());
    assert!(
        s.evaluate(&MessageContext::new("home/other", "x"))
            .is_empty()
    );
    assert!(!s.matches_topic("home/other"));
    // …and still checked.
    let bad = KITCHEN.replace("SELECT * FROM \\\"home/#\\\"", "SELECT * FROM home");
    let e = RuleSet::from_config(&parse(&bad)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("rule `kept`: sql: line 1, column 15"),
        "{e}"
    );
}

#[test]
fn sql_errors_name_the_rule_line_and_column() {
    let e = RuleSet::from_config(&parse(
        r#"
[[rules]]
id = "ok"
sql = "SELECT * FROM \"a\""
[[rules]]
id = "broken"
sql = """SELECT *
FROM "a"
WHERE payload.t >> 3"""
"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule `broken`: sql: line 3, column 18: expected an expression, found `>`"
    );
    let RuleError::Sql { rule, error } = e else {
        panic!()
    };
    assert_eq!((rule.as_str(), error.line, error.column), ("broken", 3, 18));
}

#[test]
fn action_errors_name_the_rule_and_action() {
    let cases = [
        (
            r#"actions = [ { type = "log" }, { type = "republish", topic = "a/${payload.x" } ]"#,
            "rule `x`: action 2 (republish) field `topic`: line 1, column 3: unclosed `${`; expected `}`",
        ),
        (
            r#"actions = [ { type = "republish", topic = "a", qos = 3 } ]"#,
            "rule `x`: action 1 (republish): qos = 3 is not a QoS; expected 0, 1 or 2",
        ),
        (
            r#"actions = [ { type = "webhook", url = "ftp://x" } ]"#,
            "rule `x`: action 1 (webhook): url = \"ftp://x\"; expected an http:// or https:// URL",
        ),
        (
            r#"actions = [ { type = "webhook", url = "http://x", method = "GET" } ]"#,
            "rule `x`: action 1 (webhook): method = \"GET\"; expected \"POST\" or \"PUT\"",
        ),
        (
            r#"actions = [ { type = "webhook", url = "http://x", max_retries = 11 } ]"#,
            "rule `x`: action 1 (webhook): max_retries = 11; expected at most 10",
        ),
        (
            r#"actions = [ { type = "webhook", url = "http://x", timeout_ms = 0 } ]"#,
            "rule `x`: action 1 (webhook): timeout_ms = 0; expected 1 to 300000",
        ),
        (
            r#"actions = [ { type = "log", level = "loud" } ]"#,
            "rule `x`: action 1 (log): level = \"loud\"; expected error, warn, info, debug or trace",
        ),
        (
            r#"actions = [ { type = "webhook", url = "http://x", body = "${nope}" } ]"#,
            "rule `x`: action 1 (webhook) field `body`: line 1, column 3: unknown field `nope`",
        ),
    ];
    for (actions, want) in cases {
        let text = format!("[[rules]]\nid = \"x\"\nsql = \"SELECT * FROM \\\"a\\\"\"\n{actions}\n");
        let e = RuleSet::from_config(&parse(&text)).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}\n  want {want}");
    }
}

#[test]
fn config_shape_errors_come_from_serde() {
    let e = toml::from_str::<File>(
        "[[rules]]\nid = \"x\"\nsql = \"SELECT * FROM \\\"a\\\"\"\nactions = [ { type = \"republish\", topic = \"a\", paylod = \"x\" } ]\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("paylod"), "{e}");
    let e = toml::from_str::<File>(
        "[[rules]]\nid = \"x\"\nsql = \"SELECT * FROM \\\"a\\\"\"\nactions = [ { type = \"email\" } ]\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("email"), "{e}");
}

#[test]
fn duplicate_and_empty_ids_are_rejected() {
    let one = |id: &str| RuleConfig {
        id: id.into(),
        sql: "SELECT * FROM \"a\"".into(),
        actions: vec![],
        enabled: true,
        description: None,
    };
    assert_eq!(
        RuleSet::from_config(&[one("a"), one("a")]).unwrap_err(),
        RuleError::DuplicateId("a".into())
    );
    assert_eq!(
        RuleSet::from_config(&[one(" ")]).unwrap_err(),
        RuleError::EmptyId
    );
}

#[test]
fn index_runs_only_rules_whose_from_matches_in_config_order() {
    let mut text = String::new();
    for (id, filter) in [
        ("exact", "a/b/c"),
        ("plus", "a/+/c"),
        ("hash", "a/#"),
        ("other", "x/#"),
        ("root", "#"),
        ("two", "zz\\\", \\\"a/b/+"),
    ] {
        text.push_str(&format!(
            "[[rules]]\nid = \"{id}\"\nsql = \"SELECT * FROM \\\"{filter}\\\"\"\n"
        ));
    }
    let s = set(&text);
    let ids = |topic: &str| -> Vec<String> {
        s.evaluate(&MessageContext::new(topic, ""))
            .into_iter()
            .map(|o| o.rule_id.to_string())
            .collect()
    };
    assert_eq!(ids("a/b/c"), ["exact", "plus", "hash", "root", "two"]);
    assert_eq!(ids("a/q/c"), ["plus", "hash", "root"]);
    assert_eq!(ids("x"), ["other", "root"]);
    assert_eq!(ids("$SYS/x"), Vec::<String>::new());
}

#[test]
fn republish_loop_is_stopped_by_the_hop_limit() {
    let s = set(r#"
[[rules]]
id = "echo"
sql = "SELECT * FROM \"loop/#\""
actions = [ { type = "republish", topic = "loop/again", payload = "${payload}" } ]
"#);
    // The broker's part, in miniature: feed every republish back in with its hop count.
    let mut queue = vec![("loop/start".to_owned(), Bytes::from_static(b"x"), 0u8)];
    let mut injected = 0;
    while let Some((topic, payload, hops)) = queue.pop() {
        let mut m = MessageContext::new(&topic, payload);
        m.hops = hops;
        for r in republishes(&s, &m) {
            injected += 1;
            assert!(injected < 100, "storm");
            queue.push((r.topic, r.payload, r.hops));
        }
    }
    assert_eq!(injected, usize::from(tern_rules::DEFAULT_MAX_HOPS));
    let m = s.rule("echo").unwrap().metrics();
    assert_eq!(m.matched, 9);
    assert_eq!(m.actions_succeeded, 8);
    assert_eq!(m.actions_dropped, 1);

    let low = set(
        "[[rules]]\nid = \"e\"\nsql = \"SELECT * FROM \\\"t\\\"\"\nactions = [ { type = \"republish\", topic = \"t\" } ]\n",
    )
    .with_max_hops(0);
    assert!(republishes(&low, &MessageContext::new("t", "")).is_empty());
}

#[test]
fn republish_to_a_bad_topic_fails_the_action() {
    let s = set(r#"
[[rules]]
id = "bad"
sql = "SELECT * FROM \"in/#\""
actions = [ { type = "republish", topic = "out/${payload.name}" }, { type = "republish", topic = "${payload.name}" } ]
"#);
    let r = republishes(&s, &MessageContext::new("in/x", r#"{"name":"+"}"#));
    assert!(r.is_empty());
    assert_eq!(s.rule("bad").unwrap().metrics().actions_failed, 2);
}

#[test]
fn default_payload_is_the_selection_as_json() {
    let s = set(r#"
[[rules]]
id = "d"
sql = "SELECT payload.t AS t, clientid FROM \"s\""
actions = [ { type = "republish", topic = "o", user_properties = { t = "${t}" } } ]
"#);
    let mut m = MessageContext::new("s", r#"{"t":5}"#);
    m.clientid = "c";
    let r = republishes(&s, &m);
    assert_eq!(
        r[0].payload,
        Bytes::from_static(br#"{"clientid":"c","t":5}"#)
    );
    assert_eq!(r[0].user_properties, [("t".to_owned(), "5".to_owned())]);
}

#[test]
fn metrics_count_matched_passed_no_result_failed() {
    let s = set(
        "[[rules]]\nid = \"m\"\nsql = \"SELECT * FROM \\\"s\\\" WHERE payload.t > 1\"\nactions = [ { type = \"log\" } ]\n",
    );
    let (dispatcher, _) = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let d = WebhookDispatcher::start(DispatcherConfig::default()).unwrap();
        (d, rt)
    };
    for p in [
        r#"{"t":2}"#,
        r#"{"t":0}"#,
        r#"{"t":"x"}"#,
        "nope",
        r#"{"t":3}"#,
    ] {
        s.process(&MessageContext::new("s", p), &dispatcher.0);
    }
    s.process(&MessageContext::new("other", "{}"), &dispatcher.0);
    let m = s.rule("m").unwrap().metrics();
    assert_eq!(
        (
            m.matched,
            m.passed,
            m.no_result,
            m.failed,
            m.actions_succeeded
        ),
        (5, 2, 3, 2, 2)
    );
    let all = s.metrics();
    assert_eq!(&*all[0].0, "m");
    s.log_metrics();
}

#[test]
fn reload_keeps_counters_of_rules_that_stay() {
    let a = set(
        "[[rules]]\nid = \"keep\"\nsql = \"SELECT * FROM \\\"s\\\"\"\n[[rules]]\nid = \"gone\"\nsql = \"SELECT * FROM \\\"s\\\"\"\n",
    )
    .with_max_hops(3);
    a.evaluate(&MessageContext::new("s", ""));
    let b = a
        .reload(&parse(
            "[[rules]]\nid = \"keep\"\nsql = \"SELECT * FROM \\\"s/#\\\"\"\n[[rules]]\nid = \"new\"\nsql = \"SELECT * FROM \\\"s\\\"\"\n",
        ))
        .unwrap();
    assert_eq!(b.max_hops(), 3);
    assert_eq!(b.rule("keep").unwrap().metrics().matched, 1);
    assert_eq!(b.rule("new").unwrap().metrics().matched, 0);
    assert!(b.rule("gone").is_none());
    assert!(
        a.reload(&parse("[[rules]]\nid = \"x\"\nsql = \"nope\"\n"))
            .is_err()
    );
}

#[test]
fn rule_set_and_dispatcher_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<RuleSet>();
    shared::<WebhookDispatcher>();
    shared::<Republish>();
    shared::<tern_rules::RuleOutcome>();
}

#[tokio::test]
async fn engine_processes_and_reloads_keeping_old_rules_on_error() {
    let (engine, _task) =
        tern_rules::RuleEngine::start(&parse(KITCHEN), DispatcherConfig::default()).unwrap();
    let m = MessageContext::new("home/presence/kitchen", "No presence");
    assert!(engine.matches_topic("home/presence/kitchen"));
    assert_eq!(engine.process(&m).len(), 1);
    let e = engine
        .reload(&parse("[[rules]]\nid = \"x\"\nsql = \"SELECT\"\n"))
        .unwrap_err();
    assert!(
        e.to_string().starts_with("rule `x`: sql: line 1, column 7"),
        "{e}"
    );
    assert_eq!(engine.process(&m).len(), 1, "old rules still in force");
    engine
        .reload(&parse(
            "[[rules]]\nid = \"kitchen-light-off\"\nsql = \"SELECT * FROM \\\"other\\\"\"\n",
        ))
        .unwrap();
    assert!(engine.process(&m).is_empty());
    assert!(!engine.matches_topic("home/presence/kitchen"));
    assert_eq!(
        engine
            .rules()
            .rule("kitchen-light-off")
            .unwrap()
            .metrics()
            .matched,
        2,
        "counters kept across the reload"
    );
}
