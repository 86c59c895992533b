//! `citypass demo`: the whole life of a code in one process, with nothing installed.
//!
//! It uses the real pieces (the token crate's signing, sealing and strict decoding,
//! and the offline gate's single-use memory) so what it prints is what the system
//! does: a code is issued, shown, accepted once, refused on replay and on tampering,
//! and an offline code made from a device certificate passes a gate that has only the
//! issuer's public keys.

use std::path::Path;

use anyhow::{Context as _, bail};
use citypass_gate::{Decision, Gate, GateConfig, Presented};
use citypass_token::{
    DeviceKey, Keyring, Qr, Scene, Scopes, SecureRandom as _, SnapshotKey, SystemRandom, inspect,
};

use super::clock;

/// Lifetimes the demo issues with (the system's defaults).
const CODE_LIFETIME: u64 = 60;
const CERTIFICATE_LIFETIME: u64 = 86_400;

pub fn run(out: Option<&Path>) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let now = clock::now()?;
    println!("citypass demo: one code for the whole city, in one process (dev keys)\n");

    // Keys: the issuer's ring, the revocation service's snapshot key (the ring
    // publishes its public half), and the public set gates trust.
    let mut ring = Keyring::generate("cp", true, &rng)?;
    let snapshot_key = SnapshotKey::generate(true, &rng)?;
    ring.publish_snapshot_key(snapshot_key.public_key())?;
    let issuer = ring.issuer()?;
    let keyset = ring.public_keyset()?;
    println!(
        "1. issuer keys   Ed25519 signing key {} + subject-sealing key; snapshot key {} (dev)",
        ring.signing_kid(),
        snapshot_key.kid()
    );

    // A citizen: a pseudonymous subject id and the phone's bound device key.
    let mut subject = [0u8; 16];
    rng.fill(&mut subject)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    let device = DeviceKey::generate(&rng)?;
    println!(
        "2. citizen       subject enrolled (random id, sealed in every code); device key {} bound",
        device.public_key().kid()
    );

    // An online code, as the app shows it.
    let scopes = Scopes::all();
    let cp1 = issuer.issue_token(&subject, scopes, now, CODE_LIFETIME)?;
    let qr = Qr::encode(&cp1.text)?;
    let facts = inspect(&cp1.text)?;
    println!(
        "3. online code   CP1, valid {CODE_LIFETIME} s, scopes {scopes}: {} characters, {} COSE bytes, QR version {} (level M)\n",
        facts.text_len, facts.cose_len, facts.qr_version
    );
    println!("{}", qr.to_terminal());

    // A metro gate checks it: once accepted, then refused.
    let mut metro = gate(&keyset, &snapshot_key, Scene::Metro, now)?;
    report(
        "4. metro gate    first scan      ",
        metro.check(&cp1.text, now),
        Expect::Allow,
    )?;
    report(
        "5. metro gate    same code again ",
        metro.check(&cp1.text, now + 1),
        Expect::Deny("replayed"),
    )?;
    let tampered = flip_one_byte(&cp1.text)?;
    report(
        "6. metro gate    one byte changed",
        metro.check(&tampered, now + 1),
        Expect::Deny("bad_signature"),
    )?;

    // Offline: the phone makes a fresh P-256 key, asks for a certificate (request
    // signed by the bound device key), then signs codes itself.
    let offline_key = DeviceKey::generate(&rng)?;
    let request = offline_key.public_key().as_bytes();
    let proof = device.sign(&rng, request)?;
    device
        .public_key()
        .verify(request, &proof)
        .context("the issuer refused the device's proof of possession")?;
    let cert = issuer.certify(
        &subject,
        offline_key.public_key(),
        scopes,
        now,
        CERTIFICATE_LIFETIME,
    )?;
    println!(
        "7. certificate   device certificate serial {}, valid {} h, for a fresh offline key",
        hex::encode(cert.serial),
        CERTIFICATE_LIFETIME / 3600
    );
    let signer = citypass_token::OfflineSigner::new(offline_key, cert.bytes)?;
    let cp2 = signer.make_code(now, CODE_LIFETIME, 1, &rng)?;
    let facts2 = inspect(&cp2)?;
    println!(
        "8. offline code  CP2 made on the phone: {} characters, {} COSE bytes, QR version {} (level M)",
        facts2.text_len, facts2.cose_len, facts2.qr_version
    );
    let mut park = gate(&keyset, &snapshot_key, Scene::Scenic, now)?;
    report(
        "9. scenic gate   offline scan    ",
        park.check(&cp2, now + 2),
        Expect::Allow,
    )?;
    report(
        "10. scenic gate  same code again ",
        park.check(&cp2, now + 3),
        Expect::Deny("replayed"),
    )?;

    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
        };
        write("cp1.txt", cp1.text.as_bytes())?;
        write("cp2.txt", cp2.as_bytes())?;
        write("cp1.png", &qr.to_png(8)?)?;
        write("cp2.png", &Qr::encode(&cp2)?.to_png(8)?)?;
        write("keyset.jwks.json", keyset.to_jwks().as_bytes())?;
        println!(
            "\nwrote cp1.txt cp2.txt cp1.png cp2.png keyset.jwks.json to {}\ntry: citypass token verify --keys {}/keyset.jwks.json {}/cp2.txt",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// What the demo expects a scan to give.
enum Expect {
    Allow,
    Deny(&'static str),
}

/// Prints a gate decision and checks it against the expected outcome, so that a
/// broken build cannot print a happy story (the demo exits non-zero instead).
fn report(label: &str, decision: Decision, expect: Expect) -> anyhow::Result<()> {
    match &decision {
        Decision::Allow(Presented::Online { kid, .. }) => {
            println!("{label}  ALLOW (online token, key {kid})")
        }
        Decision::Allow(Presented::Offline { counter, .. }) => {
            println!("{label}  ALLOW (offline code, certificate checked, counter {counter})")
        }
        Decision::Deny(reason) => println!("{label}  DENY  {} ({reason})", reason.code()),
    }
    match (decision, expect) {
        (Decision::Allow(_), Expect::Allow) => Ok(()),
        (Decision::Deny(r), Expect::Deny(code)) if r.code() == code => Ok(()),
        (d, _) => bail!("unexpected gate decision {d:?}"),
    }
}

/// The code with one byte of its COSE body changed (the middle of the claims).
fn flip_one_byte(text: &str) -> anyhow::Result<String> {
    let (prefix, body) = text.split_at(4);
    let mut bytes = base45::decode(body).context("not Base45")?;
    if bytes.is_empty() {
        bail!("empty code");
    }
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    Ok(format!("{prefix}{}", base45::encode(&bytes)))
}

/// A gate for `scene` holding a snapshot of nothing revoked, taken `now` and signed with
/// the snapshot key (a gate refuses every code until it holds a fresh one, and takes
/// snapshots only from the key published for them).
fn gate(
    keyset: &citypass_token::KeySet,
    snapshot_key: &SnapshotKey,
    scene: Scene,
    now: u64,
) -> anyhow::Result<Gate> {
    let mut gate = Gate::new(keyset.clone(), GateConfig::new(scene));
    let snapshot = citypass_revocation::RevocationSet::new()
        .snapshot(citypass_revocation::Kinds::ALL, now)
        .sign(snapshot_key);
    gate.load_snapshot(&snapshot, now)
        .context("the gate refused the revocation snapshot")?;
    Ok(gate)
}
