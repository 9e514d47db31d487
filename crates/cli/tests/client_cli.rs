#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `tern pub`, `tern sub` and `tern rr` as command-line programs: bad input (no broker needed),
//! and, against a real Mosquitto, `tern sub` and `mosquitto_sub` run side by side with the same
//! flags, their output compared byte for byte; `tern pub` received by `mosquitto_sub` and
//! `mosquitto_pub` received by `tern sub`.

mod common;

use common::{TERN, TernBroker};
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tern_testkit::{
    Mosquitto, TestDir, free_port, generate_pki, require_peer, temp_dir, tls_listener,
};

fn tern(args: &[&str]) -> Output {
    Command::new(TERN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 and exactly one line on stderr that starts with "Error:" and contains `needle`.
fn assert_bad_input(args: &[&str], needle: &str) {
    let o = tern(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    assert!(err.starts_with("Error: "), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
}

#[test]
fn pub_rejects_bad_input_with_exit_1() {
    let port = free_port().to_string();
    let p = port.as_str();
    assert_bad_input(
        &["pub", "-p", p, "-t", "a/#", "-m", "x"],
        "invalid publish topic",
    );
    assert_bad_input(&["pub", "-p", p, "-t", "a/+/b", "-m", "x"], "wildcard");
    assert_bad_input(&["pub", "-p", p, "-t", "a", "-q", "3", "-m", "x"], "QoS");
    assert_bad_input(&["pub", "-p", p, "-t", "a"], "message");
    assert_bad_input(&["pub", "-p", p, "-m", "x"], "topic");
    assert_bad_input(&["pub", "-p", p, "-t", "a", "-m", "x", "-n"], "only one");
    assert_bad_input(
        &["pub", "-p", p, "-t", "a", "-f", "/nonexistent/file"],
        "/nonexistent/file",
    );
    assert_bad_input(
        &["pub", "-L", "http://localhost/a", "-m", "x"],
        "invalid URL",
    );
    assert_bad_input(
        &["pub", "-L", "mqtt://localhost:99999/a", "-m", "x"],
        "port",
    );
    assert_bad_input(&["pub", "-t", "a", "-m", "x", "--bogus"], "--bogus");
    assert_bad_input(
        &["pub", "-t", "a", "-m", "x", "-V", "6"],
        "protocol version",
    );
    assert_bad_input(
        &[
            "pub",
            "-t",
            "a",
            "-m",
            "x",
            "-D",
            "publish",
            "content-type",
            "x",
        ],
        "MQTT v5",
    );
    assert_bad_input(
        &[
            "pub",
            "-t",
            "a",
            "-m",
            "x",
            "-V",
            "5",
            "-D",
            "publish",
            "no-such-prop",
            "x",
        ],
        "no-such-prop",
    );
}

#[test]
fn sub_rejects_bad_input_with_exit_1() {
    let port = free_port().to_string();
    let p = port.as_str();
    assert_bad_input(&["sub", "-p", p], "topic");
    assert_bad_input(
        &["sub", "-p", p, "-t", "a/#/b"],
        "invalid subscription topic",
    );
    assert_bad_input(&["sub", "-p", p, "-t", "a", "-q", "3"], "QoS");
    assert_bad_input(
        &["sub", "-p", p, "-t", "a", "-T", "x+"],
        "invalid subscription topic",
    );
    assert_bad_input(&["sub", "-p", p, "-t", "a", "-R", "--retained-only"], "-R");
    assert_bad_input(&["sub", "-L", "ftp://h/t"], "invalid URL");
    assert_bad_input(&["sub", "-t", "a", "--frobnicate"], "--frobnicate");
    assert_bad_input(&["sub", "-t", "a", "-c"], "client id");
}

#[test]
fn unreachable_broker_is_one_clear_line() {
    let port = free_port().to_string();
    for args in [
        vec![
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-t",
            "a",
            "-m",
            "x",
        ],
        vec!["sub", "-h", "127.0.0.1", "-p", port.as_str(), "-t", "a"],
        vec![
            "rr",
            "-h",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-t",
            "a",
            "-e",
            "b",
            "-m",
            "x",
        ],
    ] {
        assert_bad_input(&args, "cannot connect to 127.0.0.1");
    }
}

#[test]
fn help_is_long_only_and_h_is_the_host() {
    let o = tern(&["pub", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("-h, --host"), "{help}");
    assert!(help.contains("--repeat-delay"), "{help}");
    let o = tern(&["sub", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("-F, --format"));
}

// ---------------------------------------------------------------------------------------------
// Against Mosquitto.

/// Anything with an MQTT port on 127.0.0.1: a Mosquitto, a `tern broker`, a fixture.
trait HasPort {
    fn port(&self) -> u16;

    /// Waits until `client_id` has subscribed (where the broker can tell; else a pause).
    fn wait_subscribed(&self, _client_id: &str) {
        std::thread::sleep(Duration::from_millis(600));
    }
}

impl HasPort for Mosquitto {
    fn port(&self) -> u16 {
        self.port
    }

    fn wait_subscribed(&self, client_id: &str) {
        Mosquitto::wait_subscribed(self, client_id);
    }
}

impl<T: HasPort + ?Sized> HasPort for &T {
    fn port(&self) -> u16 {
        (**self).port()
    }

    fn wait_subscribed(&self, client_id: &str) {
        (**self).wait_subscribed(client_id);
    }
}

impl<T: HasPort + ?Sized> HasPort for Box<T> {
    fn port(&self) -> u16 {
        (**self).port()
    }

    fn wait_subscribed(&self, client_id: &str) {
        (**self).wait_subscribed(client_id);
    }
}

impl HasPort for TernBroker {
    fn port(&self) -> u16 {
        self.port
    }
}

fn with_broker(args: &[&str], broker: &impl HasPort) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        broker.port().to_string(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mosquitto_pub(broker: &impl HasPort, args: &[&str]) {
    let tool = require_peer("mosquitto_pub").unwrap();
    let o = Command::new(tool)
        .args(with_broker(args, broker))
        .output()
        .unwrap();
    assert!(o.status.success(), "mosquitto_pub {args:?}: {}", stderr(&o));
}

struct Fixture {
    broker: Box<dyn HasPort>,
    binary_file: std::path::PathBuf,
    /// Holds `binary_file`.
    _dir: TestDir,
}

impl HasPort for Fixture {
    fn port(&self) -> u16 {
        self.broker.port()
    }

    fn wait_subscribed(&self, client_id: &str) {
        self.broker.wait_subscribed(client_id);
    }
}

/// A Mosquitto holding one retained message, and a binary payload file.
fn fixture() -> Option<Fixture> {
    require_peer("mosquitto_sub")?;
    let broker = Mosquitto::start()?;
    fixture_on(Box::new(broker))
}

/// The same on Tern's broker.
fn tern_fixture() -> Option<Fixture> {
    require_peer("mosquitto_sub")?;
    fixture_on(Box::new(TernBroker::start()))
}

fn fixture_on(broker: Box<dyn HasPort>) -> Option<Fixture> {
    let dir = temp_dir("fixture");
    let binary_file = dir.join("binary.bin");
    std::fs::write(&binary_file, b"\x00\x01bin\"ary\\\xff\x7f\n").unwrap();
    mosquitto_pub(
        &broker,
        &["-t", "r/1", "-m", "retained hello", "-r", "-q", "1"],
    );
    Some(Fixture {
        broker,
        binary_file,
        _dir: dir,
    })
}

/// The live messages every comparison sees after the retained one: JSON with v5 properties,
/// an empty payload, text with control characters, and a binary payload.
fn publish_live(f: &Fixture) {
    let b = &f;
    mosquitto_pub(
        b,
        &[
            "-t",
            "t/a",
            "-q",
            "1",
            "-V",
            "5",
            "-m",
            r#"{"a": [1, 2.50, "x", true], "b": null, "c": {"d": -1e20}}"#,
            // %j follows the wire order (the codec records it); the properties in another
            // order, expiry included, are in
            // sub_json_properties_follow_the_wire_order_through_mosquitto.
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "response-topic",
            "resp/t",
            "-D",
            "publish",
            "correlation-data",
            "corr-1",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "content-type",
            "application/json",
        ],
    );
    mosquitto_pub(b, &["-t", "t/c", "-q", "0", "-n"]);
    mosquitto_pub(
        b,
        &[
            "-t",
            "t/d",
            "-q",
            "1",
            "-m",
            "tab\there\r\nline2 é ü",
            "-V",
            "5",
            "-D",
            "publish",
            "message-expiry-interval",
            "86400",
        ],
    );
    // The QoS 2 message last: mosquitto_sub hands a QoS 2 message over on PUBREL and tern sub
    // on PUBLISH, so anything published after it could overtake it in one and not the other.
    mosquitto_pub(
        b,
        &[
            "-t",
            "t/b",
            "-q",
            "2",
            "-f",
            f.binary_file.to_str().unwrap(),
        ],
    );
}

/// Runs `mosquitto_sub ARGS` and `tern sub ARGS` on the same broker, publishes the live
/// messages, and returns both outputs.
fn side_by_side(f: &Fixture, args: &[&str]) -> (Output, Output) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (their_id, our_id) = (format!("cmp-theirs-{n}"), format!("cmp-ours-{n}"));
    let args = with_broker(args, f);
    let with_id = |id: &str| -> Vec<String> {
        let mut a = args.clone();
        a.extend(["-i".to_owned(), id.to_owned()]);
        a
    };
    let theirs = spawn(require_peer("mosquitto_sub").unwrap(), &with_id(&their_id));
    let ours = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(with_id(&our_id))
            .collect::<Vec<_>>(),
    );
    // Both must have subscribed before the live messages are published.
    f.wait_subscribed(&their_id);
    f.wait_subscribed(&our_id);
    publish_live(f);
    let theirs = wait(theirs, Duration::from_secs(10));
    let ours = wait(ours, Duration::from_secs(10));
    (theirs, ours)
}

fn assert_same(f: &Fixture, args: &[&str]) {
    let (theirs, ours) = side_by_side(f, args);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "tern sub {args:?} differs from mosquitto_sub (stderr: {})",
        stderr(&ours)
    );
    assert_eq!(ours.stdout, theirs.stdout, "bytes differ for {args:?}");
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "exit status for {args:?}"
    );
}

/// Replaces every ASCII digit, so that outputs printed at slightly different times compare.
fn mask_digits(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|c| if c.is_ascii_digit() { b'9' } else { *c })
        .collect()
}

const TOPICS: [&str; 4] = ["-t", "r/#", "-t", "t/#"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    TOPICS
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_output_matches_mosquitto_sub_plain_verbose_and_no_eol() {
    let Some(f) = fixture() else { return };
    assert_same(&f, &args(&["-q", "2", "-C", "5"]));
    assert_same(&f, &args(&["-q", "1", "-v", "-C", "5"]));
    assert_same(&f, &args(&["-q", "2", "-v", "-N", "-C", "5"]));
    assert_same(&f, &args(&["-v", "-C", "5", "-V", "mqttv5"]));
    assert_same(&f, &args(&["-v", "-C", "5", "-V", "mqttv31"]));
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_output_matches_mosquitto_sub_for_every_format_specifier() {
    let Some(f) = fixture() else { return };
    let every =
        "%t|%p|%x|%X|%q|%r|%l|%m|%C|%D|%E|%F|%P|%R|%S|%A|%%|\\t|\\\\|\\e\\a\\v\\r\\n|@@|end";
    assert_same(&f, &args(&["-q", "2", "-V", "5", "-C", "5", "-F", every]));
    assert_same(&f, &args(&["-q", "2", "-C", "5", "-F", every]));
    let widths = "[%20t][%-20t][%.3t][%8.2t][%5l][%-5l][%05l][%-05l][%30p][%-30p][%4p][%20x][%-20X][%5q][%3m][%8C][%-8C][%.4C][%6E][%-6F][%06S][%4A]";
    assert_same(&f, &args(&["-q", "1", "-V", "5", "-C", "5", "-F", widths]));
    assert_same(
        &f,
        &args(&["-q", "1", "-V", "5", "-C", "5", "-N", "-F", "%t:%p\\0"]),
    );
    assert_same(
        &f,
        &args(&["-q", "1", "-V", "5", "-C", "5", "-F", "%R %D %P"]),
    );
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_rejects_the_formats_mosquitto_sub_rejects() {
    let Some(tool) = require_peer("mosquitto_sub") else {
        return;
    };
    let port = free_port().to_string();
    for format in [
        "%e", "%c", "%Z", "\\z", "end%", "end@", "end\\", "%-", "%5", "%.2",
    ] {
        let theirs = Command::new(&tool)
            .args(["-p", &port, "-t", "a", "-F", format])
            .output()
            .unwrap();
        assert_eq!(theirs.status.code(), Some(1), "mosquitto_sub -F {format}");
        let mosquitto_says = stderr(&theirs)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let o = tern(&["sub", "-p", &port, "-t", "a", "-F", format]);
        assert_eq!(o.status.code(), Some(1), "tern sub -F {format}");
        assert_eq!(stderr(&o).trim_end(), mosquitto_says, "-F {format}");
    }
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_json_and_time_specifiers_match_mosquitto_sub() {
    let Some(f) = fixture() else { return };
    for format in [
        "%j",
        "%J",
        "%I|%U|@Y-@m-@dT@H:@M:@S @N @s @z @e @j @a @b @@ @%",
        "%25I|%-25I|%.10I",
    ] {
        for version in ["mqttv5", "mqttv311"] {
            let a = args(&["-q", "2", "-C", "5", "-V", version, "-F", format]);
            compare_masked(&f, &a);
        }
    }
    for format in ["%j", "%J"] {
        compare_masked(
            &f,
            &args(&["-q", "1", "-C", "5", "-V", "5", "--pretty", "-F", format]),
        );
    }
}

/// Compares the two outputs with every digit masked (they are printed at different instants).
fn compare_masked(f: &Fixture, a: &[&str]) {
    let (theirs, ours) = side_by_side(f, a);
    assert_eq!(
        String::from_utf8_lossy(&mask_digits(&ours.stdout)),
        String::from_utf8_lossy(&mask_digits(&theirs.stdout)),
        "{a:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&mask_digits(&ours.stderr)),
        String::from_utf8_lossy(&mask_digits(&theirs.stderr)),
        "stderr for {a:?}"
    );
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_filters_match_mosquitto_sub_r_t_retained_only_c() {
    let Some(f) = fixture() else { return };
    // -R: the retained message is not printed (nor counted).
    assert_same(&f, &args(&["-v", "-R", "-C", "4"]));
    // -T: filtered topics are not printed.
    assert_same(&f, &args(&["-v", "-T", "t/b", "-T", "t/c", "-C", "3"]));
    // --retained-only: the retained message, then exit at the first live one.
    assert_same(&f, &args(&["-v", "--retained-only"]));
    // -C: stops after exactly two.
    assert_same(&f, &args(&["-v", "-C", "2"]));
    // -t '#' with -T '#' prints nothing; both end with -W (status 27).
    let (theirs, ours) = side_by_side(&f, &["-t", "t/#", "-T", "#", "-W", "2"]);
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(ours.status.code(), Some(27));
    assert_eq!(theirs.status.code(), Some(27));
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_json_lines() {
    let Some(f) = fixture() else { return };
    let args = with_broker(&args(&["-q", "1", "-V", "5", "-C", "5", "--json"]), &f);
    let ours = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(args)
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(500));
    publish_live(&f);
    let out = wait(ours, Duration::from_secs(10));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0]["topic"], "r/1");
    assert_eq!(lines[0]["retain"], true);
    assert_eq!(lines[1]["properties"]["content_type"], "application/json");
    assert_eq!(lines[1]["properties"]["user_properties"][0][0], "k1");
    assert_eq!(lines[2]["payload"], "");
    assert!(
        lines[4]["payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("0001")
    );
}

/// `tern pub` and `mosquitto_pub` with the same flags are received identically by
/// `mosquitto_sub`.
#[test]
#[ignore = "interop: needs mosquitto"]
fn tern_pub_is_received_by_mosquitto_sub_like_mosquitto_pub() {
    let Some(f) = fixture() else { return };
    let b = &f;
    let binary = f.binary_file.to_str().unwrap().to_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["-t", "p/a", "-m", "qos0"],
        vec!["-t", "p/b", "-m", "qos1", "-q", "1"],
        vec!["-t", "p/c", "-m", "qos2", "-q", "2", "-r"],
        vec!["-t", "p/d", "-n", "-q", "1"],
        vec!["-t", "p/e", "-f", binary.as_str(), "-q", "2"],
        vec![
            "-t",
            "p/f",
            "-m",
            "again",
            "--repeat",
            "3",
            "--repeat-delay",
            "0.05",
            "-q",
            "1",
        ],
        vec![
            "-t",
            "p/g",
            "-m",
            "props",
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "user-property",
            "a",
            "b",
            "-D",
            "publish",
            "response-topic",
            "reply/here",
            "-D",
            "publish",
            "correlation-data",
            "c-d",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
        vec!["-t", "p/h", "-m", "v31", "-V", "mqttv31", "-q", "1"],
    ];
    // Each case's messages are printed with every property a subscriber can see.
    let format = "%t|%q|%r|%l|%x|%C|%P|%R|%D|%F";
    let count = "10"; // 1 + 1 + 1 + 1 + 1 + 3 + 1 + 1
    let mut outputs = Vec::new();
    for publisher in ["mosquitto", "tern"] {
        mosquitto_pub(b, &["-t", "p/c", "-n", "-r"]);
        let sub_args = with_broker(
            &["-t", "p/#", "-V", "5", "-q", "2", "-C", count, "-F", format],
            b,
        );
        let sub = spawn(require_peer("mosquitto_sub").unwrap(), &sub_args);
        std::thread::sleep(Duration::from_millis(400));
        for case in &cases {
            if publisher == "mosquitto" {
                mosquitto_pub(b, case);
            } else {
                let o = tern(
                    &std::iter::once("pub")
                        .chain(with_broker(case, b).iter().map(String::as_str))
                        .collect::<Vec<_>>(),
                );
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "tern pub {case:?}: {}",
                    stderr(&o)
                );
            }
        }
        let out = wait(sub, Duration::from_secs(10));
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(outputs[1], outputs[0]);
}

/// `mosquitto_pub` is received by `tern sub`, and `tern pub -l` / `-s` read stdin.
#[test]
#[ignore = "interop: needs mosquitto"]
fn tern_pub_stdin_modes_reach_tern_sub() {
    let Some(f) = fixture() else { return };
    let b = &f;
    let sub = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(with_broker(&["-t", "in/#", "-v", "-C", "4", "-q", "1"], b))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(400));
    let mut lines = Command::new(TERN)
        .args(
            std::iter::once("pub".to_owned())
                .chain(with_broker(&["-t", "in/lines", "-l", "-q", "2"], b)),
        )
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    lines
        .stdin
        .take()
        .unwrap()
        .write_all(b"first\nsecond\n")
        .unwrap();
    assert!(lines.wait().unwrap().success());
    let mut whole = Command::new(TERN)
        .args(
            std::iter::once("pub".to_owned())
                .chain(with_broker(&["-t", "in/whole", "-s", "-q", "1"], b)),
        )
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    whole
        .stdin
        .take()
        .unwrap()
        .write_all(b"all\nof it")
        .unwrap();
    assert!(whole.wait().unwrap().success());
    mosquitto_pub(b, &["-t", "in/theirs", "-m", "from mosquitto_pub"]);
    let out = wait(sub, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in/lines first\nin/lines second\nin/whole all\nof it\nin/theirs from mosquitto_pub\n"
    );
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn ctrl_c_disconnects_cleanly_with_exit_0() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let sub = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(with_broker(&["-t", "x", "-i", "ctrl-c-sub"], &broker))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &sub.id().to_string()])
        .status()
        .unwrap();
    let out = wait(sub, Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(200));
    let log = broker.log();
    assert!(log.contains("Client ctrl-c-sub disconnected."), "{log}");
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn refused_connection_names_the_reason() {
    let Some(broker) = Mosquitto::start_full("allow_anonymous false\npersistence false\n", "", &[])
    else {
        return;
    };
    let port = broker.port.to_string();
    let o = tern(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "a",
        "-m",
        "x",
        "-V",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Not authorized (0x87)"), "{err}");
    let o = tern(&["sub", "-h", "127.0.0.1", "-p", &port, "-t", "a"]);
    assert!(
        stderr(&o).contains("not authorised (return code 5)"),
        "{}",
        stderr(&o)
    );
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn rr_prints_the_response() {
    let Some(f) = fixture() else { return };
    let b = &f;
    // A responder: mosquitto_sub -C 1 prints the response topic of the request; we then answer
    // with mosquitto_pub, as a service would.
    let responder = spawn(
        require_peer("mosquitto_sub").unwrap(),
        &with_broker(&["-t", "svc/echo", "-C", "1", "-V", "5", "-F", "%R"], b),
    );
    std::thread::sleep(Duration::from_millis(300));
    let rr = spawn(
        TERN,
        &std::iter::once("rr".to_owned())
            .chain(with_broker(
                &[
                    "-t",
                    "svc/echo",
                    "-e",
                    "svc/reply",
                    "-m",
                    "ping",
                    "-v",
                    "-W",
                    "10",
                ],
                b,
            ))
            .collect::<Vec<_>>(),
    );
    let reply_topic = String::from_utf8(wait(responder, Duration::from_secs(10)).stdout).unwrap();
    assert_eq!(reply_topic.trim(), "svc/reply");
    mosquitto_pub(b, &["-t", reply_topic.trim(), "-m", "pong", "-V", "5"]);
    let out = wait(rr, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "svc/reply pong\n");
}

/// `tern pub` and `tern sub` over TLS with a client certificate (`--cafile --cert --key`),
/// through Mosquitto, and `--insecure`; a certificate the CA did not sign is one clear line.
#[test]
#[ignore = "interop: needs mosquitto"]
fn tls_pub_and_sub_with_client_certificate() {
    let pki = generate_pki();
    let tls_port = free_port();
    let Some(broker) = Mosquitto::start_with(&tls_listener(tls_port, &pki), &[tls_port]) else {
        return;
    };
    let port = tls_port.to_string();
    let ca = pki.ca().display().to_string();
    let cert = pki.file("client.pem").display().to_string();
    let key = pki.file("client.key").display().to_string();
    let tls = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let sub = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(tls(&["-t", "secure/#", "-v", "-C", "2", "-q", "1"]))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let o = Command::new(TERN)
        .arg("pub")
        .args(tls(&["-t", "secure/a", "-m", "over tls", "-q", "1"]))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = Command::new(TERN)
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--insecure",
            "--capath",
            pki.dir.to_str().unwrap(),
        ])
        .args([
            "--cert", &cert, "--key", &key, "-t", "secure/b", "-m", "insecure", "-V", "5",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = wait(sub, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secure/a over tls\nsecure/b insecure\n"
    );
    // The server's certificate checked against the wrong CA: a TLS error, exit 1.
    let o = Command::new(TERN)
        .args([
            "pub",
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &cert,
            "-t",
            "x",
            "-m",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("TLS error"), "{err}");
    drop(broker);
}

/// `tern pub -L ws://...` reaches `mosquitto_sub` over Mosquitto's WebSocket listener, and a
/// will set with `--will-*` is published when `tern sub` dies without DISCONNECT.
#[test]
#[ignore = "interop: needs mosquitto"]
fn websocket_url_and_will_message() {
    let ws_port = free_port();
    let Some(broker) = Mosquitto::start_with(
        &format!("listener {ws_port} 127.0.0.1\nprotocol websockets\n"),
        &[ws_port],
    ) else {
        return;
    };
    let watcher = spawn(
        require_peer("mosquitto_sub").unwrap(),
        &with_broker(&["-t", "ws/t", "-t", "wills/#", "-v", "-C", "2"], &broker),
    );
    std::thread::sleep(Duration::from_millis(400));
    let o = tern(&[
        "pub",
        "-L",
        &format!("ws://127.0.0.1:{ws_port}/mqtt"),
        "-t",
        "ws/t",
        "-m",
        "via websocket",
        "-q",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut doomed = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(with_broker(
                &[
                    "-t",
                    "nothing",
                    "--will-topic",
                    "wills/sub",
                    "--will-payload",
                    "gone",
                    "--will-qos",
                    "1",
                ],
                &broker,
            ))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(400));
    doomed.kill().unwrap(); // SIGKILL: no DISCONNECT, so the will is published
    let _ = doomed.wait();
    let out = wait(watcher, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ws/t via websocket\nwills/sub gone\n"
    );
}

/// `-u`/`-P` against a Mosquitto password file made by `mosquitto_passwd`: the right password
/// publishes, a wrong one is refused with the reason code named.
#[test]
#[ignore = "interop: needs mosquitto"]
fn username_and_password() {
    let Some(passwd_tool) = require_peer("mosquitto_passwd") else {
        return;
    };
    let dir = temp_dir("passwd");
    let file = dir.join("passwd");
    let made = Command::new(passwd_tool)
        .args(["-b", "-c", file.to_str().unwrap(), "alice", "s3cret"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let globals = format!(
        "allow_anonymous false\npersistence false\npassword_file {}\n",
        file.display()
    );
    let Some(broker) = Mosquitto::start_full(&globals, "", &[]) else {
        return;
    };
    let port = broker.port.to_string();
    let base = [
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        port.as_str(),
        "-t",
        "a",
        "-m",
        "x",
    ];
    let ok = tern(&[&base[..], &["-u", "alice", "-P", "s3cret", "-q", "1"]].concat());
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let url = format!("mqtt://alice:s3cret@127.0.0.1:{port}/a");
    let ok = tern(&["pub", "-L", &url, "-m", "via url", "-V", "5", "-q", "2"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let bad = tern(&[&base[..], &["-u", "alice", "-P", "wrong", "-V", "5"]].concat());
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("(0x86)") || err.contains("(0x87)"), "{err}");
}

/// mosquitto_sub and tern sub side by side on Tern's broker: the same bytes, `%j`/`%J` with
/// every property included (Tern relays properties in the order tern sub prints them).
#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_output_matches_mosquitto_sub_on_tern_broker() {
    let Some(f) = tern_fixture() else { return };
    assert_same(&f, &args(&["-q", "2", "-v", "-C", "5"]));
    let every = "%t|%p|%x|%X|%q|%r|%l|%m|%C|%D|%E|%F|%P|%R|%S|%A|%%|\\t|@@|end";
    assert_same(&f, &args(&["-q", "2", "-V", "5", "-C", "5", "-F", every]));
    assert_same(&f, &args(&["-v", "-R", "-C", "4"]));
    assert_same(&f, &args(&["-v", "--retained-only"]));
    for format in ["%j", "%J"] {
        compare_masked(&f, &args(&["-q", "1", "-C", "5", "-V", "5", "-F", format]));
    }
    // Every property on one message, Message Expiry Interval included.
    let sub_args = with_broker(&["-t", "all/props", "-V", "5", "-C", "1", "-F", "%j"], &f);
    let theirs = spawn(require_peer("mosquitto_sub").unwrap(), &sub_args);
    let ours = spawn(
        TERN,
        &std::iter::once("sub".to_owned())
            .chain(sub_args.clone())
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(500));
    mosquitto_pub(
        &f,
        &[
            "-t",
            "all/props",
            "-V",
            "5",
            "-m",
            "p",
            "-D",
            "publish",
            "user-property",
            "u",
            "v",
            "-D",
            "publish",
            "content-type",
            "c/t",
            "-D",
            "publish",
            "message-expiry-interval",
            "600",
            "-D",
            "publish",
            "correlation-data",
            "cd",
            "-D",
            "publish",
            "response-topic",
            "r/t",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ],
    );
    let theirs = wait(theirs, Duration::from_secs(10));
    let ours = wait(ours, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&mask_digits(&ours.stdout)),
        String::from_utf8_lossy(&mask_digits(&theirs.stdout))
    );
}

/// Masks what differs between two subscribers of the same message: the digits of `tst` (the
/// instant each printed it) and of the Message Expiry Interval (the seconds left, which may
/// straddle a second between the two deliveries). Everything else, member order included, must
/// be identical.
fn mask_volatile(out: &[u8]) -> Vec<u8> {
    let mut v = out.to_vec();
    for key in [&b"\"tst\":"[..], b"\"message-expiry-interval\":"] {
        let mut from = 0;
        while let Some(at) = v
            .get(from..)
            .and_then(|rest| rest.windows(key.len()).position(|w| w == key))
        {
            let mut i = from + at + key.len();
            while let Some(c) = v.get_mut(i) {
                match *c {
                    b',' | b'}' => break,
                    b'0'..=b'9' => *c = b'9',
                    _ => {}
                }
                i += 1;
            }
            from = i;
        }
    }
    v
}

/// `%j` / `%J` print the properties in the order they were on the wire: Mosquitto relays them
/// in the publisher's order with the Message Expiry Interval moved last, and the user
/// properties go into one object where the first one was.
#[test]
#[ignore = "interop: needs mosquitto"]
fn sub_json_properties_follow_the_wire_order_through_mosquitto() {
    let Some(_) = require_peer("mosquitto_sub") else {
        return;
    };
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    for (n, format) in ["%j", "%J"].into_iter().enumerate() {
        let (their_id, our_id) = (format!("order-theirs-{n}"), format!("order-ours-{n}"));
        let sub = |id: &str| {
            with_broker(
                &[
                    "-t", "order/#", "-V", "5", "-q", "1", "-C", "1", "-F", format, "-i", id,
                ],
                &broker,
            )
        };
        let theirs = spawn(require_peer("mosquitto_sub").unwrap(), &sub(&their_id));
        let ours = spawn(
            TERN,
            &std::iter::once("sub".to_owned())
                .chain(sub(&our_id))
                .collect::<Vec<_>>(),
        );
        broker.wait_subscribed(&their_id);
        broker.wait_subscribed(&our_id);
        #[rustfmt::skip]
        mosquitto_pub(&broker, &[
            "-t", "order/x", "-q", "1", "-V", "5", "-m", r#"{"n":1}"#,
            "-D", "publish", "message-expiry-interval", "3600",
            "-D", "publish", "user-property", "k1", "v1",
            "-D", "publish", "content-type", "application/json",
            "-D", "publish", "response-topic", "order/reply",
            "-D", "publish", "user-property", "k2", "v2",
            "-D", "publish", "correlation-data", "corr-9",
            "-D", "publish", "payload-format-indicator", "1",
        ]);
        let theirs = wait(theirs, Duration::from_secs(10));
        let ours = wait(ours, Duration::from_secs(10));
        let theirs_text = String::from_utf8_lossy(&theirs.stdout);
        // What Mosquitto sends: the publisher's order, expiry last.
        let at = |key: &str| theirs_text.find(key).unwrap_or(usize::MAX);
        assert!(
            at("\"user-properties\"") < at("\"content-type\"")
                && at("\"payload-format-indicator\"") < at("\"message-expiry-interval\""),
            "unexpected order from mosquitto_sub: {theirs_text}"
        );
        assert_eq!(
            String::from_utf8_lossy(&mask_volatile(&ours.stdout)),
            String::from_utf8_lossy(&mask_volatile(&theirs.stdout)),
            "tern sub -F {format} differs from mosquitto_sub (stderr: {})",
            stderr(&ours)
        );
        assert_eq!(mask_volatile(&ours.stdout), mask_volatile(&theirs.stdout));
        assert_eq!(ours.status.code(), theirs.status.code());
    }
}
