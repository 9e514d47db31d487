//! `tern broker` reloads its password file (and certificates, ACLs) on SIGHUP without dropping
//! the connections it has.
#![cfg(unix)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tern_broker::auth::PasswordHash;
use tern_codec::{Packet, ProtocolVersion};
use tern_testkit::{KillOnDrop, free_port, temp_dir, wait_for_port};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn send(s: &mut TcpStream, p: &Packet) {
    let mut b = BytesMut::new();
    tern_codec::encode(p, V5, &mut b).unwrap();
    s.write_all(&b).unwrap();
}

fn recv(s: &mut TcpStream, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = tern_codec::decode(buf, V5, 1 << 20).unwrap() {
            return p;
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).expect("broker answers in time");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects with a user name and password; returns the stream and the CONNACK reason code.
fn login(port: u16, user: &str, password: &str) -> (TcpStream, BytesMut, u8) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    send(
        &mut s,
        &Packet::Connect(Box::new(tern_codec::Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: user.into(),
            will: None,
            username: Some(user.into()),
            password: Some(bytes::Bytes::copy_from_slice(password.as_bytes())),
            properties: Default::default(),
        })),
    );
    let mut buf = BytesMut::new();
    match recv(&mut s, &mut buf) {
        Packet::ConnAck(c) => (s, buf, c.reason_code.0),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn passwd_line(user: &str, password: &str) -> String {
    format!(
        "{user}:{}\n",
        PasswordHash::generate(password.as_bytes()).encode()
    )
}

#[test]
fn sighup_reloads_the_password_file_and_keeps_connections() {
    let dir = temp_dir("sighup");
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, passwd_line("alice", "a-pw")).unwrap();
    let port = free_port();
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npersistence = false\n[[listener]]\nbind = \"127.0.0.1:{port}\"\npassword_file = \"{}\"\n",
            passwd.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tern broker");
    let pid = child.id().to_string();
    let mut broker = KillOnDrop(child);
    wait_for_port(port, &mut broker.0, Duration::from_secs(10), None);

    let (mut alice, mut alice_buf, rc) = login(port, "alice", "a-pw");
    assert_eq!(rc, 0);
    assert_eq!(login(port, "bob", "b-pw").2, 0x86, "bob unknown yet");

    std::fs::write(
        &passwd,
        passwd_line("alice", "a-pw") + &passwd_line("bob", "b-pw"),
    )
    .unwrap();
    let kill = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    // The failed login above costs the next attempt from this address a short back-off.
    loop {
        let (_bob, _, rc) = login(port, "bob", "b-pw");
        if rc == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "bob still refused after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    send(&mut alice, &Packet::PingReq);
    assert!(matches!(recv(&mut alice, &mut alice_buf), Packet::PingResp));
}
