#![allow(clippy::unwrap_used, clippy::expect_used)]

//! tern-client against a real Mosquitto 2.x: QoS round trips in 3.1.1 and 5.0, refused
//! connections, reconnection after the broker restarts (no QoS 1/2 message lost, QoS 2 once),
//! the offline queue's limit, TLS with generated certificates, and WebSocket.

use std::collections::HashMap;
use std::time::Duration;
use tern_client::{
    Client, ConnectOptions, ConnectionState, Error, ProtocolVersion, QoS, ReasonCode, Transport,
};
use tern_testkit::{Mosquitto, free_port, generate_pki, tls_listener};

const INTEROP: &str = "interop: needs mosquitto";

fn options(broker: &Mosquitto, version: ProtocolVersion) -> ConnectOptions {
    let mut o = ConnectOptions::from_url(&broker.url()).unwrap();
    o.protocol = version;
    o
}

async fn round_trip(version: ProtocolVersion) {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (sub, mut messages) = Client::connect(options(&broker, version)).await.unwrap();
    assert_eq!(
        sub.subscribe("rt/#", QoS::ExactlyOnce).await.unwrap(),
        QoS::ExactlyOnce
    );
    let (publisher, _) = Client::connect(options(&broker, version)).await.unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("rt/{}", qos as u8);
        let outcome = publisher
            .publish(topic.as_str(), qos, false, format!("payload {}", qos as u8))
            .await
            .unwrap();
        assert!(!outcome.reason_code.is_error());
        if qos != QoS::AtMostOnce {
            assert_ne!(outcome.packet_id, 0);
        }
        let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.topic, topic.as_str());
        assert_eq!(m.qos, qos);
        assert_eq!(&m.payload[..], format!("payload {}", qos as u8).as_bytes());
    }
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn qos_0_1_2_round_trip_v5() {
    round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn qos_0_1_2_round_trip_v311() {
    round_trip(ProtocolVersion::V311).await;
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn v5_publish_reports_no_matching_subscribers() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (client, _) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    let outcome = client
        .publish("nobody/listens", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn refused_connection_names_the_reason_code() {
    let _ = INTEROP;
    let Some(broker) = Mosquitto::start_full("allow_anonymous false\npersistence false\n", "", &[])
    else {
        return;
    };
    for (version, code) in [(ProtocolVersion::V5, 0x87u8), (ProtocolVersion::V311, 5)] {
        let err = Client::connect(options(&broker, version))
            .await
            .unwrap_err();
        match &err {
            Error::ConnectionRefused { reason_code, .. } => assert_eq!(reason_code.0, code),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("connection refused"), "{text}");
    }
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn unreachable_broker_is_a_clear_error() {
    let port = free_port();
    let err = Client::connect(ConnectOptions::new("127.0.0.1", port))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
}

/// The broker is stopped and restarted on the same port (with persistence, so both sessions
/// survive) while QoS 1 and QoS 2 messages are being published: every publish completes, every
/// message arrives, and each QoS 2 message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto"]
async fn qos2_message_delivered_once_after_broker_restart() {
    let Some(mut broker) = Mosquitto::start_full(
        "allow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n",
        "",
        &[],
    ) else {
        return;
    };
    let session = |id: &str| {
        let mut o = options(&broker, ProtocolVersion::V5);
        o.client_id = id.to_owned();
        o.clean_start = false;
        o.session_expiry_interval = Some(3600);
        o.reconnect.initial_delay = Duration::from_millis(50);
        o.reconnect.max_delay = Duration::from_millis(500);
        o
    };
    let (sub, mut messages) = Client::connect(session("restart-sub")).await.unwrap();
    sub.subscribe("restart/#", QoS::ExactlyOnce).await.unwrap();
    let (publisher, _) = Client::connect(session("restart-pub")).await.unwrap();

    const N: usize = 200;
    let mut handles = Vec::new();
    for i in 0..N {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let p = publisher.clone();
        handles.push(tokio::spawn(async move {
            p.publish(format!("restart/{i}"), qos, false, format!("{i}"))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
        if i == N / 2 {
            tokio::task::block_in_place(|| broker.restart());
        }
    }
    for h in handles {
        let r = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .unwrap()
            .unwrap();
        r.unwrap();
    }
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < N {
        let m = tokio::time::timeout_at(deadline, messages.recv())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).collect();
                panic!(
                    "only {} of {N} messages arrived; missing {missing:?}; broker log:\n{}",
                    seen.len(),
                    broker.log()
                )
            })
            .unwrap();
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        *seen.entry(i).or_default() += 1;
    }
    // Let any late duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(m) = messages.try_recv() {
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        *seen.entry(i).or_default() += 1;
    }
    for i in (1..N).step_by(2) {
        assert_eq!(
            seen.get(&i),
            Some(&1),
            "QoS 2 message {i} must arrive exactly once"
        );
    }
    // Both clients really reconnected to the restarted broker and resumed their sessions,
    // which the broker really persisted.
    let log = broker.log();
    assert!(!log.contains("Error saving"), "{log}");
    let connects = |id: &str| {
        log.lines()
            .filter(|l| l.contains("New client connected") && l.contains(id))
            .count()
    };
    assert!(connects("restart-pub") >= 2, "{log}");
    assert!(connects("restart-sub") >= 2, "{log}");
    drop(publisher);
    drop(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs mosquitto"]
async fn offline_queue_full_is_a_clear_error() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let mut o = options(&broker, ProtocolVersion::V5);
    o.offline_queue_capacity = 3;
    o.reconnect.initial_delay = Duration::from_millis(50);
    o.reconnect.max_delay = Duration::from_millis(200);
    let (client, _) = Client::connect(o).await.unwrap();
    tokio::task::block_in_place(|| broker.stop());
    let state = client.wait_disconnected().await;
    assert!(
        matches!(state, ConnectionState::Reconnecting { .. }),
        "{state:?}"
    );
    let mut queued = Vec::new();
    for i in 0..3 {
        let c = client.clone();
        queued.push(tokio::spawn(async move {
            c.publish("offline/q", QoS::AtLeastOnce, false, format!("{i}"))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = client
        .publish("offline/q", QoS::AtLeastOnce, false, "overflow")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull { capacity: 3 }), "{err:?}");
    assert!(err.to_string().contains("offline queue is full"));
    tokio::task::block_in_place(|| broker.restart());
    for q in queued {
        tokio::time::timeout(Duration::from_secs(10), q)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn websocket_round_trip() {
    let ws_port = free_port();
    let Some(broker) = Mosquitto::start_with(
        &format!("listener {ws_port} 127.0.0.1\nprotocol websockets\n"),
        &[ws_port],
    ) else {
        return;
    };
    let mut o = ConnectOptions::from_url(&format!("ws://127.0.0.1:{ws_port}/mqtt")).unwrap();
    assert_eq!(o.transport, Transport::Ws);
    o.protocol = ProtocolVersion::V311;
    let (client, mut messages) = Client::connect(o).await.unwrap();
    client.subscribe("ws/t", QoS::AtLeastOnce).await.unwrap();
    // A plain TCP publisher on the same broker proves the bytes really crossed the WebSocket.
    let (tcp, _) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    tcp.publish("ws/t", QoS::AtLeastOnce, false, "over websocket")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"over websocket");
    client
        .publish("ws/t", QoS::ExactlyOnce, false, "back")
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn tls_with_client_certificate() {
    let pki = generate_pki();
    let tls_port = free_port();
    let Some(_broker) = Mosquitto::start_with(&tls_listener(tls_port, &pki), &[tls_port]) else {
        return;
    };
    let url = format!("mqtts://localhost:{tls_port}");
    let mut o = ConnectOptions::from_url(&url).unwrap();
    o.tls.ca_file = Some(pki.ca());
    o.tls.client_cert = Some(pki.file("client.pem"));
    o.tls.client_key = Some(pki.file("client.key"));
    let (client, mut messages) = Client::connect(o.clone()).await.unwrap();
    client.subscribe("tls/t", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("tls/t", QoS::AtLeastOnce, false, "secret")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"secret");
    client.disconnect().await.unwrap();

    // Without the CA the server certificate is not trusted: a TLS error, not a hang.
    let mut untrusted = o.clone();
    untrusted.tls.ca_file = Some(pki.file("client.pem"));
    let err = Client::connect(untrusted).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");

    // Insecure mode skips verification (still needs the client certificate).
    let mut insecure = o.clone();
    insecure.tls.ca_file = None;
    insecure.tls.insecure = true;
    let (client, _) = Client::connect(insecure).await.unwrap();
    client.disconnect().await.unwrap();
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn request_response_v5() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (responder, mut requests) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    responder
        .subscribe("service/echo", QoS::AtLeastOnce)
        .await
        .unwrap();
    let r = responder.clone();
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            let Some(topic) = req.properties.response_topic.clone() else {
                continue;
            };
            let mut reply = tern_client::Publish {
                topic,
                qos: QoS::AtLeastOnce,
                payload: req.payload.clone(),
                ..Default::default()
            };
            reply.properties.correlation_data = req.properties.correlation_data.clone();
            let _ = r.publish_message(reply).await;
        }
    });
    let (requester, _) = Client::connect(options(&broker, ProtocolVersion::V5))
        .await
        .unwrap();
    requester
        .subscribe("replies/me", QoS::AtLeastOnce)
        .await
        .unwrap();
    let request = tern_client::Publish {
        topic: "service/echo".into(),
        qos: QoS::AtLeastOnce,
        payload: "ping".into(),
        properties: tern_client::request_properties("replies/me", None).into(),
        ..Default::default()
    };
    let response = requester
        .request(request, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&response.payload[..], b"ping");
}

#[tokio::test]
#[ignore = "interop: needs mosquitto"]
async fn secure_websocket_round_trip() {
    let pki = generate_pki();
    let wss_port = free_port();
    let Some(broker) = Mosquitto::start_with(
        &format!(
            "listener {wss_port} 127.0.0.1\nprotocol websockets\ncafile {}\ncertfile {}\nkeyfile {}\n",
            pki.ca().display(),
            pki.file("server.pem").display(),
            pki.file("server.key").display()
        ),
        &[wss_port],
    ) else {
        return;
    };
    let mut o = ConnectOptions::from_url(&format!("wss://localhost:{wss_port}/mqtt")).unwrap();
    assert_eq!(o.transport, Transport::Wss);
    o.tls.ca_file = Some(pki.ca());
    let (client, mut messages) = Client::connect(o).await.unwrap();
    client.subscribe("wss/t", QoS::ExactlyOnce).await.unwrap();
    let (tcp, _) = Client::connect(options(&broker, ProtocolVersion::V311))
        .await
        .unwrap();
    tcp.publish("wss/t", QoS::ExactlyOnce, false, "tls websocket")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"tls websocket");
    client.disconnect().await.unwrap();
}
