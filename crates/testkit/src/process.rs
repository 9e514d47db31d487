//! Child processes and files a test leaves behind: killed and removed when the test ends.

use std::path::PathBuf;
use std::process::Child;

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh, empty directory under the system's temporary directory, named `tern-{tag}-…`
/// (unique per call). It stays after the test, so a failure can be inspected; tests remove it
/// when they pass. Mode 0755, so that a peer running under its own user (Mosquitto drops root)
/// can read the certificates and configuration placed in it.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("tern-{tag}-"))
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir()
        .unwrap()
        .keep()
}
