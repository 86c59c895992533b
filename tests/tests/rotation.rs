//! Key rotation under load: no request fails while the signing key changes on disk.
//!
//! The issuer reads its key ring from a file (polled every 100 ms, as a mounted
//! Kubernetes Secret would be). Eight citizens' apps ask for codes back to back; once
//! enough codes are out, the ring is rotated on disk (a new key signs, the old one is
//! retired for ten minutes) and written atomically, as a Secret update is. The test waits
//! for the issuer to report the new signing kid (an event, not a sleep), keeps the load
//! going, then checks: no request failed, key 1 signed before the switch and key 2 after
//! it, every code verifies against the key set fetched after the rotation (the retired
//! key is still published), and a key-1 code fails with `KeyExpired` once the retired
//! key's valid-until has passed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use citypass_app::App;
use citypass_e2e::{STEP_TIMEOUT, TestStack, dev_ring, now, within};
use citypass_issuer::{IssuanceConfig, KeySource};
use citypass_proto::v1::KeyStatus as ApiKeyStatus;
use citypass_token::{
    KeyStatus, KeyUsage, Keyring, Kid, SystemRandom, TokenError, Validation, verify_online,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Concurrent apps.
const DEVICES: usize = 8;
/// Requests made (in total) before the ring is rotated, and again after the switch.
const REQUESTS_PER_PHASE: usize = 1000;
/// How long the old key stays valid after the rotation, seconds.
const RETIRE_AFTER: u64 = 600;
/// How often the issuer polls the ring file.
const RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Where the rotation stands, as each request sees it when it starts and when it ends.
const BEFORE: u8 = 0;
const ROTATING: u8 = 1;
const SWITCHED: u8 = 2;

/// One request of the load.
struct Attempt {
    /// Phase when the request was sent.
    started: u8,
    /// Phase when its answer arrived.
    ended: u8,
    /// The code, or why the request failed.
    result: Result<String, String>,
}

/// Writes the ring the way a Secret update lands: a new file renamed into place, so
/// the issuer never reads a half-written ring.
fn write_atomically(path: &Path, ring: &Keyring) {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, ring.to_json()).expect("write the ring");
    std::fs::rename(&tmp, path).expect("rename the ring into place");
}

