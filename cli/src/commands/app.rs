//! `citypass app ...`: a citizen's app against a running citypass (`citypass dev`).
//!
//! Each step is one subcommand, and the app's state (ids, the bound device key, the
//! offline key, certificate and counter) is saved between them in a file only the
//! owner can read, as a phone keeps it in its keystore.
//!
//! `--json` makes every step print one JSON object instead of text; `code --watch`
//! shows a fresh code before each one expires, as a rider's app does, until Ctrl-C.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use citypass_app::{App, AppState, Endpoints};
use citypass_proto::v1::DocumentType;
use citypass_token::SystemRandom;
use clap::{Args, Subcommand};

mod codes;

use super::clock;
use super::dev::{IDENTITY_PORT, ISSUER_PORT, PAYMENTS_PORT};
use super::face::{self, PurposeArg};
use super::payments;
use super::pki::DEV_PKI_DIR;
use codes::{Files, certificate_claims, certificate_json, code_json, draw};

#[derive(Args)]
pub struct AppArgs {
    /// Where the app keeps its state (contains private keys).
    #[arg(
        long,
        global = true,
        default_value = ".citypass/app.json",
        env = "CITYPASS_CLI_APP_STATE"
    )]
    state: PathBuf,
    /// IdentityService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_IDENTITY_URL", default_value_t = format!("https://127.0.0.1:{IDENTITY_PORT}"))]
    identity: String,
    /// IssuerService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_ISSUER_URL", default_value_t = format!("https://127.0.0.1:{ISSUER_PORT}"))]
    issuer: String,
    /// PaymentsService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_PAYMENTS_URL", default_value_t = format!("https://127.0.0.1:{PAYMENTS_PORT}"))]
    payments: String,
    /// The CA certificate the services' certificates chain to (`citypass dev`'s by default).
    #[arg(long, global = true, default_value_t = format!("{DEV_PKI_DIR}/ca.crt"))]
    ca: String,
    /// Print one JSON object instead of text (times as RFC 3339 and Unix seconds); no QR.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    step: AppStep,
}

