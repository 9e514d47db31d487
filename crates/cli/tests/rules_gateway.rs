//! The rules engine in the `tern broker` binary, driven by real third-party clients: the
//! kitchen-light gateway with `mosquitto_sub` and `mosquitto_pub` (plain and JSON presence, then a
//! rule added by SIGHUP), and a wrong rule refused at start-up with its id and position.
#![cfg(unix)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TERN, TernBroker};
use tern_testkit::{KITCHEN_RULES, KillOnDrop, peer, temp_dir};

const KITCHEN_ON: &str = r#"
[[rules]]
id = "kitchen-light-on"
sql = "SELECT * FROM \"home/presence/kitchen\" WHERE payload = 'Presence'"
actions = [ { type = "republish", topic = "home/light/kitchen/set", payload = "turn_on" } ]
"#;

fn mosquitto_pub(port: u16, topic: &str, payload: &str) {
    let status = Command::new(peer("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub -t {topic} -m {payload}");
}

/// `mosquitto_sub -v` on the light's topic and a probe topic; its lines come through `lines`.
struct Sub {
    _child: KillOnDrop,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    fn start(port: u16) -> Sub {
        let mut child = Command::new(peer("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v"])
            .args(["-t", "home/light/kitchen/set", "-t", "tern/probe"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let sub = Sub {
            _child: KillOnDrop(child),
            lines,
        };
        // mosquitto_sub subscribes in the background: probe until a message comes back.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "mosquitto_sub not subscribed");
            mosquitto_pub(port, "tern/probe", "ready");
            let echo = sub.lines.recv_timeout(Duration::from_millis(300));
            if echo.as_deref() == Ok("tern/probe ready") {
                break;
            }
        }
        sub
    }

    /// The next line other than a late probe echo, if one comes within `d`.
    fn next_within(&self, d: Duration) -> Option<String> {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("tern/probe ") => {}
                Ok(l) => return Some(l),
                Err(_) => return None,
            }
        }
    }
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn gateway_turns_the_kitchen_light_off_with_mosquitto_clients() {
    let dir = temp_dir("rules-gateway");
    let config = dir.join("tern.toml");
    std::fs::write(&config, KITCHEN_RULES).unwrap();
    let broker =
        TernBroker::start_with([OsStr::new("--memory"), OsStr::new("-c"), config.as_os_str()]);
    let port = broker.port;
    let sub = Sub::start(port);
    let wait = Duration::from_secs(5);

    mosquitto_pub(port, "home/presence/kitchen", "No presence");
    assert_eq!(
        sub.next_within(wait).as_deref(),
        Some("home/light/kitchen/set turn_off")
    );

    // Somebody is there: nothing; then the JSON sensor says nobody is.
    mosquitto_pub(port, "home/presence/kitchen", "Presence");
    mosquitto_pub(port, "home/presence/kitchen", r#"{"present": false}"#);
    assert_eq!(
        sub.next_within(wait).as_deref(),
        Some("home/light/kitchen/set turn_off")
    );
    assert_eq!(sub.next_within(Duration::from_millis(500)), None);

    // SIGHUP reloads the rules from the file: now presence turns the light on.
    std::fs::write(&config, format!("{KITCHEN_RULES}{KITCHEN_ON}")).unwrap();
    let pid = broker.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "rules not reloaded on SIGHUP");
        mosquitto_pub(port, "home/presence/kitchen", "Presence");
        if let Some(line) = sub.next_within(Duration::from_millis(300)) {
            assert_eq!(line, "home/light/kitchen/set turn_on");
            break;
        }
    }
}

#[test]
fn broker_refuses_a_wrong_rule_naming_it_and_the_position() {
    let dir = temp_dir("rules-bad");
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        "[[rules]]\nid = \"hot\"\nsql = \"SELECT * FROM \\\"s/#\\\" WHERE payload.t >\"\n",
    )
    .unwrap();
    let out = Command::new(TERN)
        .args(["broker", "--memory", "--listen", "127.0.0.1:0", "-c"])
        .arg(&config)
        .output()
        .expect("run tern broker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("tern.toml: [[rules]]: rule `hot`: sql: line 1, column"),
        "{stderr}"
    );
}
