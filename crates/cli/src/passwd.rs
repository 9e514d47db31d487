//! `tern passwd`: manages a password file in Mosquitto's format, with `mosquitto_passwd`'s flags,
//! messages and exit codes, so scripts written for one work with the other.
//!
//! ```text
//! tern passwd [-H sha512 | -H sha512-pbkdf2] [-c | -D] passwordfile username
//! tern passwd [-H sha512 | -H sha512-pbkdf2] [-c] -b passwordfile username password
//! tern passwd -U passwordfile
//! ```
//!
//! Differences from `mosquitto_passwd` 2.0.11, all on the safe side: `-U` leaves lines that already
//! hold a `$6$`/`$7$` hash alone instead of hashing the hash again, and keeps comments and blank
//! lines; a corrupt file is reported and left untouched instead of being partly rewritten; a new
//! file is created readable by its owner only; files are replaced atomically (write, then rename).
//! The hashing and the file format live in `tern_broker::auth::password_file`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tern_broker::auth::password_file::{PasswordHash, is_skipped_line};

/// Arguments of `tern passwd`: the same flags as `mosquitto_passwd`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Manage a password file in Mosquitto's format (mosquitto_passwd's flags)",
    override_usage = "tern passwd [-H sha512 | -H sha512-pbkdf2] [-c | -D] passwordfile username\n       \
                      tern passwd [-H sha512 | -H sha512-pbkdf2] [-c] -b passwordfile username password\n       \
                      tern passwd -U passwordfile"
)]
pub struct PasswdArgs {
    /// Run in batch mode to allow passing passwords on the command line.
    #[arg(short = 'b')]
    batch: bool,
    /// Create a new password file. This will overwrite existing files.
    #[arg(short = 'c')]
    create: bool,
    /// Delete the username rather than adding/updating its password.
    #[arg(short = 'D')]
    delete: bool,
    /// Update a plain text password file to use hashed passwords.
    #[arg(short = 'U')]
    upgrade: bool,
    /// Hashing algorithm: sha512-pbkdf2 (default, `$7$`) or sha512 (legacy `$6$`).
    #[arg(short = 'H', value_name = "HASH")]
    hash: Option<String>,
    /// passwordfile, username, and with -b the password.
    #[arg(value_name = "ARGS", allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Which hash new passwords get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Pbkdf2,
    Sha512,
}

impl HashKind {
    fn hash(self, password: &[u8]) -> PasswordHash {
        match self {
            Self::Pbkdf2 => PasswordHash::generate(password),
            Self::Sha512 => PasswordHash::generate_sha512(password),
        }
    }
}

/// A failure, printed as `mosquitto_passwd` would and mapped to its exit code.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

const USAGE: &str = "tern passwd is a tool for managing password files for Tern and Mosquitto.

Usage: tern passwd [-H sha512 | -H sha512-pbkdf2] [-c | -D] passwordfile username
       tern passwd [-H sha512 | -H sha512-pbkdf2] [-c] -b passwordfile username password
       tern passwd -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -U : update a plain text password file to use hashed passwords.

See docs/security.md for more information.
";

/// What the arguments ask for, once checked.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Upgrade {
        file: PathBuf,
    },
    Delete {
        file: PathBuf,
        username: String,
    },
    Set {
        file: PathBuf,
        username: String,
        /// `Some` in batch mode; `None` to prompt.
        password: Option<String>,
        create: bool,
        kind: HashKind,
    },
}