#[derive(Subcommand)]
enum AppStep {
    /// Enrol a citizen (starts a new app state).
    Enrol {
        /// Full name as on the document.
        #[arg(long)]
        name: String,
        /// Document number as printed.
        #[arg(long)]
        id_number: String,
        /// The kind of identity document.
        #[arg(long, value_enum, default_value_t = DocumentArg::ResidentId)]
        document: DocumentArg,
    },
    /// Make a device key and bind it (proof of possession over the server's challenge).
    Bind {
        /// A name for the device, shown in the citizen's device list.
        #[arg(long, default_value = "citypass app")]
        label: String,
    },
    /// Get an online code (request signed by the device key) and show it.
    Code {
        /// Ask for a code scoped to this scene (repeatable). Without it, the issuer's
        /// default scopes, which leave out `government`: a service hall counter takes
        /// only codes asked for with `--scope government`.
        #[arg(long = "scope", value_enum, value_name = "SCENE")]
        scopes: Vec<super::token::SceneArg>,
        /// Also write the code's text here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the QR as PNG.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Also ask the server for an SVG and write it.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Keep showing a fresh code, as a rider's app does: fetch the next one at 80% of
        /// the code's life (at least 1 s before it expires), clear the screen and draw it;
        /// Ctrl-C stops (exit 0), a failed refresh exits 2.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// With --watch: stop after this many codes.
        #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// With --watch: fetch the next code after at most this many seconds (sooner
        /// than 80% of the code's life).
        #[arg(long, value_name = "SECONDS", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        refresh: Option<u64>,
    },
    /// Get a device certificate for a fresh offline key.
    Certificate,
    /// Make an offline code on this "phone", with no network.
    OfflineCode {
        /// Seconds of validity.
        #[arg(long, default_value_t = 60)]
        lifetime: u64,
        /// Also write the code's text here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the QR as PNG.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Fetch the published key set (signature checked) and write it as JWKS.
    Keys {
        /// Where to write the verified key set (JWKS).
        #[arg(long, default_value = "keyset.jwks.json")]
        out: PathBuf,
    },
    /// Show what the app holds (ids only, no keys).
    Status,
    /// Link a payment account for transit fares (request signed by the device key):
    /// the provider's token from its SDK, never a card number.
    Link {
        /// The payment provider.
        #[arg(long, value_parser = payments::PROVIDERS)]
        provider: String,
        /// The provider's agreement token.
        #[arg(long)]
        token: String,
        /// The last 4 digits of the card or account, for display.
        #[arg(long)]
        last4: String,
        /// The version of the consent text the citizen agreed to.
        #[arg(long, default_value = "2026-01")]
        consent_version: String,
    },
    /// Enrol the citizen's face from a photo (opt-in): the embedding is computed on
    /// this machine (the photo never leaves it), the separate consent recorded and the
    /// template enrolled, both signed by the device key. Without --consent, prints the
    /// notice and does nothing.
    FaceEnrol {
        /// A JPEG or PNG photo with one face.
        photo: PathBuf,
        #[command(flatten)]
        consent: face::ConsentArgs,
    },
    /// Withdraw a face consent (every one without --purpose); the template is deleted
    /// with the last.
    FaceWithdraw {
        /// The purpose to withdraw (default: every one).
        #[arg(long, value_enum)]
        purpose: Option<PurposeArg>,
    },
    /// Show the active payment link.
    PaymentLink,
    /// Remove the active payment link (open trips and arrears stay owed).
    Unlink,
    /// List the citizen's trips, newest first.
    Trips {
        /// Trips per page (server default 50, at most 200).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// Follow every page to the end.
        #[arg(long)]
        all: bool,
    },
    /// Show what is owed (declined charges).
    Arrears,
    /// Charge what is owed to the active link again.
    Repay {
        /// Idempotency key: the same key charges once (default: a fresh one).
        #[arg(long)]
        key: Option<String>,
    },
}

pub fn run(args: AppArgs) -> anyhow::Result<()> {
    // `--json` before the subcommand escapes clap's own check (a global argument).
    if args.json && matches!(args.step, AppStep::Code { watch: true, .. }) {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "the argument '--watch' cannot be used with '--json'\n",
        )
        .exit();
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(step(args))
}

async fn step(args: AppArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.ca).with_context(|| {
        format!(
            "reading the CA certificate {} (is `citypass dev` running?)",
            args.ca
        )
    })?;
    let endpoints = Endpoints {
        identity: args.identity,
        issuer: args.issuer,
        payments: args.payments,
        tls: Some(citypass_runtime::Tls::from_pem(&ca, None).context("the CA certificate")?),
    };
    let state = load(&args.state)?;
    let mut app = App::new(&endpoints, state)?;
    if let AppStep::Code { scopes, .. } = &args.step
        && !scopes.is_empty()
    {
        app.set_scopes(Some(
            scopes
                .iter()
                .map(|scene| citypass_token::Scene::from(*scene))
                .collect(),
        ));
    }
    let json = args.json;
    match args.step {
        AppStep::Enrol {
            name,
            id_number,
            document,
        } => {
            let subject = app.enrol(document.into(), &id_number, &name).await?;
            save(&args.state, &app.state)?;
            if json {
                let status = subject.status().as_str_name();
                print_json(clock::with_times(
                    serde_json::json!({
                        "subject_id": subject.subject_id,
                        "masked_name": subject.masked_name,
                        "status": status.trim_start_matches("SUBJECT_STATUS_").to_ascii_lowercase(),
                    }),
                    &[("created_at", clock::from_proto(subject.created_at.as_ref()))],
                ));
            } else {
                println!(
                    "enrolled {} as subject {} (status {:?})",
                    subject.masked_name,
                    subject.subject_id,
                    subject.status()
                );
            }
        }
        AppStep::Bind { label } => {
            let device = app.bind(&label).await?;
            save(&args.state, &app.state)?;
            if json {
                print_json(serde_json::json!({
                    "device_id": device,
                    "state": args.state.display().to_string(),
                }));
            } else {
                println!(
                    "bound device {device}; its key is in {}",
                    args.state.display()
                );
            }
        }
        AppStep::Code {
            out,
            png,
            svg,
            watch: true,
            count,
            refresh,
            ..
        } => {
            let files = Files { out, png, svg };
            codes::watch(&mut app, &files, count, refresh).await?;
        }
        AppStep::Code { out, png, svg, .. } => {
            let files = Files { out, png, svg };
            let code = app.code(files.svg.is_some()).await?;
            let facts = files.write(&code.qr_text, code.svg.as_deref())?;
            if json {
                print_json(code_json(&code.qr_text, &facts, &files, None));
            } else {
                draw(&code.qr_text, &facts, &files)?;
            }
        }
        AppStep::Certificate => {
            let offline = app.certificate().await?;
            let claims = certificate_claims(offline)?;
            let clock_offset = offline.clock_offset;
            save(&args.state, &app.state)?;
            if json {
                print_json(certificate_json(&claims, clock_offset));
            } else {
                println!(
                    "certificate {} for a fresh offline key, scopes {}",
                    hex::encode(claims.serial),
                    claims.scopes
                );
                println!("not before   {}", clock::show(claims.iat));
                println!("not after    {}", clock::show(claims.exp));
                println!("clock offset to server {clock_offset} s");
            }
        }
        AppStep::OfflineCode { lifetime, out, png } => {
            let code = app.offline_code(lifetime)?;
            save(&args.state, &app.state)?;
            let files = Files {
                out,
                png,
                svg: None,
            };
            let facts = files.write(&code, None)?;
            if json {
                print_json(code_json(&code, &facts, &files, None));
            } else {
                draw(&code, &facts, &files)?;
            }
        }
        AppStep::Keys { out } => {
            let (set, response) = app.key_set().await?;
            std::fs::write(&out, &response.jwks_json)
                .with_context(|| format!("writing {}", out.display()))?;
            if json {
                print_json(serde_json::json!({
                    "out": out.display().to_string(),
                    "signature_verified": true,
                    "signed_by": hex::encode(&response.signing_kid),
                    "keys": set.keys().iter().map(|k| super::keys::key_json(k, &[])).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "wrote {} ({} keys, signature verified)",
                    out.display(),
                    set.keys().len()
                );
                for k in set.keys() {
                    println!("  {}", super::keys::key_line(k, &[]));
                }
            }
        }
        AppStep::Link {
            provider,
            token,
            last4,
            consent_version,
        } => {
            let link = app
                .link(
                    payments::provider(&provider)?,
                    &token,
                    &last4,
                    &consent_version,
                )
                .await?;
            if json {
                print_json(payments::link_json(&link));
            } else {
                println!("{}", payments::link_line(&link));
            }
        }
        AppStep::FaceEnrol { photo, consent } => {
            consent.require(
                "no face enrolled: face recognition needs the citizen's separate consent to the notice above (--consent)",
            )?;
            let face::ConsentArgs {
                purpose,
                places,
                notice_version,
                ..
            } = consent;
            // The embedding first, here: nothing is sent for a photo without a usable face.
            let local = face::from_photo(&photo)?;
            let recorded = app
                .face_consent(purpose.into(), &notice_version, &places)
                .await?;
            let enrolled = app.face_enrol(&local.embedding).await?;
            let purposes: Vec<&str> = enrolled.purposes().map(face::purpose_name).collect();
            if json {
                print_json(serde_json::json!({
                    "consent": {
                        "purpose": face::purpose_name(recorded.purpose()),
                        "text_version": recorded.text_version,
                        "places": recorded.places,
                    },
                    "enrolled": true,
                    "channel": "app",
                    "purposes": purposes,
                    "liveness": local.liveness.map(|(score, live)| serde_json::json!({"score": score, "live": live})),
                    "photo_sent": false,
                }));
            } else {
                println!(
                    "consent recorded: {} (notice {}){}",
                    face::purpose_name(recorded.purpose()),
                    recorded.text_version,
                    if recorded.places.is_empty() {
                        String::new()
                    } else {
                        format!(", at {}", recorded.places.join(", "))
                    }
                );
                println!(
                    "face enrolled from this device for {}: {} numbers sent, the photo stayed here",
                    purposes.join(", "),
                    local.embedding.len()
                );
                println!("  {}", local.liveness_line());
                println!("  withdraw: citypass app face-withdraw");
            }
        }
        AppStep::FaceWithdraw { purpose } => {
            let withdrawn = app.face_withdraw(purpose.map(Into::into)).await?;
            let purposes: Vec<&str> = withdrawn.withdrawn().map(face::purpose_name).collect();
            if json {
                print_json(serde_json::json!({
                    "withdrawn": purposes,
                    "template_deleted": withdrawn.template_deleted,
                }));
            } else if purposes.is_empty() {
                println!("no face consent to withdraw");
            } else {
                println!(
                    "withdrawn: {}{}",
                    purposes.join(", "),
                    if withdrawn.template_deleted {
                        "; the face template is deleted"
                    } else {
                        "; the template stays for the other purpose"
                    }
                );
            }
        }
        AppStep::PaymentLink => {
            let link = app.payment_link().await?;
            if json {
                print_json(payments::link_json(&link));
            } else {
                println!("{}", payments::link_line(&link));
            }
        }
        AppStep::Unlink => {
            let link = app.unlink().await?;
            if json {
                print_json(payments::link_json(&link));
            } else {
                println!("{}", payments::link_line(&link));
            }
        }
        AppStep::Trips { page_size, all } => {
            let mut trips = Vec::new();
            let mut token = String::new();
            loop {
                let page = app.trips(page_size, &token).await?;
                trips.extend(page.trips);
                token = page.next_page_token;
                if !all || token.is_empty() {
                    break;
                }
            }
            if json {
                print_json(serde_json::json!({
                    "trips": trips.iter().map(payments::trip_json).collect::<Vec<_>>(),
                    "next_page_token": token,
                }));
            } else if trips.is_empty() {
                println!("no trips");
            } else {
                for trip in &trips {
                    println!("{}", payments::trip_line(trip));
                }
                if !token.is_empty() {
                    println!("(more: --all)");
                }
            }
        }
        AppStep::Arrears => {
            let arrears = app.arrears().await?;
            if json {
                print_json(payments::arrears_json(&arrears));
            } else {
                payments::print_arrears(&arrears);
            }
        }
        AppStep::Repay { key } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut bytes = [0u8; 16];
                    citypass_token::SecureRandom::fill(&SystemRandom::new(), &mut bytes)
                        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
                    hex::encode(bytes)
                }
            };
            let repaid = app.repay(&key).await?;
            if json {
                print_json(payments::repay_json(&repaid));
            } else {
                println!(
                    "sent again to the active link (key {key}); still owed until the provider answers: {}",
                    payments::yuan(repaid.remaining.as_ref())
                );
            }
        }
        AppStep::Status => {
            let s = &app.state;
            let certificate = s.offline.as_ref().map(certificate_claims).transpose()?;
            if json {
                print_json(serde_json::json!({
                    "subject_id": s.subject_id,
                    "device_id": s.device_id,
                    "offline": s.offline.as_ref().zip(certificate.as_ref()).map(|(o, c)| {
                        let mut value = certificate_json(c, o.clock_offset);
                        value["counter"] = o.counter.into();
                        value
                    }),
                }));
            } else {
                println!("subject      {}", s.subject_id.as_deref().unwrap_or("-"));
                println!("device       {}", s.device_id.as_deref().unwrap_or("-"));
                match (&s.offline, &certificate) {
                    (Some(o), Some(c)) => println!(
                        "offline      certificate {}, not after {}, counter {}",
                        hex::encode(c.serial),
                        clock::show(c.exp),
                        o.counter
                    ),
                    _ => println!("offline      no certificate"),
                }
            }
        }
    }
    Ok(())
}

