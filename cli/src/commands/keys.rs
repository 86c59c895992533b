//! `citypass keys ...`: the issuer's key ring and the revocation service's snapshot key
//! on disk.
//!
//! The ring (`keyring.json`, private, mode 0600) and the public set derived from it
//! (`keyset.jwks.json`) are always written together, so the published set can never
//! lag the ring. The snapshot key (`snapshot-key.json`, private, mode 0600) is a file
//! of its own, for the revocation service only; the ring lists its public half, which
//! the issuer publishes with usage `revocation-snapshot`. The subject-sealing keys live
//! in the ring too (secret, never published): `sealing-add` and `sealing-rotate` rotate
//! them by key id, and every change of the ring rewrites `subject-keys.json`, those keys
//! alone, for the verifier. See keys/README.md for the rotation procedures these steps implement.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use citypass_token::{
    KeyStatus, Keyring, Kid, PublishedKey, SnapshotKey, SubjectKeyStatus, SystemRandom,
};
use clap::Subcommand;

use super::clock;

/// The private key ring file in a keys folder.
pub const RING: &str = "keyring.json";
/// The public key set file beside it.
pub const JWKS: &str = "keyset.jwks.json";
/// The verifier's subject-key file beside them: the ring's subject keys only (secret,
/// mode 0600; never a signing seed).
pub const SUBJECT_KEYS: &str = "subject-keys.json";
/// The revocation service's snapshot key, beside them.
pub const SNAPSHOT_KEY: &str = "snapshot-key.json";
/// A snapshot key published but not yet signing (step 1 of its rotation).
pub const NEXT_SNAPSHOT_KEY: &str = "snapshot-key.next.json";
/// Longest `sealing-rotate --retire-after`: two days. Nothing sealed lives longer than a
/// device certificate (24 h at most, what gates accept) plus the clock skew, and a
/// retired sealing key kept longer only widens what a leak of it would open.
pub const MAX_SEALING_RETIRE_AFTER: u64 = 2 * 86_400;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new key ring (one Ed25519 signing key, one subject-sealing key) and a
    /// new snapshot key, whose public half the ring publishes.
    Generate {
        /// Folder for keyring.json, keyset.jwks.json and snapshot-key.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// The `iss` claim of codes signed with this ring.
        #[arg(long, default_value = "cp")]
        iss: String,
        /// Mark the keys as production keys (default: dev keys, refused in production).
        #[arg(long)]
        production: bool,
        /// Overwrite an existing ring and snapshot key.
        #[arg(long)]
        force: bool,
    },
    /// Publish a new key without signing with it yet (step 1 of a rotation).
    Add {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
    },
    /// Switch signing to the newest published key (adding one if none is staged) and
    /// retire the old key, valid for `--retire-after` more seconds.
    Rotate {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// How long codes signed with the old key keep verifying; at least the longest
        /// code or certificate lifetime.
        #[arg(long, default_value_t = 86_400 + 300)]
        retire_after: u64,
    },
    /// Mark a key revoked (a code key or a snapshot key): everything it signed fails
    /// at once.
    Revoke {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// The kid, 16 hex digits.
        kid: String,
    },
    /// Make a new snapshot key (snapshot-key.next.json) and publish its public half
    /// without signing with it yet (step 1 of a snapshot key rotation).
    SnapshotAdd {
        /// Folder of keyring.json, keyset.jwks.json and the snapshot key files.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
    },
    /// Switch the revocation service to the staged snapshot key (making and publishing
    /// one if none is staged): snapshot-key.next.json becomes snapshot-key.json, and the
    /// old key is retired, valid for `--retire-after` more seconds.
    SnapshotRotate {
        /// Folder of keyring.json, keyset.jwks.json and the snapshot key files.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// How long snapshots signed with the old key keep verifying: at least the
        /// revocation service's key reload interval plus the time a gate takes from
        /// fetching a snapshot to loading it.
        #[arg(long, default_value_t = 3_600)]
        retire_after: u64,
    },
    /// Stage a new subject-sealing key in the ring: it opens what it will seal from
    /// the next deployment of the ring on, and seals nothing yet (step 1 of a sealing
    /// key rotation).
    SealingAdd {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
    },
    /// Switch sealing to the staged subject key (staging one if none is) and retire
    /// the old one, which keeps opening what it sealed for `--retire-after` more
    /// seconds.
    SealingRotate {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// How long subjects sealed with the old key keep opening: at least the
        /// longest certificate lifetime (`issuance.certificate_max_lifetime`) plus the
        /// clock skew; at most two days.
        #[arg(long, default_value_t = 86_400 + 300)]
        retire_after: u64,
    },
    /// Print the key ring's public summary.
    Show {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// Print one JSON object (iss, dev, signing_kid, snapshot_kid, keys,
        /// subject_key_id, subject_keys) instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    match cmd {
        KeysCommand::Generate {
            dir,
            iss,
            production,
            force,
        } => {
            for file in [RING, SNAPSHOT_KEY] {
                if dir.join(file).exists() && !force {
                    bail!(
                        "{} exists; pass --force to replace it",
                        dir.join(file).display()
                    );
                }
            }
            let (ring, snapshot_key) = generate(&dir, &iss, !production)?;
            println!(
                "wrote {} ({} keys, signing kid {}, snapshot kid {})",
                dir.display(),
                if ring.dev { "dev" } else { "production" },
                ring.signing_kid(),
                snapshot_key.kid()
            );
        }
        KeysCommand::Add { dir } => {
            let mut ring = load(&dir)?;
            let kid = ring.add_key(&rng)?;
            save(&dir, &ring)?;
            println!(
                "published {kid}; it signs after `citypass keys rotate` once gates have refreshed"
            );
        }
        KeysCommand::Rotate { dir, retire_after } => {
            let mut ring = load(&dir)?;
            let old = ring.signing_kid();
            let now = clock::now()?;
            let new = ring.rotate(now, retire_after, &rng)?;
            save(&dir, &ring)?;
            println!(
                "signing with {new}; {old} retired, valid until {}",
                clock::show(now.saturating_add(retire_after))
            );
        }
        KeysCommand::Revoke { dir, kid } => {
            let mut ring = load(&dir)?;
            let kid = Kid::from_hex(&kid).context("a kid is 16 hex digits")?;
            if load_snapshot_key(&dir, SNAPSHOT_KEY)?.is_some_and(|k| k.kid() == kid) {
                bail!("{kid} signs snapshots: run `citypass keys snapshot-rotate` first");
            }
            ring.revoke(kid)?;
            save(&dir, &ring)?;
            println!("revoked {kid}");
        }
        KeysCommand::SnapshotAdd { dir } => {
            if let Some(staged) = load_snapshot_key(&dir, NEXT_SNAPSHOT_KEY)? {
                bail!(
                    "{} is already staged in {}; run `citypass keys snapshot-rotate`",
                    staged.kid(),
                    dir.join(NEXT_SNAPSHOT_KEY).display()
                );
            }
            let kid = stage_snapshot_key(&dir)?;
            println!(
                "published snapshot key {kid}; the revocation service signs with it after `citypass keys snapshot-rotate` once gates have refreshed"
            );
        }
        KeysCommand::SnapshotRotate { dir, retire_after } => {
            let next = match load_snapshot_key(&dir, NEXT_SNAPSHOT_KEY)? {
                Some(key) => key.kid(),
                None => stage_snapshot_key(&dir)?,
            };
            let old = load_snapshot_key(&dir, SNAPSHOT_KEY)?.map(|k| k.kid());
            let mut ring = load(&dir)?;
            let now = clock::now()?;
            ring.retire_snapshot_keys(next, now, retire_after)
                .context("the staged snapshot key is not published and active in the ring")?;
            // The key file first: the ring's retirement is harmless if this fails.
            std::fs::rename(dir.join(NEXT_SNAPSHOT_KEY), dir.join(SNAPSHOT_KEY))
                .with_context(|| format!("replacing {}", dir.join(SNAPSHOT_KEY).display()))?;
            save(&dir, &ring)?;
            match old {
                Some(old) => println!(
                    "snapshots are signed with {next}; {old} retired, valid until {}",
                    clock::show(now.saturating_add(retire_after))
                ),
                None => println!("snapshots are signed with {next}"),
            }
        }
        KeysCommand::SealingAdd { dir } => {
            let mut ring = load(&dir)?;
            let id = ring.add_subject_key(&rng)?;
            save(&dir, &ring)?;
            println!(
                "staged subject key {id}; it seals after `citypass keys sealing-rotate` once every holder of the ring has reloaded it"
            );
        }
        KeysCommand::SealingRotate { dir, retire_after } => {
            if retire_after > MAX_SEALING_RETIRE_AFTER {
                bail!(
                    "--retire-after {retire_after} is longer than anything sealed lives; at most {MAX_SEALING_RETIRE_AFTER} s"
                );
            }
            let mut ring = load(&dir)?;
            let old = ring.subject_key_id();
            let now = clock::now()?;
            let new = ring.rotate_subject_key(now, retire_after, &rng)?;
            save(&dir, &ring)?;
            println!(
                "sealing with subject key {new}; {old} retired, opens until {}",
                clock::show(now.saturating_add(retire_after))
            );
        }
        KeysCommand::Show { dir, json } => {
            let ring = load(&dir)?;
            let set = ring.public_keyset()?;
            let signing = ring.signing_kid();
            let snapshot = load_snapshot_key(&dir, SNAPSHOT_KEY)?.map(|k| k.kid());
            let signers = [Some(signing), snapshot];
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "iss": ring.iss,
                        "dev": ring.dev,
                        "signing_kid": signing.to_hex(),
                        "snapshot_kid": snapshot.map(|k| k.to_hex()),
                        "keys": set.keys().iter().map(|k| key_json(k, &signers)).collect::<Vec<_>>(),
                        "subject_key_id": ring.subject_key_id(),
                        "subject_keys": ring.subject_key_statuses().into_iter().map(subject_key_json).collect::<Vec<_>>(),
                    })
                );
                return Ok(());
            }
            println!(
                "iss {}  {}",
                ring.iss,
                if ring.dev {
                    "DEV KEYS"
                } else {
                    "production keys"
                }
            );
            for k in set.keys() {
                println!("{}", key_line(k, &signers));
            }
            for (id, status) in ring.subject_key_statuses() {
                println!("{}", subject_key_line(id, status));
            }
            if snapshot.is_some_and(|kid| !ring.publishes_snapshot_key(kid)) {
                println!(
                    "WARNING: {} is not published in the ring: gates refuse its snapshots",
                    dir.join(SNAPSHOT_KEY).display()
                );
            }
        }
    }
    Ok(())
}