/// Runs `tern passwd`; the exit code follows `mosquitto_passwd`'s.
pub fn run(args: PasswdArgs) -> ExitCode {
    match plan(&args).and_then(execute) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn usage() -> Failure {
    Failure::new(USAGE)
}

fn plan(args: &PasswdArgs) -> Result<Action, Failure> {
    let kind = match args.hash.as_deref() {
        None | Some("sha512-pbkdf2") => HashKind::Pbkdf2,
        Some("sha512") => HashKind::Sha512,
        Some(other) => return Err(Failure::new(format!("Error: Unknown hash type '{other}'"))),
    };
    if args.create && args.delete {
        return Err(Failure::new("Error: -c and -D cannot be used together."));
    }
    if args.batch && args.delete {
        return Err(Failure::new("Error: -b and -D cannot be used together."));
    }
    if args.upgrade {
        if args.create || args.delete || args.batch {
            return Err(Failure::new(
                "Error: -U cannot be used together with -b, -c or -D.",
            ));
        }
        return match args.args.as_slice() {
            [file] => Ok(Action::Upgrade {
                file: PathBuf::from(file),
            }),
            [] => Err(Failure::new(
                "Error: -U argument given but password file missing.",
            )),
            _ => Err(usage()),
        };
    }
    let wanted = if args.batch { 3 } else { 2 };
    if args.args.len() != wanted {
        if args.create && args.args.len() < wanted {
            return Err(Failure::new(
                "Error: -c argument given but password file or username missing.",
            ));
        }
        if args.delete && args.args.len() < wanted {
            return Err(Failure::new(
                "Error: -D argument given but password file or username missing.",
            ));
        }
        return Err(usage());
    }
    let (file, username) = match args.args.as_slice() {
        [file, username, ..] => (PathBuf::from(file), username.clone()),
        _ => return Err(usage()),
    };
    check_username(&username)?;
    if args.delete {
        return Ok(Action::Delete { file, username });
    }
    Ok(Action::Set {
        file,
        username,
        password: args.args.get(2).cloned(),
        create: args.create,
        kind,
    })
}

fn check_username(username: &str) -> Result<(), Failure> {
    if username.contains(':') {
        return Err(Failure::new(
            "Error: Username must not contain the ':' character.",
        ));
    }
    if username.contains(['\n', '\r']) {
        return Err(Failure::new(
            "Error: Username must not contain a line break.",
        ));
    }
    if username.trim().is_empty() {
        return Err(Failure::new("Error: Username must not be empty."));
    }
    if username.trim() != username {
        return Err(Failure::new(
            "Error: Username must not start or end with blanks (Mosquitto trims them).",
        ));
    }
    Ok(())
}

fn execute(action: Action) -> Result<(), Failure> {
    match action {
        Action::Upgrade { file } => {
            let text = read_file(&file)?;
            let (out, upgraded) = upgrade(&text)?;
            write_file(&file, &out, false)?;
            tracing::debug!(file = %file.display(), upgraded, "password file upgraded");
            Ok(())
        }
        Action::Delete { file, username } => {
            let text = read_file(&file)?;
            let out = set_user(&text, &username, None)?;
            match out {
                Some(out) => write_file(&file, &out, false),
                None => Err(Failure::new(format!(
                    "Warning: User {username} not found in password file."
                ))),
            }
        }
        Action::Set {
            file,
            username,
            password,
            create,
            kind,
        } => {
            // Read the existing file first, so a missing file fails before prompting.
            let existing = if create {
                String::new()
            } else {
                read_file(&file)?
            };
            let password = match password {
                Some(p) => p,
                None => prompt_twice()?,
            };
            let hash = kind.hash(password.as_bytes());
            let line = format!("{username}:{}", hash.encode());
            let out = match set_user(&existing, &username, Some(&line))? {
                Some(out) => out,
                None => format!("{existing}{line}\n"),
            };
            write_file(&file, &out, create)
        }
    }
}

/// Replaces (`Some(line)`) or removes (`None`) every line of `username`, keeping every other line
/// as it is. `Ok(None)` when the user has no line.
fn set_user(text: &str, username: &str, line: Option<&str>) -> Result<Option<String>, Failure> {
    let mut out = String::with_capacity(text.len() + 160);
    let mut found = false;
    for (index, raw) in text.lines().enumerate() {
        if !is_skipped_line(raw) {
            let (user, _) = split(raw, index + 1)?;
            if user == username {
                if let (false, Some(line)) = (found, line) {
                    out.push_str(line);
                    out.push('\n');
                }
                found = true;
                continue;
            }
        }
        out.push_str(raw);
        out.push('\n');
    }
    Ok(found.then_some(out))
}

/// Hashes every plain-text password; lines with a `$6$`/`$7$` hash, comments and blank lines are
/// kept. Returns the new text and how many lines were hashed.
fn upgrade(text: &str) -> Result<(String, usize), Failure> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut upgraded = 0;
    for (index, raw) in text.lines().enumerate() {
        if is_skipped_line(raw) {
            out.push_str(raw);
        } else {
            let (user, password) = split(raw, index + 1)?;
            if PasswordHash::parse(password).is_ok() {
                out.push_str(raw);
            } else {
                let hash = PasswordHash::generate(password.as_bytes());
                out.push_str(&format!("{user}:{}", hash.encode()));
                upgraded += 1;
            }
        }
        out.push('\n');
    }
    Ok((out, upgraded))
}

