//! A real Mosquitto broker for interoperability tests: started on its own free port with a
//! temporary configuration, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{free_port, wait_for_port};
use crate::peers::{peer, require_peer};
use crate::pki::Pki;
use crate::process::{TestDir, temp_dir};

/// Mosquitto's default log types, plus `subscribe` so tests can wait for a subscription.
const LOG_TYPES: &str =
    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n";

/// How long Mosquitto may take to listen on its ports.
const STARTUP: Duration = Duration::from_secs(10);

/// A running Mosquitto; killed on drop, its directory removed.
pub struct Mosquitto {
    binary: PathBuf,
    child: Option<Child>,
    /// The plain MQTT port.
    pub port: u16,
    conf: PathBuf,
    ports: Vec<u16>,
    /// Directory holding the configuration and the log (and persistence, when enabled);
    /// removed after the broker is killed (kept if the test failed).
    pub dir: TestDir,
}

impl Mosquitto {
    /// A broker with anonymous access and persistence off; `None` (the test skips) when
    /// `mosquitto` is missing, a failure under `CI`.
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with("", &[])
    }

    /// A broker whose configuration is the default plain listener followed by `extra`; every
    /// port in `extra_ports` is waited for as well.
    pub fn start_with(extra: &str, extra_ports: &[u16]) -> Option<Mosquitto> {
        Mosquitto::start_full(
            "allow_anonymous true\npersistence false\n",
            extra,
            extra_ports,
        )
    }

    /// A broker with full control over the global settings (`{dir}` in `globals` stands for
    /// the broker's directory).
    pub fn start_full(globals: &str, extra: &str, extra_ports: &[u16]) -> Option<Mosquitto> {
        Some(Mosquitto::launch(
            require_peer("mosquitto")?,
            globals,
            extra,
            extra_ports,
        ))
    }

    /// A broker with the global settings `globals`, for tests that fail whenever `mosquitto` is
    /// missing, with or without `CI`.
    pub fn start_required(globals: &str) -> Mosquitto {
        Mosquitto::launch(peer("mosquitto"), globals, "", &[])
    }

    /// [`Mosquitto::start_full`] with the `mosquitto` program at `binary`.
    pub fn launch(binary: PathBuf, globals: &str, extra: &str, extra_ports: &[u16]) -> Mosquitto {
        let port = free_port();
        let dir = temp_dir("mosquitto");
        // Run as root, mosquitto drops to its own user: let it write its persistence file.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let conf = dir.join("mosquitto.conf");
        let globals = globals.replace("{dir}", &dir.display().to_string());
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\n{LOG_TYPES}{globals}listener {port} 127.0.0.1\n{extra}"
            ),
        )
        .unwrap();
        let mut ports = vec![port];
        ports.extend_from_slice(extra_ports);
        let mut m = Mosquitto {
            binary,
            child: None,
            port,
            conf,
            ports,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let log_path = self.dir.join("mosquitto.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        // Kept in `self` before waiting: a broker that never listens is still killed on drop.
        let child = self.child.insert(child);
        for port in &self.ports {
            wait_for_port(*port, child, STARTUP, Some(&log_path));
        }
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the broker again with the same configuration and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the broker logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the broker logged a subscription by `client_id`.
    pub fn wait_subscribed(&self, client_id: &str) {
        let needle = format!(": {client_id} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().lines().any(|l| l.contains(&needle)) {
            assert!(
                Instant::now() < deadline,
                "{client_id} never subscribed: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `mqtt://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `dir` goes after this, when the fields drop.
    }
}

/// Mosquitto configuration lines for a TLS listener on `port` requiring client certificates.
pub fn tls_listener(port: u16, pki: &Pki) -> String {
    format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        pki.ca().display(),
        pki.file("server.pem").display(),
        pki.file("server.key").display()
    )
}
