//! Interoperability of `tern broker` with clients nobody at Tern wrote: Eclipse Paho (Python,
//! paho-mqtt 2.x) and Mosquitto's `mosquitto_pub` / `mosquitto_sub`, plus a differential test
//! that runs the same Paho conversations against a real Mosquitto broker and compares transcripts.
//!
//! These tests need third-party programs, so they are `#[ignore]`d: `scripts/test.sh` installs the
//! peers and runs them with `--run-ignored only`. A missing program fails the test, never skips it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::TernBroker;
use tern_testkit::{Mosquitto, peer};

fn start_tern() -> (TernBroker, u16) {
    let tern = TernBroker::start();
    let port = tern.port;
    (tern, port)
}

fn start_mosquitto() -> Mosquitto {
    Mosquitto::start_required("allow_anonymous true\npersistence false\nset_tcp_nodelay true\n")
}

fn scenarios_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/paho_scenarios.py")
}

fn run_paho(port: u16) -> serde_json::Value {
    peer("python3");
    let out = Command::new("python3")
        .arg(scenarios_script())
        .args(["--port", &port.to_string()])
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'paho'"),
        "paho-mqtt is not installed: run scripts/install-peers.sh"
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("paho scenarios printed no JSON ({e}); stderr:\n{stderr}"))
}

#[test]
#[ignore = "interop: needs python3 paho-mqtt"]
fn paho_scenarios_pass_against_tern() {
    let (_tern, port) = start_tern();
    let results = run_paho(port);
    let failed: Vec<String> = results
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["ok"] != true)
        .map(|(k, v)| format!("{k}: {}", v["error"]))
        .collect();
    assert!(
        failed.is_empty(),
        "paho scenarios failed against tern:\n{}",
        failed.join("\n")
    );
    assert!(
        results.as_object().unwrap().len() >= 15,
        "scenarios went missing"
    );
}

/// Scenarios where Tern deliberately differs from Mosquitto 2.0, with the reason. Their
/// transcripts are not compared (each still asserts the specification on its own).
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[];

