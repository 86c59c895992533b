//! A short run of the generator against the dev stack: it checks that the tool works
//! (every request answered, each kind of code decided as it must be, by the verifier
//! and by the bare server), never how fast. Runs on loopback with embedded stores.

use std::collections::BTreeMap;
use std::time::Duration;

use citypass_loadtest::{CodeKind, Mix, Report, RunReport, Settings, TargetSpec, verify};
use citypass_runtime::config::KeyFile;
use citypass_stack::{KeySource, Stack, StackConfig};
use citypass_token::{Keyring, SnapshotKey, SystemRandom};

/// Far more than a short run needs, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);
const RATE: u32 = 100;
const PER_KIND: u64 = 40;

/// The format reasons: what a text that is not a code may be denied for.
const FORMAT_REASONS: [&str; 11] = [
    "MALFORMED",
    "TOO_LARGE",
    "BAD_PREFIX",
    "BAD_BASE45",
    "BAD_CBOR",
    "NESTING_TOO_DEEP",
    "INDEFINITE_LENGTH",
    "TRUNCATED",
    "ITEM_TOO_LARGE",
    "TRAILING_BYTES",
    "NOT_COSE_SIGN1",
];

fn settings(target: TargetSpec, ceiling: bool) -> Settings {
    Settings {
        target,
        rate: RATE,
        duration: Duration::from_secs(2),
        mix: "fresh=1,replayed=1,expired=1,forged=1,garbled=1"
            .parse::<Mix>()
            .expect("the mix parses"),
        in_flight_cap: 1024,
        ceiling,
    }
}

async fn run(settings: Settings) -> Report {
    tokio::time::timeout(DEADLINE, verify(settings))
        .await
        .expect("the run finishes within the deadline")
        .expect("the run succeeds")
}

/// The outcomes of `kind`'s codes.
fn outcomes(run: &RunReport, kind: CodeKind) -> &BTreeMap<String, u64> {
    run.by_kind
        .get(&kind)
        .unwrap_or_else(|| panic!("{}: no {kind:?} codes: {:?}", run.server, run.by_kind))
}

fn assert_only(run: &RunReport, kind: CodeKind, label: &str) {
    let got = outcomes(run, kind);
    assert_eq!(
        got,
        &BTreeMap::from([(label.to_owned(), PER_KIND)]),
        "{}: {kind:?}",
        run.server
    );
}

fn assert_garbled_refused_as_format(run: &RunReport) {
    let got = outcomes(run, CodeKind::Garbled);
    assert_eq!(
        got.values().sum::<u64>(),
        PER_KIND,
        "{}: {got:?}",
        run.server
    );
    for label in got.keys() {
        let reason = label.strip_prefix("DENY ").unwrap_or_default();
        assert!(
            FORMAT_REASONS.contains(&reason),
            "{}: a garbled code got {label}",
            run.server
        );
    }
}

fn assert_all_answered(run: &RunReport) {
    assert_eq!(run.sent, 5 * PER_KIND, "{}", run.server);
    assert_eq!(run.answered, run.sent, "{}", run.server);
    assert!(run.errors.is_empty(), "{}: {:?}", run.server, run.errors);
    let l = run.latency_us;
    assert!(l.p50 <= l.p99 && l.p99 <= l.max && l.max > 0, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_the_in_process_stack_decides_every_kind_as_it_must() {
    let report = run(settings(TargetSpec::InProcess, true)).await;

    let verifier = &report.verifier;
    assert_all_answered(verifier);
    assert_only(verifier, CodeKind::Fresh, "ALLOW");
    assert_only(verifier, CodeKind::Replayed, "DENY REPLAYED");
    assert_only(verifier, CodeKind::Expired, "DENY EXPIRED");
    assert_only(verifier, CodeKind::Forged, "DENY BAD_SIGNATURE");
    assert_garbled_refused_as_format(verifier);
    assert_eq!(verifier.decisions.get("ALLOW"), Some(&PER_KIND));

    // The bare server checks the signature only: replayed and expired codes pass it.
    let bare = report.ceiling.as_ref().expect("the bare server was loaded");
    assert_all_answered(bare);
    assert_only(bare, CodeKind::Fresh, "ALLOW");
    assert_only(bare, CodeKind::Replayed, "ALLOW");
    assert_only(bare, CodeKind::Expired, "ALLOW");
    assert_only(bare, CodeKind::Forged, "DENY BAD_SIGNATURE");
    assert_garbled_refused_as_format(bare);
    let ratios = report.ratios.expect("ratios to the bare server");
    assert!(ratios.achieved_rate > 0.0 && ratios.p99 > 0.0, "{ratios:?}");

    // The JSON report holds the same figures.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("report.json");
    report.write_json(&path).expect("the report is written");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read back"))
            .expect("the report is JSON");
    assert_eq!(json["verifier"]["answered"], 5 * PER_KIND);
    assert_eq!(
        json["verifier"]["by_kind"]["replayed"]["DENY REPLAYED"],
        PER_KIND
    );
    assert_eq!(json["ceiling"]["server"], "bare verify server");
    assert!(json["verifier"]["latency_us"]["p999"].is_u64());
    assert!(json["ratios"]["p99"].is_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_stack_is_loaded_through_its_keys_directory() {
    // A stack laid out as `citypass dev` lays out keys/dev: the ring in a file, the
    // PKI and the verifier's files beside it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rng = SystemRandom::new();
    let mut ring = Keyring::generate("citypass-loadtest-test", true, &rng).expect("a ring");
    let snapshot_key = SnapshotKey::generate(true, &rng).expect("a snapshot key");
    ring.publish_snapshot_key(snapshot_key.public_key())
        .expect("published");
    let ring_path = dir.path().join("keyring.json");
    std::fs::write(&ring_path, ring.to_json()).expect("write the ring");
    let snapshot_path = dir.path().join("snapshot-key.json");
    std::fs::write(&snapshot_path, snapshot_key.to_json()).expect("write the snapshot key");
    let config = StackConfig::ephemeral(
        KeySource::File {
            path: ring_path,
            reload_interval: Duration::from_secs(3600),
        },
        KeyFile::new(&snapshot_path, Duration::from_secs(3600)),
        dir.path(),
    );
    let stack = tokio::time::timeout(DEADLINE, Stack::start(config))
        .await
        .expect("the stack starts in time")
        .expect("the stack starts");

    let report = run(settings(
        TargetSpec::Running {
            url: stack.verifier_url(),
            keys_dir: dir.path().to_owned(),
        },
        false,
    ))
    .await;
    stack.shutdown().await;

    assert!(report.ceiling.is_none() && report.ratios.is_none());
    let verifier = &report.verifier;
    assert_all_answered(verifier);
    assert_only(verifier, CodeKind::Fresh, "ALLOW");
    assert_only(verifier, CodeKind::Replayed, "DENY REPLAYED");
    assert_only(verifier, CodeKind::Forged, "DENY BAD_SIGNATURE");
}
