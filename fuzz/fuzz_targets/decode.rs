//! Fuzz target for the codec's decoder: arbitrary bytes, for each protocol version and a small
//! and a large maximum packet size, must never panic; whatever decodes must re-encode, and the
//! re-encoding must decode to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{ProtocolVersion, decode, encode};

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5] {
        for max in [64, usize::MAX] {
            let mut buf = BytesMut::from(data);
            // Decode packets back to back until the bytes run out or are refused.
            while let Ok(Some(packet)) = decode(&mut buf, version, max) {
                let mut out = BytesMut::new();
                encode(&packet, version, &mut out).expect("a decoded packet encodes");
                let again = decode(&mut out, version, usize::MAX)
                    .expect("re-encoding decodes")
                    .expect("re-encoding is complete");
                assert_eq!(again, packet);
                assert!(out.is_empty());
            }
        }
    }
});
