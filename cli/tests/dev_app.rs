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
    verifier: String,
    payments: String,
    pki: std::path::PathBuf,
    gates: std::path::PathBuf,
    /// Where it serves its metrics for Prometheus.
    metrics: std::net::SocketAddr,
}

/// A loopback port free a moment ago (the test's `citypass dev` takes it straight away).
fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// `GET /metrics` from `citypass dev`'s scrape endpoint: the body.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: dev\r\nConnection: close\r\n\r\n")
        .expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// Starts `citypass dev` on ephemeral ports and returns it with its URLs.
fn start_dev(keys_dir: &std::path::Path) -> (Dev, Urls) {
    let metrics = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["dev", "--identity-port", "0", "--issuer-port", "0"])
        .args([
            "--revocation-port",
            "0",
            "--verifier-port",
            "0",
            "--payments-port",
            "0",
            "--keys-dir",
        ])
        .arg(keys_dir)
        .arg("--metrics-listen")
        .arg(metrics.to_string())
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
    let (mut identity, mut issuer, mut revocation, mut verifier, mut payments, mut demo_qr) =
        (None, None, None, None, None, false);
    while identity.is_none()
        || issuer.is_none()
        || revocation.is_none()
        || verifier.is_none()
        || payments.is_none()
        || !demo_qr
    {
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
        } else if line.trim_start().starts_with("verifier") {
            verifier = url;
        } else if line.trim_start().starts_with("payments") {
            // "payments   https://127.0.0.1:port (memory ledger, sandbox provider)"
            payments = line
                .split_whitespace()
                .find(|word| word.starts_with("https://"))
                .map(str::to_owned);
        } else if line.contains('▀') {
            demo_qr = true;
        }
    }
    let urls = Urls {
        identity: identity.unwrap_or_default(),
        issuer: issuer.unwrap_or_default(),
        revocation: revocation.unwrap_or_default(),
        verifier: verifier.unwrap_or_default(),
        payments: payments.unwrap_or_default(),
        pki: keys_dir.join("pki"),
        gates: keys_dir.join("verifier").join("gates.yaml"),
        metrics,
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
        .args(["--payments", &urls.payments])
        .arg("--ca")
        .arg(urls.pki.join("ca.crt"))
        .output()
        .expect("run citypass app")
}

