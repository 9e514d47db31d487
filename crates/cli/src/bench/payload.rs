//! The benchmark payload. Each message carries, in its first [`HEADER_LEN`] bytes, who published
//! it, its sequence number in that publisher's stream and when it was sent, so the receiving side
//! can count losses, duplicates and reordering per publisher and measure end-to-end latency. The
//! rest of the payload is padding up to the requested size.
//!
//! Layout (little-endian): `"TB"` magic, publisher id (u32), sequence number (u64), send time in
//! nanoseconds since the Unix epoch (u64). Wall-clock time rather than a monotonic clock so that
//! `tern bench pub` and `tern bench sub` in two processes on one machine still agree.

use bytes::Buf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the header at the start of every benchmark payload: the smallest payload size.
pub const HEADER_LEN: usize = 22;
const MAGIC: [u8; 2] = *b"TB";

/// What a benchmark message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the publisher in its run.
    pub publisher: u32,
    /// Sequence number in that publisher's stream, from 0.
    pub seq: u64,
    /// Send time, nanoseconds since the Unix epoch.
    pub sent_ns: u64,
}

/// Writes `stamp` at the start of `payload`; returns false (writing nothing) if it is too short.
pub fn write(payload: &mut [u8], stamp: Stamp) -> bool {
    let Some(head) = payload.get_mut(..HEADER_LEN) else {
        return false;
    };
    let mut bytes = [0u8; HEADER_LEN];
    bytes[..2].copy_from_slice(&MAGIC);
    bytes[2..6].copy_from_slice(&stamp.publisher.to_le_bytes());
    bytes[6..14].copy_from_slice(&stamp.seq.to_le_bytes());
    bytes[14..22].copy_from_slice(&stamp.sent_ns.to_le_bytes());
    head.copy_from_slice(&bytes);
    true
}

/// Reads the stamp of a benchmark payload; `None` for a payload that is not one (too short or
/// without the magic), e.g. from another publisher on the same broker.
pub fn read(payload: &[u8]) -> Option<Stamp> {
    let mut head = payload.get(..HEADER_LEN)?;
    if head.get(..2)? != MAGIC {
        return None;
    }
    head.advance(2);
    // The length was checked above, so the fixed-size reads cannot run out.
    let publisher = head.get_u32_le();
    let seq = head.get_u64_le();
    let sent_ns = head.get_u64_le();
    Some(Stamp {
        publisher,
        seq,
        sent_ns,
    })
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_a_padded_payload() {
        let mut payload = vec![0u8; 64];
        let stamp = Stamp {
            publisher: 7,
            seq: 123_456_789_012,
            sent_ns: 1_700_000_000_000_000_000,
        };
        assert!(write(&mut payload, stamp));
        assert_eq!(read(&payload), Some(stamp));
    }

    #[test]
    fn short_or_foreign_payloads_have_no_stamp() {
        let mut short = vec![0u8; HEADER_LEN - 1];
        assert!(!write(
            &mut short,
            Stamp {
                publisher: 0,
                seq: 0,
                sent_ns: 0
            }
        ));
        assert_eq!(read(&short), None);
        assert_eq!(read(b"hello world, this is not a bench payload"), None);
        assert_eq!(read(b""), None);
    }
}
