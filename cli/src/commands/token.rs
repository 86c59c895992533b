//! `citypass token inspect|verify`: debugging a code without any service.
//!
//! `inspect` reports what a code says about itself (never unsealing the subject);
//! `verify` checks it offline against a public key set and exits 0 on ALLOW, 1 on DENY
//! and 2 when it could not decide (a missing key file, a bad argument), so scripts and
//! gate integrators can use it as a test oracle. Both print times as
//! `clock::show` does and, with `--json`, one JSON object instead of text.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use citypass_token::{
    CodeKind, Inspection, KeySet, Scene, Scopes, Validation, inspect, kind_of, verify_offline,
    verify_online,
};
use clap::Subcommand;

use super::clock;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Show kind, kid, alg, times, scopes, byte size and QR version.
    Inspect {
        /// The code text, or a file holding it.
        code: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
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
        /// Verify as of this time instead of now: RFC 3339 (2026-12-02T14:03:05+08:00)
        /// or Unix seconds (1796191385).
        #[arg(long, value_name = "TIME", value_parser = clock::parse)]
        at: Option<u64>,
        /// Print one JSON object (decision, reason, times) instead of text; the exit
        /// status is the same.
        #[arg(long)]
        json: bool,
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
    /// Government service hall counters.
    Government,
}

