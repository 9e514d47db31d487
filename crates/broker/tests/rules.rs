//! The rules engine inside a running broker, with rumqttc clients: the kitchen-light gateway
//! (plain and JSON presence), the publisher's identity seen by rules, the republish loop guard,
//! a webhook against an axum server, reload, and configuration errors that name the rule.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{T, v4, v4_opts};
use rumqttc::QoS;
use std::net::SocketAddr;
use std::time::Duration;
use tern_broker::config::ListenerConfig;
use tern_broker::rules::RulesRuntime;
use tern_broker::{Broker, Config, RunningBroker};
use tern_rules::{EngineError, RuleError};
use tern_testkit::KITCHEN_RULES;
use tokio::sync::mpsc;

async fn start(toml: &str) -> (RunningBroker, RulesRuntime, SocketAddr) {
    let mut config = Config::from_toml(toml, "tern.toml").expect("configuration loads");
    config.listeners = vec![ListenerConfig::mqtt("127.0.0.1:0".parse().unwrap())];
    let mut rules = RulesRuntime::start(&config.rules).expect("rules compile");
    let broker = Broker::new(config)
        .with_publish_hook(rules.hook())
        .start()
        .await
        .expect("broker starts");
    rules.run(broker.handle());
    let addr = broker.local_addrs()[0];
    (broker, rules, addr)
}

async fn subscriber(addr: SocketAddr, id: &str, filter: &str) -> common::V4 {
    let mut sub = v4(v4_opts(addr, id));
    sub.connack().await;
    sub.client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .unwrap();
    sub.suback().await;
    sub
}

async fn publisher(addr: SocketAddr, opts: Option<rumqttc::MqttOptions>) -> common::V4 {
    let mut p = v4(opts.unwrap_or_else(|| v4_opts(addr, "sensor")));
    p.connack().await;
    p
}

async fn stop(broker: RunningBroker, rules: RulesRuntime) {
    broker.shutdown().await;
    tokio::time::timeout(T, rules.shutdown(Duration::from_secs(2)))
        .await
        .expect("rules shut down in time");
}

#[tokio::test]
async fn kitchen_light_turned_off_when_presence_sensor_says_no_presence() {
    let (broker, rules, addr) = start(KITCHEN_RULES).await;
    let mut light = subscriber(addr, "light", "home/light/kitchen/set").await;
    let sensor = publisher(addr, None).await;
    sensor
        .client
        .publish(
            "home/presence/kitchen",
            QoS::AtMostOnce,
            false,
            "No presence",
        )
        .await
        .unwrap();
    let p = light.publish().await;
    assert_eq!(p.topic, "home/light/kitchen/set");
    assert_eq!(&p.payload[..], b"turn_off");
    // Someone is there: no rule passes.
    sensor
        .client
        .publish("home/presence/kitchen", QoS::AtMostOnce, false, "Presence")
        .await
        .unwrap();
    light.no_publish(Duration::from_millis(300)).await;
    let m = rules.metrics();
    let plain = m
        .iter()
        .find(|(id, _)| &**id == "kitchen-light-off")
        .unwrap();
    assert_eq!((plain.1.matched, plain.1.passed), (2, 1));
    stop(broker, rules).await;
}

#[tokio::test]
async fn kitchen_light_turned_off_on_json_presence_false() {
    let (broker, rules, addr) = start(KITCHEN_RULES).await;
    let mut light = subscriber(addr, "light", "home/light/kitchen/set").await;
    let sensor = publisher(addr, None).await;
    sensor
        .client
        .publish(
            "home/presence/kitchen",
            QoS::AtLeastOnce,
            false,
            r#"{"present": true}"#,
        )
        .await
        .unwrap();
    sensor
        .client
        .publish(
            "home/presence/kitchen",
            QoS::AtLeastOnce,
            false,
            r#"{"present": false}"#,
        )
        .await
        .unwrap();
    let p = light.publish().await;
    assert_eq!(p.topic, "home/light/kitchen/set");
    assert_eq!(&p.payload[..], b"turn_off");
    light.no_publish(Duration::from_millis(300)).await;
    stop(broker, rules).await;
}