/// Writes a new ring and a new snapshot key (the ring publishing its public half) into
/// `dir`, marked dev unless `dev` is false.
pub fn generate(dir: &Path, iss: &str, dev: bool) -> anyhow::Result<(Keyring, SnapshotKey)> {
    let rng = SystemRandom::new();
    let mut ring = Keyring::generate(iss, dev, &rng)?;
    let snapshot_key = SnapshotKey::generate(dev, &rng)?;
    ring.publish_snapshot_key(snapshot_key.public_key())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &dir.join(SNAPSHOT_KEY),
        snapshot_key.to_json().as_bytes(),
        true,
    )?;
    save(dir, &ring)?;
    Ok((ring, snapshot_key))
}

/// Makes a snapshot key (dev like the ring), writes it to the staging file and
/// publishes its public half in the ring.
fn stage_snapshot_key(dir: &Path) -> anyhow::Result<Kid> {
    let mut ring = load(dir)?;
    let key = SnapshotKey::generate(ring.dev, &SystemRandom::new())?;
    let kid = ring.publish_snapshot_key(key.public_key())?;
    write_atomic(&dir.join(NEXT_SNAPSHOT_KEY), key.to_json().as_bytes(), true)?;
    save(dir, &ring)?;
    Ok(kid)
}

/// The snapshot key in `dir/file`, if there is one.
pub fn load_snapshot_key(dir: &Path, file: &str) -> anyhow::Result<Option<SnapshotKey>> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok(None);
    }
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    SnapshotKey::from_json(&json)
        .map(Some)
        .with_context(|| format!("loading {}", path.display()))
}

