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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_broker::auth::{Access, AclFile, ClientIdentity, PasswordFile};
use tern_testkit::{Mosquitto, require_peer, temp_dir};

/// Settings of every Mosquitto here. `user root`: when the tests run as root, keep Mosquitto from
/// switching to the `mosquitto` user, which could not read our owner-only files.
const MOSQUITTO_GLOBALS: &str = "persistence false\nuser root\n";

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
    let Some(mp) = require_peer("mosquitto_passwd") else {
        return;
    };
    let dir = temp_dir("auth-interop-passwd");
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

/// A `mosquitto_sub -d -v` child whose output lines arrive on a channel.
struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    early: Vec<String>,
}

impl Sub {
    fn spawn(subscribe: &Path, args: Vec<String>, topics: &[&str]) -> Self {
        // Line-buffered output: mosquitto_sub does not flush its `-d` lines into a pipe.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg(subscribe).args(args).args(["-d", "-v"]);
        for topic in topics {
            cmd.args(["-t", topic]);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            early: Vec::new(),
        }
    }

    /// Waits for the broker's SUBACK (granted or not), keeping what arrived before it.
    fn wait_suback(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("received SUBACK") => return,
                Ok(line) => self.early.push(line),
                Err(e) => panic!("no SUBACK from the broker: {e}; output {:?}", self.early),
            }
        }
    }

    /// The message tags (`t3`, `w1t2`, `done`) received until `stop` or the wait ends.
    fn collect(mut self, stop: Option<&str>, wait: Duration) -> BTreeSet<String> {
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + wait;
        let mut take = |line: &str| -> bool {
            // `-v` prints `topic payload`; `-d` adds lines of its own (`Client ...`,
            // `Subscribed (mid: 1): 1, 128`): keep only messages on the matrix's topics.
            let Some((topic, payload)) = line.split_once(' ') else {
                return false;
            };
            if !TOPICS.contains(&topic) && topic != "zz/done" {
                return false;
            }
            if stop == Some(payload) {
                return true;
            }
            got.insert(payload.to_owned());
            false
        };
        let early = std::mem::take(&mut self.early);
        let mut stopped = early.iter().any(|l| take(l));
        while !stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => stopped = take(&line),
                Err(_) => break,
            }
        }
        got
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one broker did with the matrix: the write tags the observer saw, and for each identity
/// the read tags it received.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    writes: BTreeSet<String>,
    reads: Vec<BTreeSet<String>>,
}

struct Peers {
    publish: PathBuf,
    subscribe: PathBuf,
}

/// Drives the whole matrix through the broker at `port` with Mosquitto's command-line clients.
fn observe(peers: &Peers, port: u16) -> Observed {
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
    // the broker let through.
    let mut obs = Sub::spawn(&peers.subscribe, client_args(&observer, port), &["#"]);
    obs.wait_suback();
    for (w, identity) in who.iter().enumerate() {
        for (t, topic) in TOPICS.iter().enumerate() {
            let status = Command::new(&peers.publish)
                .args(client_args(identity, port))
                .args(["-t", topic, "-m", &format!("w{w}t{t}")])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_pub {identity:?} {topic}");
        }
    }
    run(Command::new(&peers.publish)
        .args(client_args(&writer, port))
        .args(["-t", "zz/done", "-m", "done"]));
    let writes = obs.collect(Some("done"), Duration::from_secs(10));

    // Read: each identity subscribes to every topic; a writer that may write `#` publishes once
    // to each. (Mosquitto grants every SUBSCRIBE and filters on delivery; Tern refuses the
    // filters the client may not read. For topic names both come to the same.)
    let mut subs: Vec<Sub> = who
        .iter()
        .map(|identity| Sub::spawn(&peers.subscribe, client_args(identity, port), TOPICS))
        .collect();
    for sub in &mut subs {
        sub.wait_suback();
    }
    for (t, topic) in TOPICS.iter().enumerate() {
        run(Command::new(&peers.publish)
            .args(client_args(&writer, port))
            .args(["-t", topic, "-m", &format!("t{t}")]));
    }
    let reads = subs
        .into_iter()
        .enumerate()
        .map(|(r, sub)| sub.collect(None, Duration::from_millis(if r == 0 { 1500 } else { 200 })))
        .collect();
    Observed { writes, reads }
}

/// What Tern's [`AclFile`] says the matrix should show.
fn predicted(acl: &AclFile) -> Observed {
    let who = identities();
    let mut writes = BTreeSet::new();
    for (w, identity) in who.iter().enumerate() {
        let session = acl.session(identity);
        for (t, topic) in TOPICS.iter().enumerate() {
            if session.check(Access::Write, topic) {
                writes.insert(format!("w{w}t{t}"));
            }
        }
    }
    let reads = who
        .iter()
        .map(|identity| {
            let session = acl.session(identity);
            TOPICS
                .iter()
                .enumerate()
                .filter(|(_, topic)| session.check(Access::Read, topic))
                .map(|(t, _)| format!("t{t}"))
                .collect()
        })
        .collect();
    Observed { writes, reads }
}

