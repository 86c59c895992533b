//! Key ring files: a rotation on disk is picked up without a restart, the new key signs
//! while the retired one stays published (and verifying) until its valid-until, and a
//! broken or dev ring never replaces the keys in service.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citypass_issuer::{Environment, KeyError, KeySource, Keys, Reload};
use citypass_token::{
    KeySet, KeyStatus, Keyring, Scopes, SystemRandom, Validation, verify_key_set, verify_online,
};

const SUBJECT: [u8; 16] = [0x42; 16];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Writes the ring the way a Secret update does: a new file renamed into place.
fn write_ring(path: &Path, ring: &Keyring) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ring.to_json()).expect("write ring");
    std::fs::rename(&tmp, path).expect("rename ring");
}

/// The published set as a gate sees it: parsed from GetKeySet's JWKS, with the
/// signature checked by the key that signed it.
fn published(keys: &Keys) -> KeySet {
    let response = keys.current().to_response();
    let json = std::str::from_utf8(&response.jwks_json).expect("utf-8");
    let set = KeySet::from_jwks(json).expect("the signed JWKS parses as a key set");
    let signer = set
        .keys()
        .iter()
        .find(|k| k.kid().0[..] == response.signing_kid[..])
        .expect("the signing key is published");
    verify_key_set(signer, &response.jwks_json, &response.signature)
        .expect("the key set signature verifies");
    set
}

#[tokio::test]
async fn a_rotation_on_disk_switches_signing_and_keeps_the_old_key_published() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &ring);

    let keys = Keys::from_file(&path, Environment::Dev).expect("loads");
    let first = keys.current();
    let kid1 = first.signing_kid();
    let t = now();
    let old_code = first
        .issuer()
        .issue_token(&SUBJECT, Scopes::all(), t, 60)
        .unwrap();
    assert_eq!(keys.reload().await.unwrap(), Reload::Unchanged);

    let kid2 = ring.rotate(t, 3_600, &rng).unwrap();
    write_ring(&path, &ring);
    assert_eq!(
        keys.reload().await.unwrap(),
        Reload::Reloaded { signing_kid: kid2 }
    );
    assert_ne!(kid1, kid2);
    let current = keys.current();
    assert_eq!(current.signing_kid(), kid2);
    let new_code = current
        .issuer()
        .issue_token(&SUBJECT, Scopes::all(), t, 60)
        .unwrap();

    let set = published(&keys);
    assert_eq!(
        set.get(&kid1).expect("retired key still published").status,
        KeyStatus::Retired {
            valid_until: t + 3_600
        }
    );
    assert_eq!(set.get(&kid2).unwrap().status, KeyStatus::Active);
    let v = Validation::at(t);
    assert_eq!(verify_online(&old_code.text, &set, &v).unwrap().kid, kid1);
    assert_eq!(verify_online(&new_code.text, &set, &v).unwrap().kid, kid2);
    // The snapshot taken before the reload still signs consistently with kid1.
    assert_eq!(first.signing_kid(), kid1);
}

#[tokio::test]
async fn the_reloader_picks_up_a_change_by_itself() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &ring);
    let keys = Keys::load(
        KeySource::File {
            path: path.clone(),
            reload_interval: Duration::from_millis(50),
        },
        Environment::Dev,
    )
    .expect("loads");
    let mut changes = keys.subscribe();
    let kid2 = ring.rotate(now(), 3_600, &rng).unwrap();
    write_ring(&path, &ring);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("reloaded within 5 s")
        .expect("keys alive");
    assert_eq!(changes.borrow().signing_kid(), kid2);
    assert_eq!(keys.current().signing_kid(), kid2);
}

#[tokio::test]
async fn a_broken_file_keeps_the_keys_in_service() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &ring);
    let keys = Keys::from_file(&path, Environment::Dev).unwrap();
    let kid1 = keys.current().signing_kid();

    std::fs::write(&path, &ring.to_json()[..40]).unwrap(); // half-written
    assert!(matches!(keys.reload().await, Err(KeyError::Invalid { .. })));
    assert_eq!(keys.current().signing_kid(), kid1);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(keys.reload().await, Err(KeyError::Read { .. })));
    assert_eq!(keys.current().signing_kid(), kid1);

    let kid2 = ring.rotate(now(), 3_600, &rng).unwrap();
    write_ring(&path, &ring);
    assert_eq!(
        keys.reload().await.unwrap(),
        Reload::Reloaded { signing_kid: kid2 }
    );
}