/// The key ring in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Keyring> {
    let path = dir.join(RING);
    let json = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run `citypass keys generate` first)",
            path.display()
        )
    })?;
    Keyring::from_json(&json).with_context(|| format!("loading {}", path.display()))
}

/// Writes the ring (owner-only) and its public set, each through a temporary file and
/// a rename so a crash never leaves a half-written key file.
pub fn save(dir: &Path, ring: &Keyring) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join(RING), ring.to_json().as_bytes(), true)?;
    // The verifier's subject keys, written with every change of the ring so that a
    // sealing rotation reaches it in the same step (deploy it before `sealing-rotate`
    // seals with the staged key, as the ring itself).
    write_atomic(
        &dir.join(SUBJECT_KEYS),
        ring.subject_key_file().to_json().as_bytes(),
        true,
    )?;
    write_atomic(
        &dir.join(JWKS),
        ring.public_keyset()?.to_jwks().as_bytes(),
        false,
    )
}

/// Writes `bytes` through a temporary file and a rename; `secret` makes it owner-only.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// One key of a set as a line: kid, algorithm, usage, status (with its time), and a
/// mark on the keys in `signers` (the key that signs codes, the one that signs
/// snapshots).
pub fn key_line(key: &PublishedKey, signers: &[Option<Kid>]) -> String {
    let alg = super::token::alg_name(Some(key.key.alg().cose_id())).unwrap_or("-");
    let status = match key.status {
        KeyStatus::Active => "active".to_owned(),
        KeyStatus::Retired { valid_until } => {
            format!("retired, valid until {}", clock::show(valid_until))
        }
        KeyStatus::Revoked => "revoked".to_owned(),
    };
    let mark = if signers.contains(&Some(key.kid())) {
        "  (signing)"
    } else {
        ""
    };
    format!(
        "{}  {alg:<5}  {:<19}  {status}{mark}",
        key.kid(),
        key.usage.name()
    )
}

