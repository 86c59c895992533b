//! The `citypass` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn citypass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(args)
        .output()
        .expect("run citypass")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn demo_runs_the_life_cycle_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = citypass(&["demo", "--out", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("first scan        ALLOW"), "{text}");
    assert!(text.contains("DENY  replayed"), "{text}");
    assert!(text.contains("DENY  bad_signature"), "{text}");
    assert!(text.contains("offline scan      ALLOW"), "{text}");
    assert!(
        text.contains('▀') || text.contains('▄'),
        "a terminal QR is printed"
    );
    for f in [
        "cp1.txt",
        "cp2.txt",
        "cp1.png",
        "cp2.png",
        "keyset.jwks.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} written");
    }

    // The written codes verify offline against the written key set...
    let keys = dir.path().join("keyset.jwks.json");
    let keys = keys.to_str().unwrap();
    for code in ["cp1.txt", "cp2.txt"] {
        let path = dir.path().join(code);
        let v = citypass(&["token", "verify", "--keys", keys, path.to_str().unwrap()]);
        assert!(v.status.success(), "{code}: {}", stdout(&v));
        assert!(stdout(&v).starts_with("ALLOW"));
    }
    // ...and a scene outside the scopes, a time far later, or a changed code do not.
    let cp1 = std::fs::read_to_string(dir.path().join("cp1.txt")).unwrap();
    let later = citypass(&[
        "token",
        "verify",
        "--keys",
        keys,
        "--at",
        "4000000000",
        &cp1,
    ]);
    assert_eq!(later.status.code(), Some(1));
    assert!(
        stdout(&later).starts_with("DENY expired"),
        "{}",
        stdout(&later)
    );
    let mut changed = cp1.clone().into_bytes();
    let i = changed.len() - 5;
    changed[i] = if changed[i] == b'0' { b'1' } else { b'0' };
    let changed = String::from_utf8(changed).unwrap();
    let bad = citypass(&["token", "verify", "--keys", keys, &changed]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).starts_with("DENY "), "{}", stdout(&bad));

    // Exit 2 when it could not decide: a missing key set, an unknown scene.
    let missing = dir.path().join("no-such.jwks.json");
    let undecided = citypass(&["token", "verify", "--keys", missing.to_str().unwrap(), &cp1]);
    assert_eq!(undecided.status.code(), Some(2));
    assert!(stdout(&undecided).is_empty(), "neither ALLOW nor DENY");
    let usage = citypass(&["token", "verify", "--keys", keys, "--scene", "moon", &cp1]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&usage.stderr)
            .contains("possible values: metro, bus, hospital, scenic"),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    // A scene in the scopes is ALLOWed with exit 0.
    let metro = citypass(&["token", "verify", "--keys", keys, "--scene", "metro", &cp1]);
    assert_eq!(metro.status.code(), Some(0), "{}", stdout(&metro));
}