fn split(raw: &str, line: usize) -> Result<(&str, &str), Failure> {
    match raw.split_once(':') {
        Some((user, rest)) if !user.trim().is_empty() => Ok((user.trim(), rest.trim())),
        _ => Err(Failure::new(format!(
            "Error: Corrupt password file at line {line}."
        ))),
    }
}

fn read_file(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(format!(
            "Error: Unable to open password file {}. {}.",
            path.display(),
            io_reason(&e)
        ))
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, keeping the old
/// file's permissions; a new file is readable by its owner only.
fn write_file(path: &Path, text: &str, create: bool) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(format!(
            "Error: Unable to write password file {}. {}.",
            path.display(),
            io_reason(&e)
        ))
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let old_permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if let (Some(perms), false) = (old_permissions, create) {
            std::fs::set_permissions(&tmp, perms)?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Asks twice, without echo on a terminal; reads lines from standard input otherwise, as
/// `mosquitto_passwd` does, so scripts can pipe passwords in.
fn prompt_twice() -> Result<String, Failure> {
    let first = prompt("Password: ")?;
    if first.is_empty() {
        return Err(Failure::new("Error: Empty password."));
    }
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err(Failure {
            message: "Error: Passwords do not match.".to_owned(),
            code: 2,
        });
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let read = if stdin.is_terminal() {
        rpassword::prompt_password(text)
    } else {
        let mut out = std::io::stdout();
        let _ = write!(out, "{text}").and_then(|()| out.flush());
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map(|_| {
            let _ = writeln!(out);
            line.trim_end_matches(['\n', '\r']).to_owned()
        })
    };
    read.map_err(|e| Failure::new(format!("Error: Unable to read password: {e}.")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_broker::auth::PasswordFile;

    fn args(flags: &str, positional: &[&str]) -> PasswdArgs {
        PasswdArgs {
            batch: flags.contains('b'),
            create: flags.contains('c'),
            delete: flags.contains('D'),
            upgrade: flags.contains('U'),
            hash: None,
            args: positional.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn err(a: PasswdArgs) -> String {
        plan(&a).unwrap_err().message
    }

    #[test]
    fn flags_combine_like_mosquitto_passwd() {
        assert_eq!(
            err(args("cD", &["f", "u"])),
            "Error: -c and -D cannot be used together."
        );
        assert_eq!(
            err(args("bD", &["f", "u"])),
            "Error: -b and -D cannot be used together."
        );
        assert_eq!(
            err(args("c", &["f"])),
            "Error: -c argument given but password file or username missing."
        );
        assert_eq!(
            err(args("D", &["f"])),
            "Error: -D argument given but password file or username missing."
        );
        assert_eq!(
            err(args("U", &[])),
            "Error: -U argument given but password file missing."
        );
        assert!(err(args("b", &["f", "u"])).contains("Usage:"));
        assert!(err(args("", &["f", "u", "p"])).contains("Usage:"));
        assert_eq!(
            err(args("b", &["f", "a:b", "p"])),
            "Error: Username must not contain the ':' character."
        );
        let mut a = args("b", &["f", "u", "p"]);
        a.hash = Some("md5".into());
        assert_eq!(err(a), "Error: Unknown hash type 'md5'");
        assert_eq!(
            plan(&args("cb", &["f", "u", "-p"])).unwrap(),
            Action::Set {
                file: "f".into(),
                username: "u".into(),
                password: Some("-p".into()),
                create: true,
                kind: HashKind::Pbkdf2
            }
        );
        assert_eq!(
            plan(&args("U", &["f"])).unwrap(),
            Action::Upgrade { file: "f".into() }
        );
    }

    #[test]
    fn set_user_replaces_in_place_and_keeps_other_lines() {
        let text = "# users\nalice:$7$old\n\nbob:plain\n";
        let out = set_user(text, "alice", Some("alice:$7$new"))
            .unwrap()
            .unwrap();
        assert_eq!(out, "# users\nalice:$7$new\n\nbob:plain\n");
        assert_eq!(set_user(text, "carol", Some("carol:x")).unwrap(), None);
        let out = set_user(text, "bob", None).unwrap().unwrap();
        assert_eq!(out, "# users\nalice:$7$old\n\n");
        assert_eq!(
            set_user("a:1\nbroken\n", "a", None).unwrap_err().message,
            "Error: Corrupt password file at line 2."
        );
    }

    #[test]
    fn upgrade_hashes_plain_text_only() {
        let kept = PasswordHash::generate(b"x").encode();
        let text = format!("# c\nalice:secret\n\nbob:{kept}\ncarol: pw:with:colons \n");
        let (out, n) = upgrade(&text).unwrap();
        assert_eq!(n, 2);
        assert!(out.contains(&format!("bob:{kept}\n")));
        assert!(out.starts_with("# c\n"));
        let file = PasswordFile::parse("pw", &out).unwrap();
        assert!(file.verify("alice", b"secret"));
        assert!(file.verify("bob", b"x"));
        assert!(file.verify("carol", b"pw:with:colons"));
        assert_eq!(
            upgrade("ok:1\nnocolon\n").unwrap_err().message,
            "Error: Corrupt password file at line 2."
        );
    }

    #[test]
    fn execute_creates_updates_and_deletes_files() {
        let dir = tern_testkit::temp_dir("passwd-unit");
        let file = dir.join("pw");
        let set = |user: &str, pw: &str, create: bool| {
            execute(Action::Set {
                file: file.clone(),
                username: user.into(),
                password: Some(pw.into()),
                create,
                kind: HashKind::Pbkdf2,
            })
        };
        let _ = std::fs::remove_file(&file);
        let missing = set("u", "p", false).unwrap_err().message;
        assert!(
            missing.starts_with("Error: Unable to open password file"),
            "{missing}"
        );
        assert!(missing.ends_with("No such file or directory."), "{missing}");
        set("u", "p", true).unwrap();
        set("v", "q", false).unwrap();
        set("u", "p2", false).unwrap();
        execute(Action::Set {
            file: file.clone(),
            username: "legacy".into(),
            password: Some("old".into()),
            create: false,
            kind: HashKind::Sha512,
        })
        .unwrap();
        let loaded = PasswordFile::load(&file).unwrap();
        assert_eq!(loaded.len(), 3);
        assert!(loaded.verify("u", b"p2") && loaded.verify("v", b"q"));
        assert!(loaded.verify("legacy", b"old"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        execute(Action::Delete {
            file: file.clone(),
            username: "v".into(),
        })
        .unwrap();
        let gone = execute(Action::Delete {
            file: file.clone(),
            username: "v".into(),
        })
        .unwrap_err();
        assert_eq!(gone.message, "Warning: User v not found in password file.");
        assert_eq!(gone.code, 1);
        assert_eq!(PasswordFile::load(&file).unwrap().len(), 2);
        set("u", "p", true).unwrap();
        assert_eq!(PasswordFile::load(&file).unwrap().len(), 1);
    }
}
