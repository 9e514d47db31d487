//! Child processes and files a test leaves behind: killed and removed when the test ends.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Child;

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test's own temporary directory, removed when dropped — unless the thread is panicking
/// (the test failed): then it stays for inspection and its path is printed on stderr.
///
/// Derefs to [`Path`]. Drop it only after every process and handle using it has stopped: a
/// guard held in a struct goes after the fields declared before it, a local after the locals
/// declared after it.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Disarms the guard: the directory stays, and its path is returned.
    pub fn keep(mut self) -> PathBuf {
        let path = std::mem::take(&mut self.path);
        std::mem::forget(self);
        path
    }
}

impl Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: keeping {} for inspection",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A fresh, empty directory under the system's temporary directory, named `tern-{tag}-…`
/// (unique per call), removed when the returned guard drops unless the test failed (see
/// [`TestDir`]). Mode 0755, so that a peer running under its own user (Mosquitto drops root)
/// can read the certificates and configuration placed in it.
pub fn temp_dir(tag: &str) -> TestDir {
    use std::os::unix::fs::PermissionsExt;
    let path = tempfile::Builder::new()
        .prefix(&format!("tern-{tag}-"))
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir()
        .unwrap()
        .keep();
    TestDir { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_dir_is_removed_with_its_contents() {
        let dir = temp_dir("testdir-drop");
        std::fs::write(dir.join("file"), "x").unwrap();
        let path = dir.to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_dir_dropped_while_panicking_stays() {
        let path = std::sync::Mutex::new(PathBuf::new());
        let outcome = std::panic::catch_unwind(|| {
            let dir = temp_dir("testdir-panic");
            *path.lock().unwrap() = dir.to_path_buf();
            panic!("the test fails");
        });
        assert!(outcome.is_err());
        let path = path.into_inner().unwrap();
        assert!(path.is_dir(), "{} was removed", path.display());
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn a_kept_dir_stays() {
        let path = temp_dir("testdir-keep").keep();
        assert!(path.is_dir());
        std::fs::remove_dir_all(&path).unwrap();
    }
}