#[tokio::test]
async fn production_refuses_dev_rings_at_start_and_at_reload() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let dev = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &dev);
    assert!(matches!(
        Keys::from_file(&path, Environment::Production),
        Err(KeyError::DevRingInProduction)
    ));
    assert!(matches!(
        Keys::from_keyring(
            Keyring::generate("citypass-test", true, &rng).unwrap(),
            Environment::Production
        ),
        Err(KeyError::DevRingInProduction)
    ));

    let production = Keyring::generate("citypass-test", false, &rng).unwrap();
    write_ring(&path, &production);
    let keys = Keys::from_file(&path, Environment::Production).expect("production ring");
    let kid = keys.current().signing_kid();
    write_ring(&path, &dev);
    assert!(matches!(
        keys.reload().await,
        Err(KeyError::DevRingInProduction)
    ));
    assert_eq!(keys.current().signing_kid(), kid);
    assert!(matches!(
        keys.replace(Keyring::generate("citypass-test", true, &rng).unwrap()),
        Err(KeyError::DevRingInProduction)
    ));
}

#[tokio::test]
async fn retired_keys_leave_the_published_set_after_their_valid_until() {
    let rng = SystemRandom::new();
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    let kid1 = ring.signing_kid();
    let t = now();
    // Retired until one second from now.
    ring.rotate(t, 1, &rng).unwrap();
    let keys = Keys::load(KeySource::Memory(ring), Environment::Dev).unwrap();
    assert!(published(&keys).get(&kid1).is_some());
    assert_eq!(keys.reload().await.unwrap(), Reload::Unchanged);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(matches!(
        keys.reload().await.unwrap(),
        Reload::Reloaded { .. }
    ));
    assert!(published(&keys).get(&kid1).is_none());
}

#[tokio::test]
async fn an_in_memory_ring_rotates_with_replace() {
    let rng = SystemRandom::new();
    let ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    let mut next = Keyring::from_json(&ring.to_json()).unwrap();
    let keys = Keys::from_keyring(ring, Environment::Dev).unwrap();
    let kid1 = keys.current().signing_kid();
    let kid2 = next.rotate(now(), 600, &rng).unwrap();
    let changes = keys.subscribe();
    assert_eq!(keys.replace(next).unwrap(), kid2);
    assert!(changes.has_changed().unwrap());
    let set = published(&keys);
    assert!(matches!(
        set.get(&kid1).unwrap().status,
        KeyStatus::Retired { .. }
    ));
    assert_eq!(keys.current().signing_kid(), kid2);
    // The JWKS carries the set's issue time and a content version.
    let response = keys.current().to_response();
    let doc: serde_json::Value = serde_json::from_slice(&response.jwks_json).unwrap();
    assert!(doc["issued_at"].as_u64().is_some());
    assert_eq!(doc["version"].as_str(), Some(keys.current().version()));
    assert_eq!(response.keys.len(), 2);
}

