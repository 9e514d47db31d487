//! Fuzz target for whole connection sequences through the broker's protocol state machine: a
//! CONNECT (well-formed or fuzzed), then arbitrary bytes, deliveries, timeouts and closes. The
//! driver is shared with the corpus replay test of tern-broker, which keeps what this found.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/broker/tests/connection_sequence/mod.rs"]
mod connection_sequence;

fuzz_target!(|data: &[u8]| connection_sequence::run(data));
