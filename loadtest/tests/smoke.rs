//! A short run of the generator against the dev stack: it checks that the tool works
//! (every request answered, each kind of code decided as it must be, by the verifier
//! and by the bare server), never how fast. Runs on loopback with embedded stores.
//! The codes are sealed for riders the tool enrolled and linked to a sandbox payment
//! account, so a fresh code's ALLOW at the bus reader is the transit policy's: the
//! holder found at identity, a TapIn accepted by payments.

use std::collections::BTreeMap;
use std::time::Duration;

use citypass_loadtest::{
    CodeKind, FloorShape, Mix, Report, RunReport, Settings, Spawn, TargetSpec, sweep, verify,
};
use citypass_runtime::config::KeyFile;
use citypass_stack::{KeySource, Stack, StackConfig};
use citypass_token::{Keyring, SnapshotKey, SystemRandom};

/// Far more than a short run needs, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);
const RATE: u32 = 100;
const PER_KIND: u64 = 40;
/// Riders enrolled and linked before each run.
const RIDERS: usize = 6;

/// The tests' Redis, for the floor's shared-store steps (`scripts/test` starts it).
fn test_redis() -> String {
    std::env::var("CITYPASS_TEST_REDIS_URL")
        .expect("CITYPASS_TEST_REDIS_URL: run the tests with scripts/test, which starts Redis")
}

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
    with_streams(target, ceiling, 0)
}

fn with_streams(target: TargetSpec, ceiling: bool, streams: usize) -> Settings {
    Settings {
        target,
        rate: RATE,
        duration: Duration::from_secs(2),
        mix: "fresh=1,replayed=1,expired=1,forged=1,garbled=1"
            .parse::<Mix>()
            .expect("the mix parses"),
        in_flight_cap: 1024,
        ceiling,
        floor: None,
        gate: None,
        streams,
        citizens: 0,
        riders: RIDERS,
        revocations: 0,
        progress: false,
    }
}

async fn run(settings: Settings) -> Report {
    tokio::time::timeout(DEADLINE, verify(settings))
        .await
        .expect("the run finishes within the deadline")
        .expect("the run succeeds")
}

/// The outcomes of `kind`'s codes (the mix has one of each kind in five).
fn outcomes(run: &RunReport, kind: CodeKind) -> &BTreeMap<String, u64> {
    run.by_kind
        .get(&kind)
        .unwrap_or_else(|| panic!("{}: no {kind:?} codes: {:?}", run.server, run.by_kind))
}

fn assert_only(run: &RunReport, kind: CodeKind, label: &str) {
    let got = outcomes(run, kind);
    assert_eq!(
        got,
        &BTreeMap::from([(label.to_owned(), run.sent / 5)]),
        "{}: {kind:?}",
        run.server
    );
}

