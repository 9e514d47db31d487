//! Hostile input: arbitrary bytes and mutated valid packets never panic the decoder, and whatever
//! decodes re-encodes to something that decodes to the same packet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use common::*;
use proptest::prelude::*;
use tern_codec::*;

fn check(bytes: &[u8], v: ProtocolVersion, max: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(p)) = decode(&mut buf, v, max) {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out).expect("a decoded packet encodes");
        let again = decode(&mut out, v, usize::MAX).unwrap().unwrap();
        assert_eq!(again, p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), v in version()) {
        check(&bytes, v, usize::MAX);
        check(&bytes, v, 16);
    }

    #[test]
    fn arbitrary_body_behind_every_first_byte_never_panics(
        byte1 in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
        v in version(),
    ) {
        let mut bytes = vec![byte1, body.len() as u8 & 0x7F];
        bytes.extend_from_slice(&body);
        check(&bytes, v, usize::MAX);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        (v, p) in versioned_packet(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = enc(&p, v).to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        check(&bytes, v, usize::MAX);
    }
}
