//! Loopback ports: a free one, and waiting until a child process listens on one.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener that is
/// closed again before this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until 127.0.0.1:`port` accepts TCP connections. Panics if `child` (the process that
/// should listen) exits first or `timeout` passes; the panic message includes the text of `log`
/// (where the child writes its diagnostics), when given.
pub fn wait_for_port(port: u16, child: &mut Child, timeout: Duration, log: Option<&Path>) {
    let log_text = || {
        log.map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "exited with {status} before listening on {port}: {}",
                log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after {timeout:?}: {}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
