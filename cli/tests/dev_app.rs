//! `citypass dev` running, and `citypass app` getting codes from it: the README's
//! newcomer path, through the real binary.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URLs `citypass dev` printed, and its PKI directory (CA, operator credential).
struct Urls {
    identity: String,
    issuer: String,
    revocation: String,
    pki: std::path::PathBuf,
}

/// Starts `citypass dev` on ephemeral ports and returns it with its URLs.
fn start_dev(keys_dir: &std::path::Path) -> (Dev, Urls) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["dev", "--identity-port", "0", "--issuer-port", "0"])
        .args(["--revocation-port", "0", "--keys-dir"])
        .arg(keys_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start citypass dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Keep draining stdout for the life of the process, so `citypass dev` never
    // writes into a closed pipe once the test has what it needs.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let dev = Dev(child);
    let (mut identity, mut issuer, mut revocation, mut demo_qr) = (None, None, None, false);
    while identity.is_none() || issuer.is_none() || revocation.is_none() || !demo_qr {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("citypass dev prints its addresses and a demo code");
        let url = line.split_whitespace().last().map(str::to_owned);
        if line.trim_start().starts_with("identity") {
            identity = url;
        } else if line.trim_start().starts_with("issuer") {
            issuer = url;
        } else if line.trim_start().starts_with("revocation") {
            revocation = url;
        } else if line.contains('▀') {
            demo_qr = true;
        }
    }
    let urls = Urls {
        identity: identity.unwrap_or_default(),
        issuer: issuer.unwrap_or_default(),
        revocation: revocation.unwrap_or_default(),
        pki: keys_dir.join("pki"),
    };
    (dev, urls)
}

fn app(state: &std::path::Path, urls: &Urls, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citypass"))
        .arg("app")
        .args(args)
        .arg("--state")
        .arg(state)
        .args(["--identity", &urls.identity, "--issuer", &urls.issuer])
        .arg("--ca")
        .arg(urls.pki.join("ca.crt"))
        .output()
        .expect("run citypass app")
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_newcomer_gets_online_and_offline_codes_from_citypass_dev() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, urls) = start_dev(&dir.path().join("keys"));
    let state = dir.path().join("app.json");
    let run = |args: &[&str]| app(&state, &urls, args);

    let enrolled = ok(run(&[
        "enrol",
        "--name",
        "Li Lei",
        "--id-number",
        "11010519491231002X",
    ]));
    assert!(enrolled.contains("L* L**"), "{enrolled}");
    ok(run(&["bind"]));
    let png = dir.path().join("code.png");
    let cp1 = dir.path().join("cp1.txt");
    let code = ok(run(&[
        "code",
        "--png",
        png.to_str().unwrap(),
        "--out",
        cp1.to_str().unwrap(),
    ]));
    assert!(code.contains("QR version 9"), "{code}");
    assert!(png.is_file());
    ok(run(&["certificate"]));
    let cp2 = dir.path().join("cp2.txt");
    let offline = ok(run(&["offline-code", "--out", cp2.to_str().unwrap()]));
    assert!(
        offline.contains("559 characters") || offline.contains("QR version 15"),
        "{offline}"
    );

    // The published key set verifies both kinds of code, as a gate integrator would check.
    let jwks = dir.path().join("keys.json");
    ok(run(&["keys", "--out", jwks.to_str().unwrap()]));
    for code in [&cp1, &cp2] {
        let verdict = ok(Command::new(env!("CARGO_BIN_EXE_citypass"))
            .args([
                "token",
                "verify",
                "--keys",
                jwks.to_str().unwrap(),
                "--scene",
                "metro",
            ])
            .arg(code)
            .output()
            .unwrap());
        assert!(verdict.starts_with("ALLOW"), "{verdict}");
    }
    let status = ok(run(&["status"]));
    assert!(status.contains("counter 1"), "{status}");

    // A second enrolment of the same document is refused with its reason.
    let again = run(&[
        "enrol",
        "--name",
        "Li Lei",
        "--id-number",
        "11010519491231002X",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("AlreadyExists")
            || String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

fn admin(urls: &Urls, args: &[&str]) -> Output {
    admin_as(urls, &urls.pki.join("operator-dev.pem"), args)
}

fn admin_as(urls: &Urls, credential: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citypass"))
        .arg("admin")
        .args(args)
        .args(["--revocation", &urls.revocation])
        .arg("--credential")
        .arg(credential)
        .output()
        .expect("run citypass admin")
}

#[test]
fn an_operator_revokes_a_device_and_its_certificates_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, urls) = start_dev(&dir.path().join("keys"));
    let state = dir.path().join("app.json");
    let run = |args: &[&str]| app(&state, &urls, args);
    ok(run(&[
        "enrol",
        "--name",
        "Han Meimei",
        "--id-number",
        "11010519491231002X",
    ]));
    ok(run(&["bind"]));
    ok(run(&["certificate"]));
    let saved = std::fs::read_to_string(&state).unwrap();
    let start = saved.find("\"device_id\": \"").unwrap() + 14;
    let device = &saved[start..start + 32];

    let revoked = ok(admin(
        &urls,
        &["revoke", "device", device, "--reason", "device-lost"],
    ));
    assert!(
        revoked.contains("revoke    device") && revoked.contains("device_lost"),
        "{revoked}"
    );
    assert!(
        revoked.contains("cascaded:") && revoked.contains("certificate"),
        "the live certificate serial is revoked too: {revoked}"
    );
    // The issuer follows the log and stops issuing for the device.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = run(&["code"]);
        if !refused.status.success() {
            let why = String::from_utf8_lossy(&refused.stderr).into_owned();
            assert!(
                why.contains("PermissionDenied") || why.contains("revoked"),
                "{why}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the issuer still issues for a revoked device"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = ok(admin(&urls, &["list"]));
    assert!(
        listed.contains(device) && listed.contains("head epoch 2"),
        "{listed}"
    );
    let snapshot = dir.path().join("rev.snapshot");
    let written = ok(admin(
        &urls,
        &["snapshot", "--out", snapshot.to_str().unwrap()],
    ));
    assert!(written.contains("epoch 2"), "{written}");
    assert!(snapshot.is_file() && snapshot.with_extension("sig").is_file());

    // Bad input is refused with its reason, and nothing is written.
    let bad = admin(&urls, &["revoke", "key", "not-a-kid"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("InvalidArgument")
            || String::from_utf8_lossy(&bad.stderr).contains("invalid")
    );
    assert!(!admin(&urls, &["revoke", "planet", device]).status.success());
    assert!(ok(admin(&urls, &["list"])).contains("head epoch 2"));

    // An auditor's credential, made with `citypass pki operator`, lists but cannot
    // revoke; a missing credential gets nowhere. Nothing is written either way.
    let auditor = dir.path().join("auditor.pem");
    ok(Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["pki", "operator", "audrey", "--role", "auditor", "--dir"])
        .arg(&urls.pki)
        .arg("--out")
        .arg(&auditor)
        .output()
        .expect("run citypass pki operator"));
    assert!(ok(admin_as(&urls, &auditor, &["list"])).contains("head epoch 2"));
    let refused = admin_as(&urls, &auditor, &["revoke", "device", device]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("may not call this RPC"), "{stderr}");
    let missing = admin_as(&urls, &dir.path().join("no-such.pem"), &["list"]);
    assert!(!missing.status.success());
    assert!(ok(admin(&urls, &["list"])).contains("head epoch 2"));
}