#[tokio::test]
async fn rules_see_the_publishers_client_id_and_user_name() {
    let (broker, rules, addr) = start(
        r#"
[[rules]]
id = "who"
sql = "SELECT clientid, username FROM \"in/#\" WHERE username = 'alice'"
actions = [ { type = "republish", topic = "out/${clientid}", payload = "${username}" } ]
"#,
    )
    .await;
    let mut out = subscriber(addr, "watcher", "out/#").await;
    let mut opts = v4_opts(addr, "sensor-7");
    opts.set_credentials("alice", "secret");
    let alice = publisher(addr, Some(opts)).await;
    alice
        .client
        .publish("in/x", QoS::AtMostOnce, false, "hi")
        .await
        .unwrap();
    let p = out.publish().await;
    assert_eq!(p.topic, "out/sensor-7");
    assert_eq!(&p.payload[..], b"alice");
    // Anonymous: username is NULL, the rule does not pass.
    let anon = publisher(addr, Some(v4_opts(addr, "anon"))).await;
    anon.client
        .publish("in/x", QoS::AtMostOnce, false, "hi")
        .await
        .unwrap();
    out.no_publish(Duration::from_millis(300)).await;
    stop(broker, rules).await;
}

#[tokio::test]
async fn republish_loop_stopped_by_the_hop_guard() {
    let (broker, rules, addr) = start(
        r#"
[[rules]]
id = "echo"
sql = "SELECT * FROM \"loop/#\""
actions = [ { type = "republish", topic = "loop/a", payload = "${payload}" } ]
"#,
    )
    .await;
    let mut sub = subscriber(addr, "watcher", "loop/#").await;
    let p = publisher(addr, None).await;
    p.client
        .publish("loop/start", QoS::AtMostOnce, false, "x")
        .await
        .unwrap();
    // The client's message, then one republish per hop up to the limit.
    let max = usize::from(tern_rules::DEFAULT_MAX_HOPS);
    for i in 0..=max {
        let m = sub.publish().await;
        let want = if i == 0 { "loop/start" } else { "loop/a" };
        assert_eq!(m.topic, want, "message {i}");
    }
    sub.no_publish(Duration::from_millis(500)).await;
    let m = rules.metrics();
    let echo = &m.iter().find(|(id, _)| &**id == "echo").unwrap().1;
    assert_eq!(echo.passed, max as u64 + 1);
    assert_eq!(echo.actions_succeeded, max as u64);
    assert_eq!(
        echo.actions_dropped, 1,
        "the republish past the limit is counted"
    );
    stop(broker, rules).await;
}

