//! Decode and encode throughput of Tern's codec next to rumqttc 0.25's on the same packets:
//! CONNECT, QoS 1 PUBLISH with 64 B and 1 KiB payloads, and SUBSCRIBE, in 3.1.1 and 5.0.
//!
//! Decoding runs over a buffer holding `BATCH` copies of the packet (built outside the timing),
//! as a connection's read buffer would; encoding writes into a buffer cleared each time.
//! Run: `cargo bench -p tern-codec --bench codec -- --measurement-time 3`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rumqttc::mqttbytes::v4 as r4;
use rumqttc::v5::mqttbytes::v5 as r5;
use std::hint::black_box;
use tern_codec::*;

const BATCH: usize = 1000;
const TOPIC: &str = "sensors/building-1/floor-2/temperature";

fn tern_packets(v: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let publish = |size: usize| {
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: ByteStr::from_static(TOPIC),
            packet_id: 42,
            payload: Bytes::from(vec![0xA5u8; size]),
            ..Default::default()
        })
    };
    vec![
        (
            "connect",
            Packet::Connect(Box::new(Connect {
                protocol: v,
                clean_start: true,
                keep_alive: 60,
                client_id: ByteStr::from_static("bench-client-0001"),
                will: None,
                username: Some(ByteStr::from_static("user")),
                password: Some(Bytes::from_static(b"password")),
                properties: ConnectProperties::default(),
            })),
        ),
        ("publish_64B_qos1", publish(64)),
        ("publish_1KiB_qos1", publish(1024)),
        (
            "subscribe",
            Packet::Subscribe(Subscribe {
                packet_id: 7,
                filters: vec![(
                    ByteStr::from_static("sensors/+/floor-2/#"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                )],
                properties: SubscribeProperties::default(),
            }),
        ),
    ]
}

fn r4_packet(p: &Packet) -> r4::Packet {
    match p {
        Packet::Connect(c) => {
            let mut x = r4::Connect::new(c.client_id.as_str());
            x.keep_alive = c.keep_alive;
            x.set_login("user", "password");
            r4::Packet::Connect(x)
        }
        Packet::Publish(x) => {
            let mut r = r4::Publish::from_bytes(
                TOPIC,
                rumqttc::mqttbytes::QoS::AtLeastOnce,
                x.payload.clone(),
            );
            r.pkid = x.packet_id;
            r4::Packet::Publish(r)
        }
        Packet::Subscribe(s) => r4::Packet::Subscribe(r4::Subscribe {
            pkid: s.packet_id,
            filters: vec![r4::SubscribeFilter::new(
                s.filters[0].0.to_string(),
                rumqttc::mqttbytes::QoS::AtLeastOnce,
            )],
        }),
        _ => unreachable!(),
    }
}

fn r5_packet(p: &Packet) -> r5::Packet {
    match p {
        Packet::Connect(c) => r5::Packet::Connect(
            r5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id.to_string(),
                clean_start: true,
                properties: None,
            },
            None,
            Some(r5::Login::new("user", "password")),
        ),
        Packet::Publish(x) => {
            let mut r = r5::Publish::new(
                TOPIC,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                x.payload.clone(),
                None,
            );
            r.pkid = x.packet_id;
            r5::Packet::Publish(r)
        }
        Packet::Subscribe(s) => {
            let mut r = r5::Subscribe::new(
                r5::Filter::new(
                    s.filters[0].0.to_string(),
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                ),
                None,
            );
            r.pkid = s.packet_id;
            r5::Packet::Subscribe(r)
        }
        _ => unreachable!(),
    }
}

fn batch(one: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(one.len() * BATCH);
    for _ in 0..BATCH {
        b.extend_from_slice(one);
    }
    b
}

fn bench_version(c: &mut Criterion, v: ProtocolVersion, label: &str) {
    for (name, packet) in tern_packets(v) {
        let mut one = BytesMut::new();
        encode(&packet, v, &mut one).unwrap();
        // Both codecs must read the same bytes.
        let mut theirs = BytesMut::new();
        if v.is_v5() {
            r5_packet(&packet).write(&mut theirs, None).unwrap();
        } else {
            r4_packet(&packet).write(&mut theirs, usize::MAX).unwrap();
        }
        assert_eq!(
            one, theirs,
            "{label} {name}: both codecs encode the same bytes"
        );
        let input = batch(&one);

        let mut g = c.benchmark_group(format!("decode/{label}/{name}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function("tern", |b| {
            b.iter_batched_ref(
                || input.clone(),
                |buf| {
                    while let Some(p) = decode(buf, v, usize::MAX).unwrap() {
                        black_box(p);
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("rumqttc", |b| {
            b.iter_batched_ref(
                || input.clone(),
                |buf| {
                    if v.is_v5() {
                        while !buf.is_empty() {
                            black_box(r5::Packet::read(buf, None).unwrap());
                        }
                    } else {
                        while !buf.is_empty() {
                            black_box(r4::Packet::read(buf, usize::MAX).unwrap());
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group(format!("encode/{label}/{name}"));
        g.throughput(Throughput::Elements(1));
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function("tern", |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&packet), v, &mut out).unwrap();
                black_box(out.len())
            })
        });
        if v.is_v5() {
            let rp = r5_packet(&packet);
            g.bench_function("rumqttc", |b| {
                b.iter(|| {
                    out.clear();
                    black_box(&rp).write(&mut out, None).unwrap();
                    black_box(out.len())
                })
            });
        } else {
            let rp = r4_packet(&packet);
            g.bench_function("rumqttc", |b| {
                b.iter(|| {
                    out.clear();
                    black_box(&rp).write(&mut out, usize::MAX).unwrap();
                    black_box(out.len())
                })
            });
        }
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_version(c, ProtocolVersion::V311, "v311");
    bench_version(c, ProtocolVersion::V5, "v5");
}

criterion_group!(codec, benches);
criterion_main!(codec);