/// Security review, smaller findings: the reloader read the ring file under a `std`
/// mutex on an async worker, so a slow volume stalled the runtime (and every request
/// on it). Now the read runs on the blocking pool: while the file blocks (a FIFO no one
/// writes yet), a single-threaded runtime keeps serving, `current()` included. Seen
/// failing before the fix: no tick while the read blocked (0 ticks).
#[cfg(unix)]
#[tokio::test(flavor = "current_thread")]
async fn smaller_findings_the_key_reload_reads_off_the_async_workers() {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    #[cfg(target_os = "linux")]
    const O_NONBLOCK: i32 = 0o4000;
    #[cfg(not(target_os = "linux"))]
    const O_NONBLOCK: i32 = 0x0004;

    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &ring);
    let keys = Keys::from_file(&path, Environment::Dev).expect("loads");
    let kid1 = keys.current().signing_kid();

    // The Secret's volume stalls: the next read blocks until someone writes.
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo here; skipped");
        return;
    }
    let kid2 = ring.rotate(now(), 3_600, &rng).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, json, done) = (path.clone(), ring.to_json(), done.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::write(&path, &json).unwrap();
            // The poll before the fix read the file twice: if the reload is not done a
            // second later, offer the content again (without blocking when nobody
            // reads), so that it finishes and the test fails on its ticks, not a hang.
            let second = std::time::Instant::now() + Duration::from_secs(1);
            while !done.load(Ordering::SeqCst) && std::time::Instant::now() < second {
                std::thread::sleep(Duration::from_millis(10));
            }
            while !done.load(Ordering::SeqCst) {
                let fifo = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&path);
                if let Ok(mut fifo) = fifo {
                    let _ = fifo.write_all(json.as_bytes());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let ticks = Arc::new(AtomicU32::new(0));
    let served = {
        let (ticks, keys) = (ticks.clone(), keys.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = keys.current().signing_kid();
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert_eq!(keys.current().signing_kid(), kid1);
    let reloaded = keys
        .reload()
        .await
        .expect("reloads once the file is written");
    let ticked = ticks.load(Ordering::Relaxed);
    done.store(true, Ordering::SeqCst);
    served.abort();
    writer.join().unwrap();
    assert_eq!(reloaded, Reload::Reloaded { signing_kid: kid2 });
    assert!(
        ticked >= 10,
        "the runtime served other tasks while the file blocked ({ticked} ticks)"
    );
}

/// Security review, smaller findings: the subject-sealing key had no key id and could
/// not be rotated. Through the issuer's reloads: a code sealed under the old key still
/// opens after the rotation, new codes are sealed under the new key, and a value
/// naming a key id the ring does not hold is refused as such.
#[tokio::test]
async fn smaller_findings_the_sealing_key_rotates() {
    let rng = SystemRandom::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut ring = Keyring::generate("citypass-test", true, &rng).unwrap();
    write_ring(&path, &ring);
    let keys = Keys::from_file(&path, Environment::Dev).expect("loads");
    let t = now();
    let set = published(&keys);
    let v = Validation::at(t);
    let old_id = keys.current().subject_key_id();
    let old = keys
        .current()
        .issuer()
        .issue_token(&SUBJECT, Scopes::all(), t, 60)
        .unwrap();
    let old = verify_online(&old.text, &set, &v).unwrap();

    // Step 1: stage the next key; it opens everywhere before anything is sealed with it.
    let next_id = ring.add_subject_key(&rng).unwrap();
    write_ring(&path, &ring);
    assert!(matches!(
        keys.reload().await.unwrap(),
        Reload::Reloaded { .. }
    ));
    assert_eq!(
        keys.current().subject_key_id(),
        old_id,
        "staged, not sealing"
    );
    assert_eq!(keys.current().subject_keys().ids(), vec![old_id, next_id]);

    // Step 2: switch sealing; the old key is retired for a certificate's life.
    ring.rotate_subject_key(t, 86_400 + 300, &rng).unwrap();
    write_ring(&path, &ring);
    assert!(matches!(
        keys.reload().await.unwrap(),
        Reload::Reloaded { .. }
    ));
    let current = keys.current();
    assert_eq!(current.subject_key_id(), next_id);
    let new = current
        .issuer()
        .issue_token(&SUBJECT, Scopes::all(), t, 60)
        .unwrap();
    let new = verify_online(&new.text, &set, &v).unwrap();
    assert_eq!(
        new.claims.sealed_sub[1], next_id,
        "new seals use the new key"
    );
    assert_eq!(old.claims.sealed_sub[1], old_id);
    assert_eq!(new.subject(current.subject_keys()).unwrap(), SUBJECT);
    assert_eq!(
        old.subject(current.subject_keys()).unwrap(),
        SUBJECT,
        "a code sealed under the old key still opens"
    );

    let mut unknown = old.clone();
    unknown.claims.sealed_sub[1] = 0xee;
    assert_eq!(
        unknown.subject(current.subject_keys()),
        Err(citypass_token::TokenError::UnknownSubjectKey { id: 0xee })
    );
}
