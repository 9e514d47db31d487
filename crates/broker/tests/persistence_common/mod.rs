//! Helpers shared by the on-disk store's integration tests: a fresh data directory, the store's
//! configuration, a broker on that store, and a copy of a store (a snapshot "at the crash").

#![allow(dead_code)] // each test file uses a part

use crate::common::config;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_broker::config::StorageConfig;
use tern_broker::store::fjall_store::FjallStore;
use tern_broker::{Broker, RunningBroker};
use tern_testkit::{TestDir, temp_dir};

/// A store's data directory, not yet created: `data` inside the test's own temporary directory
/// `tern-{prefix}-{name}-…`, so that what the store moves aside (next to `data`) goes with it.
/// Derefs to the data directory; all of it is removed on drop, unless the test failed.
pub struct StoreDir {
    data: PathBuf,
    _root: TestDir,
}

impl Deref for StoreDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.data
    }
}

impl AsRef<Path> for StoreDir {
    fn as_ref(&self) -> &Path {
        &self.data
    }
}

/// A fresh [`StoreDir`] named after `prefix` and `name`.
pub fn fresh_dir(prefix: &str, name: &str) -> StoreDir {
    let root = temp_dir(&format!("{prefix}-{name}"));
    StoreDir {
        data: root.join("data"),
        _root: root,
    }
}

/// The default storage configuration with its data in `dir`.
pub fn storage(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        ..StorageConfig::default()
    }
}

/// A broker with the test configuration whose sessions and retained messages live in `store`.
pub async fn start(store: &Arc<FjallStore>) -> (RunningBroker, std::net::SocketAddr) {
    let b = Broker::new(config())
        .with_session_store(store.clone())
        .with_retained_store(store.clone())
        .start()
        .await
        .expect("broker starts");
    let addr = b.local_addrs()[0];
    (b, addr)
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
