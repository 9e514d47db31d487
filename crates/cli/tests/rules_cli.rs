//! `tern rules test`, run as the built binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use tern_testkit::temp_dir;

fn tern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn rules_test_sql_prints_selected_fields_and_exits_0() {
    let o = tern(&[
        "rules",
        "test",
        "--sql",
        "SELECT payload.temp AS t, clientid, user_properties.site AS site FROM \"sensors/+/temp\" WHERE payload.temp > 30",
        "--topic",
        "sensors/k1/temp",
        "--payload",
        r#"{"temp": 31.5}"#,
        "--clientid",
        "dev-1",
        "--user-property",
        "site=lyon",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(r#""result": "passed""#), "{out}");
    assert!(out.contains(r#""t": 31.5"#), "{out}");
    assert!(out.contains(r#""clientid": "dev-1""#), "{out}");
    assert!(out.contains(r#""site": "lyon""#), "{out}");
}

#[test]
fn rules_test_filtered_and_no_match_exit_1() {
    let sql = "SELECT * FROM \"sensors/#\" WHERE payload.temp > 30";
    let o = tern(&[
        "rules",
        "test",
        "--sql",
        sql,
        "--topic",
        "sensors/a",
        "--payload",
        r#"{"temp":3}"#,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(r#""result": "filtered""#),
        "{}",
        stdout(&o)
    );
    let o = tern(&[
        "rules",
        "test",
        "--sql",
        sql,
        "--topic",
        "other",
        "--payload",
        "{}",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(r#""result": "no_match""#),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_test_parse_error_is_located_and_exits_2() {
    let o = tern(&[
        "rules",
        "test",
        "--sql",
        "SELECT * FROM \"a\" WHERE payload.t >> 3",
        "--topic",
        "a",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("line 1, column 36: expected an expression, found `>`"),
        "{err}"
    );
    assert!(err.contains("^"), "{err}");
}

#[test]
fn rules_test_rule_from_config_shows_kitchen_light_actions() {
    let dir = temp_dir("rules-cli");
    let path = dir.join("tern.toml");
    std::fs::write(
        &path,
        r#"
[listener]
bind = "0.0.0.0:1883"

[some_future_table]
anything = true

[[rules]]
id = "kitchen-light-off"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'No presence' OR payload.present = false"
actions = [
  { type = "republish", topic = "home/light/kitchen/set", payload = "turn_off" },
  { type = "webhook", url = "http://127.0.0.1:9/${clientid}", body = "${payload}" },
]
"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for payload in ["No presence", r#"{"present": false}"#] {
        let o = tern(&[
            "rules",
            "test",
            "--rule",
            "kitchen-light-off",
            "-c",
            p,
            "--topic",
            "home/presence/kitchen",
            "--payload",
            payload,
            "--clientid",
            "sensor-9",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(r#""topic": "home/light/kitchen/set""#),
            "{out}"
        );
        assert!(out.contains(r#""payload": "turn_off""#), "{out}");
        assert!(
            out.contains(r#""url": "http://127.0.0.1:9/sensor-9""#),
            "{out}"
        );
    }
    let o = tern(&["rules", "test", "--rule", "nope", "-c", p, "--topic", "t"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no rule with id `nope`; the file has: kitchen-light-off"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn rules_check_reports_ok_or_the_located_error() {
    let dir = temp_dir("rules-check");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[other]\nx = 1\n[[rules]]\nid = \"a\"\nsql = \"SELECT * FROM \\\"t\\\"\"\n[[rules]]\nid = \"b\"\nenabled = false\nsql = \"SELECT * FROM \\\"t\\\"\"\n",
    )
    .unwrap();
    let o = tern(&["rules", "check", "-c", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 rule(s) OK (1 enabled)"),
        "{}",
        stdout(&o)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nid = \"hot\"\nsql = \"SELECT * FROM \\\"t\\\" WHERE payload.t > \"\n",
    )
    .unwrap();
    let o = tern(&["rules", "check", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "rule `hot`: sql: line 1, column 37: expected an expression, found end of input"
        ),
        "{}",
        stderr(&o)
    );
}
