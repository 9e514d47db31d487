//! TLS listeners against a rustls client, with certificates made in the test: server
//! authentication, client certificates (mTLS) and what is refused, `use_identity_as_username`
//! feeding the ACL, and certificate reload without dropping connections.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod transport_common;

use std::time::Duration;
use tern_codec::{ProtocolVersion, QoS};
use transport_common::*;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn tls13_and_tls12_clients_publish_and_receive() {
    let pki = Pki::new("tls-basic");
    let (b, addr) = start(vec![listener(Some(pki.tls(false)))]).await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let cfg = client_config(&pki.ca.der(), None, versions);
        let mut sub = Client::new(
            tls_connect(addr, cfg.clone(), "localhost").await.unwrap(),
            V5,
        );
        assert_eq!(sub.connect("sub", None, None).await, success());
        assert_eq!(sub.subscribe("t/#").await, 0);
        let mut publ = Client::new(tls_connect(addr, cfg, "127.0.0.1").await.unwrap(), V311);
        assert_eq!(publ.connect("pub", None, None).await, success());
        publ.publish("t/1", b"over tls", QoS::AtMostOnce).await;
        assert_eq!(
            sub.next_publish().await,
            ("t/1".into(), b"over tls".to_vec())
        );
    }
    b.shutdown().await;
}

