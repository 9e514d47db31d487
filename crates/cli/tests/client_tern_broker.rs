#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The client library and `tern pub` / `tern sub` against Tern's own broker (`tern broker
//! --memory`, started on a free port): QoS 0/1/2 round trips in 3.1.1 and 5.0, and reconnection
//! after the broker is stopped and started again. Needs nothing but the built binary.

mod common;

use common::{TERN, TernBroker};
use std::process::{Command, Stdio};
use std::time::Duration;
use tern_client::{Client, ConnectOptions, ConnectionState, ProtocolVersion, QoS};

/// Connect options for `broker`, with quick reconnection.
fn options(broker: &TernBroker, version: ProtocolVersion) -> ConnectOptions {
    let mut o = ConnectOptions::new("127.0.0.1", broker.port);
    o.protocol = version;
    o.reconnect.initial_delay = Duration::from_millis(20);
    o.reconnect.max_delay = Duration::from_millis(200);
    o
}

async fn round_trip(version: ProtocolVersion) {
    let broker = TernBroker::start();
    let (sub, mut messages) = Client::connect(options(&broker, version)).await.unwrap();
    assert_eq!(
        sub.subscribe("rt/#", QoS::ExactlyOnce).await.unwrap(),
        QoS::ExactlyOnce
    );
    let (publisher, _) = Client::connect(options(&broker, version)).await.unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("rt/{}", qos as u8);
        publisher
            .publish(topic.as_str(), qos, false, "x")
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.topic.as_str(), m.qos), (topic.as_str(), qos));
    }
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

#[tokio::test]
async fn client_qos_round_trip_v5_on_tern_broker() {
    round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn client_qos_round_trip_v311_on_tern_broker() {
    round_trip(ProtocolVersion::V311).await;
}

/// The broker (in memory) is stopped and started again: both clients reconnect, the
/// subscriber's subscription is restored, and what was published while the broker was down
/// waits in the offline queue and is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_and_resubscribes_after_tern_broker_restart() {
    let mut broker = TernBroker::start();
    let (sub, mut messages) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    sub.subscribe("re/#", QoS::AtLeastOnce).await.unwrap();
    let (publisher, _) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    tokio::task::block_in_place(|| broker.stop());
    assert!(matches!(
        publisher.wait_disconnected().await,
        ConnectionState::Reconnecting { .. }
    ));
    let pending = {
        let p = publisher.clone();
        tokio::spawn(async move { p.publish("re/queued", QoS::AtLeastOnce, false, "q").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::task::block_in_place(|| broker.spawn());
    sub.wait_connected().await.unwrap();
    // The subscriber restores its subscription as soon as it is back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    publisher
        .publish("re/after", QoS::AtLeastOnce, false, "a")
        .await
        .unwrap();
    // The queued message may reach the broker before the subscriber is back (the broker kept
    // nothing: --memory); the one published afterwards must arrive.
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await
            .expect("the subscription is restored after the restart")
            .unwrap();
        if m.topic == "re/after" {
            break;
        }
    }
}

fn tern_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(TERN);
    c.args(args);
    c
}

#[test]
fn tern_pub_to_tern_sub_on_tern_broker() {
    let broker = TernBroker::start();
    let port = broker.port.to_string();
    let sub = tern_cmd(&[
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "cli/#",
        "-q",
        "2",
        "-v",
        "-C",
        "4",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    for (qos, msg) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let o = tern_cmd(&[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "cli/t",
            "-q",
            qos,
            "-m",
            msg,
        ])
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = tern_cmd(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "cli/v5",
        "-q",
        "1",
        "-m",
        "five",
        "-V",
        "5",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cli/t zero\ncli/t one\ncli/t two\ncli/v5 five\n"
    );
}
