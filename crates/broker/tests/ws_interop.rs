//! WebSocket against real clients: MQTT.js (npm `mqtt`, in Node) over `ws://` and `wss://`, and
//! MQTT.js in headless Chromium from a page this test serves, publishing and receiving.
//!
//! Ignored by default (they need node, `npm ci` in tests/interop/js, and chromium):
//! `scripts/test.sh` installs them (scripts/install-peers.sh) and runs these; a missing program
//! fails the test.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod transport_common;

use std::time::Duration;
use tern_broker::config::ListenerConfig;
use tern_codec::ProtocolVersion;
use tern_testkit::KillOnDrop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport_common::*;

fn js_dir() -> std::path::PathBuf {
    let d = repo_root().join("tests/interop/js");
    assert!(
        d.join("node_modules/mqtt").is_dir(),
        "interop: MQTT.js missing; run `npm ci` in {} (scripts/install-peers.sh does)",
        d.display()
    );
    d
}

fn mqttjs(args: &[&str]) -> tokio::task::JoinHandle<std::process::Output> {
    let script = js_dir().join("roundtrip.js").display().to_string();
    let mut all = vec![script.as_str()];
    all.extend(args);
    run_async("node", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: node and MQTT.js (npm ci in tests/interop/js)"]
async fn mqttjs_over_ws_and_wss() {
    let pki = Pki::new("interop-mqttjs");
    let ws = ListenerConfig::ws("127.0.0.1:0".parse().unwrap());
    let mut wss = ListenerConfig::ws("127.0.0.1:0".parse().unwrap());
    wss.tls = Some(pki.tls(false));
    let (b, ws_addr) = start(vec![ws, wss]).await;
    let wss_addr = b.local_addrs()[1];
    let ca = pki.ca_file.display().to_string();
    let cases = [
        vec![
            format!("ws://{ws_addr}/mqtt"),
            "--protocol-version".into(),
            "4".into(),
        ],
        vec![
            format!("ws://{ws_addr}/mqtt"),
            "--protocol-version".into(),
            "5".into(),
        ],
        vec![
            format!("wss://localhost:{}/mqtt", wss_addr.port()),
            "--ca".into(),
            ca.clone(),
        ],
    ];
    for case in cases {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        let o = mqttjs(&args).await.unwrap();
        assert!(o.status.success(), "{case:?}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "OK hello from mqtt.js",
            "{case:?}: {}",
            text(&o)
        );
    }
    // A wrong path is refused with 404 and MQTT.js reports an error.
    let o = mqttjs(&[&format!("ws://{ws_addr}/nope")]).await.unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    // wss:// with a CA that did not sign the server's certificate is refused by the client.
    let other = Pki::new("interop-mqttjs-other");
    let url = format!("wss://localhost:{}/mqtt", wss_addr.port());
    let o = mqttjs(&[&url, "--ca", &other.ca_file.display().to_string()])
        .await
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));

    // wss:// with a client certificate required: MQTT.js with one gets in, without is refused.
    let mut mtls = ListenerConfig::ws("127.0.0.1:0".parse().unwrap());
    mtls.tls = Some(pki.tls(true));
    let (b2, mtls_addr) = start(vec![mtls]).await;
    let url = format!("wss://localhost:{}/mqtt", mtls_addr.port());
    let (cert, key) = pki.client_files("browser-user");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let o = mqttjs(&[&url, "--ca", &ca, "--cert", &cert, "--key", &key])
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = mqttjs(&[&url, "--ca", &ca]).await.unwrap();
    assert!(!o.status.success(), "no client certificate: {}", text(&o));
    b2.shutdown().await;
    b.shutdown().await;
}

/// Serves the test page and MQTT.js's browser bundle; anything else is 404.
async fn serve_page(listener: tokio::net::TcpListener, page: Vec<u8>, bundle: Vec<u8>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let (page, bundle) = (page.clone(), bundle.clone());
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, ctype, body) = if path == "/mqtt.min.js" {
                ("200 OK", "application/javascript", bundle)
            } else if path == "/" || path.starts_with("/?") {
                ("200 OK", "text/html; charset=utf-8", page)
            } else {
                ("404 Not Found", "text/plain", b"not found".to_vec())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: headless chromium (Debian chromium) and MQTT.js (npm ci in tests/interop/js)"]
async fn chromium_page_publishes_and_receives_over_websocket() {
    let js = js_dir();
    let page = std::fs::read(js.join("browser.html")).unwrap();
    let bundle = std::fs::read(js.join("node_modules/mqtt/dist/mqtt.min.js")).unwrap();
    let (b, ws_addr) = start(vec![
        ListenerConfig::ws("127.0.0.1:0".parse().unwrap()),
        listener(None),
    ])
    .await;
    let tcp_addr = b.local_addrs()[1];
    let mut watcher = Client::new(
        tokio::net::TcpStream::connect(tcp_addr).await.unwrap(),
        ProtocolVersion::V5,
    );
    assert_eq!(watcher.connect("watcher", None, None).await, 0);
    assert_eq!(watcher.subscribe("browser/result").await, 0);

    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    tokio::spawn(serve_page(http, page, bundle));

    let profile = temp_dir("chromium-profile");
    let url = format!("http://{http_addr}/?broker=ws://{ws_addr}/mqtt");
    let child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &url,
        ])
        // Its singleton socket goes in the profile, not in the system's temporary directory:
        // a killed browser leaves it behind.
        .env("TMPDIR", profile.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("interop: cannot run `chromium` ({e}); install it with scripts/install-peers.sh")
        });
    // Killed when the test ends, however it ends.
    let _browser = KillOnDrop(child);

    // The browser takes a few seconds to start.
    let payload = loop {
        match watcher.recv_for(Duration::from_secs(60)).await {
            Some(tern_codec::Packet::Publish(p)) => break p.payload.to_vec(),
            Some(_) => {}
            None => panic!("watcher disconnected"),
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&payload),
        "received: hello from chromium"
    );
    b.shutdown().await;
}
