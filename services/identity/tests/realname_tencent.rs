//! Identity's real-name adapter (`realname/tencent.rs`) against the provider's
//! documented contract, held by a local HTTPS double that checks every request's
//! TC3-HMAC-SHA256 signature (`citypass_testkit::realname`): each documented result
//! code's outcome, what is retried and what is not, the deadline, TLS trust, credential
//! rotation without a restart, and logs without the name or the number.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citypass_identity::document::{Date, Document, gb11643_check_char};
use citypass_identity::name::Name;
use citypass_identity::realname::tencent::{Provider, RealNameConfig, Tencent};
use citypass_identity::{IdentityConfig, Outcome, RealNameCheck};
use citypass_proto::v1::DocumentType;
use citypass_testkit::realname::{RealNameDouble, Reply, SECRET_ID, SECRET_KEY};

const TODAY: Date = Date {
    year: 2026,
    month: 12,
    day: 3,
};

/// The `n`th resident ID number of a made-up person born 1949-12-31 in Beijing.
fn resident_number(n: u32) -> String {
    let first17 = format!("11010519491231{n:03}");
    let check = gb11643_check_char(&first17).expect("a check character");
    format!("{first17}{check}")
}

fn resident(n: u32) -> Document {
    Document::parse(DocumentType::ResidentIdCard, &resident_number(n), TODAY)
        .expect("a valid number")
}

fn name(text: &str) -> Name {
    Name::parse(text).expect("a valid name")
}

/// The adapter's configuration for `double`, its credential files in `dir`.
fn config(double: &RealNameDouble, dir: &Path, secret_key: &str) -> RealNameConfig {
    std::fs::write(dir.join("secret-id"), format!("{SECRET_ID}\n")).unwrap();
    std::fs::write(dir.join("secret-key"), format!("{secret_key}\n")).unwrap();
    std::fs::write(dir.join("ca.crt"), &double.ca_pem).unwrap();
    RealNameConfig {
        provider: Provider::Tencent,
        endpoint: double.endpoint.clone(),
        region: Some("ap-guangzhou".to_owned()),
        timeout: Duration::from_secs(10),
        secret_id_file: dir.join("secret-id"),
        secret_key_file: dir.join("secret-key"),
        ca_file: Some(dir.join("ca.crt")),
    }
}

async fn setup() -> (RealNameDouble, tempfile::TempDir, Tencent) {
    let double = RealNameDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tencent = Tencent::new(&config(&double, dir.path(), SECRET_KEY)).expect("the adapter");
    (double, dir, tencent)
}

#[tokio::test]
async fn each_documented_result_has_its_outcome() {
    let (double, _dir, tencent) = setup().await;
    double.person(&resident_number(1), "李雷");
    assert_eq!(
        tencent.check(&resident(1), &name("李雷")).await,
        Outcome::Matched
    );
    assert_eq!(
        tencent.check(&resident(1), &name("韩梅梅")).await,
        Outcome::Mismatched
    );
    assert_eq!(
        tencent.check(&resident(2), &name("李雷")).await,
        Outcome::NotFound,
        "a number the authority has no record of (-5)"
    );
    for (code, outcome) in [
        ("0", Outcome::Matched),
        ("-1", Outcome::Mismatched),
        ("-2", Outcome::NotFound),
        ("-3", Outcome::Mismatched),
        ("-5", Outcome::NotFound),
        ("-6", Outcome::Unavailable),
        ("-7", Outcome::Unavailable),
    ] {
        let before = double.calls();
        double.script(&resident_number(3), [Reply::Result(code)]);
        assert_eq!(
            tencent.check(&resident(3), &name("王五")).await,
            outcome,
            "Result {code}"
        );
        assert_eq!(double.calls(), before + 1, "Result {code}: one call");
    }
    // -4 (the ID database failed, not billed) is retried: three attempts, then
    // unavailable.
    let before = double.calls();
    double.script(&resident_number(3), [Reply::Result("-4"); 3]);
    assert_eq!(
        tencent.check(&resident(3), &name("王五")).await,
        Outcome::Unavailable
    );
    assert_eq!(double.calls(), before + 3);
    assert!(double.refused().is_empty(), "{:?}", double.refused());
}

#[tokio::test]
async fn only_what_did_no_lookup_is_retried() {
    let (double, _dir, tencent) = setup().await;
    double.person(&resident_number(1), "李雷");
    let who = name("李雷");
    // Rate limited before any work, then answered.
    double.script(&resident_number(1), [Reply::Error("RequestLimitExceeded")]);
    assert_eq!(tencent.check(&resident(1), &who).await, Outcome::Matched);
    assert_eq!(double.calls(), 2);
    // The ID database failed once, then answered.
    double.script(&resident_number(1), [Reply::Result("-4")]);
    assert_eq!(tencent.check(&resident(1), &who).await, Outcome::Matched);
    assert_eq!(double.calls(), 4);
    // Sent and not answered usably: not repeated (a billed lookup may have happened).
    for reply in [
        Reply::Error("InternalError"),
        Reply::Status(502),
        Reply::Status(500),
        Reply::Garbage,
    ] {
        let before = double.calls();
        double.script(&resident_number(1), [reply]);
        assert_eq!(
            tencent.check(&resident(1), &who).await,
            Outcome::Unavailable,
            "{reply:?}"
        );
        assert_eq!(double.calls(), before + 1, "{reply:?}: not retried");
    }
}

