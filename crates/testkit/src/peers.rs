//! Third-party peer programs (Mosquitto and its clients, Python paho-mqtt, openssl…): where they
//! are, and what a test does when one is missing. Interop tests are `#[ignore]`d and run by
//! `scripts/test.sh`; with `CI` set a missing peer fails the test, never skips it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Directories searched after `PATH`: Debian installs the `mosquitto` broker in /usr/sbin, which
/// is not on every user's `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// The path of the program `name`, looked for on `PATH` and then in the sbin directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a test does when the peer `what` is missing: under `CI`, fail (panic); elsewhere, say
/// that it skips, and the caller returns.
pub fn missing_peer(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is not installed (CI is set, so this interop test fails instead of skipping): \
         run scripts/install-peers.sh"
    );
    eprintln!("skipping: {what} is not installed");
}

/// The path of the peer program `name`, or `None` (the test skips) when it is missing; under
/// `CI` a missing program fails the test.
pub fn require_peer(name: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        missing_peer(name);
    }
    found
}

/// Whether `python3` can import `module`; `false` (the test skips) when it cannot, a failure
/// under `CI`.
pub fn require_python_module(module: &str) -> bool {
    let ok = find_program("python3").is_some_and(|python| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        missing_peer(&format!("python3 {module}"));
    }
    ok
}

/// The path of the peer program `name`, for tests that fail whenever a peer is missing, with or
/// without `CI`.
pub fn peer(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("{name} is not installed: run scripts/install-peers.sh (this test fails, not skips)")
    })
}
