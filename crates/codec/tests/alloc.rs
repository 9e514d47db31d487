//! Decoding a PUBLISH allocates nothing beyond the shared buffer: topic and payload are slices of
//! the received bytes. Counted with a counting global allocator (allocation-counter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use tern_codec::*;

fn publish(payload: usize, v: ProtocolVersion) -> BytesMut {
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from_static("sensors/building-1/floor-2/temperature"),
        packet_id: 42,
        payload: Bytes::from(vec![7u8; payload]),
        ..Default::default()
    });
    let mut buf = BytesMut::new();
    for _ in 0..100 {
        encode(&p, v, &mut buf).unwrap();
    }
    buf
}

#[test]
fn the_counter_counts() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert!(info.count_total >= 1);
}

#[test]
fn decoding_publish_allocates_nothing_per_packet() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for size in [64, 1024] {
            let mut buf = publish(size, v);
            // The first split promotes the buffer to a shared one: one allocation per buffer.
            let first = decode(&mut buf, v, usize::MAX).unwrap().unwrap();
            let mut decoded = Vec::with_capacity(100);
            let info = allocation_counter::measure(|| {
                while let Some(p) = decode(&mut buf, v, usize::MAX).unwrap() {
                    decoded.push(p);
                }
            });
            assert_eq!(decoded.len(), 99);
            assert!(decoded.iter().all(|p| *p == first));
            assert_eq!(info.count_total, 0, "{v:?} {size} B: {info:?}");
        }
    }
}

#[test]
fn encoding_publish_into_a_reserved_buffer_allocates_nothing() {
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from_static("a/b"),
        packet_id: 1,
        payload: Bytes::from(vec![1u8; 1024]),
        ..Default::default()
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let info = allocation_counter::measure(|| {
        for _ in 0..50 {
            encode(&p, ProtocolVersion::V5, &mut buf).unwrap();
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}
