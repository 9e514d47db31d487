//! Shared helpers of the integration tests: a broker on an ephemeral port, rumqttc clients
//! whose events arrive on a channel, and a raw client speaking bytes through tern-codec.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;
use tern_broker::config::ListenerConfig;
use tern_broker::{Broker, Config, RunningBroker};
use tern_codec::{Packet, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const T: Duration = Duration::from_secs(5);

pub fn config() -> Config {
    Config {
        listeners: vec![ListenerConfig::mqtt("127.0.0.1:0".parse().unwrap())],
        ..Default::default()
    }
}

pub async fn start() -> (RunningBroker, SocketAddr) {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> (RunningBroker, SocketAddr) {
    let b = Broker::new(config).start().await.expect("broker starts");
    let addr = b.local_addrs()[0];
    (b, addr)
}

/// A rumqttc 3.1.1 client whose events come through `rx`; the event loop stops at the first error.
pub struct V4 {
    pub client: rumqttc::AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn v4_opts(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

pub fn v4(opts: rumqttc::MqttOptions) -> V4 {
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(e) => {
                    if tx.send(Ok(e)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    V4 { client, rx, task }
}

impl V4 {
    pub async fn connack(&mut self) -> rumqttc::ConnAck {
        loop {
            match timeout(T, self.rx.recv()).await.expect("connack in time") {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)))) => return c,
                Some(Ok(_)) => {}
                other => panic!("no CONNACK: {other:?}"),
            }
        }
    }

    pub async fn suback(&mut self) -> rumqttc::SubAck {
        loop {
            match timeout(T, self.rx.recv()).await.expect("suback in time") {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(s)))) => return s,
                Some(Ok(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    pub async fn publish(&mut self) -> rumqttc::Publish {
        loop {
            match timeout(T, self.rx.recv()).await.expect("publish in time") {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => return p,
                Some(Ok(_)) => {}
                other => panic!("no PUBLISH: {other:?}"),
            }
        }
    }

    /// Waits for an outgoing ack flow to complete (PUBACK or PUBCOMP received).
    pub async fn acked(&mut self) {
        loop {
            match timeout(T, self.rx.recv()).await.expect("ack in time") {
                Some(Ok(rumqttc::Event::Incoming(
                    rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_),
                ))) => return,
                Some(Ok(_)) => {}
                other => panic!("no ack: {other:?}"),
            }
        }
    }

    pub async fn no_publish(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))))) => {
                    panic!("unexpected PUBLISH {p:?}")
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
            }
        }
    }

    /// Drops the network connection without DISCONNECT.
    pub fn kill(self) {
        self.task.abort();
    }
}

pub type V5Event = Result<rumqttc::v5::Event, String>;

/// A rumqttc 5.0 client.
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    pub rx: mpsc::UnboundedReceiver<V5Event>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn v5_opts(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

pub fn v5(opts: rumqttc::v5::MqttOptions) -> V5 {
    let (client, mut el) = rumqttc::v5::AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(e) => {
                    if tx.send(Ok(e)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    V5 { client, rx, task }
}

use rumqttc::v5::mqttbytes::v5::Packet as P5;

impl V5 {
    pub async fn next_incoming(&mut self) -> Result<P5, String> {
        loop {
            match timeout(T, self.rx.recv()).await.expect("event in time") {
                Some(Ok(rumqttc::v5::Event::Incoming(p))) => return Ok(p),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err("event loop gone".into()),
            }
        }
    }

    pub async fn connack(&mut self) -> rumqttc::v5::mqttbytes::v5::ConnAck {
        loop {
            match self.next_incoming().await {
                Ok(P5::ConnAck(c)) => return c,
                Ok(_) => {}
                Err(e) => panic!("no CONNACK: {e}"),
            }
        }
    }

    pub async fn suback(&mut self) -> rumqttc::v5::mqttbytes::v5::SubAck {
        loop {
            match self.next_incoming().await {
                Ok(P5::SubAck(s)) => return s,
                Ok(_) => {}
                Err(e) => panic!("no SUBACK: {e}"),
            }
        }
    }

    pub async fn publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            match self.next_incoming().await {
                Ok(P5::Publish(p)) => return p,
                Ok(_) => {}
                Err(e) => panic!("no PUBLISH: {e}"),
            }
        }
    }

    /// The reason code of the server's DISCONNECT, as rumqttc names it (it reports the packet
    /// as an error of its event loop).
    pub async fn disconnect_reason(&mut self) -> String {
        loop {
            match self.next_incoming().await {
                Ok(P5::Disconnect(d)) => return format!("{:?}", d.reason_code),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    pub async fn no_publish(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(P5::Publish(p))))) => {
                    panic!("unexpected PUBLISH {p:?}")
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
            }
        }
    }

    pub fn kill(self) {
        self.task.abort();
    }
}

/// A client that speaks raw packets through tern-codec, for what rumqttc will not send.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: timeout(T, TcpStream::connect(addr)).await.unwrap().unwrap(),
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// Subscribes to one filter and expects the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: tern_codec::QoS) {
        self.send(&subscribe_packet(filter, qos)).await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        tern_codec::encode(p, self.version, &mut b).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.unwrap();
    }

    /// The next packet, or `None` once the broker has closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = tern_codec::decode(&mut self.buf, self.version, 1 << 24).unwrap() {
                return Some(p);
            }
            let n = timeout(T, self.stream.read_buf(&mut self.buf))
                .await
                .expect("broker answers or closes in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until the broker closes the connection; returns what it sent before.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut v = Vec::new();
        while let Some(p) = self.recv().await {
            v.push(p);
        }
        v
    }
}

/// A SUBSCRIBE (packet identifier 1) to one filter at `qos`.
pub fn subscribe_packet(filter: &str, qos: tern_codec::QoS) -> Packet {
    Packet::Subscribe(tern_codec::Subscribe {
        packet_id: 1,
        filters: vec![(
            filter.into(),
            tern_codec::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: Default::default(),
    })
}

pub fn connect_packet(v: ProtocolVersion, id: &str, keep_alive: u16) -> Packet {
    Packet::Connect(Box::new(tern_codec::Connect {
        protocol: v,
        clean_start: true,
        keep_alive,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }))
}
