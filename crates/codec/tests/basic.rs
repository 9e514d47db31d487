//! Basic round trips and byte-exact vectors for the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use tern_codec::*;

const MAX: usize = 1 << 20;

fn roundtrip(p: &Packet, v: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    encode(p, v, &mut buf).unwrap();
    assert_eq!(buf.len(), encoded_len(p, v).unwrap());
    let bytes = buf.clone().freeze();
    let got = decode(&mut buf, v, MAX).unwrap().unwrap();
    assert_eq!(&got, p);
    assert!(buf.is_empty());
    bytes
}

fn publish(qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id: id,
        topic: "a/b".into(),
        payload: Bytes::from_static(b"hello"),
        ..Default::default()
    })
}

#[test]
fn publish_qos1_v311_bytes() {
    let bytes = roundtrip(&publish(QoS::AtLeastOnce, 10), ProtocolVersion::V311);
    assert_eq!(&bytes[..], b"\x32\x0c\x00\x03a/b\x00\x0ahello");
}

#[test]
fn publish_qos0_v5_bytes() {
    let bytes = roundtrip(&publish(QoS::AtMostOnce, 0), ProtocolVersion::V5);
    assert_eq!(&bytes[..], b"\x30\x0b\x00\x03a/b\x00hello");
}

#[test]
fn connect_all_versions() {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let c = Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 60,
            client_id: "c1".into(),
            will: Some(LastWill {
                topic: "w".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some("u".into()),
            password: Some(Bytes::from_static(b"p")),
            properties: ConnectProperties::default(),
        }));
        // CONNECT is decoded by its own level whatever version the decoder is given.
        let mut buf = BytesMut::new();
        encode(&c, ProtocolVersion::V5, &mut buf).unwrap();
        let got = decode(&mut buf, ProtocolVersion::V311, MAX)
            .unwrap()
            .unwrap();
        assert_eq!(got, c);
    }
}

#[test]
fn acks_and_others_roundtrip() {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        for p in [
            Packet::PubAck(PubAck::new(1)),
            Packet::PubRec(PubRec::new(2)),
            Packet::PubRel(PubRel::new(3)),
            Packet::PubComp(PubComp::new(4)),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect(Disconnect::default()),
            Packet::ConnAck(ConnAck::default()),
            Packet::Subscribe(Subscribe {
                packet_id: 5,
                filters: vec![("a/+".into(), SubscriptionOptions::default())],
                properties: Default::default(),
            }),
            Packet::SubAck(SubAck {
                packet_id: 5,
                reason_codes: vec![ReasonCode::GRANTED_QOS_1],
                properties: Default::default(),
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 6,
                filters: vec!["a/#".into()],
                properties: Default::default(),
            }),
            Packet::UnsubAck(UnsubAck {
                packet_id: 6,
                ..Default::default()
            }),
        ] {
            roundtrip(&p, v);
        }
    }
    roundtrip(&Packet::Auth(Auth::default()), ProtocolVersion::V5);
}

#[test]
fn incomplete_returns_none_and_leaves_buffer() {
    let mut full = BytesMut::new();
    encode(
        &publish(QoS::AtLeastOnce, 1),
        ProtocolVersion::V311,
        &mut full,
    )
    .unwrap();
    for n in 0..full.len() {
        let mut part = BytesMut::from(&full[..n]);
        assert_eq!(decode(&mut part, ProtocolVersion::V311, MAX), Ok(None));
        assert_eq!(part.len(), n);
    }
}

#[test]
fn too_large_detected_from_fixed_header() {
    let mut buf = BytesMut::from(&b"\x30\xff\x7f"[..]);
    assert_eq!(
        decode(&mut buf, ProtocolVersion::V311, 1000),
        Err(DecodeError::PacketTooLarge {
            size: 3 + 16383,
            max: 1000
        })
    );
}

/// A v5 PUBLISH keeps the order its properties had on the wire (Mosquitto sends Message Expiry
/// last), for tools that print them as received; the encoder writes its own order.
#[test]
fn publish_v5_records_property_wire_order() {
    let props = [
        0x03, 0, 1, b'c', // content type "c"
        0x26, 0, 1, b'k', 0, 1, b'v', // user property k=v
        0x09, 0, 1, 0x07, // correlation data
        0x02, 0, 0, 0, 60, // message expiry 60
    ];
    let mut body = vec![0, 1, b't', 0, 1, props.len() as u8];
    body.extend_from_slice(&props);
    body.extend_from_slice(b"hi");
    let mut wire = BytesMut::from(&[0x32, body.len() as u8][..]);
    wire.extend_from_slice(&body);
    let Packet::Publish(p) = decode(&mut wire, ProtocolVersion::V5, MAX)
        .unwrap()
        .unwrap()
    else {
        panic!("PUBLISH expected");
    };
    use PropertyId::*;
    let order: Vec<_> = p.properties.wire_order.ids().collect();
    assert_eq!(
        order,
        [
            ContentType,
            UserProperty,
            CorrelationData,
            MessageExpiryInterval
        ]
    );
    assert_eq!(p.properties.message_expiry_interval, Some(60));
    assert_eq!(&p.payload[..], b"hi");
    // Built by hand, no order is recorded.
    assert!(PublishProperties::default().wire_order.is_empty());
}
