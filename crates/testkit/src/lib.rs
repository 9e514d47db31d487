//! Helpers that the integration tests of several Tern crates share: a free port, waiting for a
//! process to listen, locating third-party peer programs (failing, never skipping, under `CI`),
//! killing child processes on drop, fresh temporary directories, a real Mosquitto broker, test
//! certificates, and configuration fixtures.
//!
//! Dev-only (`publish = false`, used under `[dev-dependencies]`): it builds with nothing but
//! Rust; the peers are looked for only when a test asks for one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;
mod mosquitto;
mod net;
mod peers;
mod pki;
mod process;

pub use fixtures::KITCHEN_RULES;
pub use mosquitto::{Mosquitto, tls_listener};
pub use net::{free_port, wait_for_port};
pub use peers::{find_program, missing_peer, peer, require_peer, require_python_module};
pub use pki::{Pki, generate_pki};
pub use process::{KillOnDrop, TestDir, temp_dir};
