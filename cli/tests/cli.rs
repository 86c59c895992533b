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