/// One JSON object, parsed.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
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
    // Metro gates charge fares: the newcomer links a payment account (README's order).
    ok(run(&[
        "link",
        "--provider",
        "sandbox",
        "--token",
        "agr_sandbox_demo1",
        "--last4",
        "1234",
    ]));
    // The newcomer's second command: the code's PNG scanned at a sample gate of
    // `citypass dev`, with that gate's certificate. It opens once.
    let scan = || {
        Command::new(env!("CARGO_BIN_EXE_citypass"))
            .args(["gate", "scan", "--gate", "metro-entry-1"])
            .args(["--verifier-url", &urls.verifier, "--pki-dir"])
            .arg(&urls.pki)
            .arg("--gates")
            .arg(&urls.gates)
            .arg(&png)
            .output()
            .expect("run citypass gate scan")
    };
    let opened = ok(scan());
    assert!(opened.starts_with("ALLOW"), "{opened}");
    let again = scan();
    assert_eq!(again.status.code(), Some(1), "a DENY exits 1");
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(again.starts_with("DENY replayed"), "{again}");
    // What an operator's Prometheus scrapes: the verifier's decisions by reason.
    let metrics = scrape(urls.metrics);
    let counted = |reason: &str| {
        metrics.lines().any(|line| {
            line.starts_with("citypass_verifier_decisions_total")
                && line.contains(&format!("reason=\"{reason}\""))
                && line.ends_with(" 1")
        })
    };
    assert!(counted("none") && counted("replayed"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("citypass_verifier_key_set_age_seconds")),
        "the key set's age is a gauge: {metrics}"
    );
    // As JSON: the code and its times as RFC 3339 and Unix seconds, no QR, nothing else.
    let code = json(&ok(run(&["code", "--json"])));
    assert!(code["code"].as_str().unwrap().starts_with("CP1:"), "{code}");
    assert_eq!(code["kind"], "online");
    assert_eq!(code["qr_version"], 9);
    let life = code["expires_at_unix"].as_u64().unwrap() - code["issued_at_unix"].as_u64().unwrap();
    assert!(life > 0 && code["expires_at"].is_string(), "{code}");
    let certificate = ok(run(&["certificate"]));
    assert!(
        certificate.contains("not before") && certificate.contains("not after"),
        "{certificate}"
    );
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
    let status = json(&ok(run(&["status", "--json"])));
    assert_eq!(status["offline"]["counter"], 1, "{status}");
    assert!(status["offline"]["not_after_unix"].as_u64().unwrap() > 0);

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
        .args(["--payments", &urls.payments])
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

    // The subject, revoked as of a minute ago given in RFC 3339; the times come back
    // in both forms, and the list as JSON has every entry.
    let start = saved.find("\"subject_id\": \"").unwrap() + 15;
    let subject = &saved[start..start + 32];
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let rfc3339 = time::OffsetDateTime::from_unix_timestamp(i64::try_from(before).unwrap())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let revoked = json(&ok(admin(
        &urls,
        &[
            "revoke",
            "subject",
            subject,
            "--revoked-before",
            &rfc3339,
            "--json",
        ],
    )));
    assert_eq!(revoked["entry"]["revoked_before_unix"], before, "{revoked}");
    assert_eq!(revoked["entry"]["epoch"], 3, "{revoked}");
    let listed = json(&ok(admin(&urls, &["list", "--json"])));
    assert_eq!(listed["head_epoch"], 3, "{listed}");
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{listed}");
    assert_eq!(entries[0]["target_id"], device);
    assert_eq!(entries[0]["reason"], "device_lost");
    assert!(
        entries
            .iter()
            .all(|e| e["created_at_unix"].is_u64() && e["created_at"].is_string())
    );
    let human = ok(admin(&urls, &["list"]));
    assert!(
        human.contains(" at ") && human.contains("issued before "),
        "{human}"
    );
}