/// Prints one JSON object on one line.
fn print_json(value: serde_json::Value) {
    println!("{value}");
}

/// A kind of identity document (the API's `DocumentType`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DocumentArg {
    /// PRC resident identity card (18 characters, GB 11643 check character).
    ResidentId,
    /// Passport.
    Passport,
    /// Mainland travel permit for Hong Kong and Macao residents.
    HkMacaoPermit,
    /// Mainland travel permit for Taiwan residents.
    TaiwanPermit,
    /// Foreign permanent resident ID card.
    ForeignPermanentResidentId,
}

impl From<DocumentArg> for DocumentType {
    fn from(arg: DocumentArg) -> DocumentType {
        match arg {
            DocumentArg::ResidentId => DocumentType::ResidentIdCard,
            DocumentArg::Passport => DocumentType::Passport,
            DocumentArg::HkMacaoPermit => DocumentType::HkMacaoPermit,
            DocumentArg::TaiwanPermit => DocumentType::TaiwanPermit,
            DocumentArg::ForeignPermanentResidentId => DocumentType::ForeignPermanentResidentId,
        }
    }
}

fn load(path: &Path) -> anyhow::Result<AppState> {
    match std::fs::read_to_string(path) {
        Ok(json) => {
            AppState::from_json(&json).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AppState::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, state: &AppState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    super::keys::write_atomic(path, state.to_json().as_bytes(), true)
}
