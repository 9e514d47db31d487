//! Property-based round trips: every packet type, every protocol version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use common::*;
use proptest::prelude::*;
use tern_codec::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity((v, p) in versioned_packet()) {
        let mut buf = enc(&p, v);
        prop_assert_eq!(buf.len(), encoded_len(&p, v).unwrap());
        let got = decode(&mut buf, v, MAX).unwrap().unwrap();
        prop_assert_eq!(got, p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn truncated_packet_is_incomplete((v, p) in versioned_packet(), cut in any::<prop::sample::Index>()) {
        let full = enc(&p, v);
        let n = cut.index(full.len());
        let mut part = BytesMut::from(&full[..n]);
        prop_assert_eq!(decode(&mut part, v, MAX), Ok(None));
        prop_assert_eq!(part.len(), n);
    }

    #[test]
    fn back_to_back_packets_decode_in_order((v, a) in versioned_packet(), b in any::<u16>()) {
        let second = Packet::PubAck(PubAck::new(b.max(1)));
        let mut buf = enc(&a, v);
        encode(&second, v, &mut buf).unwrap();
        prop_assert_eq!(decode(&mut buf, v, MAX).unwrap().unwrap(), a);
        prop_assert_eq!(decode(&mut buf, v, MAX).unwrap().unwrap(), second);
        prop_assert_eq!(decode(&mut buf, v, MAX), Ok(None));
    }

    #[test]
    fn encoded_len_rejects_nothing_valid_and_max_size_is_exact((v, p) in versioned_packet()) {
        let len = encoded_len(&p, v).unwrap();
        let mut buf = enc(&p, v);
        let mut copy = buf.clone();
        prop_assert!(decode(&mut buf, v, len).unwrap().is_some());
        prop_assert_eq!(
            decode(&mut copy, v, len - 1),
            Err(DecodeError::PacketTooLarge { size: len, max: len - 1 })
        );
    }
}
