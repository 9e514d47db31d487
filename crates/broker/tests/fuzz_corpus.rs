//! Replays the corpus of the `connection` fuzz target (`fuzz/`) through the protocol state
//! machine, so what the fuzzer found (and the inputs that reach deep states) stays covered by
//! `cargo test` without the fuzzer. See docs/security.md, "Fuzzing".

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod connection_sequence;

use std::path::Path;

#[test]
fn connection_fuzz_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/connection");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let run = std::panic::catch_unwind(|| connection_sequence::run(&data));
        assert!(run.is_ok(), "{} panics the state machine", f.display());
    }
}

/// A few hand-written sequences, so the replay means something even on a fresh corpus.
#[test]
fn connection_sequences_by_hand_do_not_panic() {
    // v5, well-formed CONNECT, accepted; SUBSCRIBE a/# then a QoS 1 delivery; time passes.
    let sub = [
        0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, b'a', b'/', b'#', 0x01,
    ];
    let mut input = vec![0x06, 0x06, 0x07];
    input.push(((sub.len() as u8 - 1) << 3) & 0xf8);
    input.extend_from_slice(&sub);
    input.extend_from_slice(&[0x04 | (0x04 << 3), 0x05 | (31 << 3)]);
    connection_sequence::run(&input);
    // No CONNECT at all: a remaining length of 268,435,455 in pieces, then the deadline.
    connection_sequence::run(&[0x01, 0x00, 0x18, 0x10, 0xff, 0xff, 0xff, 0x7f, 0xfd]);
    // v5 with a Maximum Packet Size of 64 resumes a session with a larger message in flight.
    connection_sequence::run(&[0x16, 0x02, 0x07]);
    // Random bytes after CONNECT, for each version.
    for v in 0..3u8 {
        let mut input = vec![0x04 | v, 0x81, 0x07, 0xf8];
        input.extend((0..32u8).map(|i| i.wrapping_mul(37)));
        connection_sequence::run(&input);
    }
}