/// One app asking for codes back to back until told to stop. Every request is bounded;
/// a failure is recorded (never retried), so the test can report it.
async fn load(
    mut app: App,
    phase: Arc<AtomicU8>,
    attempts_tx: watch::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    while !*stop.borrow_and_update() {
        let started = phase.load(Ordering::SeqCst);
        let result = match tokio::time::timeout(STEP_TIMEOUT, app.code(false)).await {
            Ok(Ok(response)) => Ok(response.qr_text),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {STEP_TIMEOUT:?}")),
        };
        let ended = phase.load(Ordering::SeqCst);
        attempts.push(Attempt {
            started,
            ended,
            result,
        });
        attempts_tx.send_modify(|n| *n += 1);
    }
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_fails_no_request_and_both_keys_verify() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keyring.json");
    let ring = dev_ring();
    let kid1 = ring.signing_kid();
    write_atomically(&path, &ring);
    drop(ring);

    let t = TestStack::start(
        KeySource::File {
            path: path.clone(),
            reload_interval: RELOAD_INTERVAL,
        },
        IssuanceConfig::default(),
    )
    .await;
    assert_eq!(t.stack.keys.current().signing_kid(), kid1);

    let mut apps = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        apps.push(t.citizen(&format!("乘客{i}")).await);
    }

    // The load.
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let (attempts_tx, mut attempts_rx) = watch::channel(0usize);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let started_at = Instant::now();
    for app in apps {
        tasks.spawn(load(
            app,
            phase.clone(),
            attempts_tx.clone(),
            stop_rx.clone(),
        ));
    }
    within(
        "the load before the rotation",
        attempts_rx.wait_for(|n| *n >= REQUESTS_PER_PHASE),
    )
    .await
    .expect("the load runs");

    // Rotate on disk, mid-load, and wait for the issuer to switch.
    let mut keys_rx = t.stack.keys.subscribe();
    let mut ring = Keyring::from_json(&std::fs::read_to_string(&path).expect("read the ring"))
        .expect("the ring parses");
    let rotated_at = now();
    let kid2 = ring.rotate(rotated_at, RETIRE_AFTER, &rng).expect("rotate");
    assert_ne!(kid1, kid2);
    phase.store(ROTATING, Ordering::SeqCst);
    let written = Instant::now();
    write_atomically(&path, &ring);
    within(
        "the issuer picks up the rotated ring",
        keys_rx.wait_for(|keys| keys.signing_kid() == kid2),
    )
    .await
    .expect("the keys are still served");
    let switch_latency = written.elapsed();
    phase.store(SWITCHED, Ordering::SeqCst);
    let at_switch = *attempts_rx.borrow();

    // Keep issuing after the switch, then stop.
    within(
        "the load after the rotation",
        attempts_rx.wait_for(|n| *n >= at_switch + REQUESTS_PER_PHASE),
    )
    .await
    .expect("the load runs");
    stop_tx.send(true).expect("the tasks listen");
    let mut per_device = Vec::with_capacity(DEVICES);
    while let Some(joined) = within("the load stops", tasks.join_next()).await {
        per_device.push(joined.expect("a load task panicked"));
    }
    let elapsed = started_at.elapsed();

    // The key set a gate fetches after the rotation: new signer, old key retired but
    // still published until its valid-until.
    let mut gate = t.app();
    let (keyset, published) = within("key set", gate.key_set())
        .await
        .expect("the key set verifies");
    assert_eq!(Kid::from_slice(&published.signing_kid).unwrap(), kid2);
    let valid_until = rotated_at + RETIRE_AFTER;
    assert_eq!(
        keyset
            .get(&kid1)
            .expect("the retired key is still published")
            .status,
        KeyStatus::Retired { valid_until }
    );
    assert_eq!(
        keyset.get(&kid2).expect("new key").status,
        KeyStatus::Active
    );
    let info1 = published
        .keys
        .iter()
        .find(|k| k.kid == kid1.0)
        .expect("key 1 listed");
    assert_eq!(info1.status(), ApiKeyStatus::Retired);
    assert_eq!(
        info1.valid_until.as_ref().map(|t| t.seconds),
        Some(i64::try_from(valid_until).unwrap())
    );

    // Tally: every request succeeded, and every code verifies against that set.
    let verify_at = Validation::at(now());
    let (mut total, mut by_kid1, mut by_kid2, mut in_window) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut kid1_code = None;
    let mut kid2_code = None;
    for (device, attempts) in per_device.iter().enumerate() {
        let mut seen_kid2 = false;
        let (mut device_kid1, mut device_kid2) = (0, 0);
        for attempt in attempts {
            total += 1;
            let code = match &attempt.result {
                Ok(code) => code,
                Err(err) => {
                    failures.push(format!("app {device}: {err}"));
                    continue;
                }
            };
            let verified = verify_online(code, &keyset, &verify_at)
                .unwrap_or_else(|e| panic!("a code fails against the post-rotation set: {e}"));
            if attempt.started == ROTATING || attempt.ended == ROTATING {
                in_window += 1;
            }
            if verified.kid == kid1 {
                by_kid1 += 1;
                device_kid1 += 1;
                assert!(!seen_kid2, "app {device}: key 1 signed after key 2 had");
                assert_ne!(
                    attempt.started, SWITCHED,
                    "app {device}: key 1 signed after the issuer reported the switch"
                );
                kid1_code.get_or_insert_with(|| code.clone());
            } else {
                assert_eq!(verified.kid, kid2, "signed by a key of this ring");
                by_kid2 += 1;
                device_kid2 += 1;
                seen_kid2 = true;
                assert_ne!(
                    attempt.ended, BEFORE,
                    "app {device}: key 2 signed before the ring was rotated"
                );
                kid2_code.get_or_insert_with(|| code.clone());
            }
        }
        assert!(
            device_kid1 > 0 && device_kid2 > 0,
            "app {device} saw both keys ({device_kid1} by key 1, {device_kid2} by key 2)"
        );
    }
    println!(
        "rotation under load: {total} IssueToken requests from {DEVICES} devices in {elapsed:.2?} \
         ({:.0}/s), {} failed; {by_kid1} signed by key 1 ({kid1}), {by_kid2} by key 2 ({kid2}); \
         {in_window} in flight while the ring changed; the issuer switched {switch_latency:.0?} \
         after the file was replaced (poll every {RELOAD_INTERVAL:?})",
        total as f64 / elapsed.as_secs_f64(),
        failures.len(),
    );
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert_eq!(total, by_kid1 + by_kid2);

    // Key 1 codes verify until key 1's valid-until, and not after it.
    let kid1_code = kid1_code.expect("a key-1 code");
    let kid2_code = kid2_code.expect("a key-2 code");
    assert!(keyset.usable(&kid1, KeyUsage::Code, valid_until).is_ok());
    assert_eq!(
        verify_online(&kid1_code, &keyset, &Validation::at(valid_until + 1)),
        Err(TokenError::KeyExpired),
        "past its valid-until the retired key verifies nothing"
    );
    assert_eq!(
        verify_online(&kid2_code, &keyset, &Validation::at(valid_until + 1)),
        Err(TokenError::Expired),
        "the active key is still usable; only the code's own lifetime is over"
    );

    t.shutdown().await;
}
