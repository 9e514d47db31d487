//! Listener policy end to end: the anonymous policy, password and ACL files from `[auth]` or the
//! listener, the login back-off, and the limits (connections, topics, publish rate, CONNECT
//! timeout), each hit counted.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod transport_common;

use std::path::Path;
use std::time::{Duration, Instant};
use tern_broker::auth::PasswordHash;
use tern_broker::config::ListenerConfig;
use tern_broker::{Config, RunningBroker};
use tern_codec::{Packet, ProtocolVersion, QoS};
use tokio::net::TcpStream;
use transport_common::*;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn client(addr: std::net::SocketAddr, v: ProtocolVersion) -> Client<TcpStream> {
    Client::new(TcpStream::connect(addr).await.unwrap(), v)
}

fn passwd(dir: &Path) -> std::path::PathBuf {
    let alice = PasswordHash::generate(b"alice-pw").encode();
    let bob = PasswordHash::generate(b"bob-pw").encode();
    write(dir, "passwd", &format!("alice:{alice}\nbob:{bob}\n"))
}

async fn from_toml(toml: &str) -> RunningBroker {
    let c = Config::from_toml(toml, "tern.toml").unwrap();
    tern_broker::Broker::new(c).start().await.unwrap()
}

#[tokio::test]
async fn exposed_listener_refuses_anonymous_unless_allowed() {
    // 0.0.0.0 is not loopback: anonymous clients are refused by default.
    let (b, _) = start(vec![ListenerConfig::mqtt("0.0.0.0:0".parse().unwrap())]).await;
    let addr = ([127, 0, 0, 1], b.local_addrs()[0].port()).into();
    assert_eq!(client(addr, V5).await.connect("a", None, None).await, 0x87);
    assert_eq!(
        client(addr, V311).await.connect("a", None, None).await,
        0x05
    );
    // No password file: a user name proves nothing.
    let mut c = client(addr, V5).await;
    assert_eq!(c.connect("a", Some("alice"), Some("x")).await, 0x87);
    b.shutdown().await;

    let mut l = ListenerConfig::mqtt("0.0.0.0:0".parse().unwrap());
    l.allow_anonymous = Some(true);
    let (b, _) = start(vec![l]).await;
    let addr = ([127, 0, 0, 1], b.local_addrs()[0].port()).into();
    assert_eq!(client(addr, V5).await.connect("a", None, None).await, 0);
    b.shutdown().await;
}

