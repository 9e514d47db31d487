//! Tern vs rumqttc on a shared, loaded machine: criterion measures one function after the other,
//! so a change in load between them skews the ratio. This driver alternates the two codecs in
//! short rounds and keeps each one's fastest round, which interference can only slow down.
//! Run: `cargo bench -p tern-codec --bench ratio`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as r4;
use rumqttc::v5::mqttbytes::v5 as r5;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tern_codec::*;

const BATCH: usize = 1000;
const ROUNDS: usize = 200;
const TOPIC: &str = "sensors/building-1/floor-2/temperature";

fn publish(size: usize) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from_static(TOPIC),
        packet_id: 42,
        payload: Bytes::from(vec![0xA5u8; size]),
        ..Default::default()
    })
}

fn connect(v: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteStr::from_static("bench-client-0001"),
        will: None,
        username: Some(ByteStr::from_static("user")),
        password: Some(Bytes::from_static(b"password")),
        properties: ConnectProperties::default(),
    }))
}

fn subscribe() -> Packet {
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
    })
}

#[allow(clippy::large_enum_variant)]
enum Theirs {
    V4(r4::Packet),
    V5(r5::Packet),
}

fn theirs(p: &Packet, v: ProtocolVersion) -> Theirs {
    let mut buf = BytesMut::new();
    encode(p, v, &mut buf).unwrap();
    if v.is_v5() {
        Theirs::V5(r5::Packet::read(&mut buf, None).unwrap())
    } else {
        Theirs::V4(r4::Packet::read(&mut buf, usize::MAX).unwrap())
    }
}

/// Fastest of `ROUNDS` rounds for each closure, alternating, in ns per packet.
fn race(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        a();
        best_a = best_a.min(t.elapsed());
        let t = Instant::now();
        b();
        best_b = best_b.min(t.elapsed());
    }
    let per = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per(best_a), per(best_b))
}