#[test]
#[ignore = "interop: needs mosquitto and python3 paho-mqtt"]
fn paho_transcripts_match_mosquitto() {
    let (_tern, tern_port) = start_tern();
    let mosq = start_mosquitto();
    let mosq_port = mosq.port;
    let tern = run_paho(tern_port);
    let mosq = run_paho(mosq_port);
    let mut diffs = Vec::new();
    for (name, m) in mosq.as_object().unwrap() {
        if DELIBERATE_DIFFERENCES.iter().any(|(n, _)| n == name) {
            continue;
        }
        assert_eq!(
            m["ok"], true,
            "scenario {name} fails against Mosquitto itself: {}",
            m["error"]
        );
        if tern[name] != *m {
            diffs.push(format!(
                "{name}:\n  tern:      {}\n  mosquitto: {}",
                tern[name], m
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "tern and mosquitto differ:\n{}",
        diffs.join("\n")
    );
}

fn mosquitto_sub(port: u16, args: &[&str]) -> Child {
    Command::new(peer("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub")
}

fn mosquitto_pub(port: u16, args: &[&str]) {
    let out = Command::new(peer("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) for a child that was given `-C`/`-W`, returning its output.
fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for mosquitto_sub")
}

/// mosquitto_sub subscribes asynchronously; give it time to be subscribed before publishing.
fn settle() {
    sleep(Duration::from_millis(300));
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn mosquitto_clients_qos_0_1_2_both_versions() {
    let (_tern, port) = start_tern();
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("mc/{version}/qos");
        let sub = mosquitto_sub(
            port,
            &[
                "-V", version, "-q", "2", "-t", &topic, "-C", "3", "-W", "10", "-F", "%q %p",
            ],
        );
        settle();
        for q in ["0", "1", "2"] {
            mosquitto_pub(
                port,
                &[
                    "-V",
                    version,
                    "-q",
                    q,
                    "-t",
                    &topic,
                    "-m",
                    &format!("qos{q}"),
                ],
            );
        }
        let out = finish(sub);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "0 qos0\n1 qos1\n2 qos2\n",
            "{version}"
        );
    }
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn mosquitto_clients_retained_and_delete() {
    let (_tern, port) = start_tern();
    mosquitto_pub(port, &["-q", "1", "-r", "-t", "mc/ret/a", "-m", "kept"]);
    let out = finish(mosquitto_sub(
        port,
        &["-t", "mc/ret/#", "-C", "1", "-W", "5", "-F", "%t %r %p"],
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mc/ret/a 1 kept\n");
    mosquitto_pub(port, &["-q", "1", "-r", "-t", "mc/ret/a", "-n"]);
    let out = finish(mosquitto_sub(port, &["-t", "mc/ret/#", "-W", "1"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "retained message survived its deletion"
    );
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn mosquitto_clients_will_on_kill() {
    let (_tern, port) = start_tern();
    let watcher = mosquitto_sub(port, &["-t", "mc/will", "-C", "1", "-W", "10", "-q", "1"]);
    let mut dying = mosquitto_sub(
        port,
        &[
            "-t",
            "mc/nothing",
            "--will-topic",
            "mc/will",
            "--will-payload",
            "dead",
            "--will-qos",
            "1",
        ],
    );
    settle();
    dying.kill().unwrap(); // SIGKILL: the TCP connection drops without DISCONNECT
    let _ = dying.wait();
    let out = finish(watcher);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dead\n");
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn mosquitto_clients_persistent_session_gets_queued_messages() {
    let (_tern, port) = start_tern();
    // -c: clean session off; -C 1 makes it exit (with DISCONNECT) after one message
    let first = mosquitto_sub(
        port,
        &[
            "-c",
            "-i",
            "mc-persist",
            "-q",
            "1",
            "-t",
            "mc/persist",
            "-C",
            "1",
            "-W",
            "10",
        ],
    );
    settle();
    mosquitto_pub(port, &["-q", "1", "-t", "mc/persist", "-m", "online"]);
    assert_eq!(String::from_utf8_lossy(&finish(first).stdout), "online\n");
    for i in 0..3 {
        mosquitto_pub(
            port,
            &["-q", "1", "-t", "mc/persist", "-m", &format!("offline-{i}")],
        );
    }
    let again = finish(mosquitto_sub(
        port,
        &[
            "-c",
            "-i",
            "mc-persist",
            "-q",
            "1",
            "-t",
            "mc/persist",
            "-C",
            "3",
            "-W",
            "10",
        ],
    ));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "offline-0\noffline-1\noffline-2\n"
    );
}

#[test]
#[ignore = "interop: needs mosquitto-clients"]
fn mosquitto_clients_v5_user_properties_and_shared_subscription() {
    let (_tern, port) = start_tern();
    let sub = mosquitto_sub(
        port,
        &[
            "-V", "5", "-t", "mc/props", "-C", "1", "-W", "10", "-F", "%P|%C|%p",
        ],
    );
    settle();
    mosquitto_pub(
        port,
        &[
            "-V",
            "5",
            "-t",
            "mc/props",
            "-m",
            "x",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&finish(sub).stdout),
        "k:v|text/plain|x\n"
    );

    let a = mosquitto_sub(
        port,
        &["-V", "5", "-t", "$share/g/mc/shared", "-W", "3", "-q", "1"],
    );
    let b = mosquitto_sub(
        port,
        &["-V", "5", "-t", "$share/g/mc/shared", "-W", "3", "-q", "1"],
    );
    settle();
    for i in 0..10 {
        mosquitto_pub(
            port,
            &[
                "-V",
                "5",
                "-q",
                "1",
                "-t",
                "mc/shared",
                "-m",
                &i.to_string(),
            ],
        );
    }
    let mut all: Vec<u32> = [finish(a), finish(b)]
        .iter()
        .flat_map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.parse().unwrap())
                .collect::<Vec<u32>>()
        })
        .collect();
    all.sort();
    assert_eq!(
        all,
        (0..10).collect::<Vec<_>>(),
        "each message to exactly one member"
    );
}