#[test]
fn inspect_reports_kind_and_qr_version_without_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        citypass(&["demo", "--out", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    let one = citypass(&[
        "token",
        "inspect",
        dir.path().join("cp1.txt").to_str().unwrap(),
    ]);
    let text = stdout(&one);
    assert!(one.status.success());
    assert!(text.contains("online token (CP1)"), "{text}");
    assert!(
        text.contains("qr          version 9 at error correction M"),
        "{text}"
    );
    assert!(
        !text.contains("sub"),
        "the sealed subject is not shown: {text}"
    );
    let two = citypass(&[
        "token",
        "inspect",
        dir.path().join("cp2.txt").to_str().unwrap(),
    ]);
    assert!(stdout(&two).contains("offline code (CP2)"));
    let junk = citypass(&["token", "inspect", "CP1:%%%%"]);
    assert!(!junk.status.success());
}

#[test]
fn keys_generate_add_rotate_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(citypass(&["keys", "generate", "--dir", d]).status.success());
    assert!(
        !citypass(&["keys", "generate", "--dir", d]).status.success(),
        "no silent overwrite"
    );
    let ring = std::fs::read_to_string(dir.path().join("keyring.json")).unwrap();
    assert!(ring.contains("\"dev\": true"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("keyring.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key ring is owner-only");
    }
    let first = signing_kid(dir.path());
    assert!(citypass(&["keys", "add", "--dir", d]).status.success());
    assert_eq!(
        signing_kid(dir.path()),
        first,
        "add publishes without switching"
    );
    assert!(
        citypass(&["keys", "rotate", "--dir", d, "--retire-after", "600"])
            .status
            .success()
    );
    let second = signing_kid(dir.path());
    assert_ne!(second, first);
    let jwks = std::fs::read_to_string(dir.path().join("keyset.jwks.json")).unwrap();
    assert!(
        jwks.contains("\"retired\"") && jwks.contains("\"valid_until\""),
        "{jwks}"
    );
    assert!(
        !citypass(&["keys", "revoke", "--dir", d, &second])
            .status
            .success(),
        "signing key cannot be revoked"
    );
    assert!(
        citypass(&["keys", "revoke", "--dir", d, &first])
            .status
            .success()
    );
    let jwks = std::fs::read_to_string(dir.path().join("keyset.jwks.json")).unwrap();
    assert!(jwks.contains("\"revoked\""));
}

/// The subject-sealing key rotates by key id: `sealing-add` stages a key (it opens,
/// it does not seal), `sealing-rotate` switches sealing to it and retires the old one;
/// `keys show` lists ids and statuses, never a key.
#[test]
fn keys_sealing_key_add_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(citypass(&["keys", "generate", "--dir", d]).status.success());
    let show = || json(&citypass(&["keys", "show", "--dir", d, "--json"]));
    let first = show()["subject_key_id"].as_u64().unwrap();
    assert!(
        citypass(&["keys", "sealing-add", "--dir", d])
            .status
            .success()
    );
    let v = show();
    assert_eq!(v["subject_key_id"], first, "staged, not sealing");
    let staged = v["subject_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "staged")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let rotated = citypass(&[
        "keys",
        "sealing-rotate",
        "--dir",
        d,
        "--retire-after",
        "600",
    ]);
    assert!(rotated.status.success(), "{}", stdout(&rotated));
    let v = show();
    assert_eq!(v["subject_key_id"], staged);
    let old = v["subject_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == first)
        .unwrap()
        .clone();
    assert_eq!(old["status"], "retired");
    assert!(old["valid_until_unix"].is_u64());
    let ring = std::fs::read_to_string(dir.path().join("keyring.json")).unwrap();
    let secret = serde_json::from_str::<serde_json::Value>(&ring).unwrap()["subject_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = stdout(&citypass(&["keys", "show", "--dir", d]));
    assert!(text.contains("retired, opens until") && text.contains("sealing"));
    assert!(!text.contains(&secret), "show never prints a sealing key");
    let jwks = std::fs::read_to_string(dir.path().join("keyset.jwks.json")).unwrap();
    assert!(
        !jwks.contains(&secret),
        "the sealing key is never published"
    );
    assert!(
        !citypass(&[
            "keys",
            "sealing-rotate",
            "--dir",
            d,
            "--retire-after",
            "172801",
        ])
        .status
        .success(),
        "a retirement longer than anything sealed lives is refused"
    );
}

fn signing_kid(dir: &Path) -> String {
    let ring = std::fs::read_to_string(dir.join("keyring.json")).unwrap();
    let start = ring.find("\"signing_kid\": \"").unwrap() + 16;
    ring[start..start + 16].to_owned()
}

#[test]
fn completions_cover_the_subcommands_and_their_values() {
    let bash = citypass(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = stdout(&bash);
    for word in ["citypass", "token", "verify", "pki", "operator", "metro"] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let unknown = citypass(&["completions", "cmd.exe"]);
    assert_eq!(unknown.status.code(), Some(2));
}

fn citypass_in(tz: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citypass"))
        .env("TZ", tz)
        .args(args)
        .output()
        .expect("run citypass")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// A demo's codes and key set in a temporary directory.
fn demo_files() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        citypass(&["demo", "--out", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (keys, cp1, cp2) = (path("keyset.jwks.json"), path("cp1.txt"), path("cp2.txt"));
    (dir, keys, cp1, cp2)
}

#[test]
fn times_show_as_rfc3339_in_local_time_with_the_unix_value() {
    let (_dir, _keys, cp1, cp2) = demo_files();
    let facts = json(&citypass(&["token", "inspect", "--json", &cp1]));
    let iat = facts["issued_at_unix"].as_u64().unwrap();
    // A POSIX TZ string needs no time zone database: UTC+8, as in Beijing.
    let beijing = stdout(&citypass_in("CST-8", &["token", "inspect", &cp1]));
    let line = beijing.lines().find(|l| l.starts_with("iat")).unwrap();
    assert!(line.ends_with(&format!("+08:00 ({iat})")), "{line}");
    let utc = stdout(&citypass_in("UTC0", &["token", "inspect", &cp1]));
    let line = utc.lines().find(|l| l.starts_with("iat")).unwrap();
    assert!(line.ends_with(&format!("Z ({iat})")), "{line}");
    // The offline code's certificate times too, and JSON carries the same local time.
    let two = stdout(&citypass_in("CST-8", &["token", "inspect", &cp2]));
    assert!(
        two.contains("not before ") && two.contains("not after  "),
        "{two}"
    );
    let facts = json(&citypass_in("CST-8", &["token", "inspect", "--json", &cp2]));
    let not_after = facts["certificate"]["not_after"].as_str().unwrap();
    assert!(not_after.ends_with("+08:00"), "{facts}");
    assert_eq!(
        facts["certificate"]["not_after_unix"].as_u64().unwrap()
            - facts["certificate"]["not_before_unix"].as_u64().unwrap(),
        86_400
    );
    assert_eq!(facts["kind"], "offline");
    assert_eq!(facts["qr_version"], 15);
    assert!(facts["counter"].is_u64());
}

#[test]
fn a_time_argument_in_rfc3339_or_unix_seconds_gives_the_same_verdict() {
    use time::format_description::well_known::Rfc3339;
    let (_dir, keys, cp1, _cp2) = demo_files();
    let facts = json(&citypass(&["token", "inspect", "--json", &cp1]));
    let at = facts["issued_at_unix"].as_u64().unwrap() + 10;
    let verify = |at: &str| {
        citypass_in(
            "CST-8",
            &["token", "verify", "--keys", &keys, "--at", at, &cp1],
        )
    };
    // The same instant written four ways: Unix seconds, UTC, +05:30 and as the command
    // itself shows it (+08:00 here).
    let unix = at.to_string();
    let instant = time::OffsetDateTime::from_unix_timestamp(i64::try_from(at).unwrap()).unwrap();
    let utc = instant.format(&Rfc3339).unwrap();
    let india = instant
        .to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap())
        .format(&Rfc3339)
        .unwrap();
    let shown = json(&citypass_in(
        "CST-8",
        &[
            "token", "verify", "--keys", &keys, "--at", &unix, "--json", &cp1,
        ],
    ));
    let local = shown["checked_at"].as_str().unwrap().to_owned();
    assert!(local.ends_with("+08:00"), "{local}");
    assert!(
        utc.ends_with('Z') && india.ends_with("+05:30"),
        "{utc} {india}"
    );
    let by_unix = verify(&unix);
    assert_eq!(by_unix.status.code(), Some(0), "{}", stdout(&by_unix));
    for other in [&utc, &india, &local] {
        let again = verify(other);
        assert_eq!(again.status.code(), Some(0), "{other}: {}", stdout(&again));
        assert_eq!(
            stdout(&again),
            stdout(&by_unix),
            "--at {other} and --at {unix}"
        );
    }
    assert!(
        stdout(&by_unix).contains(&format!("checked at  {local} ({unix})")),
        "{}",
        stdout(&by_unix)
    );
    // Much later, both forms DENY alike.
    let later_unix = verify("4000000000");
    let later_rfc = verify("2096-10-02T07:06:40Z");
    assert_eq!(later_unix.status.code(), Some(1));
    assert_eq!(stdout(&later_unix), stdout(&later_rfc));
    assert!(stdout(&later_rfc).starts_with("DENY expired"));
}

#[test]
fn a_malformed_time_is_a_usage_error() {
    let (_dir, keys, cp1, _cp2) = demo_files();
    let soon = citypass(&["token", "verify", "--keys", &keys, "--at", "soon", &cp1]);
    let err = String::from_utf8_lossy(&soon.stderr);
    assert!(
        err.contains("RFC 3339") && err.contains("Unix seconds"),
        "{err}"
    );
    for bad in [
        "soon",
        "2026-12-02",
        "2026-12-02T14:03:05",
        "2026-02-30T00:00:00Z",
        "-1",
        "1969-12-31T23:59:59Z",
        "1e9",
    ] {
        // `--at=VALUE`, so that clap does not take `-1` for an option.
        let at = format!("--at={bad}");
        let out = citypass(&["token", "verify", "--keys", &keys, &at, &cp1]);
        assert_eq!(out.status.code(), Some(2), "--at {bad}");
        assert!(stdout(&out).is_empty(), "--at {bad}: {}", stdout(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid value") && err.contains("--at <TIME>"),
            "--at {bad}: {err}"
        );
    }
}

#[test]
fn verify_json_is_one_object_with_the_decision_and_the_same_exit_status() {
    let (dir, keys, cp1, cp2) = demo_files();
    for code in [&cp1, &cp2] {
        let allow = citypass(&["token", "verify", "--keys", &keys, "--json", code]);
        assert_eq!(allow.status.code(), Some(0), "{}", stdout(&allow));
        assert_eq!(stdout(&allow).lines().count(), 1, "one line");
        let v = json(&allow);
        assert_eq!(v["decision"], "allow", "{v}");
        assert!(v["reason"].is_null());
        assert!(v["expires_at_unix"].as_u64().unwrap() > v["issued_at_unix"].as_u64().unwrap());
        assert!(v["expires_at"].is_string() && v["checked_at"].is_string());
        assert!(v["scopes"].as_array().unwrap().iter().any(|s| s == "metro"));
    }
    let later = citypass(&[
        "token",
        "verify",
        "--keys",
        &keys,
        "--json",
        "--at",
        "4000000000",
        &cp1,
    ]);
    assert_eq!(later.status.code(), Some(1));
    let v = json(&later);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "expired");
    assert_eq!(v["checked_at_unix"], 4_000_000_000u64);
    // Undecided: exit 2, nothing on stdout.
    let missing = dir.path().join("no-such.jwks.json");
    let undecided = citypass(&[
        "token",
        "verify",
        "--keys",
        missing.to_str().unwrap(),
        "--json",
        &cp1,
    ]);
    assert_eq!(undecided.status.code(), Some(2));
    assert!(stdout(&undecided).is_empty());
}

#[test]
fn keys_show_json_lists_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(citypass(&["keys", "generate", "--dir", d]).status.success());
    let rotated = citypass(&["keys", "rotate", "--dir", d, "--retire-after", "600"]);
    assert!(
        stdout(&rotated).contains("valid until "),
        "{}",
        stdout(&rotated)
    );
    let v = json(&citypass(&["keys", "show", "--dir", d, "--json"]));
    assert_eq!(v["dev"], true);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "two code keys and the snapshot key: {v}");
    let retired = keys.iter().find(|k| k["status"] == "retired").unwrap();
    assert!(retired["valid_until_unix"].is_u64() && retired["valid_until"].is_string());
    let signing = keys
        .iter()
        .find(|k| k["signing"] == true && k["usage"] == "code")
        .unwrap();
    assert_eq!(signing["kid"], v["signing_kid"]);
    let snapshot = keys
        .iter()
        .find(|k| k["usage"] == "revocation-snapshot")
        .unwrap();
    assert_eq!(snapshot["kid"], v["snapshot_kid"]);
    assert_eq!(snapshot["signing"], true);
    assert!(stdout(&citypass(&["keys", "show", "--dir", d])).contains("retired, valid until"));
}

/// The snapshot key: `keys generate` writes it (owner-only) beside the ring, which
/// publishes its public half and never holds its seed; `snapshot-add` stages a new one,
/// `snapshot-rotate` switches to it and retires the old one; the key signing snapshots
/// cannot be revoked.
#[test]
fn keys_snapshot_key_generate_add_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(citypass(&["keys", "generate", "--dir", d]).status.success());
    let key_file = dir.path().join("snapshot-key.json");
    let first = json(&citypass(&["keys", "show", "--dir", d, "--json"]))["snapshot_kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let seed_of = |path: &Path| {
        let key: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        key["seed"].as_str().unwrap().to_owned()
    };
    let ring = std::fs::read_to_string(dir.path().join("keyring.json")).unwrap();
    assert!(ring.contains(&first) && !ring.contains(&seed_of(&key_file)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "snapshot key is owner-only");
    }
    assert!(
        !citypass(&["keys", "revoke", "--dir", d, &first])
            .status
            .success(),
        "the key signing snapshots cannot be revoked"
    );

    assert!(
        citypass(&["keys", "snapshot-add", "--dir", d])
            .status
            .success()
    );
    let staged = dir.path().join("snapshot-key.next.json");
    assert!(staged.exists());
    let v = json(&citypass(&["keys", "show", "--dir", d, "--json"]));
    assert_eq!(
        v["snapshot_kid"],
        first.as_str(),
        "add publishes without switching"
    );
    let published = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["usage"] == "revocation-snapshot" && k["status"] == "active")
        .count();
    assert_eq!(published, 2);

    let rotated = citypass(&[
        "keys",
        "snapshot-rotate",
        "--dir",
        d,
        "--retire-after",
        "600",
    ]);
    assert!(rotated.status.success(), "{}", stdout(&rotated));
    assert!(!staged.exists());
    let v = json(&citypass(&["keys", "show", "--dir", d, "--json"]));
    let second = v["snapshot_kid"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let old = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["status"], "retired");
    let jwks = std::fs::read_to_string(dir.path().join("keyset.jwks.json")).unwrap();
    assert!(
        jwks.contains("\"usage\": \"revocation-snapshot\""),
        "{jwks}"
    );
    assert!(
        citypass(&["keys", "revoke", "--dir", d, &first])
            .status
            .success()
    );
}
