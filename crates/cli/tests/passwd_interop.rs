//! `tern passwd` against the real Mosquitto 2.0 (Debian `mosquitto`, `mosquitto-clients`): a file
//! it writes is accepted by the Mosquitto broker (right password in, wrong password and deleted
//! users out), `mosquitto_passwd` can go on editing it, and both tools answer the same mistakes
//! with the same exit codes.
//!
//! Ignored by default (they need third-party programs); `scripts/test.sh` installs the peers and
//! runs them. With `CI` set, a missing program fails the test instead of skipping it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use tern_testkit::{Mosquitto, require_peer, temp_dir};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// Runs `program args...` in `dir` with `stdin` piped in.
/// Settings of every Mosquitto here. `user root`: when the tests run as root, keep Mosquitto from
/// switching to the `mosquitto` user, which could not read our owner-only files.
const MOSQUITTO_GLOBALS: &str = "persistence false\nuser root\n";

fn run_in(dir: &Path, program: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        // The program may exit before reading (a usage error): ignore a broken pipe.
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().unwrap()
}

fn tern_ok(dir: &Path, args: &[&str], stdin: &str) {
    let out = run_in(dir, Path::new(TERN), args, stdin);
    assert!(
        out.status.success(),
        "tern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn tern_passwd_files_are_accepted_by_mosquitto() {
    let Some(broker) = require_peer("mosquitto") else {
        return;
    };
    let Some(publish) = require_peer("mosquitto_pub") else {
        return;
    };
    let Some(mp) = require_peer("mosquitto_passwd") else {
        return;
    };
    let dir = temp_dir("passwd-interop-broker");
    tern_ok(&dir, &["passwd", "-c", "-b", "pw", "alice", "secret"], "");
    tern_ok(&dir, &["passwd", "-b", "pw", "bob", "two words:colon"], "");
    tern_ok(&dir, &["passwd", "pw", "carol"], "typed\ntyped\n");
    tern_ok(
        &dir,
        &["passwd", "-H", "sha512", "-b", "pw", "dave", "legacy"],
        "",
    );
    tern_ok(&dir, &["passwd", "-b", "pw", "erin", "doomed"], "");
    tern_ok(&dir, &["passwd", "-D", "pw", "erin"], "");
    tern_ok(&dir, &["passwd", "-b", "pw", "alice", "changed"], "");
    // A plain-text line upgraded in place.
    let path = dir.join("pw");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("frank:plain\n");
    std::fs::write(&path, text).unwrap();
    tern_ok(&dir, &["passwd", "-U", "pw"], "");
    // mosquitto_passwd can go on editing what tern passwd wrote.
    let out = run_in(&dir, &mp, &["-b", "pw", "gina", "fromMosquitto"], "");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "mosquitto_passwd on tern's file: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mosq = Mosquitto::launch(
        broker,
        MOSQUITTO_GLOBALS,
        &format!("allow_anonymous false\npassword_file {}", path.display()),
        &[],
    );
    let connect = |user: Option<&str>, password: Option<&str>| -> bool {
        let mut cmd = Command::new(&publish);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &mosq.port.to_string(),
            "-t",
            "t",
            "-m",
            "m",
        ]);
        if let Some(user) = user {
            cmd.args(["-u", user]);
        }
        if let Some(password) = password {
            cmd.args(["-P", password]);
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let cases: &[(Option<&str>, Option<&str>, bool)] = &[
        (Some("alice"), Some("changed"), true),
        (Some("alice"), Some("secret"), false),
        (Some("bob"), Some("two words:colon"), true),
        (Some("bob"), Some("two words"), false),
        (Some("carol"), Some("typed"), true),
        (Some("dave"), Some("legacy"), true),
        (Some("dave"), Some("Legacy"), false),
        (Some("erin"), Some("doomed"), false),
        (Some("frank"), Some("plain"), true),
        (Some("gina"), Some("fromMosquitto"), true),
        (Some("alice"), None, false),
        (Some("nobody"), Some("secret"), false),
        (None, None, false),
    ];
    for (user, password, expected) in cases {
        assert_eq!(
            connect(*user, *password),
            *expected,
            "user {user:?} password {password:?}\n{}",
            mosq.log()
        );
    }
}

#[test]
#[ignore = "interop: needs mosquitto"]
fn tern_passwd_exit_codes_match_mosquitto_passwd() {
    let Some(mp) = require_peer("mosquitto_passwd") else {
        return;
    };
    // (arguments, standard input, whether `pw` exists beforehand)
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "", false),
        (&["-b", "pw", "u", "p"], "", false),
        (&["-b", "pw", "u", "p"], "", true),
        (&["-c", "-b", "pw", "u", "p"], "", false),
        (&["-c", "-D", "pw", "u"], "", true),
        (&["-b", "-D", "pw", "u"], "", true),
        (&["-c", "pw"], "", false),
        (&["-D", "pw"], "", true),
        (&["-D", "pw", "nobody"], "", true),
        (&["-D", "pw", "existing"], "", true),
        (&["-U"], "", false),
        (&["-U", "pw"], "", false),
        (&["-U", "pw"], "", true),
        (&["-H", "md5", "-b", "pw", "u", "p"], "", true),
        (&["-b", "pw", "a:b", "p"], "", true),
        (&["-b", "pw", "u"], "", true),
        (&["-b", "pw", "u", "p", "extra"], "", true),
        (&["pw", "u"], "same\nsame\n", true),
        (&["pw", "u"], "one\nother\n", true),
        (&["pw", "u"], "\n\n", true),
        (&["-c", "pw", "u"], "abc\nabd\n", false),
    ];
    for (args, stdin, exists) in cases {
        let mut codes = Vec::new();
        for (tool, prefix) in [(mp.as_path(), None), (Path::new(TERN), Some("passwd"))] {
            let dir = temp_dir("passwd-interop-codes");
            if *exists {
                let seed = run_in(&dir, &mp, &["-c", "-b", "pw", "existing", "x"], "");
                assert!(seed.status.success());
            }
            let full: Vec<&str> = prefix.into_iter().chain(args.iter().copied()).collect();
            let out = run_in(&dir, tool, &full, stdin);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            codes.push((
                out.status.code(),
                stderr.split(':').next().unwrap_or("").to_owned(),
            ));
            // Whatever tern passwd leaves behind must still be a valid file for mosquitto_passwd.
            if prefix.is_some() && dir.join("pw").exists() {
                let check = run_in(&dir, &mp, &["-b", "pw", "probe", "x"], "");
                assert!(
                    check.status.success() && check.stderr.is_empty(),
                    "after tern passwd {args:?}: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
        }
        assert_eq!(
            codes[0].0, codes[1].0,
            "exit codes differ for {args:?} (mosquitto_passwd, tern passwd): {codes:?}"
        );
        // Same kind of message: both start with `Error`, `Warning`, or (usage) neither.
        let kind = |s: &str| {
            if s.starts_with("Error") || s.starts_with("Warning") {
                s.to_owned()
            } else {
                String::new()
            }
        };
        assert_eq!(kind(&codes[0].1), kind(&codes[1].1), "{args:?}: {codes:?}");
    }
}
