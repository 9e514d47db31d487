//! TLS and mTLS against real clients: Mosquitto's `mosquitto_pub`/`mosquitto_sub` (`--cafile`,
//! `--cert`, `--key`) and Python paho-mqtt 2.x (`tests/interop/paho_tls.py`). Certificates are
//! made in the test with rcgen. Wrong CA, expired certificate, missing client certificate and
//! hostname mismatch are each refused; `use_identity_as_username` feeds the ACL.
//!
//! Ignored by default (they need third-party programs): `scripts/test.sh` installs the peers
//! and runs them; a missing program fails the test.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod transport_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tern_broker::config::TlsConfig;
use transport_common::*;

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// `mosquitto_pub` one message over TLS; returns the finished process.
fn mosquitto_pub(
    addr: SocketAddr,
    host: &str,
    tls: &[String],
    topic: &str,
    msg: &str,
) -> std::process::Output {
    let port = addr.port().to_string();
    let mut args = vec![
        "-h", host, "-p", &port, "-t", topic, "-m", msg, "-q", "1", "-i", "mpub",
    ];
    args.extend(tls.iter().map(String::as_str));
    run("mosquitto_pub", &args)
}

/// `mosquitto_sub` for one message (5 s at most), running while the test goes on.
fn mosquitto_sub(
    addr: SocketAddr,
    host: &str,
    tls: &[String],
    topic: &str,
    extra: &[&str],
) -> tokio::task::JoinHandle<std::process::Output> {
    let port = addr.port().to_string();
    let mut args = vec![
        "-h", host, "-p", &port, "-t", topic, "-C", "1", "-W", "5", "-i", "msub",
    ];
    args.extend(extra);
    args.extend(tls.iter().map(String::as_str));
    run_async("mosquitto_sub", &args)
}

fn paho(
    addr: SocketAddr,
    host: &str,
    cafile: &Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    topic: &str,
) -> std::process::Output {
    let script = repo_root().join("tests/interop/paho_tls.py");
    let port = addr.port().to_string();
    let (cafile, script) = (p(cafile), p(&script));
    let mut args = vec![
        script.as_str(),
        "--host",
        host,
        "--port",
        &port,
        "--cafile",
        &cafile,
        "--topic",
        topic,
    ];
    let files;
    if let Some((cert, key)) = client {
        files = (p(cert), p(key));
        args.extend(["--cert", files.0.as_str(), "--key", files.1.as_str()]);
    }
    run("python3", &args)
}

fn ca_args(pki: &Pki) -> Vec<String> {
    vec!["--cafile".into(), p(&pki.ca_file)]
}