#[tokio::test]
async fn plain_mqtt_on_a_tls_listener_is_refused_and_counted() {
    let pki = Pki::new("tls-plain");
    let (b, addr) = start(vec![listener(Some(pki.tls(false)))]).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // CONNECT of a 3.1.1 client, in clear.
    tcp.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(T, tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    // At most a TLS alert record (content type 21), never a CONNACK (0x20).
    assert!(answer.first().is_none_or(|b| *b == 21), "{answer:?}");
    assert_eq!(b.handle().limit_stats().tls_handshake_failures, 1);
    b.shutdown().await;
}

#[tokio::test]
async fn hostname_mismatch_is_refused_by_the_client() {
    let pki = Pki::new("tls-hostname");
    let (b, addr) = start(vec![listener(Some(pki.tls(false)))]).await;
    let cfg = client_config(&pki.ca.der(), None, BOTH);
    let e = tls_connect(addr, cfg, "broker.example.com")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    b.shutdown().await;
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused_by_the_client() {
    let pki = Pki::new("tls-other-ca");
    let (b, addr) = start(vec![listener(Some(pki.tls(false)))]).await;
    let other = Ca::new("Someone else");
    let cfg = client_config(&other.der(), None, BOTH);
    let e = tls_connect(addr, cfg, "localhost").await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    b.shutdown().await;
}

/// The server side of a refused handshake: the client may only notice at its first read.
async fn refused(addr: std::net::SocketAddr, cfg: std::sync::Arc<rustls::ClientConfig>) {
    match tls_connect(addr, cfg, "localhost").await {
        Err(_) => {}
        Ok(s) => {
            let mut c = Client::new(s, V311);
            c.send(&tern_codec::Packet::Connect(Box::new(
                tern_codec::Connect {
                    protocol: V311,
                    clean_start: true,
                    keep_alive: 30,
                    client_id: "x".into(),
                    will: None,
                    username: None,
                    password: None,
                    properties: Default::default(),
                },
            )))
            .await;
            assert!(
                c.recv().await.is_none(),
                "TLS 1.3 refusal arrives at the first read"
            );
        }
    }
}

#[tokio::test]
async fn mtls_requires_a_valid_client_certificate() {
    let pki = Pki::new("mtls");
    let (b, addr) = start(vec![listener(Some(pki.tls(true)))]).await;
    let ca = pki.ca.der();

    // A certificate from the right CA gets in.
    let alice = pki.ca.client("alice");
    let ok = tls_connect(addr, client_config(&ca, Some(&alice), BOTH), "localhost");
    let mut c = Client::new(ok.await.unwrap(), V5);
    assert_eq!(c.connect("alice", None, None).await, success());

    // No certificate, one from another CA, an expired one: refused in the handshake.
    refused(addr, client_config(&ca, None, BOTH)).await;
    let mallory = Ca::new("Tern test CA").client("alice");
    refused(addr, client_config(&ca, Some(&mallory), BOTH)).await;
    let expired = pki.ca.expired_client("alice");
    refused(addr, client_config(&ca, Some(&expired), BOTH)).await;
    // TLS 1.2 too.
    let tls12 = &[&rustls::version::TLS12][..];
    refused(addr, client_config(&ca, None, tls12)).await;

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.handle().limit_stats().tls_handshake_failures, 4);
    assert!(c.ping().await, "the good client is unaffected");
    b.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificate_falls_back_to_password_rules() {
    let pki = Pki::new("mtls-optional");
    let mut tls = pki.tls(true);
    tls.require_client_cert = false;
    let (b, addr) = start(vec![listener(Some(tls))]).await;
    let ca = pki.ca.der();
    let s = tls_connect(addr, client_config(&ca, None, BOTH), "localhost").await;
    let mut c = Client::new(s.unwrap(), V5);
    assert_eq!(
        c.connect("anon", None, None).await,
        success(),
        "loopback: anonymous allowed"
    );
    // A certificate that is presented must still be valid.
    let expired = pki.ca.expired_client("bob");
    refused(addr, client_config(&ca, Some(&expired), BOTH)).await;
    b.shutdown().await;
}

#[tokio::test]
async fn use_identity_as_username_feeds_the_acl() {
    let pki = Pki::new("mtls-identity");
    let acl = write(
        &pki.dir,
        "acl",
        "user alice\ntopic readwrite alice/#\nuser dev.example\ntopic read dev/#\n",
    );
    let mut l = listener(Some(tern_broker::config::TlsConfig {
        use_identity_as_username: true,
        ..pki.tls(true)
    }));
    l.acl_file = Some(acl);
    // Exposed-style policy: anonymous refused, and no password file; the certificate is the login.
    l.allow_anonymous = Some(false);
    let (b, addr) = start(vec![l]).await;
    let ca = pki.ca.der();

    let alice = pki.ca.client("alice");
    let s = tls_connect(addr, client_config(&ca, Some(&alice), BOTH), "localhost").await;
    let mut c = Client::new(s.unwrap(), V5);
    // The CONNECT's user name is replaced by the certificate's CN.
    assert_eq!(
        c.connect("c1", Some("bob"), Some("whatever")).await,
        success()
    );
    assert_eq!(c.subscribe("alice/#").await, 0x00);
    assert_eq!(c.subscribe("bob/#").await, 0x87, "v5 SUBACK Not authorized");
    c.publish("alice/x", b"mine", QoS::AtMostOnce).await;
    assert_eq!(c.next_publish().await, ("alice/x".into(), b"mine".to_vec()));

    // 3.1.1: SUBACK 0x80.
    let s = tls_connect(addr, client_config(&ca, Some(&alice), BOTH), "localhost").await;
    let mut c3 = Client::new(s.unwrap(), V311);
    assert_eq!(c3.connect("c3", None, None).await, 0);
    assert_eq!(c3.subscribe("bob/#").await, 0x80);

    // A certificate with no CN: its DNS SAN is the user name.
    let dev = pki.ca.client_san_only("dev.example");
    let s = tls_connect(addr, client_config(&ca, Some(&dev), BOTH), "localhost").await;
    let mut d = Client::new(s.unwrap(), V5);
    assert_eq!(d.connect("d", None, None).await, success());
    assert_eq!(d.subscribe("dev/#").await, 0x00);
    assert_eq!(d.subscribe("alice/#").await, 0x87);
    b.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_certificates_without_dropping_connections() {
    let pki = Pki::new("tls-reload");
    let (b, addr) = start(vec![listener(Some(pki.tls(false)))]).await;
    let old_cfg = client_config(&pki.ca.der(), None, BOTH);
    let mut old = Client::new(
        tls_connect(addr, old_cfg.clone(), "localhost")
            .await
            .unwrap(),
        V5,
    );
    assert_eq!(old.connect("old", None, None).await, success());

    // New CA, new server certificate, same file names; then SIGHUP's reload.
    let ca2 = Ca::new("Tern test CA 2");
    let s2 = ca2.server();
    write(&pki.dir, "server.pem", &s2.cert_pem);
    write(&pki.dir, "server.key", &s2.key_pem);
    assert_eq!(b.handle().reload(), 0);

    assert!(old.ping().await, "established connection kept");
    let new_cfg = client_config(&ca2.der(), None, BOTH);
    let mut new = Client::new(tls_connect(addr, new_cfg, "localhost").await.unwrap(), V5);
    assert_eq!(new.connect("new", None, None).await, success());
    assert!(
        tls_connect(addr, old_cfg, "localhost").await.is_err(),
        "old CA no longer matches"
    );

    // A broken file is reported and the current certificates stay.
    write(&pki.dir, "server.key", "not a key");
    assert_eq!(b.handle().reload(), 1);
    let cfg = client_config(&ca2.der(), None, BOTH);
    assert!(tls_connect(addr, cfg, "localhost").await.is_ok());
    b.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_files_stop_the_broker_naming_the_file() {
    let pki = Pki::new("tls-errors");
    let mut tls = pki.tls(false);
    tls.cert = pki.dir.join("nope.pem");
    let e = tern_broker::Broker::new(tern_broker::Config {
        listeners: vec![listener(Some(tls))],
        ..Default::default()
    })
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope.pem") && e.contains("cert"), "{e}");

    let mut tls = pki.tls(false);
    tls.key = write(&pki.dir, "empty.key", "");
    let e = tern_broker::Broker::new(tern_broker::Config {
        listeners: vec![listener(Some(tls))],
        ..Default::default()
    })
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty.key") && e.contains("key"), "{e}");

    // A key that is not the certificate's.
    let mut tls = pki.tls(false);
    tls.key = write(&pki.dir, "other.key", &pki.ca.server().key_pem);
    let e = tern_broker::Broker::new(tern_broker::Config {
        listeners: vec![listener(Some(tls))],
        ..Default::default()
    })
    .start()
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("other.key"), "{e}");
}

/// Only `alice` may use `x`: records what the broker says the user name is.
struct OnlyAlice;

impl tern_broker::auth::Authorizer for OnlyAlice {
    fn authorize(
        &self,
        who: &tern_broker::auth::ClientIdentity,
        _access: tern_broker::auth::Access,
        _topic: &str,
    ) -> bool {
        who.username.as_deref() == Some("alice")
    }
}

#[tokio::test]
async fn custom_authorizer_sees_the_certificate_identity_not_the_connect_user_name() {
    let pki = Pki::new("mtls-custom-authz");
    let l = listener(Some(tern_broker::config::TlsConfig {
        use_identity_as_username: true,
        ..pki.tls(true)
    }));
    let b = tern_broker::Broker::new(tern_broker::Config {
        listeners: vec![l],
        ..Default::default()
    })
    .with_authorizer(std::sync::Arc::new(OnlyAlice))
    .start()
    .await
    .unwrap();
    let addr = b.local_addrs()[0];
    let ca = pki.ca.der();
    let bob = pki.ca.client("bob");
    let s = tls_connect(addr, client_config(&ca, Some(&bob), BOTH), "localhost").await;
    let mut c = Client::new(s.unwrap(), V5);
    assert_eq!(c.connect("c", Some("alice"), None).await, success());
    assert_eq!(
        c.subscribe("x").await,
        0x87,
        "bob's certificate, whatever CONNECT says"
    );
    let alice = pki.ca.client("alice");
    let s = tls_connect(addr, client_config(&ca, Some(&alice), BOTH), "localhost").await;
    let mut c = Client::new(s.unwrap(), V5);
    assert_eq!(c.connect("d", Some("mallory"), None).await, success());
    assert_eq!(c.subscribe("x").await, 0x00);
    b.shutdown().await;
}
