//! The `latchkey` binary: configuration errors, the master key, user creation.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn latchkey(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB", "1024")
        .env("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn config_errors_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listen = \"127.0.0.1:0\"\nlisten_port = 9\n").unwrap();
    let out = latchkey(dir.path(), &["--config", "bad.toml", "keys", "list"], &[], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("listen_port"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "one clear line: {}", stderr(&out));

    let cases: &[(&str, &str, &str)] = &[
        ("LATCHKEY_TOKENS__ACCESS_TOKEN_TTL_SECS", "0", "tokens.access_token_ttl_secs"),
        ("LATCHKEY_TOKENS__ACCESS_TOKEN_TTL_SECS", "soon", "access_token_ttl_secs"),
        ("LATCHKEY_DATABASE_URL", "mysql://x", "database_url"),
        ("LATCHKEY_PUBLIC_URL", "not a url", "public_url"),
        ("LATCHKEY_LISTEN", "localhost", "listen"),
        ("LATCHKEY_NO_SUCH_SETTING", "1", "no_such_setting"),
    ];
    for (key, value, named) in cases {
        let out = latchkey(dir.path(), &["keys", "list"], &[(key, value)], None);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{key}={value} should name {named}: {}", stderr(&out));
    }

    let out = latchkey(dir.path(), &["--config", "missing.toml", "keys", "list"], &[], None);
    assert_eq!(out.status.code(), Some(2));

    // An unreadable master key file (here: a directory).
    std::fs::create_dir_all(dir.path().join("keys/master.key")).unwrap();
    let out = latchkey(dir.path(), &["user", "create", "--username", "x"], &[], Some("long enough password\n"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("master key"), "{}", stderr(&out));
}

#[test]
fn first_admin_and_a_wrong_master_key() {
    let dir = tempfile::tempdir().unwrap();
    // Works before the server ever ran: creates the database, master key and first key.
    let out = latchkey(
        dir.path(),
        &["user", "create", "--username", "admin", "--role", "admin"],
        &[],
        Some("a long admin password\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("admin, user"), "{stdout}");
    assert!(!stdout.contains("a long admin password") && !stderr(&out).contains("a long admin password"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let out = latchkey(dir.path(), &["keys", "list"], &[], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("active"));

    let dup = latchkey(dir.path(), &["user", "create", "--username", "ADMIN"], &[], Some("another password!\n"));
    assert_eq!(dup.status.code(), Some(2));
    assert!(stderr(&dup).contains("that username is taken"));

    let unknown_role =
        latchkey(dir.path(), &["user", "create", "--username", "z", "--role", "wizard"], &[], Some("password123\n"));
    assert_eq!(unknown_role.status.code(), Some(2));
    assert!(stderr(&unknown_role).contains("wizard"), "{}", stderr(&unknown_role));

    // Another valid key in place of the real one: a clear error, not garbage.
    std::fs::write(dir.path().join("keys/master.key"), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let out = latchkey(dir.path(), &["user", "create", "--username", "y"], &[], Some("password123\n"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot decrypt signing key"), "{}", stderr(&out));
}

/// A reader that stops early (`| head`) ends the output quietly: no panic, exit 0.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, long before the document (far over a pipe's buffer) ends.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn openapi_subcommand_prints_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let out = latchkey(dir.path(), &["openapi"], &[], None);
    assert_eq!(out.status.code(), Some(0));
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spec["info"]["title"], "Latchkey");
}

#[test]
fn audit_verify_reports_an_intact_chain_and_names_a_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["ann", "ben", "cy"] {
        let out = latchkey(dir.path(), &["user", "create", "--username", name], &[], Some("long enough password\n"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = latchkey(dir.path(), &["audit", "verify"], &[], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr(&out));
    assert!(stdout.starts_with("audit chain intact: "), "{stdout}");
    let head = stdout.lines().find_map(|line| line.strip_prefix("head ")).expect("the head is printed").to_string();
    let out = latchkey(dir.path(), &["audit", "verify", "--known", &head], &[], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 recorded point(s) matched"), "{out:?}");

    let db = rusqlite::Connection::open(dir.path().join("data/latchkey.db")).unwrap();
    let id: i64 = db.query_row("SELECT id FROM audit_events WHERE chain_seq = 2", [], |row| row.get(0)).unwrap();
    db.execute("UPDATE audit_events SET target = 'someone else' WHERE id = ?1", [id]).unwrap();
    drop(db);
    let out = latchkey(dir.path(), &["audit", "verify"], &[], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", stderr(&out));
    assert!(stdout.contains(&format!("event {id} (place 2) was altered")), "{stdout}");

    let out = latchkey(dir.path(), &["audit", "verify", "--known", "7:not-a-hash"], &[], None);
    assert_eq!(out.status.code(), Some(2), "a malformed point is a usage error");
}
