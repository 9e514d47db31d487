//! `tern broker` as a child process for the CLI's integration tests: started on a free loopback
//! port, waited for until it accepts connections, killed on drop.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tern_testkit::{TestDir, free_port, temp_dir, wait_for_port};

/// The `tern` binary under test.
pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// How long `tern broker` may take to listen.
const STARTUP: Duration = Duration::from_secs(10);

/// `tern broker ARGS --listen 127.0.0.1:PORT`; killed on drop. Its stderr goes to a log file,
/// shown if it exits before listening.
pub struct TernBroker {
    args: Vec<OsString>,
    child: Option<Child>,
    /// The port it listens on (the same after [`TernBroker::spawn`]).
    pub port: u16,
    /// Holds the log; removed after the broker is killed in `drop` (kept if the test failed).
    dir: TestDir,
}

impl TernBroker {
    /// A broker in memory: parallel brokers must not share (or lock) one ./tern-data.
    pub fn start() -> TernBroker {
        TernBroker::start_with(["--memory"])
    }

    /// A broker started with `args` after `tern broker`, on a free port.
    pub fn start_with<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> TernBroker {
        let mut b = TernBroker {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            child: None,
            port: free_port(),
            dir: temp_dir("tern-broker"),
        };
        b.spawn();
        b
    }

    /// Starts the broker (again, after [`TernBroker::stop`]) on its port and waits for it.
    pub fn spawn(&mut self) {
        let log = self.dir.join("broker.log");
        let child = Command::new(TERN)
            .arg("broker")
            .args(&self.args)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn tern broker");
        let child = self.child.insert(child);
        wait_for_port(self.port, child, STARTUP, Some(&log));
    }

    /// Kills the broker (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }
}

impl Drop for TernBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