fn assert_same(what: &str, expected: &Observed, seen: &Observed) {
    let who = identities();
    assert_eq!(
        seen.writes
            .symmetric_difference(&expected.writes)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{what}: write decisions differ (w<identity>t<topic>; identities {who:?}, topics {TOPICS:?})"
    );
    for (identity, (seen, expected)) in who.iter().zip(seen.reads.iter().zip(&expected.reads)) {
        assert_eq!(
            seen, expected,
            "{what}: read decisions differ for {identity:?} (t<topic index> of {TOPICS:?})"
        );
    }
}

/// The SUBACK's granted QoS for `filter` as mosquitto_sub prints it (`1`, or `128` refused).
fn granted(peers: &Peers, port: u16, who: &ClientIdentity, filter: &str) -> String {
    let sub = Sub::spawn(&peers.subscribe, client_args(who, port), &[filter]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.lines.recv_timeout(left) {
            Ok(line) if line.starts_with("Subscribed") => {
                return line.rsplit(": ").next().unwrap_or_default().to_owned();
            }
            Ok(_) => {}
            Err(e) => panic!("no SUBACK for {who:?} {filter}: {e}"),
        }
    }
}

/// Subscriptions whose SUBACK differs on purpose: Mosquitto grants every SUBSCRIBE and filters
/// on delivery; Tern refuses a filter no read-granting line covers, or a `deny` line covers.
fn subscribe_cases() -> Vec<(ClientIdentity, &'static str, &'static str)> {
    let who = identities();
    vec![
        (who[0].clone(), "public/+", "1"),
        (who[0].clone(), "#", "128"),
        (who[1].clone(), "shared/#", "1"),
        (who[1].clone(), "alice/secret", "128"),
        (who[2].clone(), "shared/+", "1"),
        (who[2].clone(), "shared/#", "128"),
        (who[3].clone(), "devices/dev7/#", "1"),
    ]
}

fn peers() -> Option<(PathBuf, Peers)> {
    let broker = require_peer("mosquitto")?;
    let publish = require_peer("mosquitto_pub")?;
    let subscribe = require_peer("mosquitto_sub")?;
    require_peer("stdbuf")?;
    Some((broker, Peers { publish, subscribe }))
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn acl_decisions_match_mosquitto() {
    let Some((broker, peers)) = peers() else {
        return;
    };
    let dir = temp_dir("auth-interop-acl");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, ACL).unwrap();
    let tern = AclFile::load(&acl_path).unwrap();
    let mosq = Mosquitto::launch(
        broker,
        MOSQUITTO_GLOBALS,
        &format!("allow_anonymous true\nacl_file {}", acl_path.display()),
        &[],
    );
    let seen = observe(&peers, mosq.port);
    assert_same("Mosquitto vs AclFile", &predicted(&tern), &seen);
    for identity in identities() {
        let session = tern.session(&identity);
        // For a topic name (no wildcard) Tern's SUBSCRIBE check agrees with delivery.
        for topic in TOPICS {
            assert_eq!(
                session.check(Access::Subscribe, topic),
                session.check(Access::Read, topic),
                "{identity:?} {topic}"
            );
        }
    }
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn tern_broker_and_mosquitto_agree_on_the_same_acl_file() {
    let Some((broker, peers)) = peers() else {
        return;
    };
    let dir = temp_dir("auth-interop-acl-side-by-side");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, ACL).unwrap();
    let mosq = Mosquitto::launch(
        broker,
        MOSQUITTO_GLOBALS,
        &format!("allow_anonymous true\nacl_file {}", acl_path.display()),
        &[],
    );
    let from_mosquitto = observe(&peers, mosq.port);
    for (who, filter, _) in subscribe_cases() {
        assert_eq!(
            granted(&peers, mosq.port, &who, filter),
            "1",
            "{who:?} {filter}"
        );
    }
    drop(mosq);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = tern_broker::Config::from_toml(
        &format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\nacl_file = \"{}\"\n",
            acl_path.display()
        ),
        "tern.toml",
    )
    .unwrap();
    let tern = rt
        .block_on(tern_broker::Broker::new(config).start())
        .unwrap();
    let port = tern.local_addrs()[0].port();
    let from_tern = observe(&peers, port);
    for (who, filter, tern_grants) in subscribe_cases() {
        assert_eq!(
            granted(&peers, port, &who, filter),
            tern_grants,
            "{who:?} {filter}"
        );
    }
    rt.block_on(tern.shutdown());
    assert_same("Tern vs Mosquitto", &from_mosquitto, &from_tern);
}