#[tokio::test]
async fn webhook_rule_posts_to_an_http_server() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let device = headers
                    .get("x-device")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let _ = tx.send((device, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (broker, rules, addr) = start(&format!(
        r#"
[[rules]]
id = "hot"
sql = "SELECT payload.temp AS t FROM \"sensors/+/temp\" WHERE t > 30"
actions = [ {{ type = "webhook", url = "http://{http}/hook", headers = {{ x-device = "${{clientid}}" }}, body = "${{t}}" }} ]
"#
    ))
    .await;
    let sensor = publisher(addr, None).await;
    for temp in [20, 35] {
        sensor
            .client
            .publish(
                "sensors/kitchen/temp",
                QoS::AtMostOnce,
                false,
                format!(r#"{{"temp": {temp}}}"#),
            )
            .await
            .unwrap();
    }
    let (device, body) = tokio::time::timeout(T, rx.recv())
        .await
        .expect("webhook in time")
        .unwrap();
    assert_eq!((device.as_str(), body.as_str()), ("sensor", "35"));
    // The 2xx is counted once the dispatcher has it.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let m = rules.metrics();
        let hot = &m.iter().find(|(id, _)| &**id == "hot").unwrap().1;
        if hot.actions_succeeded == 1 {
            assert_eq!((hot.matched, hot.passed), (2, 1));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "webhook counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.try_recv().is_err(), "only the hot reading is posted");
    stop(broker, rules).await;
}

#[tokio::test]
async fn reload_replaces_the_rules_and_keeps_them_when_the_new_ones_are_wrong() {
    let (broker, rules, addr) = start(KITCHEN_RULES).await;
    let mut light = subscriber(addr, "light", "home/light/#").await;
    let sensor = publisher(addr, None).await;
    let next = Config::from_toml(
        r#"
[[rules]]
id = "kitchen-light-on"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'Presence'"
actions = [ { type = "republish", topic = "home/light/kitchen/set", payload = "turn_on" } ]
"#,
        "tern.toml",
    )
    .unwrap();
    rules.reload(&next.rules).expect("new rules compile");
    let bad = Config::from_toml(
        r#"
[[rules]]
id = "broken"
sql = "SELECT * FROM"
"#,
        "tern.toml",
    )
    .unwrap();
    let e = rules.reload(&bad.rules).expect_err("bad rules refused");
    assert!(e.to_string().contains("rule `broken`"), "{e}");
    for payload in ["No presence", "Presence"] {
        sensor
            .client
            .publish("home/presence/kitchen", QoS::AtMostOnce, false, payload)
            .await
            .unwrap();
    }
    let p = light.publish().await;
    assert_eq!(&p.payload[..], b"turn_on");
    light.no_publish(Duration::from_millis(300)).await;
    stop(broker, rules).await;
}

#[tokio::test]
async fn configuration_errors_name_the_rule_and_the_position() {
    // A SQL error: the rule id, then line and column inside the SQL.
    let config = Config::from_toml(
        r#"
[[rules]]
id = "ok"
sql = "SELECT * FROM \"a\""

[[rules]]
id = "bad-sql"
sql = "SELECT * FROM \"a\" WHERE payload >"
"#,
        "tern.toml",
    )
    .unwrap();
    let e = RulesRuntime::start(&config.rules).expect_err("bad SQL refused");
    let EngineError::Rule(RuleError::Sql { rule, error }) = &e else {
        panic!("not a SQL error: {e:?}");
    };
    assert_eq!(rule, "bad-sql");
    assert_eq!(error.line, 1);
    assert!(error.column > 1);
    let text = e.to_string();
    assert!(
        text.starts_with("rule `bad-sql`: sql: line 1, column"),
        "{text}"
    );

    // A template error names the action and its field.
    let config = Config::from_toml(
        r#"
[[rules]]
id = "bad-topic"
sql = "SELECT * FROM \"a\""
actions = [ { type = "republish", topic = "x/${oops" } ]
"#,
        "tern.toml",
    )
    .unwrap();
    let e = RulesRuntime::start(&config.rules)
        .expect_err("bad template refused")
        .to_string();
    assert!(
        e.starts_with("rule `bad-topic`: action 1 (republish) field `topic`"),
        "{e}"
    );

    // An unknown key in a rule: the configuration error gives the file, line and key.
    let e = Config::from_toml(
        "\n[[rules]]\nid = \"typo\"\nsql = \"SELECT * FROM \\\"a\\\"\"\nactions = [ { type = \"republish\", topic = \"b\", paylod = \"x\" } ]\n",
        "tern.toml",
    )
    .expect_err("unknown key refused")
    .to_string();
    assert!(e.starts_with("tern.toml:5:"), "{e}");
    assert!(e.contains("paylod"), "{e}");
}

#[tokio::test]
async fn no_rules_section_means_no_rules() {
    let config = Config::from_toml("", "tern.toml").unwrap();
    assert!(config.rules.is_empty());
    let rules = RulesRuntime::start(&config.rules).unwrap();
    assert!(rules.metrics().is_empty());
    tokio::time::timeout(T, rules.shutdown(Duration::from_secs(1)))
        .await
        .expect("shuts down at once");
}