fn main() {
    println!(
        "{:<28} {:>10} {:>10} {:>7}",
        "benchmark (ns/packet)", "tern", "rumqttc", "ratio"
    );
    for (label, v) in [("v311", ProtocolVersion::V311), ("v5", ProtocolVersion::V5)] {
        for (name, p) in [
            ("connect", connect(v)),
            ("publish_64B_qos1", publish(64)),
            ("publish_1KiB_qos1", publish(1024)),
            ("subscribe", subscribe()),
        ] {
            // `RATIO_FILTER=publish_64B` runs the matching cases only (for profiling).
            if let Ok(f) = std::env::var("RATIO_FILTER")
                && !format!("{label}/{name}").contains(&f)
            {
                continue;
            }
            let mut one = BytesMut::new();
            encode(&p, v, &mut one).unwrap();
            let mut input = BytesMut::with_capacity(one.len() * BATCH);
            for _ in 0..BATCH {
                input.extend_from_slice(&one);
            }
            let r = theirs(&p, v);

            // Decode: each codec has one read buffer, refilled with the input before each timed
            // round and reused, as a connection's read buffer is. Once every packet split off it
            // is dropped, `extend_from_slice` reclaims the same allocation: no allocation, page
            // fault, `munmap` or cold copy lands inside the timing, for either codec.
            let mut buf_a = BytesMut::with_capacity(input.len());
            let mut buf_b = BytesMut::with_capacity(input.len());
            let (ta, tb) = race_refilled(
                &input,
                (&mut buf_a, &mut buf_b),
                |buf| {
                    let mut n = 0;
                    while let Some(p) = decode(buf, v, usize::MAX).unwrap() {
                        black_box(p);
                        n += 1;
                    }
                    n
                },
                |buf| {
                    let mut n = 0;
                    if v.is_v5() {
                        while !buf.is_empty() {
                            black_box(r5::Packet::read(buf, None).unwrap());
                            n += 1;
                        }
                    } else {
                        while !buf.is_empty() {
                            black_box(r4::Packet::read(buf, usize::MAX).unwrap());
                            n += 1;
                        }
                    }
                    n
                },
            );
            // Floor: what no zero-copy decoder avoids, splitting each packet's bytes off the
            // shared buffer and dropping them (one reference-count increment and decrement).
            let packet_len = one.len();
            let mut buf_f = BytesMut::with_capacity(input.len());
            let mut buf_t = BytesMut::with_capacity(input.len());
            let (floor, _) = race_refilled(
                &input,
                (&mut buf_f, &mut buf_t),
                |buf| {
                    let mut n = 0;
                    while !buf.is_empty() {
                        black_box(buf.split_to(packet_len).freeze());
                        n += 1;
                    }
                    n
                },
                |buf| {
                    buf.clear();
                    BATCH
                },
            );
            println!(
                "{:<28} {:>10.1} {:>10} {:>7}",
                format!("floor/split+drop"),
                floor,
                "",
                ""
            );
            println!(
                "{:<28} {:>10.1} {:>10.1} {:>6.2}x",
                format!("decode/{label}/{name}"),
                ta,
                tb,
                tb / ta
            );

            // Encode into a reused buffer.
            let mut out_a = BytesMut::with_capacity(one.len() * BATCH);
            let mut out_b = BytesMut::with_capacity(one.len() * BATCH);
            let (a, b) = race(
                || {
                    out_a.clear();
                    for _ in 0..BATCH {
                        encode(black_box(&p), v, &mut out_a).unwrap();
                    }
                },
                || {
                    out_b.clear();
                    for _ in 0..BATCH {
                        match black_box(&r) {
                            Theirs::V4(x) => x.write(&mut out_b, usize::MAX).unwrap(),
                            Theirs::V5(x) => x.write(&mut out_b, None).unwrap(),
                        };
                    }
                },
            );
            // Floor: copying the encoded bytes, which every encoder does.
            let mut out_f = BytesMut::with_capacity(one.len() * BATCH);
            let (floor, _) = race(
                || {
                    out_f.clear();
                    for _ in 0..BATCH {
                        out_f.extend_from_slice(black_box(&one));
                    }
                },
                || {},
            );
            println!("{:<28} {:>10.1} {:>10} {:>7}", "floor/copy", floor, "", "");
            if name == "connect" {
                // rumqttc's v4 CONNECT read drops the login it re-encodes; lengths are close.
                assert!(
                    out_a.len().abs_diff(out_b.len()) <= 16 * BATCH,
                    "comparable output"
                );
            } else {
                assert_eq!(out_a, out_b, "both codecs write the same bytes");
                assert_eq!(out_a, input, "and the bytes decoded");
            }
            println!(
                "{:<28} {:>10.1} {:>10.1} {:>6.2}x",
                format!("encode/{label}/{name}"),
                a,
                b,
                b / a
            );
        }
    }
}

/// Fastest of `ROUNDS` rounds for each decoder, alternating, in ns per packet. Before each
/// timed round the decoder's own buffer is cleared and refilled with `input` (reusing its
/// allocation once the previous round's packets are dropped); every decoder must decode
/// `BATCH` packets.
fn race_refilled(
    input: &[u8],
    bufs: (&mut BytesMut, &mut BytesMut),
    mut a: impl FnMut(&mut BytesMut) -> usize,
    mut b: impl FnMut(&mut BytesMut) -> usize,
) -> (f64, f64) {
    let (buf_a, buf_b) = bufs;
    let time = |buf: &mut BytesMut, f: &mut dyn FnMut(&mut BytesMut) -> usize| {
        buf.clear();
        buf.extend_from_slice(input);
        let t = Instant::now();
        let n = f(buf);
        let d = t.elapsed();
        assert_eq!(n, BATCH, "decoded every packet");
        d
    };
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        best_a = best_a.min(time(buf_a, &mut a));
        best_b = best_b.min(time(buf_b, &mut b));
    }
    let per = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    (per(best_a), per(best_b))
}
