//! Interoperability with third-party peers (ignored by default; `scripts/test.sh` runs them with
//! `--ignored` after installing the peers): Mosquitto's `mosquitto_pub`/`mosquitto_sub`, Eclipse
//! Paho (Python paho-mqtt 2.x), and a differential run of the Paho scenarios against Tern and a
//! real Mosquitto broker, comparing what every client received.
//!
//! With `CI` set, a missing peer fails the test; otherwise the test says so and passes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tern_testkit::{Mosquitto, require_peer, require_python_module};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/paho_scenarios.py"
);

/// Runs the Paho scenarios against a broker; returns the transcript (one JSON object, scenarios
/// in a fixed order, so two runs compare as strings).
async fn paho(addr: SocketAddr) -> String {
    let port = addr.port().to_string();
    let mut cmd = Command::new("python3");
    cmd.args([SCRIPT, "--host", "127.0.0.1", "--port", &port]);
    let out = output(cmd, Duration::from_secs(240)).await;
    assert!(
        out.status.success(),
        "paho scenarios failed against {addr}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command to completion off the async threads, within `limit`.
async fn output(mut cmd: Command, limit: Duration) -> std::process::Output {
    let task = tokio::task::spawn_blocking(move || cmd.output());
    tokio::time::timeout(limit, task)
        .await
        .expect("command finishes in time")
        .unwrap()
        .expect("command runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 paho-mqtt and mosquitto; run by scripts/test.sh"]
async fn paho_scenarios_same_transcripts_as_mosquitto() {
    if !require_python_module("paho.mqtt") || require_peer("mosquitto").is_none() {
        return;
    }
    let (broker, addr) = start().await;
    let tern = paho(addr).await;
    broker.shutdown().await;
    let m = Mosquitto::start().expect("mosquitto is installed");
    let mosq = paho(SocketAddr::from(([127, 0, 0, 1], m.port))).await;
    // No deliberate differences in these scenarios: every client receives the same as with
    // Mosquitto 2.0.
    assert_eq!(
        tern.trim(),
        mosq.trim(),
        "transcripts differ (left: Tern, right: Mosquitto)"
    );
}

async fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let mut owned = Command::new(cmd.get_program());
    owned.args(cmd.get_args());
    let out = output(owned, Duration::from_secs(10)).await;
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(name: &str, addr: SocketAddr) -> Command {
    let mut c = Command::new(name);
    c.args(["-h", "127.0.0.1", "-p", &addr.port().to_string()]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto-clients; run by scripts/test.sh"]
async fn mosquitto_clients_qos_retained_sessions_shared_and_v5() {
    if require_peer("mosquitto_pub").is_none() || require_peer("mosquitto_sub").is_none() {
        return;
    }
    let (broker, addr) = start().await;

    // QoS 0, 1, 2 both directions, 3.1.1 and 5.0.
    for v in ["mqttv311", "mqttv5"] {
        for q in ["0", "1", "2"] {
            let mut sub = tool("mosquitto_sub", addr);
            sub.args(["-V", v, "-q", q, "-t", "i/+/x", "-C", "1", "-v", "-W", "5"]);
            let sub = tokio::spawn(async move { run(&mut sub).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            run(tool("mosquitto_pub", addr).args(["-V", v, "-q", q, "-t", "i/a/x", "-m", "m"]))
                .await;
            assert_eq!(sub.await.unwrap().trim(), "i/a/x m", "{v} QoS {q}");
        }
    }

    // Retained.
    run(tool("mosquitto_pub", addr).args(["-t", "i/ret", "-m", "kept", "-r", "-q", "1"])).await;
    let got = run(tool("mosquitto_sub", addr).args(["-t", "i/ret", "-C", "1", "-W", "5"])).await;
    assert_eq!(got.trim(), "kept");

    // A persistent session collects QoS 1 messages while offline.
    run(tool("mosquitto_sub", addr).args(["-i", "keeper", "-c", "-q", "1", "-t", "i/q", "-E"]))
        .await;
    for m in ["1", "2", "3"] {
        run(tool("mosquitto_pub", addr).args(["-q", "1", "-t", "i/q", "-m", m])).await;
    }
    let got = run(tool("mosquitto_sub", addr).args([
        "-i", "keeper", "-c", "-q", "1", "-t", "i/q", "-C", "3", "-W", "5",
    ]))
    .await;
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), ["1", "2", "3"]);

    // Shared subscription: two members share four messages.
    let mut members = Vec::new();
    for i in 0..2 {
        let mut sub = tool("mosquitto_sub", addr);
        sub.args([
            "-i",
            &format!("m{i}"),
            "-t",
            "$share/g/i/s",
            "-C",
            "2",
            "-W",
            "5",
        ]);
        members.push(tokio::spawn(async move { run(&mut sub).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in ["a", "b", "c", "d"] {
        run(tool("mosquitto_pub", addr).args(["-q", "1", "-t", "i/s", "-m", m])).await;
    }
    let mut all: Vec<String> = Vec::new();
    for m in members {
        all.extend(m.await.unwrap().split_whitespace().map(String::from));
    }
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d"]);

    // v5 properties through mosquitto's tools.
    let mut sub = tool("mosquitto_sub", addr);
    sub.args([
        "-V", "mqttv5", "-t", "i/p", "-C", "1", "-W", "5", "-F", "%t %P %p",
    ]);
    let sub = tokio::spawn(async move { run(&mut sub).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    run(tool("mosquitto_pub", addr).args([
        "-V",
        "mqttv5",
        "-t",
        "i/p",
        "-m",
        "v",
        "-D",
        "publish",
        "user-property",
        "k",
        "v",
    ]))
    .await;
    assert_eq!(sub.await.unwrap().trim(), "i/p k:v v");

    // Will: a client killed without DISCONNECT.
    let mut sub = tool("mosquitto_sub", addr);
    sub.args(["-t", "i/will", "-C", "1", "-W", "5"]);
    let sub = tokio::spawn(async move { run(&mut sub).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut dying = tool("mosquitto_sub", addr)
        .args([
            "-t",
            "nothing",
            "--will-topic",
            "i/will",
            "--will-payload",
            "bye",
        ])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    dying.kill().unwrap();
    let _ = dying.wait();
    assert_eq!(sub.await.unwrap().trim(), "bye");
    broker.shutdown().await;
}