impl From<SceneArg> for Scene {
    fn from(arg: SceneArg) -> Scene {
        match arg {
            SceneArg::Metro => Scene::Metro,
            SceneArg::Bus => Scene::Bus,
            SceneArg::Hospital => Scene::Hospital,
            SceneArg::Scenic => Scene::Scenic,
            SceneArg::Government => Scene::Government,
        }
    }
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Inspect { code, json } => {
            let code = read_code(&code)?;
            let i = inspect(&code)
                .map_err(|e| anyhow::anyhow!("cannot inspect: {} ({e})", e.code()))?;
            if json {
                print_inspection_json(&i);
            } else {
                print_inspection(&i);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Verify {
            keys,
            code,
            scene,
            skew,
            at,
            json,
        } => {
            let code = read_code(&code)?;
            let jwks = std::fs::read_to_string(&keys)
                .with_context(|| format!("reading {}", keys.display()))?;
            let keys = KeySet::from_jwks(&jwks).context("loading the key set")?;
            let at = match at {
                Some(t) => t,
                None => clock::now()?,
            };
            let verdict = verify(&code, &keys, scene.map(Scene::from), at, skew);
            if json {
                println!("{}", verdict.to_json());
            } else {
                verdict.print();
            }
            Ok(if verdict.deny.is_some() {
                ExitCode::from(DENIED)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn print_inspection(i: &Inspection) {
    println!("kind        {}", kind_label(i.kind));
    println!("typ         {}", i.typ.as_deref().unwrap_or("-"));
    println!("alg         {}", alg_label(i.alg));
    println!("kid         {}", kid_text(i.kid).as_deref().unwrap_or("-"));
    println!("iat         {}", clock::show(i.iat));
    println!(
        "exp         {}, lifetime {} s",
        clock::show(i.exp),
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
            kid_text(c.kid).as_deref().unwrap_or("-"),
            hex::encode(c.serial)
        );
        println!("            not before {}", clock::show(c.iat));
        println!(
            "            not after  {}, lifetime {} s",
            clock::show(c.exp),
            c.exp.saturating_sub(c.iat)
        );
    }
    if let Some(n) = i.counter {
        println!("counter     {n}");
    }
}

fn print_inspection_json(i: &Inspection) {
    let certificate = i.certificate.as_ref().map(|c| {
        clock::with_times(
            serde_json::json!({
                "kid": kid_text(c.kid),
                "serial": hex::encode(c.serial),
                "lifetime_seconds": c.exp.saturating_sub(c.iat),
                "scopes": scope_names(c.scopes),
            }),
            &[("not_before", Some(c.iat)), ("not_after", Some(c.exp))],
        )
    });
    let value = clock::with_times(
        serde_json::json!({
            "kind": kind_name(i.kind),
            "typ": i.typ,
            "alg": i.alg,
            "alg_name": alg_name(i.alg),
            "kid": kid_text(i.kid),
            "lifetime_seconds": i.exp.saturating_sub(i.iat),
            "scopes": scope_names(i.scopes),
            "text_len": i.text_len,
            "cose_len": i.cose_len,
            "qr_version": i.qr_version,
            "qr_error_correction": "M",
            "certificate": certificate,
            "counter": i.counter,
        }),
        &[("issued_at", Some(i.iat)), ("expires_at", Some(i.exp))],
    );
    println!("{value}");
}

/// The outcome of `verify`: DENY with its reason, or ALLOW; what the verified code
/// says (when its signature held), and the time it was checked at.
struct Verdict {
    /// `(reason code, detail)` on DENY.
    deny: Option<(&'static str, String)>,
    /// Kind, iat, exp and scopes of a code whose signature and times verified.
    verified: Option<(CodeKind, u64, u64, Scopes)>,
    scene: Option<Scene>,
    at: u64,
}

fn verify(code: &str, keys: &KeySet, scene: Option<Scene>, at: u64, skew: u64) -> Verdict {
    let v = Validation::at(at).with_skew(skew);
    let checked = kind_of(code).and_then(|k| match k {
        CodeKind::Online => {
            verify_online(code, keys, &v).map(|t| (k, t.claims.iat, t.claims.exp, t.claims.scopes))
        }
        CodeKind::Offline => {
            verify_offline(code, keys, &v).map(|o| (k, o.iat, o.exp, o.certificate.scopes))
        }
    });
    let (verified, deny) = match checked {
        Err(e) => (None, Some((e.code(), e.to_string()))),
        Ok(facts) => {
            let scopes = facts.3;
            let deny = scene.filter(|s| !scopes.contains(*s)).map(|s| {
                (
                    "scope_not_allowed",
                    format!("scopes {scopes} do not include {}", s.name()),
                )
            });
            (Some(facts), deny)
        }
    };
    Verdict {
        deny,
        verified,
        scene,
        at,
    }
}

impl Verdict {
    fn print(&self) {
        match (&self.deny, &self.verified) {
            (Some((reason, detail)), _) => println!("DENY {reason} ({detail})"),
            (None, Some((_, _, _, scopes))) => println!("ALLOW (scopes {scopes})"),
            (None, None) => println!("ALLOW"),
        }
        println!("checked at  {}", clock::show(self.at));
        if let Some((kind, iat, exp, _)) = &self.verified {
            println!("kind        {}", kind_label(*kind));
            println!("issued      {}", clock::show(*iat));
            println!("expires     {}", clock::show(*exp));
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let (kind, iat, exp, scopes) = match &self.verified {
            Some((kind, iat, exp, scopes)) => (
                Some(kind_name(*kind)),
                Some(*iat),
                Some(*exp),
                Some(scope_names(*scopes)),
            ),
            None => (None, None, None, None),
        };
        clock::with_times(
            serde_json::json!({
                "decision": if self.deny.is_some() { "deny" } else { "allow" },
                "reason": self.deny.as_ref().map(|(reason, _)| *reason),
                "detail": self.deny.as_ref().map(|(_, detail)| detail),
                "kind": kind,
                "scopes": scopes,
                "scene": self.scene.map(Scene::name),
            }),
            &[
                ("checked_at", Some(self.at)),
                ("issued_at", iat),
                ("expires_at", exp),
            ],
        )
    }
}

fn kind_label(kind: CodeKind) -> &'static str {
    match kind {
        CodeKind::Online => "online token (CP1)",
        CodeKind::Offline => "offline code (CP2)",
    }
}

/// The kind as JSON names it.
fn kind_name(kind: CodeKind) -> &'static str {
    match kind {
        CodeKind::Online => "online",
        CodeKind::Offline => "offline",
    }
}

/// The known scenes of `scopes`, by name.
pub fn scope_names(scopes: Scopes) -> Vec<&'static str> {
    scopes.scenes().map(Scene::name).collect()
}

fn kid_text(kid: Option<citypass_token::Kid>) -> Option<String> {
    kid.map(|k| k.to_hex())
}

/// The name of an accepted COSE `alg`.
pub fn alg_name(alg: Option<i64>) -> Option<&'static str> {
    match alg {
        Some(-8) => Some("EdDSA"),
        Some(-7) => Some("ES256"),
        _ => None,
    }
}

fn alg_label(alg: Option<i64>) -> String {
    match (alg_name(alg), alg) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (_, Some(other)) => format!("{other} (not accepted)"),
        (_, None) => "- (absent)".into(),
    }
}