#[tokio::test]
async fn a_silent_provider_is_unavailable_by_the_deadline() {
    let double = RealNameDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&double, dir.path(), SECRET_KEY);
    config.timeout = Duration::from_secs(1);
    let tencent = Tencent::new(&config).unwrap();
    double.script(
        &resident_number(1),
        [Reply::Silence(Duration::from_secs(120))],
    );
    let started = Instant::now();
    assert_eq!(
        tencent.check(&resident(1), &name("李雷")).await,
        Outcome::Unavailable
    );
    // One second asked; a busy machine gets generous slack, never two minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(double.calls(), 1, "a sent request is not repeated");
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_a_rotated_one_applies_without_a_restart() {
    let double = RealNameDouble::start().await;
    double.person(&resident_number(1), "李雷");
    let dir = tempfile::tempdir().unwrap();
    let tencent = Tencent::new(&config(&double, dir.path(), "not-the-key")).unwrap();
    assert_eq!(
        tencent.check(&resident(1), &name("李雷")).await,
        Outcome::Unavailable
    );
    assert_eq!(double.refused(), ["AuthFailure.SignatureFailure"]);
    assert_eq!(double.calls(), 1, "a refused call is not repeated");
    // The operator rotates the Secret: the next check signs with the new key.
    std::fs::write(dir.path().join("secret-key"), SECRET_KEY).unwrap();
    assert_eq!(
        tencent.check(&resident(1), &name("李雷")).await,
        Outcome::Matched
    );
}

#[tokio::test]
async fn an_endpoint_the_ca_does_not_vouch_for_gets_nothing() {
    let double = RealNameDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&double, dir.path(), SECRET_KEY);
    let other = RealNameDouble::start().await;
    std::fs::write(dir.path().join("other-ca.crt"), &other.ca_pem).unwrap();
    config.ca_file = Some(dir.path().join("other-ca.crt"));
    let tencent = Tencent::new(&config).unwrap();
    assert_eq!(
        tencent.check(&resident(1), &name("李雷")).await,
        Outcome::Unavailable
    );
    // The public web roots do not vouch for a private CA either.
    config.ca_file = None;
    let public = Tencent::new(&config).unwrap();
    assert_eq!(
        public.check(&resident(1), &name("李雷")).await,
        Outcome::Unavailable
    );
    assert_eq!(
        double.calls(),
        0,
        "no request was sent without a trusted handshake"
    );
}

#[tokio::test]
async fn no_server_and_other_documents_are_unavailable() {
    let double = RealNameDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&double, dir.path(), SECRET_KEY);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.endpoint = format!("https://{closed}");
    let nowhere = Tencent::new(&config).unwrap();
    assert_eq!(
        nowhere.check(&resident(1), &name("李雷")).await,
        Outcome::Unavailable
    );
    let (double, _dir, tencent) = setup().await;
    let passport = Document::parse(DocumentType::Passport, "E12345678", TODAY).unwrap();
    assert_eq!(
        tencent.check(&passport, &name("John Smith")).await,
        Outcome::Unavailable
    );
    assert_eq!(double.calls(), 0, "the API checks resident ID cards only");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn nothing_personal_is_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (double, _dir, tencent) = setup().await;
    double.person(&resident_number(1), "李雷");
    double.script(
        &resident_number(1),
        [
            Reply::Error("RequestLimitExceeded"),
            Reply::Result("-4"),
            Reply::Result("-6"),
            Reply::Error("InvalidParameter"),
        ],
    );
    for _ in 0..3 {
        tencent.check(&resident(1), &name("李雷")).await;
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("real-name"), "the failures are logged: {log}");
    for personal in [resident_number(1).as_str(), "李雷", "11010519491231"] {
        assert!(!log.contains(personal), "{personal} in the log: {log}");
    }
}

#[test]
fn production_takes_the_provider_and_still_refuses_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id"), SECRET_ID).unwrap();
    std::fs::write(dir.path().join("key"), SECRET_KEY).unwrap();
    let load = |vars: &[(&str, &str)]| -> IdentityConfig {
        citypass_runtime::config::load_from(None, "CITYPASS", vars.iter().copied()).unwrap()
    };
    let id = dir.path().join("id").display().to_string();
    let key = dir.path().join("key").display().to_string();
    let provider = [
        ("CITYPASS_ENVIRONMENT", "production"),
        ("CITYPASS_REAL_NAME__PROVIDER", "tencent"),
        ("CITYPASS_REAL_NAME__SECRET_ID_FILE", id.as_str()),
        ("CITYPASS_REAL_NAME__SECRET_KEY_FILE", key.as_str()),
    ];
    let config = load(&provider);
    config.check_sandbox_allowed().unwrap();
    assert!(citypass_identity::real_name_check(&config).is_ok());
    let sandbox = load(&[("CITYPASS_ENVIRONMENT", "production")]);
    let err = citypass_identity::real_name_check(&sandbox)
        .err()
        .expect("production refuses the sandbox")
        .to_string();
    assert!(err.contains("real_name"), "{err}");
    // A provider whose credentials are missing does not start.
    let mut missing = load(&provider);
    if let Some(real_name) = missing.real_name.as_mut() {
        real_name.secret_key_file = dir.path().join("no-such-file");
    }
    assert!(citypass_identity::real_name_check(&missing).is_err());
}