fn client_args(pki: &Pki, files: &(std::path::PathBuf, std::path::PathBuf)) -> Vec<String> {
    let mut v = ca_args(pki);
    v.extend(["--cert".into(), p(&files.0), "--key".into(), p(&files.1)]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: mosquitto_pub/mosquitto_sub (Debian mosquitto-clients)"]
async fn mosquitto_clients_over_tls_and_mtls() {
    let pki = Pki::new("interop-tls");
    let (b, addr) = start(vec![
        listener(Some(pki.tls(false))),
        listener(Some(pki.tls(true))),
    ])
    .await;
    let mtls = b.local_addrs()[1];

    // Server authentication only.
    let sub = mosquitto_sub(addr, "localhost", &ca_args(&pki), "m/tls", &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = mosquitto_pub(addr, "localhost", &ca_args(&pki), "m/tls", "over tls");
    assert!(o.status.success(), "{}", text(&o));
    let o = sub.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "over tls",
        "{}",
        text(&o)
    );

    // mTLS with a good client certificate.
    let alice = pki.client_files("alice");
    let sub = mosquitto_sub(
        mtls,
        "localhost",
        &client_args(&pki, &alice),
        "m/mtls",
        &["-V", "mqttv5"],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = mosquitto_pub(
        mtls,
        "localhost",
        &client_args(&pki, &alice),
        "m/mtls",
        "mutual",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = sub.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "mutual",
        "{}",
        text(&o)
    );

    // Refused: no client certificate, one from another CA, an expired one.
    let refused = [
        ("missing client certificate", ca_args(&pki)),
        (
            "wrong CA",
            client_args(&pki, &pki.foreign_client_files("alice")),
        ),
        (
            "expired certificate",
            client_args(&pki, &pki.expired_client_files("alice")),
        ),
    ];
    for (case, args) in refused {
        let o = mosquitto_pub(mtls, "localhost", &args, "m/x", "no");
        assert!(!o.status.success(), "{case}: {}", text(&o));
    }
    // Refused by the client: the server's certificate is from a CA it does not trust, or for
    // another host name.
    let other = Pki::new("interop-tls-other");
    let o = mosquitto_pub(addr, "localhost", &ca_args(&other), "m/x", "no");
    assert!(!o.status.success(), "wrong server CA: {}", text(&o));
    let misnamed = Pki::new("interop-tls-misnamed");
    let leaf = misnamed.ca.server_for(&["broker.example.com"]);
    let (cert, key) = leaf_files(&misnamed.dir, "misnamed", &leaf);
    let (b2, addr2) = start(vec![listener(Some(TlsConfig {
        cert,
        key,
        ..misnamed.tls(false)
    }))])
    .await;
    let o = mosquitto_pub(addr2, "localhost", &ca_args(&misnamed), "m/x", "no");
    assert!(!o.status.success(), "hostname mismatch: {}", text(&o));
    let o = mosquitto_pub(addr2, "127.0.0.1", &ca_args(&misnamed), "m/x", "no");
    assert!(!o.status.success(), "hostname mismatch: {}", text(&o));

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.handle().limit_stats().tls_handshake_failures >= 4);
    b.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: mosquitto_pub/mosquitto_sub (Debian mosquitto-clients)"]
async fn mosquitto_clients_use_identity_as_username_feeds_the_acl() {
    let pki = Pki::new("interop-identity");
    let acl = write(
        &pki.dir,
        "acl",
        "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n",
    );
    let mut l = listener(Some(TlsConfig {
        use_identity_as_username: true,
        ..pki.tls(true)
    }));
    l.acl_file = Some(acl);
    l.allow_anonymous = Some(false);
    let (b, addr) = start(vec![l]).await;
    let alice = client_args(&pki, &pki.client_files("alice"));
    let bob = client_args(&pki, &pki.client_files("bob"));

    let sub = mosquitto_sub(addr, "localhost", &alice, "alice/#", &["-v"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // bob may not write alice's topics: 3.1.1 drops it silently, the client sees success.
    let o = mosquitto_pub(addr, "localhost", &bob, "alice/x", "from bob");
    assert!(o.status.success(), "{}", text(&o));
    let o = mosquitto_pub(addr, "localhost", &alice, "alice/x", "from alice");
    assert!(o.status.success(), "{}", text(&o));
    let o = sub.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "alice/x from alice",
        "{}",
        text(&o)
    );

    // bob subscribing to alice's topics is refused (v5 SUBACK 0x87).
    let o = mosquitto_sub(addr, "localhost", &bob, "alice/#", &["-V", "mqttv5"])
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("denied")
            || String::from_utf8_lossy(&o.stdout).contains("denied"),
        "{}",
        text(&o)
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: python3 with paho-mqtt 2.x"]
async fn paho_over_tls_and_mtls() {
    let pki = Pki::new("interop-paho");
    let (b, addr) = start(vec![
        listener(Some(pki.tls(false))),
        listener(Some(pki.tls(true))),
    ])
    .await;
    let mtls = b.local_addrs()[1];
    let run_paho = |addr,
                    host: &'static str,
                    ca: std::path::PathBuf,
                    client: Option<(std::path::PathBuf, std::path::PathBuf)>| {
        tokio::task::spawn_blocking(move || paho(addr, host, &ca, client.as_ref(), "paho/tls"))
    };
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", text(o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "OK hello from paho",
            "{}",
            text(o)
        );
    };
    let refused = |case: &str, o: &std::process::Output| {
        assert_eq!(o.status.code(), Some(2), "{case}: {}", text(o));
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with("REFUSED"),
            "{case}: {}",
            text(o)
        );
    };
    ok(&run_paho(addr, "localhost", pki.ca_file.clone(), None)
        .await
        .unwrap());
    ok(&run_paho(
        mtls,
        "localhost",
        pki.ca_file.clone(),
        Some(pki.client_files("alice")),
    )
    .await
    .unwrap());
    refused(
        "missing client certificate",
        &run_paho(mtls, "localhost", pki.ca_file.clone(), None)
            .await
            .unwrap(),
    );
    refused(
        "wrong CA",
        &run_paho(
            mtls,
            "localhost",
            pki.ca_file.clone(),
            Some(pki.foreign_client_files("alice")),
        )
        .await
        .unwrap(),
    );
    refused(
        "expired",
        &run_paho(
            mtls,
            "localhost",
            pki.ca_file.clone(),
            Some(pki.expired_client_files("alice")),
        )
        .await
        .unwrap(),
    );
    let other = Pki::new("interop-paho-other");
    refused(
        "wrong server CA",
        &run_paho(addr, "localhost", other.ca_file.clone(), None)
            .await
            .unwrap(),
    );
    let misnamed = Pki::new("interop-paho-misnamed");
    let (cert, key) = leaf_files(
        &misnamed.dir,
        "misnamed",
        &misnamed.ca.server_for(&["broker.example.com"]),
    );
    let (b2, addr2) = start(vec![listener(Some(TlsConfig {
        cert,
        key,
        ..misnamed.tls(false)
    }))])
    .await;
    refused(
        "hostname mismatch",
        &run_paho(addr2, "localhost", misnamed.ca_file.clone(), None)
            .await
            .unwrap(),
    );
    b.shutdown().await;
    b2.shutdown().await;
}
