//! `citypass token inspect|verify`: debugging a code without any service.
//!
//! `inspect` reports what a code says about itself (never unsealing the subject);
//! `verify` checks it offline against a public key set and exits 0 on ALLOW, 1 on DENY
//! and 2 when it could not decide (a missing key file, a bad argument), so scripts and
//! gate integrators can use it as a test oracle.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use citypass_token::{
    CodeKind, KeySet, Scene, Validation, inspect, kind_of, verify_offline, verify_online,
};
use clap::Subcommand;

use super::clock;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Show kind, kid, alg, times, scopes, byte size and QR version.
    Inspect {
        /// The code text, or a file holding it.
        code: String,
    },
    /// Check a code against a public key set; prints ALLOW or DENY <reason>.
    Verify {
        /// JWKS file with the issuer's public keys.
        #[arg(long)]
        keys: PathBuf,
        /// The code text, or a file holding it.
        code: String,
        /// Also require this scene in the code's scopes.
        #[arg(long, value_enum)]
        scene: Option<SceneArg>,
        /// Allowed clock difference in seconds.
        #[arg(long, default_value_t = 30)]
        skew: u64,
        /// Verify as of this Unix time instead of now.
        #[arg(long)]
        at: Option<u64>,
    },
}

/// The code from an argument that is either the text itself or a file path.
fn read_code(arg: &str) -> anyhow::Result<String> {
    if kind_of(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let path = PathBuf::from(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    // Neither a file nor a well-prefixed code: hand it on so the decoder names the fault.
    Ok(arg.to_owned())
}

/// What `verify` exits with on DENY (0 is ALLOW; 2, from `main`, a usage or system
/// error such as an unreadable key file).
pub const DENIED: u8 = 1;

/// A scene a code may be scoped to.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SceneArg {
    /// Metro gates (entry and exit).
    Metro,
    /// Bus readers.
    Bus,
    /// Hospital registration desks.
    Hospital,
    /// Scenic-spot, museum and park gates.
    Scenic,
}

impl From<SceneArg> for Scene {
    fn from(arg: SceneArg) -> Scene {
        match arg {
            SceneArg::Metro => Scene::Metro,
            SceneArg::Bus => Scene::Bus,
            SceneArg::Hospital => Scene::Hospital,
            SceneArg::Scenic => Scene::Scenic,
        }
    }
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Inspect { code } => {
            let code = read_code(&code)?;
            let i = inspect(&code)
                .map_err(|e| anyhow::anyhow!("cannot inspect: {} ({e})", e.code()))?;
            let kind = match i.kind {
                CodeKind::Online => "online token (CP1)",
                CodeKind::Offline => "offline code (CP2)",
            };
            println!("kind        {kind}");
            println!("typ         {}", i.typ.as_deref().unwrap_or("-"));
            println!("alg         {}", alg_name(i.alg));
            println!(
                "kid         {}",
                i.kid.map(|k| k.to_hex()).unwrap_or_else(|| "-".into())
            );
            println!("iat         {}", i.iat);
            println!(
                "exp         {} (lifetime {} s)",
                i.exp,
                i.exp.saturating_sub(i.iat)
            );
            println!("scopes      {}", i.scopes);
            println!(
                "size        {} characters, {} COSE bytes",
                i.text_len, i.cose_len
            );
            println!("qr          version {} at error correction M", i.qr_version);
            if let Some(c) = &i.certificate {
                println!(
                    "certificate kid {}, serial {}",
                    c.kid.map(|k| k.to_hex()).unwrap_or_else(|| "-".into()),
                    hex::encode(c.serial)
                );
                println!(
                    "            valid {} .. {} (lifetime {} s)",
                    c.iat,
                    c.exp,
                    c.exp.saturating_sub(c.iat)
                );
            }
            if let Some(n) = i.counter {
                println!("counter     {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Verify {
            keys,
            code,
            scene,
            skew,
            at,
        } => {
            let code = read_code(&code)?;
            let jwks = std::fs::read_to_string(&keys)
                .with_context(|| format!("reading {}", keys.display()))?;
            let keys = KeySet::from_jwks(&jwks).context("loading the key set")?;
            let scene = scene.map(Scene::from);
            let v = Validation::at(match at {
                Some(t) => t,
                None => clock::now()?,
            })
            .with_skew(skew);
            let scopes = match kind_of(&code).and_then(|k| match k {
                CodeKind::Online => verify_online(&code, &keys, &v).map(|t| t.claims.scopes),
                CodeKind::Offline => verify_offline(&code, &keys, &v).map(|o| o.certificate.scopes),
            }) {
                Ok(scopes) => scopes,
                Err(e) => {
                    println!("DENY {} ({e})", e.code());
                    return Ok(ExitCode::from(DENIED));
                }
            };
            if let Some(scene) = scene
                && !scopes.contains(scene)
            {
                println!(
                    "DENY scope_not_allowed (scopes {scopes} do not include {})",
                    scene.name()
                );
                return Ok(ExitCode::from(DENIED));
            }
            println!("ALLOW (scopes {scopes})");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn alg_name(alg: Option<i64>) -> String {
    match alg {
        Some(-8) => "EdDSA (-8)".into(),
        Some(-7) => "ES256 (-7)".into(),
        Some(other) => format!("{other} (not accepted)"),
        None => "- (absent)".into(),
    }
}