fn assert_garbled_refused_as_format(run: &RunReport) {
    let got = outcomes(run, CodeKind::Garbled);
    assert_eq!(
        got.values().sum::<u64>(),
        run.sent / 5,
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

/// The gates played: the bus reader only (a rider may board again and again).
/// Each of the `n` victims revoked during the Verify run was refused SUBJECT_REVOKED
/// at the gate in time, with nothing else seen on the way.
fn assert_propagation(report: &Report, n: usize) {
    let p = report
        .propagation
        .as_ref()
        .expect("the propagation measurement");
    assert_eq!((p.revoked, p.enforced), (n, n), "{p:?}");
    assert!(p.unexpected.is_empty(), "{p:?}");
    assert!(p.p50_ms.is_some_and(|ms| ms > 0.0), "{p:?}");
    assert!(report.to_string().contains("revocation propagation"));
}

fn assert_bus_gates(report: &Report) {
    assert_eq!(report.gates, vec!["bus-1".to_owned()], "{:?}", report.gates);
}

/// Every kind decided as it must be by the verifier.
fn assert_verifier_decides(run: &RunReport) {
    assert_all_answered(run);
    assert_only(run, CodeKind::Fresh, "ALLOW");
    assert_only(run, CodeKind::Replayed, "DENY REPLAYED");
    assert_only(run, CodeKind::Expired, "DENY EXPIRED");
    assert_only(run, CodeKind::Forged, "DENY BAD_SIGNATURE");
    assert_garbled_refused_as_format(run);
}

/// The bare server checks the signature only: replayed and expired codes pass it.
fn assert_bare_decides(run: &RunReport) {
    assert_all_answered(run);
    assert_only(run, CodeKind::Fresh, "ALLOW");
    assert_only(run, CodeKind::Replayed, "ALLOW");
    assert_only(run, CodeKind::Expired, "ALLOW");
    assert_only(run, CodeKind::Forged, "DENY BAD_SIGNATURE");
    assert_garbled_refused_as_format(run);
}

/// Every IssueToken request answered with a code.
fn assert_issued(run: &RunReport) {
    assert_all_answered(run);
    assert!(run.sent > 0, "{}", run.server);
    assert_eq!(
        run.decisions,
        BTreeMap::from([("ISSUED".to_owned(), run.sent)]),
        "{}",
        run.server
    );
}

/// The floor was loaded, decided as the bare server does, and is in the table.
fn assert_floor(report: &Report) {
    let floor = report.floor.as_ref().expect("the floor was loaded");
    assert_eq!(floor.server, "floor");
    assert_eq!(floor.sent, report.verifier.sent);
    assert_bare_decides(floor);
    assert!(report.floor_ratios.is_some() && report.floor_over_bare.is_some());
    let table = report.to_string();
    assert!(
        table.contains("service / floor") && table.contains("floor / bare"),
        "{table}"
    );
}

fn assert_all_answered(run: &RunReport) {
    assert_eq!(run.answered, run.sent, "{}", run.server);
    assert!(run.errors.is_empty(), "{}: {:?}", run.server, run.errors);
    let l = run.latency_us;
    assert!(l.p50 <= l.p99 && l.p99 <= l.max && l.max > 0, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_against_the_in_process_stack_decides_every_kind_as_it_must() {
    let mut settings = with_streams(TargetSpec::InProcess, true, 3);
    settings.citizens = 4;
    settings.revocations = 2;
    // A scenic-shaped floor: no TapIn, one shared-store step per verified code. A
    // failed step would refuse the code (SERVICE_UNAVAILABLE), which `assert_floor`
    // would see.
    settings.floor = Some(FloorShape {
        tap: false,
        scripts: 1,
        redis: Some(test_redis()),
    });
    let report = run(settings).await;
    assert_propagation(&report, 2);
    assert_bus_gates(&report);

    let verifier = &report.verifier;
    assert_eq!(verifier.sent, 5 * PER_KIND);
    assert_verifier_decides(verifier);
    assert_eq!(verifier.decisions.get("ALLOW"), Some(&PER_KIND));
    let bare = report.ceiling.as_ref().expect("the bare server was loaded");
    assert_bare_decides(bare);
    let ratios = report.ratios.expect("ratios to the bare server");
    assert!(ratios.achieved_rate > 0.0 && ratios.p99 > 0.0, "{ratios:?}");
    // The floor decides as the bare server does (every verified code's steps
    // answered by the trivial taps server), and has ratios of its own.
    assert_floor(&report);

    // The same over VerifyStream: every scan's answer matched to it by scan id.
    let stream = report.stream.as_ref().expect("the VerifyStream run");
    assert_eq!(stream.api, "VerifyStream");
    assert_eq!(stream.sent, 5 * PER_KIND);
    assert_verifier_decides(stream);
    let bare_stream = report.stream_ceiling.as_ref().expect("the bare stream run");
    assert_bare_decides(bare_stream);
    assert!(report.stream_ratios.is_some());
    // And the floor over VerifyStream, each scan's step awaited in order.
    let floor_stream = report
        .stream_floor
        .as_ref()
        .expect("the floor's stream run");
    assert_eq!(
        (floor_stream.server.as_str(), floor_stream.api.as_str()),
        ("floor", "VerifyStream")
    );
    assert_bare_decides(floor_stream);
    assert!(report.stream_floor_ratios.is_some());

    // IssueToken from the citizens' apps: every signed request gets a code, from the
    // issuer, from the bare sign server and from the sign floor (whose nonce step on
    // the test Redis would refuse a proof it had seen: each is signed afresh).
    assert_eq!(report.citizens, 4);
    for run in [
        report.issue.as_ref().expect("the issuer's run"),
        report
            .issue_ceiling
            .as_ref()
            .expect("the bare sign server's run"),
        report.issue_floor.as_ref().expect("the sign floor's run"),
    ] {
        assert_eq!(run.api, "IssueToken");
        assert_issued(run);
    }
    assert!(report.issue_ratios.is_some() && report.issue_floor_ratios.is_some());
    assert!(report.to_string().contains("sign floor"), "{report}");

    // In process, the CPU and memory are this process's, labelled so; no ratio of
    // CPU is given, since both runs read the same process.
    let own = verifier.process.as_ref().expect("this process's figures");
    assert!(own.scope.contains("this process"), "{own:?}");
    assert!(
        own.cpu_us_per_request > 0.0 && own.peak_rss_mib > 1.0,
        "{own:?}"
    );
    assert_eq!(own.ready_ms, None);
    assert_eq!(ratios.cpu_per_request, None);

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
    assert_eq!(json["stream"]["api"], "VerifyStream");
    assert!(json["verifier"]["process"]["cpu_us_per_request"].is_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_against_child_processes_reports_their_cpu_memory_and_time_to_ready() {
    let mut settings = with_streams(
        TargetSpec::Spawn(Spawn {
            loadtest: env!("CARGO_BIN_EXE_citypass-loadtest").into(),
            citypass: None,
        }),
        true,
        2,
    );
    settings.duration = Duration::from_secs(1);
    settings.citizens = 3;
    // The transit floor with the shared store's steps, through the child's arguments.
    settings.floor = Some(FloorShape {
        tap: true,
        scripts: 2,
        redis: Some(test_redis()),
    });
    let rates = [50, 100];
    let sweep = tokio::time::timeout(DEADLINE, sweep(&settings, &rates))
        .await
        .expect("the sweep finishes within the deadline")
        .expect("the sweep succeeds");

    assert_eq!(sweep.points.len(), 2);
    for (point, rate) in sweep.points.iter().zip(rates) {
        assert!(point.target.contains("child process"), "{}", point.target);
        assert_bus_gates(point);
        assert!(point.load_average.is_some());
        assert_floor(point);
        // The floor and its taps server are child processes apart from the verifier's.
        let floor_ratios = point.floor_ratios.expect("ratios to the floor");
        assert!(
            floor_ratios.cpu_per_request.is_some_and(|r| r > 0.0),
            "{floor_ratios:?}"
        );
        let runs = [
            &point.verifier,
            point.ceiling.as_ref().expect("bare Verify"),
            point.floor.as_ref().expect("the floor"),
            point.stream.as_ref().expect("VerifyStream"),
            point.stream_ceiling.as_ref().expect("bare VerifyStream"),
            point
                .stream_floor
                .as_ref()
                .expect("the floor's VerifyStream"),
            point.issue.as_ref().expect("IssueToken"),
            point.issue_ceiling.as_ref().expect("bare IssueToken"),
            point
                .issue_floor
                .as_ref()
                .expect("the sign floor's IssueToken"),
        ];
        for run in runs {
            assert_eq!(run.offered_rate, f64::from(rate));
            assert_eq!(run.answered, u64::from(rate), "{}", run.server);
            assert!(run.errors.is_empty(), "{}: {:?}", run.server, run.errors);
            let p = run.process.as_ref().expect("the child's figures");
            assert!(p.scope.starts_with("child process"), "{p:?}");
            // A child's memory is its own, and it spent CPU answering; the machine
            // was busy over the run.
            assert!(p.peak_rss_mib > 1.0 && p.cpu_ms > 0.0, "{p:?}");
            let machine = run.machine.as_ref().expect("the machine's figures");
            assert!(machine.cores_busy > 0.0, "{machine:?}");
            assert!(p.ready_ms.is_some_and(|r| r > 0.0), "{p:?}");
        }
        assert_verifier_decides(&point.verifier);
        assert_bare_decides(point.ceiling.as_ref().expect("bare Verify"));
        // The two servers are separate processes: CPU per request has a ratio.
        let ratios = point.ratios.expect("Verify ratios");
        assert!(
            ratios.cpu_per_request.is_some_and(|r| r > 0.0),
            "{ratios:?}"
        );
        assert!(point.stream_ratios.is_some());
        assert_issued(point.issue.as_ref().expect("IssueToken"));
        assert_issued(point.issue_ceiling.as_ref().expect("bare IssueToken"));
        let issue = point.issue_ratios.expect("IssueToken ratios");
        assert!(issue.cpu_per_request.is_some(), "{issue:?}");
        // The floors of VerifyStream and IssueToken, child processes too.
        assert_bare_decides(point.stream_floor.as_ref().expect("the floor's stream"));
        assert_issued(point.issue_floor.as_ref().expect("the sign floor"));
        for ratios in [point.stream_floor_ratios, point.issue_floor_ratios] {
            let ratios = ratios.expect("ratios to the floors");
            assert!(
                ratios.cpu_per_request.is_some_and(|r| r > 0.0),
                "{ratios:?}"
            );
        }
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let chart = dir.path().join("sweep.svg");
    citypass_loadtest::chart::draw(&sweep, "smoke", &chart).expect("the chart is drawn");
    let svg = std::fs::read_to_string(&chart).expect("read the chart");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for label in [
        "verifier Verify p99",
        "bare verify server Verify p50",
        "verifier VerifyStream p99",
        "bare sign server IssueToken p99",
    ] {
        assert!(svg.contains(label), "{label} missing from the chart");
    }
    let table = sweep.to_string();
    assert!(table.contains("Sweep summary"), "{table}");
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

    // Its identity and payments at their own addresses, as --identity and --payments
    // name them (the riders enrol and link there).
    let endpoints = stack.endpoints();
    // Its revocation service as --revocation names it, revoked at as an operator the
    // dev CA in the keys directory certifies.
    let mut running = settings(
        TargetSpec::Running {
            url: stack.verifier_url(),
            keys_dir: dir.path().to_owned(),
            identity: endpoints.identity,
            payments: endpoints.payments,
            revocation: stack.revocation_url(),
        },
        false,
    );
    running.revocations = 1;
    let report = run(running).await;
    stack.shutdown().await;
    assert_propagation(&report, 1);

    assert!(report.ceiling.is_none() && report.ratios.is_none());
    assert_bus_gates(&report);
    let verifier = &report.verifier;
    assert_eq!(verifier.sent, 5 * PER_KIND);
    assert_verifier_decides(verifier);
}

/// The directory of the service binaries cargo built beside this test
/// (`target/<profile>/`).
fn service_binaries() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps/..")
        .to_path_buf();
    for service in ["identity", "revocation", "issuer", "payments", "verifier"] {
        let binary = citypass_stack::launch::binary_in(&dir, service);
        assert!(
            binary.exists(),
            "{} is not built: the test command builds every target of the workspace \
             (alone: cargo build -p citypass-identity -p citypass-revocation-service \
             -p citypass-issuer -p citypass-payments -p citypass-verifier)",
            binary.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_separate_service_binaries_on_postgres_and_redis_are_loaded_and_measured_apart() {
    let mut settings = with_streams(
        TargetSpec::Services {
            spec: citypass_loadtest::ServicesSpec {
                bin_dir: service_binaries(),
                postgres: citypass_testkit::database_url(),
                redis: citypass_testkit::redis_url(),
                // Debug binaries on a loaded machine: the production deadlines (300 ms
                // for the bus policy's TapIn) would measure the machine, not the tool.
                env: [
                    ("verifier", "CITYPASS_SCENES__BUS__DEADLINE", "10s"),
                    ("verifier", "CITYPASS_PAYMENTS__REQUEST_TIMEOUT", "10s"),
                    (
                        "verifier",
                        "CITYPASS_SUBJECTS__IDENTITY__REQUEST_TIMEOUT",
                        "10s",
                    ),
                ]
                .map(|(s, n, v)| (s.to_owned(), n.to_owned(), v.to_owned()))
                .into(),
            },
            loadtest: env!("CARGO_BIN_EXE_citypass-loadtest").into(),
        },
        true,
        2,
    );
    settings.citizens = 3;
    settings.revocations = 2;
    let report = run(settings).await;
    assert!(
        report.target.contains("separate processes"),
        "{}",
        report.target
    );
    assert_bus_gates(&report);
    // Revoked at the revocation service (PostgreSQL), enforced by the verifier that
    // tails the Redis stream.
    assert_propagation(&report, 2);

    assert_verifier_decides(&report.verifier);
    assert_bare_decides(report.ceiling.as_ref().expect("bare Verify"));
    assert_verifier_decides(report.stream.as_ref().expect("VerifyStream"));
    assert_issued(report.issue.as_ref().expect("IssueToken"));
    assert_issued(report.issue_ceiling.as_ref().expect("bare IssueToken"));

    // The verifier's and the issuer's own processes, apart from the bare servers'.
    let verifier = report.verifier.process.as_ref().expect("the verifier's");
    assert_eq!(verifier.scope, "citypass-verifier");
    let issuer = report.issue.as_ref().and_then(|r| r.process.as_ref());
    assert_eq!(issuer.map(|p| p.scope.as_str()), Some("citypass-issuer"));
    assert!(
        report.ratios.and_then(|r| r.cpu_per_request).is_some(),
        "{:?}",
        report.ratios
    );
    // Every service's figures for every run of the services, each its own process,
    // ready after its startup probe passed.
    for run in [
        &report.verifier,
        report.stream.as_ref().expect("VerifyStream"),
        report.issue.as_ref().expect("IssueToken"),
    ] {
        let scopes: Vec<&str> = run.services.iter().map(|p| p.scope.as_str()).collect();
        assert_eq!(
            scopes,
            [
                "citypass-identity",
                "citypass-revocation",
                "citypass-issuer",
                "citypass-payments",
                "citypass-verifier"
            ],
            "{}",
            run.api
        );
        for p in &run.services {
            assert!(p.peak_rss_mib > 1.0, "{p:?}");
            assert!(p.ready_ms.is_some_and(|r| r > 0.0), "{p:?}");
        }
    }
    // Verify spends the verifier's CPU, and (transit) identity's and payments'.
    let cpu = |name: &str| {
        report
            .verifier
            .services
            .iter()
            .find(|p| p.scope == name)
            .map(|p| p.cpu_ms)
    };
    assert!(cpu("citypass-verifier").is_some_and(|ms| ms > 0.0));
    assert!(cpu("citypass-payments").is_some_and(|ms| ms > 0.0));
    let table = report.to_string();
    assert!(table.contains("per service over this run"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenic_gate_is_played_when_asked_for() {
    // The scenic gate's policy makes no outbound call: the venue store is the
    // stack's own. One entry a day per rider there, so no replayed codes (each is
    // spent once before the run and must be allowed).
    let mut settings = settings(TargetSpec::InProcess, false);
    settings.gate = Some("scenic-gate-1".to_owned());
    settings.mix = "fresh=3,forged=1,garbled=1"
        .parse::<Mix>()
        .expect("the mix parses");
    let report = run(settings).await;
    assert_eq!(report.gates, vec!["scenic-gate-1".to_owned()]);
    let verifier = &report.verifier;
    assert_all_answered(verifier);
    // Each rider enters once; their later codes that day are refused.
    let fresh = outcomes(verifier, CodeKind::Fresh);
    assert_eq!(fresh.get("ALLOW"), Some(&(RIDERS as u64)), "{fresh:?}");
    for label in fresh.keys() {
        assert!(
            label == "ALLOW" || label == "DENY ALREADY_ENTERED_TODAY",
            "{fresh:?}"
        );
    }
    assert_eq!(
        outcomes(verifier, CodeKind::Forged),
        &BTreeMap::from([("DENY BAD_SIGNATURE".to_owned(), verifier.sent / 5)])
    );
}
