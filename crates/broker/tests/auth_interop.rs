//! Tern's password file and ACL file against the real Mosquitto 2.0 (Debian `mosquitto`,
//! `mosquitto-clients`): files written by `mosquitto_passwd` load and verify in Tern, and an ACL
//! file lets exactly the same clients publish and receive the same topics in Mosquitto as Tern's
//! [`AclFile`] predicts.
//!
//! Ignored by default (they need third-party programs); `scripts/test.sh` installs the peers and
//! runs them. With `CI` set, a missing program fails the test instead of skipping it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tern_broker::auth::{Access, AclFile, ClientIdentity, PasswordFile};

/// Finds a program among `candidates` (absolute paths) or on `PATH`. Missing: a failure under
/// CI, a skip (`None`) otherwise.
fn require(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} not found: CI needs the interop peers (scripts/install-peers.sh)"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tern-auth-interop-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Mosquitto broker on a free loopback port, killed on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mosquitto {
    fn start(binary: &Path, dir: &Path, settings: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        // `user root`: when the tests run as root, keep Mosquitto from switching to the
        // `mosquitto` user, which could not read files in our temporary directory.
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\npersistence false\nuser root\n{settings}\n"),
        )
        .unwrap();
        let log = dir.join("mosquitto.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut broker = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited with {status}: {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until Mosquitto's log (with `log_type all`) holds `needle`.
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in mosquitto's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn mosquitto_passwd_files_are_accepted_by_tern() {
    let Some(mp) = require("mosquitto_passwd", &["/usr/bin/mosquitto_passwd"]) else {
        return;
    };
    let dir = temp_dir("passwd");
    let file = dir.join("passwd");
    run(Command::new(&mp)
        .args(["-c", "-b"])
        .arg(&file)
        .args(["alice", "secret"]));
    run(Command::new(&mp)
        .arg("-b")
        .arg(&file)
        .args(["bob", "two words:colon"]));
    run(Command::new(&mp)
        .args(["-H", "sha512", "-b"])
        .arg(&file)
        .args(["carol", "legacy"]));
    // Interactive mode, passwords piped on standard input.
    let mut child = Command::new(&mp)
        .arg(&file)
        .arg("dave")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed\ntyped\n").unwrap();
    }
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$7$101$"), "{text}");
    assert!(text.contains("carol:$6$"), "{text}");
    let tern = PasswordFile::load(&file).unwrap();
    assert_eq!(tern.len(), 4);
    assert!(tern.verify("alice", b"secret"));
    assert!(tern.verify("bob", b"two words:colon"));
    assert!(tern.verify("carol", b"legacy"));
    assert!(tern.verify("dave", b"typed"));
    assert!(!tern.verify("alice", b"Secret"));
    assert!(!tern.verify("bob", b"two words"));
    assert!(!tern.verify("carol", b"legacy "));
    assert!(!tern.verify("erin", b"secret"));

    run(Command::new(&mp).arg("-D").arg(&file).arg("bob"));
    let tern = PasswordFile::load(&file).unwrap();
    assert!(!tern.contains("bob") && tern.verify("alice", b"secret"));

    // -U turns a plain-text file into hashes Tern reads.
    let plain = dir.join("plain");
    std::fs::write(&plain, "frank:plain1\ngina:plain2\n").unwrap();
    run(Command::new(&mp).arg("-U").arg(&plain));
    let tern = PasswordFile::load(&plain).unwrap();
    assert!(tern.verify("frank", b"plain1") && tern.verify("gina", b"plain2"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ACL used side by side: every line form, deny before and after a grant, patterns with %c
/// and %u, a user with no section, and the anonymous section.
const ACL: &str = "\
# anonymous clients
topic read public/#
topic write anon/out

user observer
topic read #

user writer
topic write #

user alice
topic readwrite alice/#
topic deny alice/secret
topic deny shared/locked
topic read shared/#
topic write shared/alice

user bob
topic read shared/+
topic write bob/+/data
topic bob/plain

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny devices/%c/locked
";

const TOPICS: &[&str] = &[
    "public/news",
    "anon/out",
    "alice/x",
    "alice/secret",
    "shared/locked",
    "shared/a",
    "shared/alice",
    "shared/a/b",
    "bob/1/data",
    "bob/1/other",
    "bob/plain",
    "devices/dev7/t",
    "devices/dev7/locked",
    "devices/a1/t",
    "devices/dev8/t",
    "users/alice/inbox",
    "users/bob/inbox",
    "users/carol/inbox",
    "other",
];

fn identities() -> Vec<ClientIdentity> {
    let id = |c: &str, u: Option<&str>| ClientIdentity {
        client_id: c.into(),
        username: u.map(Into::into),
    };
    vec![
        id("anon1", None),
        id("a1", Some("alice")),
        id("b1", Some("bob")),
        id("dev7", None),
        id("dev8", Some("bob")),
        id("carol-c", Some("carol")),
        id("c+x", Some("carol")),
    ]
}

fn client_args(who: &ClientIdentity, port: u16) -> Vec<String> {
    let mut args = vec![
        "-p".to_string(),
        port.to_string(),
        "-h".into(),
        "127.0.0.1".into(),
        "-i".into(),
        who.client_id.clone(),
        "-q".into(),
        "1".into(),
    ];
    if let Some(user) = &who.username {
        args.extend(["-u".to_string(), user.clone()]);
    }
    args
}

/// Reads `topic payload` lines from a `mosquitto_sub -v` child until `stop` is seen or the
/// deadline passes; returns the payloads.
fn collect_until(child: &mut Child, stop: Option<&str>, wait: Duration) -> BTreeSet<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + wait;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
        if stop == Some(payload.as_str()) {
            break;
        }
        got.insert(payload);
    }
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn acl_decisions_match_mosquitto() {
    let Some(broker) = require("mosquitto", &["/usr/sbin/mosquitto"]) else {
        return;
    };
    let Some(publish) = require("mosquitto_pub", &["/usr/bin/mosquitto_pub"]) else {
        return;
    };
    let Some(subscribe) = require("mosquitto_sub", &["/usr/bin/mosquitto_sub"]) else {
        return;
    };
    let dir = temp_dir("acl");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, ACL).unwrap();
    let tern = AclFile::load(&acl_path).unwrap();
    let mosq = Mosquitto::start(
        &broker,
        &dir,
        &format!(
            "allow_anonymous true\nlog_type all\nacl_file {}",
            acl_path.display()
        ),
    );
    let port = mosq.port;
    let who = identities();
    let observer = ClientIdentity {
        client_id: "observer".into(),
        username: Some("observer".into()),
    };
    let writer = ClientIdentity {
        client_id: "writer".into(),
        username: Some("writer".into()),
    };

    // Write: every identity publishes to every topic; an observer that may read `#` sees what
    // Mosquitto let through.
    let mut obs = Command::new(&subscribe)
        .args(client_args(&observer, port))
        .args(["-v", "-t", "#"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    mosq.wait_for_log("Sending SUBACK to observer");
    let mut expected_writes = BTreeSet::new();
    for (w, identity) in who.iter().enumerate() {
        for (t, topic) in TOPICS.iter().enumerate() {
            let tag = format!("w{w}t{t}");
            if tern.session(identity).check(Access::Write, topic) {
                expected_writes.insert(tag.clone());
            }
            let status = Command::new(&publish)
                .args(client_args(identity, port))
                .args(["-t", topic, "-m", &tag])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_pub {identity:?} {topic}");
        }
    }
    run(Command::new(&publish)
        .args(client_args(&writer, port))
        .args(["-t", "zz/done", "-m", "done"]));
    let seen_writes = collect_until(&mut obs, Some("done"), Duration::from_secs(10));
    assert_eq!(
        seen_writes
            .symmetric_difference(&expected_writes)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "write decisions differ (w<identity>t<topic>; identities {who:?}, topics {TOPICS:?})\n{}",
        mosq.log()
    );

    // Read: each identity subscribes to every topic (Mosquitto grants the SUBSCRIBE and filters
    // on delivery); a writer that may write `#` publishes once to each.
    let mut subs: Vec<Child> = who
        .iter()
        .map(|identity| {
            let mut cmd = Command::new(&subscribe);
            cmd.args(client_args(identity, port)).arg("-v");
            for topic in TOPICS {
                cmd.args(["-t", topic]);
            }
            cmd.stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for identity in &who {
        mosq.wait_for_log(&format!("Sending SUBACK to {}", identity.client_id));
    }
    for (t, topic) in TOPICS.iter().enumerate() {
        run(Command::new(&publish)
            .args(client_args(&writer, port))
            .args(["-t", topic, "-m", &format!("t{t}")]));
    }
    for (r, (identity, sub)) in who.iter().zip(subs.iter_mut()).enumerate() {
        let seen = collect_until(
            sub,
            None,
            Duration::from_millis(if r == 0 { 1500 } else { 200 }),
        );
        let session = tern.session(identity);
        let expected: BTreeSet<String> = TOPICS
            .iter()
            .enumerate()
            .filter(|(_, topic)| session.check(Access::Read, topic))
            .map(|(t, _)| format!("t{t}"))
            .collect();
        assert_eq!(
            seen, expected,
            "read decisions differ for {identity:?} (t<topic index> of {TOPICS:?})"
        );
        // For a topic name (no wildcard) Tern's SUBSCRIBE check agrees with delivery.
        for topic in TOPICS {
            assert_eq!(
                session.check(Access::Subscribe, topic),
                session.check(Access::Read, topic),
                "{identity:?} {topic}"
            );
        }
    }
    drop(mosq);
    std::fs::remove_dir_all(&dir).unwrap();
}