#[tokio::test]
async fn auth_defaults_apply_to_every_listener_and_can_be_overridden() {
    let dir = temp_dir("auth-defaults");
    let pw = passwd(&dir);
    let acl = write(&dir, "acl", "user alice\ntopic readwrite alice/#\n");
    let b = from_toml(&format!(
        r#"
[auth]
password_file = "{pw}"
acl_file = "{acl}"
allow_anonymous = false
[[listener]]
bind = "127.0.0.1:0"
[[listener]]
bind = "127.0.0.1:0"
allow_anonymous = true
password_file = ""
acl_file = ""
"#,
        pw = pw.display(),
        acl = acl.display()
    ))
    .await;
    let strict = b.local_addrs()[0];
    let open = b.local_addrs()[1];
    assert_eq!(
        client(strict, V5).await.connect("x", None, None).await,
        0x87
    );
    assert_eq!(
        client(strict, V5)
            .await
            .connect("x", Some("alice"), Some("no"))
            .await,
        0x86
    );
    assert_eq!(
        client(strict, V311)
            .await
            .connect("x", Some("nobody"), Some("no"))
            .await,
        0x04
    );
    let mut alice = client(strict, V5).await;
    assert_eq!(
        alice
            .connect("alice", Some("alice"), Some("alice-pw"))
            .await,
        0
    );
    assert_eq!(alice.subscribe("alice/#").await, 0);
    assert_eq!(alice.subscribe("other/#").await, 0x87);

    let mut anon = client(open, V5).await;
    assert_eq!(anon.connect("anon", None, None).await, 0);
    assert_eq!(
        anon.subscribe("other/#").await,
        0,
        "no ACL on this listener"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn acl_checked_on_publish_and_on_delivery_of_retained_messages() {
    let dir = temp_dir("acl-publish");
    let pw = passwd(&dir);
    let acl = write(
        &dir,
        "acl",
        "user alice\ntopic readwrite a/#\ntopic deny a/secret\nuser bob\ntopic readwrite a/#\n",
    );
    let mut l = listener(None);
    l.password_file = Some(pw);
    l.acl_file = Some(acl);
    let (b, addr) = start(vec![l]).await;

    // v5: PUBACK 0x87 for a topic without write access.
    let mut alice = client(addr, V5).await;
    assert_eq!(
        alice
            .connect("alice", Some("alice"), Some("alice-pw"))
            .await,
        0
    );
    alice.publish("b/x", b"no", QoS::AtLeastOnce).await;
    match alice.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason_code.0, 0x87),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    // bob retains a message alice may not read; alice's wide subscription does not get it.
    let mut bob = client(addr, V311).await;
    assert_eq!(bob.connect("bob", Some("bob"), Some("bob-pw")).await, 0);
    bob.send(&Packet::Publish(tern_codec::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "a/secret".into(),
        packet_id: 0,
        payload: bytes::Bytes::from_static(b"hidden"),
        properties: Default::default(),
    }))
    .await;
    bob.send(&Packet::Publish(tern_codec::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "a/open".into(),
        packet_id: 0,
        payload: bytes::Bytes::from_static(b"visible"),
        properties: Default::default(),
    }))
    .await;
    assert!(bob.ping().await);
    assert_eq!(alice.subscribe("a/#").await, 0);
    assert_eq!(
        alice.next_publish().await,
        ("a/open".into(), b"visible".to_vec())
    );
    bob.publish("a/secret", b"live", QoS::AtMostOnce).await;
    bob.publish("a/open", b"live", QoS::AtMostOnce).await;
    assert_eq!(
        alice.next_publish().await,
        ("a/open".into(), b"live".to_vec())
    );
    b.shutdown().await;
}

#[tokio::test]
async fn failed_logins_slow_down_that_address_only() {
    let dir = temp_dir("backoff");
    let mut l = listener(None);
    l.password_file = Some(passwd(&dir));
    let (b, addr) = start(vec![l]).await;
    for _ in 0..4 {
        let mut c = client(addr, V5).await;
        assert_eq!(c.connect("x", Some("alice"), Some("wrong")).await, 0x86);
    }
    // Four failures: the next answer waits 100 ms doubled three times.
    let t = Instant::now();
    let mut c = client(addr, V5).await;
    assert_eq!(c.connect("x", Some("alice"), Some("alice-pw")).await, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    // Success clears it.
    let t = Instant::now();
    let mut c = client(addr, V5).await;
    assert_eq!(c.connect("y", Some("bob"), Some("bob-pw")).await, 0);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(b.handle().limit_stats().login_failures, 4);
    b.shutdown().await;
}

/// The next read ends the connection (EOF or reset) without an MQTT answer.
async fn closed_at_once(addr: std::net::SocketAddr) -> bool {
    let mut c = client(addr, V311).await;
    c.send(&Packet::PingReq).await;
    c.recv().await.is_none()
}

#[tokio::test]
async fn listener_and_global_max_connections() {
    let mut l = listener(None);
    l.max_connections = 2;
    let mut config = Config {
        listeners: vec![l, listener(None)],
        ..Default::default()
    };
    config.broker.max_connections = 3;
    let (b, _) = start_config(config).await;
    let (a1, a2) = (b.local_addrs()[0], b.local_addrs()[1]);
    let mut c1 = client(a1, V5).await;
    assert_eq!(c1.connect("c1", None, None).await, 0);
    let mut c2 = client(a1, V5).await;
    assert_eq!(c2.connect("c2", None, None).await, 0);
    assert!(closed_at_once(a1).await, "listener limit");
    let mut c3 = client(a2, V5).await;
    assert_eq!(c3.connect("c3", None, None).await, 0);
    assert!(closed_at_once(a2).await, "global limit");
    drop(c1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c4 = client(a1, V5).await;
    assert_eq!(c4.connect("c4", None, None).await, 0, "a slot freed up");
    assert_eq!(b.handle().limit_stats().refused_max_connections, 2);
    b.shutdown().await;
}

#[tokio::test]
async fn topics_over_the_length_or_level_limits_disconnect() {
    let mut config = Config {
        listeners: vec![listener(None)],
        ..Default::default()
    };
    config.broker.max_topic_length = 20;
    config.broker.max_topic_levels = 3;
    let (b, addr) = start_config(config).await;
    let mut c = client(addr, V5).await;
    assert_eq!(c.connect("c", None, None).await, 0);
    c.publish("a/b/c", b"ok", QoS::AtMostOnce).await;
    assert!(c.ping().await);
    c.publish("a/b/c/d", b"deep", QoS::AtMostOnce).await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code.0, 0x90),
        other => panic!("expected DISCONNECT 0x90, got {other:?}"),
    }
    let mut c = client(addr, V5).await;
    assert_eq!(c.connect("c", None, None).await, 0);
    c.send(&Packet::Subscribe(tern_codec::Subscribe {
        packet_id: 1,
        filters: vec![("x".repeat(21).into(), Default::default())],
        properties: Default::default(),
    }))
    .await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code.0, 0x8F),
        other => panic!("expected DISCONNECT 0x8F, got {other:?}"),
    }
    assert_eq!(b.handle().limit_stats().topic_limit, 2);
    b.shutdown().await;
}