/// One subject-sealing key as a line: its id and status (never the key).
fn subject_key_line(id: u8, status: SubjectKeyStatus) -> String {
    let status = match status {
        SubjectKeyStatus::Sealing => "sealing".to_owned(),
        SubjectKeyStatus::Staged => "staged".to_owned(),
        SubjectKeyStatus::Retired { valid_until } => {
            format!("retired, opens until {}", clock::show(valid_until))
        }
    };
    format!("subject key {id:<3}  ChaCha20-Poly1305  {status}")
}

/// One subject-sealing key as JSON: id, status, valid_until (retired keys).
fn subject_key_json((id, status): (u8, SubjectKeyStatus)) -> serde_json::Value {
    let (status, valid_until) = match status {
        SubjectKeyStatus::Sealing => ("sealing", None),
        SubjectKeyStatus::Staged => ("staged", None),
        SubjectKeyStatus::Retired { valid_until } => ("retired", Some(valid_until)),
    };
    clock::with_times(
        serde_json::json!({ "id": id, "status": status }),
        &[("valid_until", valid_until)],
    )
}

/// One key of a set as JSON: kid, alg, usage, status, valid_until (retired keys), and
/// whether it is one of `signers` (`null` when no signer is known).
pub fn key_json(key: &PublishedKey, signers: &[Option<Kid>]) -> serde_json::Value {
    let (status, valid_until) = match key.status {
        KeyStatus::Active => ("active", None),
        KeyStatus::Retired { valid_until } => ("retired", Some(valid_until)),
        KeyStatus::Revoked => ("revoked", None),
    };
    clock::with_times(
        serde_json::json!({
            "kid": key.kid().to_hex(),
            "alg": super::token::alg_name(Some(key.key.alg().cose_id())),
            "usage": key.usage.name(),
            "status": status,
            "signing": (!signers.is_empty()).then(|| signers.contains(&Some(key.kid()))),
        }),
        &[("valid_until", valid_until)],
    )
}
