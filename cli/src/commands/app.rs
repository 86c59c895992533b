//! `citypass app ...`: a citizen's app against a running citypass (`citypass dev`).
//!
//! Each step is one subcommand, and the app's state (ids, the bound device key, the
//! offline key, certificate and counter) is saved between them in a file only the
//! owner can read, as a phone keeps it in its keystore.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use citypass_app::{App, AppState, Endpoints};
use citypass_proto::v1::DocumentType;
use citypass_token::{Qr, inspect};
use clap::{Args, Subcommand};

use super::dev::{IDENTITY_PORT, ISSUER_PORT};
use super::pki::DEV_PKI_DIR;

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
    /// The CA certificate the services' certificates chain to (`citypass dev`'s by default).
    #[arg(long, global = true, default_value_t = format!("{DEV_PKI_DIR}/ca.crt"))]
    ca: String,
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
        /// Also write the code's text here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the QR as PNG.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Also ask the server for an SVG and write it.
        #[arg(long)]
        svg: Option<PathBuf>,
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
}

pub fn run(args: AppArgs) -> anyhow::Result<()> {
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
        tls: Some(citypass_runtime::Tls::from_pem(&ca, None).context("the CA certificate")?),
    };
    let state = load(&args.state)?;
    let mut app = App::new(&endpoints, state)?;
    match args.step {
        AppStep::Enrol {
            name,
            id_number,
            document,
        } => {
            let subject = app.enrol(document.into(), &id_number, &name).await?;
            save(&args.state, &app.state)?;
            println!(
                "enrolled {} as subject {} (status {:?})",
                subject.masked_name,
                subject.subject_id,
                subject.status()
            );
        }
        AppStep::Bind { label } => {
            let device = app.bind(&label).await?;
            save(&args.state, &app.state)?;
            println!(
                "bound device {device}; its key is in {}",
                args.state.display()
            );
        }
        AppStep::Code { out, png, svg } => {
            let code = app.code(svg.is_some()).await?;
            show(&code.qr_text, out.as_deref(), png.as_deref())?;
            if let (Some(path), Some(doc)) = (svg, code.svg) {
                std::fs::write(&path, doc)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        AppStep::Certificate => {
            let offline = app.certificate().await?;
            println!(
                "certificate for a fresh offline key (clock offset to server {} s)",
                offline.clock_offset
            );
            save(&args.state, &app.state)?;
        }
        AppStep::OfflineCode { lifetime, out, png } => {
            let code = app.offline_code(lifetime)?;
            save(&args.state, &app.state)?;
            show(&code, out.as_deref(), png.as_deref())?;
        }
        AppStep::Keys { out } => {
            let (set, response) = app.key_set().await?;
            std::fs::write(&out, &response.jwks_json)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} keys, signature verified)",
                out.display(),
                set.keys().len()
            );
        }
        AppStep::Status => {
            let s = &app.state;
            println!("subject      {}", s.subject_id.as_deref().unwrap_or("-"));
            println!("device       {}", s.device_id.as_deref().unwrap_or("-"));
            match &s.offline {
                Some(o) => println!("offline      certificate held, counter {}", o.counter),
                None => println!("offline      no certificate"),
            }
        }
    }
    Ok(())
}

/// Prints a code as a terminal QR with its facts; writes its text and a PNG if asked.
fn show(code: &str, out: Option<&Path>, png: Option<&Path>) -> anyhow::Result<()> {
    let qr = Qr::encode(code)?;
    println!("{}", qr.to_terminal());
    let facts = inspect(code)?;
    println!(
        "{} characters, QR version {}, valid until {} (Unix time)",
        facts.text_len, facts.qr_version, facts.exp
    );
    if let Some(path) = out {
        std::fs::write(path, code).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = png {
        std::fs::write(path, qr.to_png(8)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
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
