//! `citypass keys ...`: the issuer's key ring on disk.
//!
//! The ring (`keyring.json`, private, mode 0600) and the public set derived from it
//! (`keyset.jwks.json`) are always written together, so the published set can never
//! lag the ring. See keys/README.md for the rotation procedure these steps implement.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use citypass_token::{KeyStatus, Keyring, Kid, PublishedKey, SystemRandom};
use clap::Subcommand;

use super::clock;

/// The private key ring file in a keys folder.
pub const RING: &str = "keyring.json";
/// The public key set file beside it.
pub const JWKS: &str = "keyset.jwks.json";

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new key ring (one Ed25519 signing key, one subject-sealing key).
    Generate {
        /// Folder for keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// The `iss` claim of codes signed with this ring.
        #[arg(long, default_value = "cp")]
        iss: String,
        /// Mark the ring as production keys (default: dev keys, refused in production).
        #[arg(long)]
        production: bool,
        /// Overwrite an existing ring.
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
    /// Mark a key revoked: every code it signed fails at once.
    Revoke {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// The kid, 16 hex digits.
        kid: String,
    },
    /// Print the key ring's public summary.
    Show {
        /// Folder of keyring.json and keyset.jwks.json.
        #[arg(long, default_value = "keys/dev")]
        dir: PathBuf,
        /// Print one JSON object (iss, dev, signing_kid, keys) instead of text.
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
            if dir.join(RING).exists() && !force {
                bail!(
                    "{} exists; pass --force to replace it",
                    dir.join(RING).display()
                );
            }
            let ring = Keyring::generate(&iss, !production, &rng)?;
            save(&dir, &ring)?;
            println!(
                "wrote {} ({} keys, signing kid {})",
                dir.display(),
                if ring.dev { "dev" } else { "production" },
                ring.signing_kid()
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
            ring.revoke(Kid::from_hex(&kid).context("a kid is 16 hex digits")?)?;
            save(&dir, &ring)?;
            println!("revoked {kid}");
        }
        KeysCommand::Show { dir, json } => {
            let ring = load(&dir)?;
            let set = ring.public_keyset()?;
            let signing = ring.signing_kid();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "iss": ring.iss,
                        "dev": ring.dev,
                        "signing_kid": signing.to_hex(),
                        "keys": set.keys().iter().map(|k| key_json(k, Some(signing))).collect::<Vec<_>>(),
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
                println!("{}", key_line(k, Some(signing)));
            }
        }
    }
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<Keyring> {
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

/// One key of a set as a line: kid, algorithm, status (with its time), signing mark.
pub fn key_line(key: &PublishedKey, signing: Option<Kid>) -> String {
    let alg = super::token::alg_name(Some(key.key.alg().cose_id())).unwrap_or("-");
    let status = match key.status {
        KeyStatus::Active => "active".to_owned(),
        KeyStatus::Retired { valid_until } => {
            format!("retired, valid until {}", clock::show(valid_until))
        }
        KeyStatus::Revoked => "revoked".to_owned(),
    };
    let mark = if Some(key.kid()) == signing {
        "  (signing)"
    } else {
        ""
    };
    format!("{}  {alg:<5}  {status}{mark}", key.kid())
}

/// One key of a set as JSON: kid, alg, status, valid_until (retired keys), signing.
pub fn key_json(key: &PublishedKey, signing: Option<Kid>) -> serde_json::Value {
    let (status, valid_until) = match key.status {
        KeyStatus::Active => ("active", None),
        KeyStatus::Retired { valid_until } => ("retired", Some(valid_until)),
        KeyStatus::Revoked => ("revoked", None),
    };
    clock::with_times(
        serde_json::json!({
            "kid": key.kid().to_hex(),
            "alg": super::token::alg_name(Some(key.key.alg().cose_id())),
            "status": status,
            "signing": signing.map(|s| s == key.kid()),
        }),
        &[("valid_until", valid_until)],
    )
}