#[tokio::test]
async fn publish_rate_limit_slows_the_client_down() {
    let mut config = Config {
        listeners: vec![listener(None)],
        ..Default::default()
    };
    config.broker.max_publish_rate = 20;
    let (b, addr) = start_config(config).await;
    let mut sub = client(addr, V5).await;
    assert_eq!(sub.connect("sub", None, None).await, 0);
    assert_eq!(sub.subscribe("r").await, 0);
    let mut p = client(addr, V5).await;
    assert_eq!(p.connect("p", None, None).await, 0);
    let t = Instant::now();
    for _ in 0..40 {
        p.publish("r", b"x", QoS::AtMostOnce).await;
    }
    for _ in 0..40 {
        sub.next_publish().await;
    }
    // 20 at once (the burst), then 20 more at 20 per second: about one second; nothing lost.
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(b.handle().limit_stats().publish_rate_limited, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_closes_and_counts() {
    let mut config = Config {
        listeners: vec![listener(None)],
        ..Default::default()
    };
    config.broker.connect_timeout = 1;
    let (b, addr) = start_config(config).await;
    let mut c = client(addr, V311).await;
    let t = Instant::now();
    assert!(c.recv().await.is_none());
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(b.handle().limit_stats().connect_timeouts, 1);
    b.shutdown().await;
}

#[test]
fn issue_example_config_parses() {
    let c = Config::from_toml(
        r#"
[auth]                            # defaults for every listener; a listener may override each key
password_file = "passwd"          # mosquitto_passwd format
acl_file = "acl"                  # Mosquitto acl_file format
[[listener]]
bind = "0.0.0.0:8883"
protocol = "mqtt"                 # or "ws"
allow_anonymous = false
max_connections = 10000
tls = { cert = "server.pem", key = "server.key", client_ca = "ca.pem", require_client_cert = true, use_identity_as_username = true }
[[listener]]
bind = "0.0.0.0:8080"
protocol = "ws"
path = "/mqtt"
"#,
        "tern.toml",
    )
    .unwrap();
    let l = &c.listeners[0];
    let tls = l.tls.as_ref().unwrap();
    assert!(tls.require_client_cert && tls.use_identity_as_username);
    assert_eq!(l.max_connections, 10000);
    assert_eq!(l.password_file(&c.auth), Some(Path::new("passwd")));
    assert!(!c.listeners[1].allows_anonymous(&c.auth));
    assert_eq!(c.listeners[1].ws_path(), "/mqtt");
}

#[test]
fn config_errors_name_the_listener_and_key() {
    let e = |t: &str| Config::from_toml(t, "t.toml").unwrap_err().to_string();
    let msg = e("[[listener]]\nbind = \"127.0.0.1:1\"\npath = \"/x\"\n");
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("`path`"),
        "{msg}"
    );
    let msg = e("[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\npath = \"x\"\n");
    assert!(msg.contains("must start with `/`"), "{msg}");
    let msg = e(
        "[[listener]]\nbind = \"127.0.0.1:1\"\ntls = { cert = \"c\", key = \"k\", require_client_cert = true }\n",
    );
    assert!(
        msg.contains("`require_client_cert` needs `client_ca`"),
        "{msg}"
    );
    let msg = e("[[listener]]\nbind = \"127.0.0.1:1\"\ntls = { cert = \"c\" }\n");
    assert!(msg.contains("t.toml:3:") && msg.contains("key"), "{msg}");
    let msg = e(
        "[[listener]]\nbind = \"127.0.0.1:1\"\ntls = { cert = \"c\", key = \"k\", cafile = \"x\" }\n",
    );
    assert!(msg.contains("cafile"), "{msg}");
    let msg = e("[auth]\npassword = \"x\"\n");
    assert!(msg.contains("password"), "{msg}");
}

#[tokio::test]
async fn missing_password_or_acl_file_stops_the_broker() {
    let mut l = listener(None);
    l.password_file = Some("/nonexistent/passwd".into());
    let e = tern_broker::Broker::new(Config {
        listeners: vec![l],
        ..Default::default()
    })
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/passwd"), "{e}");
    let mut l = listener(None);
    l.acl_file = Some("/nonexistent/acl".into());
    let e = tern_broker::Broker::new(Config {
        listeners: vec![l],
        ..Default::default()
    })
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/acl"), "{e}");
}

/// A message queued for an offline session is checked again when it is delivered.
#[tokio::test]
async fn queued_messages_are_checked_against_the_acl_on_delivery() {
    let dir = temp_dir("acl-queued");
    let acl = write(
        &dir,
        "acl",
        "user alice\ntopic read a/#\ntopic deny a/secret\nuser bob\ntopic write a/#\n",
    );
    let mut l = listener(None);
    l.password_file = Some(passwd(&dir));
    l.acl_file = Some(acl);
    let (b, addr) = start(vec![l]).await;
    let persistent = |clean_start| {
        Packet::Connect(Box::new(tern_codec::Connect {
            protocol: V5,
            clean_start,
            keep_alive: 30,
            client_id: "alice".into(),
            will: None,
            username: Some("alice".into()),
            password: Some(bytes::Bytes::from_static(b"alice-pw")),
            properties: tern_codec::ConnectProperties {
                session_expiry_interval: Some(600),
                ..Default::default()
            },
        }))
    };
    let mut alice = client(addr, V5).await;
    alice.send(&persistent(true)).await;
    assert!(matches!(alice.recv().await, Some(Packet::ConnAck(c)) if c.reason_code.0 == 0));
    alice
        .send(&Packet::Subscribe(tern_codec::Subscribe {
            packet_id: 1,
            filters: vec![(
                "a/#".into(),
                tern_codec::SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }))
        .await;
    assert!(matches!(alice.recv().await, Some(Packet::SubAck(_))));
    alice.send(&Packet::Disconnect(Default::default())).await;
    assert!(alice.recv().await.is_none());

    let mut bob = client(addr, V5).await;
    assert_eq!(bob.connect("bob", Some("bob"), Some("bob-pw")).await, 0);
    for topic in ["a/secret", "a/open"] {
        bob.publish(topic, b"queued", QoS::AtLeastOnce).await;
        assert!(matches!(bob.recv().await, Some(Packet::PubAck(a)) if a.reason_code.0 == 0));
    }

    let mut alice = client(addr, V5).await;
    alice.send(&persistent(false)).await;
    assert!(matches!(alice.recv().await, Some(Packet::ConnAck(c)) if c.session_present));
    assert_eq!(
        alice.next_publish().await,
        ("a/open".into(), b"queued".to_vec())
    );
    assert!(alice.ping().await, "nothing else was delivered");
    b.shutdown().await;
}
