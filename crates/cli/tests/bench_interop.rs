//! `tern bench` against a real Mosquitto (Debian's 2.0.11): a short `fanin --json` run at QoS 1
//! must lose nothing, and the JSON report's counts must add up.
//!
//! Needs a third-party program, so it is `#[ignore]`d: `scripts/test.sh` installs the peers and
//! runs ignored tests. A missing `mosquitto` fails the test, never skips it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};
use tern_testkit::{Mosquitto, free_port, peer, temp_dir};

/// Starts Mosquitto on a free port with the benchmark settings (TCP_NODELAY, in-flight 100, no
/// persistence).
fn start_mosquitto() -> Mosquitto {
    Mosquitto::start_required(
        "allow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages 100\n",
    )
}

/// A CA and a server certificate for localhost / 127.0.0.1, made with the openssl command.
fn make_certificates(dir: &Path) {
    let openssl = peer("openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tern-bench-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    // Mosquitto started as root drops to its own user, which must be able to read the key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

/// Runs `tern bench ARGS --json` and parses its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run tern bench");
    // A 2-second run has a hard cap of a few minutes; it should end in seconds.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "tern bench took {:?}",
        started.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tern bench {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn u(v: &serde_json::Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no integer at {path} in {v}"))
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn fanin_qos1_against_mosquitto_loses_nothing_and_counts_add_up() {
    let broker = start_mosquitto();
    let port = broker.port.to_string();
    // A moderate rate keeps Mosquitto's per-client queue (max_queued_messages 1000) from
    // overflowing, which would be a (documented) drop by the broker, not a loss to detect here.
    let r = bench(&[
        "fanin", "-p", &port, "-q", "1", "-P", "4", "-d", "2s", "--rate", "4000", "-s", "64",
    ]);

    assert_eq!(r["scenario"], "fanin");
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(u(&r, "/publishers"), 4);
    assert_eq!(u(&r, "/subscribers"), 1);
    assert_eq!(u(&r, "/connections/established"), 5);
    assert_eq!(u(&r, "/connections/failed"), 0);

    let sent = u(&r, "/messages/sent");
    // 4,000 msg/s for 2 s, give or take the scheduling at the edges.
    assert!((7_000..=8_100).contains(&sent), "sent {sent}");
    assert_eq!(
        u(&r, "/messages/acked"),
        sent,
        "every QoS 1 publication acknowledged"
    );
    assert_eq!(
        u(&r, "/messages/expected"),
        sent,
        "one subscriber expects every message"
    );
    assert_eq!(u(&r, "/messages/delivered"), sent);
    assert_eq!(u(&r, "/messages/lost"), 0);
    assert_eq!(u(&r, "/messages/duplicates"), 0);
    assert_eq!(u(&r, "/messages/foreign"), 0);
    assert_eq!(r["messages"]["loss_counted_from"], "sent");
    assert_eq!(u(&r, "/messages/qos"), 1);
    assert_eq!(
        u(&r, "/messages/latency_us/count"),
        sent,
        "a latency sample per message"
    );
    let p50 = r["messages"]["latency_us"]["p50"].as_f64().unwrap();
    let p99 = r["messages"]["latency_us"]["p99"].as_f64().unwrap();
    let max = r["messages"]["latency_us"]["max"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    let rate = r["messages"]["delivered_per_s"].as_f64().unwrap();
    assert!(rate > 3_000.0, "delivered {rate} msg/s");
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn conn_and_shared_against_mosquitto_report_consistent_counts() {
    let broker = start_mosquitto();
    let port = broker.port.to_string();
    let c = bench(&["conn", "-p", &port, "-c", "200", "-d", "1s"]);
    assert_eq!(u(&c, "/connections/established"), 200);
    assert_eq!(u(&c, "/connections/dropped"), 0);
    assert!(c["connections"]["per_s"].as_f64().unwrap() > 0.0);

    // MQTT 5 shared subscription: each message reaches exactly one member.
    let s = bench(&[
        "shared", "-p", &port, "-V", "5", "-q", "1", "-P", "2", "-S", "3", "-n", "500",
    ]);
    assert_eq!(s["errors"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(u(&s, "/messages/sent"), 1000);
    assert_eq!(u(&s, "/messages/expected"), 1000);
    assert_eq!(u(&s, "/messages/delivered"), 1000);
    assert_eq!(u(&s, "/messages/lost"), 0);
    assert_eq!(u(&s, "/messages/duplicates"), 0);
}

#[test]
#[ignore = "interop: needs mosquitto and openssl"]
fn fanin_over_tls_and_websocket_against_mosquitto() {
    let tls_port = free_port();
    let ws_port = free_port();
    let dir = temp_dir("bench-interop-tls");
    make_certificates(&dir);
    let d = dir.display();
    let _broker = Mosquitto::launch(
        peer("mosquitto"),
        "allow_anonymous true\npersistence false\nset_tcp_nodelay true\n",
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
             keyfile {d}/server.key\n\
             listener {ws_port} 127.0.0.1\nprotocol websockets\n"
        ),
        &[tls_port],
    );
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let tls = bench(&[
        "fanin",
        "-L",
        &format!("mqtts://localhost:{tls_port}"),
        "--cafile",
        ca,
        "-q",
        "1",
        "-P",
        "2",
        "-n",
        "300",
    ]);
    for _ in 0..50 {
        if TcpStream::connect(("127.0.0.1", ws_port)).is_ok() {
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let ws = bench(&[
        "fanin",
        "-L",
        &format!("ws://127.0.0.1:{ws_port}/mqtt"),
        "-q",
        "1",
        "-P",
        "2",
        "-n",
        "300",
    ]);
    for r in [&tls, &ws] {
        assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
        assert_eq!(u(r, "/messages/sent"), 600);
        assert_eq!(u(r, "/messages/delivered"), 600);
        assert_eq!(u(r, "/messages/lost"), 0);
    }
    assert!(tls["broker"].as_str().unwrap().starts_with("mqtts://"));
}
