//! WebSocket listeners against a tokio-tungstenite client: the handshake (path, `mqtt`
//! subprotocol), MQTT packets across and within binary frames, text frames refused, and `wss://`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod transport_common;

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tern_broker::config::ListenerConfig;
use tern_broker::transport::ws::WsIo;
use tern_codec::{Packet, ProtocolVersion, QoS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use transport_common::*;

fn ws_listener() -> ListenerConfig {
    ListenerConfig::ws("127.0.0.1:0".parse().unwrap())
}

async fn ws_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    subprotocol: Option<&str>,
) -> Result<WebSocketStream<S>, WsError> {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, stream).await?;
    if subprotocol.is_some() {
        assert_eq!(
            resp.headers().get("sec-websocket-protocol").unwrap(),
            "mqtt",
            "the broker answers with the subprotocol"
        );
    }
    Ok(ws)
}

async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    subprotocol: Option<&str>,
) -> Result<WebSocketStream<tokio::net::TcpStream>, WsError> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    ws_handshake(tcp, &format!("ws://{addr}{path}"), subprotocol).await
}

fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    tern_codec::encode(p, v, &mut b).unwrap();
    b.to_vec()
}

fn connect_packet(v: ProtocolVersion, id: &str) -> Packet {
    Packet::Connect(Box::new(tern_codec::Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 30,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }))
}

#[tokio::test]
async fn ws_clients_publish_and_receive_with_tcp_clients() {
    let (b, _) = start(vec![ws_listener(), listener(None)]).await;
    let ws_addr = b.local_addrs()[0];
    let tcp_addr = b.local_addrs()[1];
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let ws = ws_connect(ws_addr, "/mqtt", Some("mqtt")).await.unwrap();
        let mut sub = Client::new(WsIo::new(ws), v);
        assert_eq!(sub.connect("ws-sub", None, None).await, 0);
        assert_eq!(sub.subscribe("a/#").await, 0);
        let tcp = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
        let mut publ = Client::new(tcp, ProtocolVersion::V5);
        assert_eq!(publ.connect("tcp-pub", None, None).await, 0);
        publ.publish("a/b", b"to the browser", QoS::AtLeastOnce)
            .await;
        assert_eq!(
            sub.next_publish().await,
            ("a/b".into(), b"to the browser".to_vec())
        );
        sub.publish("a/c", b"from the browser", QoS::AtMostOnce)
            .await;
        assert_eq!(
            sub.next_publish().await,
            ("a/c".into(), b"from the browser".to_vec())
        );
    }
    b.shutdown().await;
}

#[tokio::test]
async fn wrong_path_or_missing_subprotocol_is_refused() {
    let (b, addr) = start(vec![ws_listener()]).await;
    match ws_connect(addr, "/other", Some("mqtt")).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
    match ws_connect(addr, "/mqtt", None).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    match ws_connect(addr, "/mqtt", Some("chat, superchat")).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    // Several offers, `mqtt` among them.
    assert!(ws_connect(addr, "/mqtt", Some("chat, mqtt")).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(b.handle().limit_stats().ws_handshake_failures, 3);
    b.shutdown().await;
}

#[tokio::test]
async fn configured_path_is_served() {
    let mut l = ws_listener();
    l.path = Some("/broker/ws".into());
    let (b, addr) = start(vec![l]).await;
    assert!(ws_connect(addr, "/mqtt", Some("mqtt")).await.is_err());
    let ws = ws_connect(addr, "/broker/ws", Some("mqtt")).await.unwrap();
    let mut c = Client::new(WsIo::new(ws), ProtocolVersion::V5);
    assert_eq!(c.connect("p", None, None).await, 0);
    b.shutdown().await;
}

/// [MQTT-6.0.0-2]: a packet may span frames; several packets may share one frame.
#[tokio::test]
async fn packets_span_frames_and_share_frames() {
    let (b, addr) = start(vec![ws_listener()]).await;
    let mut ws = ws_connect(addr, "/mqtt", Some("mqtt")).await.unwrap();
    let v = ProtocolVersion::V311;
    let connect = encode(&connect_packet(v, "frames"), v);
    let (a, rest) = connect.split_at(1);
    let (bb, c) = rest.split_at(5);
    for part in [a, bb, c] {
        ws.send(Message::Binary(bytes::Bytes::copy_from_slice(part)))
            .await
            .unwrap();
    }
    let mut two = encode(&Packet::PingReq, v);
    two.extend(encode(&Packet::PingReq, v));
    ws.send(Message::Binary(two.into())).await.unwrap();
    let mut c = Client::new(WsIo::new(ws), v);
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    b.shutdown().await;
}

/// [MQTT-6.0.0-1]: a text frame closes the connection.
#[tokio::test]
async fn text_frame_closes_the_connection() {
    let (b, addr) = start(vec![ws_listener()]).await;
    let mut ws = ws_connect(addr, "/mqtt", Some("mqtt")).await.unwrap();
    let v = ProtocolVersion::V311;
    ws.send(Message::Binary(
        encode(&connect_packet(v, "text"), v).into(),
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(matches!(first, Message::Binary(_)), "CONNACK");
    ws.send(Message::Text("hello".into())).await.unwrap();
    let end = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection closed");
    b.shutdown().await;
}

#[tokio::test]
async fn wss_publish_and_receive() {
    let pki = Pki::new("wss");
    let mut l = ws_listener();
    l.tls = Some(pki.tls(false));
    let (b, addr) = start(vec![l]).await;
    let cfg = client_config(&pki.ca.der(), None, BOTH);
    let tls = tls_connect(addr, cfg, "localhost").await.unwrap();
    let ws = ws_handshake(
        tls,
        &format!("wss://localhost:{}/mqtt", addr.port()),
        Some("mqtt"),
    )
    .await
    .unwrap();
    let mut c = Client::new(WsIo::new(ws), ProtocolVersion::V5);
    assert_eq!(c.connect("wss", None, None).await, 0);
    assert_eq!(c.subscribe("s/#").await, 0);
    c.publish("s/1", b"secure", QoS::AtMostOnce).await;
    assert_eq!(c.next_publish().await, ("s/1".into(), b"secure".to_vec()));
    b.shutdown().await;
}