#[test]
fn code_watch_redraws_a_fresh_code_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, urls) = start_dev(&dir.path().join("keys"));
    let state = dir.path().join("app.json");
    let run = |args: &[&str]| app(&state, &urls, args);
    ok(run(&[
        "enrol",
        "--name",
        "Li Lei",
        "--id-number",
        "11010519491231002X",
    ]));
    ok(run(&["bind"]));

    // Two codes, a second apart: two screens, each cleared first, each a different QR
    // with its expiry line.
    let started = std::time::Instant::now();
    let text = ok(run(&["code", "--watch", "--count", "2", "--refresh", "1"]));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the refresh"
    );
    let frames: Vec<&str> = text.split("\x1b[2J\x1b[H").collect();
    assert_eq!(frames.len(), 3, "two screens, each cleared first: {text:?}");
    assert!(frames[0].is_empty(), "nothing before the first clear");
    let qr = |frame: &str| -> String {
        frame
            .lines()
            .filter(|l| l.contains('▀') || l.contains('▄') || l.contains('█'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for frame in &frames[1..] {
        assert!(!qr(frame).is_empty(), "a QR is drawn: {frame}");
        assert!(frame.contains("QR version 9"), "{frame}");
        assert!(frame.contains("expires  "), "{frame}");
    }
    assert_ne!(qr(frames[1]), qr(frames[2]), "two distinct codes");
    assert!(frames[1].contains("code 1; the next at "), "{}", frames[1]);
    assert!(frames[2].contains("code 2 of 2"), "{}", frames[2]);

    // Without --count it runs until Ctrl-C, which ends it with exit 0.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["app", "code", "--watch", "--state"])
        .arg(&state)
        .args(["--identity", &urls.identity, "--issuer", &urls.issuer])
        .args(["--payments", &urls.payments])
        .arg("--ca")
        .arg(urls.pki.join("ca.crt"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start citypass app code --watch");
    let stdout = watch.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the first code is drawn")
            .expect("read stdout");
        if line.contains("(Ctrl-C stops)") {
            break;
        }
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let status = watch.wait().expect("wait for citypass app code --watch");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends the watch with exit 0");
}

/// The rider's payment steps against `citypass dev`: a citizen links a sandbox account
/// (signed by the bound device), sees the link, lists trips (none yet: taps come from
/// transit gates) and owes nothing; a card number as the token is refused naming the
/// field; an app without a bound device cannot sign. An operator prints the day's
/// settlement and writes its CSV.
#[test]
fn a_rider_links_a_payment_account_and_lists_trips_on_citypass_dev() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, urls) = start_dev(&dir.path().join("keys"));
    let state = dir.path().join("app.json");
    let run = |args: &[&str]| app(&state, &urls, args);
    ok(run(&[
        "enrol",
        "--name",
        "Wei Fang",
        "--id-number",
        "11010519491231002X",
    ]));
    // Not bound yet: nothing to sign with.
    let unbound = run(&[
        "link",
        "--provider",
        "sandbox",
        "--token",
        "agr_sandbox_1",
        "--last4",
        "1234",
    ]);
    assert!(!unbound.status.success());
    assert!(
        String::from_utf8_lossy(&unbound.stderr).contains("bind a device first"),
        "{}",
        String::from_utf8_lossy(&unbound.stderr)
    );
    ok(run(&["bind"]));

    // A card number is never a token: refused, naming the field, nothing linked.
    let card = run(&[
        "link",
        "--provider",
        "sandbox",
        "--token",
        "4111 1111 1111 1111",
        "--last4",
        "1111",
    ]);
    assert!(!card.status.success());
    let stderr = String::from_utf8_lossy(&card.stderr);
    assert!(stderr.contains("provider_token"), "{stderr}");
    assert!(
        !stderr.contains("4111"),
        "the card number is not echoed: {stderr}"
    );
    let none = run(&["payment-link"]);
    assert!(!none.status.success(), "nothing was linked");

    let linked = json(&ok(run(&[
        "link",
        "--provider",
        "sandbox",
        "--token",
        "agr_sandbox_4f9c2a7e1b",
        "--last4",
        "1234",
        "--json",
    ])));
    assert_eq!(linked["status"], "active", "{linked}");
    assert_eq!(linked["provider"], "sandbox");
    assert_eq!(linked["last4"], "1234");
    assert!(
        !linked.to_string().contains("agr_sandbox"),
        "the token is never returned"
    );
    let shown = ok(run(&["payment-link"]));
    assert!(
        shown.contains("active link") && shown.contains("****1234"),
        "{shown}"
    );
    // A second link while one is active: refused.
    let again = run(&[
        "link",
        "--provider",
        "alipay",
        "--token",
        "agr_alipay_123456",
        "--last4",
        "5678",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("ALREADY_LINKED")
            || String::from_utf8_lossy(&again.stderr).contains("active")
    );

    let trips = json(&ok(run(&["trips", "--json"])));
    assert_eq!(trips["trips"], serde_json::json!([]), "{trips}");
    assert_eq!(ok(run(&["trips"])).trim(), "no trips");
    let arrears = json(&ok(run(&["arrears", "--json"])));
    assert_eq!(arrears["in_arrears"], false, "{arrears}");
    let repay = run(&["repay"]);
    assert!(!repay.status.success(), "nothing is owed");

    // The operator's settlement of today (UTC+8), with its CSV.
    let today = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        civil_date((now + 8 * 3600) / 86_400)
    };
    let csv = dir.path().join("settlement.csv");
    let printed = ok(admin(
        &urls,
        &[
            "settlement",
            "--date",
            &today,
            "--csv",
            csv.to_str().unwrap(),
        ],
    ));
    assert!(
        printed.contains(&format!("settlement of {today}")),
        "{printed}"
    );
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .starts_with("operator,charges,due,confirmed,pending,declined"),
    );
    let bad = admin(&urls, &["settlement", "--date", "2026-02-30"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("date"));

    ok(run(&["unlink"]));
    assert!(!run(&["payment-link"]).status.success(), "unlinked");
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), Howard Hinnant's
/// civil_from_days.
fn civil_date(days: u64) -> String {
    let z = i64::try_from(days).unwrap() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 {
        yoe + era * 400 + 1
    } else {
        yoe + era * 400
    };
    format!("{y:04}-{m:02}-{d:02}")
}

/// A test photo shipped with citypass-face (public domain, its README).
fn photo(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/face/tests/photos")
        .join(name)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 14 item 5, the README's face session through the real binary and the real
/// models (`CITYPASS_FACE_MODELS`, set by scripts/test; missing models fail the steps
/// with the fetch script's name): the app refuses without consent and shows the
/// notice, refuses a photo without a face, enrols from the app; a face counter enrols
/// in person, after which the app cannot replace it (finding F8); a hospital desk's
/// scan with the same person's other photo is MATCH, another person's NO_MATCH; the
/// withdrawal deletes the template.
#[test]
fn a_newcomer_enrols_a_face_and_a_hospital_desk_checks_it_on_citypass_dev() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, urls) = start_dev(&dir.path().join("keys"));
    let state = dir.path().join("app.json");
    let run = |args: &[&str]| app(&state, &urls, args);
    ok(run(&[
        "enrol",
        "--name",
        "Wang Fang",
        "--id-number",
        "11010519491231002X",
    ]));
    ok(run(&["bind"]));
    let subject = json(&ok(run(&["status", "--json"])))["subject_id"]
        .as_str()
        .expect("a subject id")
        .to_owned();
    let obama = photo("obama.jpg");
    let obama = obama.to_str().unwrap();

    // Without --consent: the notice, nothing enrolled, a failure.
    let refused = run(&["face-enrol", obama]);
    assert!(!refused.status.success());
    let notice = String::from_utf8_lossy(&refused.stdout);
    assert!(
        notice.contains("单独同意") && notice.contains("face-withdraw"),
        "{notice}"
    );
    assert!(
        stderr(&refused).contains("--consent"),
        "{}",
        stderr(&refused)
    );
    // Models missing: a clear error naming the fetch script.
    let no_models = Command::new(env!("CARGO_BIN_EXE_citypass"))
        .args(["app", "face-enrol", obama, "--consent", "--state"])
        .arg(&state)
        .arg("--ca")
        .arg(urls.pki.join("ca.crt"))
        .env("CITYPASS_FACE_MODELS", dir.path().join("no-models"))
        .output()
        .unwrap();
    assert_eq!(no_models.status.code(), Some(2));
    assert!(
        stderr(&no_models).contains("scripts/fetch-face-models"),
        "{}",
        stderr(&no_models)
    );
    // A photo without a face: the pipeline's reason.
    let coffee = photo("coffee.jpg");
    let no_face = run(&["face-enrol", coffee.to_str().unwrap(), "--consent"]);
    assert_eq!(no_face.status.code(), Some(2));
    assert!(
        stderr(&no_face).contains("no face found in the photo"),
        "{}",
        stderr(&no_face)
    );

    // From the app, with consent.
    let enrolled = ok(run(&["face-enrol", obama, "--consent"]));
    assert!(
        enrolled.contains("consent recorded: counter-check")
            && enrolled.contains("the photo stayed here")
            && enrolled.contains("liveness"),
        "{enrolled}"
    );

    // At the hospital desk's counter, in person, with the counter's own credential.
    let counter = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_citypass"))
            .arg("counter")
            .args(args)
            .args(["--identity", &urls.identity, "--credential"])
            .arg(urls.pki.join("counter-dev.pem"))
            .output()
            .expect("run citypass counter")
    };
    let at_counter = ok(counter(&[
        "face-enrol",
        "--subject",
        &subject,
        obama,
        "--consent",
    ]));
    assert!(
        at_counter.contains("face enrolled for counter-check"),
        "{at_counter}"
    );
    // The app cannot put another face over the counter's (finding F8).
    let obama3 = photo("obama3.jpg");
    let over = run(&["face-enrol", obama3.to_str().unwrap(), "--consent"]);
    assert!(!over.status.success());
    assert!(
        stderr(&over).contains("enrolled at a counter"),
        "{}",
        stderr(&over)
    );

    // The desk scans a fresh code with a face before its camera, until the verifier's
    // feed has the template (polled every 2 s; a generous deadline for a busy machine).
    let desk_scan = |face: &str| {
        let png = dir.path().join("desk.png");
        ok(run(&["code", "--png", png.to_str().unwrap()]));
        let out = Command::new(env!("CARGO_BIN_EXE_citypass"))
            .args(["gate", "scan", "--gate", "hospital-desk-1"])
            .args(["--verifier-url", &urls.verifier, "--pki-dir"])
            .arg(&urls.pki)
            .arg("--gates")
            .arg(&urls.gates)
            .arg(&png)
            .arg("--face")
            .arg(photo(face))
            .output()
            .expect("run citypass gate scan");
        ok(out)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let matched = loop {
        let answer = desk_scan("obama2.jpg");
        assert!(answer.starts_with("ALLOW"), "{answer}");
        if answer.contains("face MATCH") {
            break answer;
        }
        assert!(
            answer.contains("face NOT_ENROLLED") && std::time::Instant::now() < deadline,
            "{answer}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(matched.contains("liveness"), "{matched}");
    let other = desk_scan("biden.jpg");
    assert!(
        other.starts_with("ALLOW") && other.contains("face NO_MATCH"),
        "never a refusal, the face does not confirm: {other}"
    );

    // A face alone at a gate is the 1:N face pass: the CLI sends VerifyFace with the
    // embedding and its liveness. The counter records the citizen's FACE_PASS consent
    // for the dev park (and enrols again, in person); once the feed has it, the park's
    // unattended face gate lets the same person through on another photo, and not a
    // stranger.
    let for_pass = ok(counter(&[
        "face-enrol",
        "--subject",
        &subject,
        obama,
        "--consent",
        "--purpose",
        "face-pass",
        "--places",
        "venue:dev-park",
    ]));
    assert!(for_pass.contains("face-pass"), "{for_pass}");
    let face_gate = |face: &str| {
        Command::new(env!("CARGO_BIN_EXE_citypass"))
            .args(["gate", "scan", "--gate", "scenic-face-1"])
            .args(["--verifier-url", &urls.verifier, "--pki-dir"])
            .arg(&urls.pki)
            .arg("--gates")
            .arg(&urls.gates)
            .arg("--face")
            .arg(photo(face))
            .output()
            .expect("run citypass gate scan --face")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let passed = loop {
        let out = face_gate("obama2.jpg");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break said;
        }
        assert!(
            said.starts_with("DENY face_not_recognised") && std::time::Instant::now() < deadline,
            "{said}\n{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(passed.starts_with("ALLOW"), "{passed}");
    let stranger = face_gate("biden.jpg");
    let said = String::from_utf8_lossy(&stranger.stdout);
    assert!(
        stranger.status.code() == Some(1) && said.starts_with("DENY face_not_recognised"),
        "{said}\n{}",
        stderr(&stranger)
    );

    // Withdrawn from the app: the template goes.
    let withdrawn = ok(run(&["face-withdraw"]));
    assert!(
        withdrawn.contains("the face template is deleted"),
        "{withdrawn}"
    );
}
