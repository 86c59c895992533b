//! `citypass admin ...`: operators' revocations against a running RevocationService.
//!
//! Names on the command line are the proto enum names without their prefix, in lower
//! case with dashes (`device`, `device-lost`), so the CLI never keeps its own table
//! that could drift from the API.

use anyhow::{Context as _, bail};
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{
    ListRequest, ReinstateReason, ReinstateRequest, RevocationEntry, RevocationReason,
    RevokeRequest, SnapshotRequest, TargetKind,
};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::dev::{DEV_OPERATOR_CREDENTIAL, REVOCATION_PORT};
use super::pki::DEV_PKI_DIR;

#[derive(Args)]
pub struct AdminArgs {
    /// RevocationService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_REVOCATION_URL", default_value_t = format!("https://127.0.0.1:{REVOCATION_PORT}"))]
    revocation: String,
    /// The operator's credential (certificate with roles, key and CA in one PEM file,
    /// from `citypass pki operator`; `citypass dev` writes one with every role).
    #[arg(long, global = true, env = "CITYPASS_CLI_CREDENTIAL", default_value_t = format!("{DEV_PKI_DIR}/{DEV_OPERATOR_CREDENTIAL}"))]
    credential: String,
    /// The CA that signs the services' certificates, when it is not the one in the
    /// credential (a deployment with a separate operators' CA).
    #[arg(long, global = true)]
    ca: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Revoke a token (cti), device, subject, certificate (serial) or key (kid).
    Revoke {
        /// What kind of target.
        #[arg(value_parser = names::<TargetKind>("TARGET_KIND_"))]
        kind: String,
        /// The target id in its kind's form (lowercase hex).
        id: String,
        /// Why.
        #[arg(long, default_value = "administrative", value_parser = names::<RevocationReason>("REVOCATION_REASON_"))]
        reason: String,
        /// Audit note (no personal data).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reinstate a device or subject (a new log entry; history is kept).
    Reinstate {
        /// What kind of target (only devices and subjects can be reinstated).
        #[arg(value_parser = names::<TargetKind>("TARGET_KIND_"))]
        kind: String,
        /// The target id (lowercase hex).
        id: String,
        /// Why.
        #[arg(long, default_value = "administrative", value_parser = names::<ReinstateReason>("REINSTATE_REASON_"))]
        reason: String,
        /// Audit note (no personal data).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List log entries after an epoch.
    List {
        /// Entries after this epoch (0: the whole log).
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Write the signed snapshot offline gates load.
    Snapshot {
        /// Where to write the snapshot (its signature goes beside it, `.sig`).
        #[arg(long, default_value = "revocations.snapshot")]
        out: PathBuf,
    },
}

/// The values of a proto enum, as the command line spells them (`device-lost` for
/// `REVOCATION_REASON_DEVICE_LOST`), taken from the generated code so that the CLI
/// keeps no table of its own that could drift from the API; UNSPECIFIED is left out.
fn names<E>(prefix: &'static str) -> clap::builder::PossibleValuesParser
where
    E: TryFrom<i32> + ProtoName,
{
    let values: Vec<clap::builder::PossibleValue> = (1..256)
        .filter_map(|i| E::try_from(i).ok())
        .map(|e| {
            let name = e
                .proto_name()
                .trim_start_matches(prefix)
                .to_ascii_lowercase()
                .replace('_', "-");
            clap::builder::PossibleValue::new(&*Box::leak(name.into_boxed_str()))
        })
        .collect();
    clap::builder::PossibleValuesParser::new(values)
}

/// The `as_str_name` of prost's enums, as a trait.
trait ProtoName {
    fn proto_name(&self) -> &'static str;
}

impl ProtoName for TargetKind {
    fn proto_name(&self) -> &'static str {
        self.as_str_name()
    }
}

impl ProtoName for RevocationReason {
    fn proto_name(&self) -> &'static str {
        self.as_str_name()
    }
}

impl ProtoName for ReinstateReason {
    fn proto_name(&self) -> &'static str {
        self.as_str_name()
    }
}

/// `prefix` + the argument in upper snake case, as prost names enum values.
fn enum_name(prefix: &str, arg: &str) -> String {
    format!("{prefix}{}", arg.to_ascii_uppercase().replace('-', "_"))
}

fn kind(arg: &str) -> anyhow::Result<TargetKind> {
    TargetKind::from_str_name(&enum_name("TARGET_KIND_", arg))
        .filter(|k| *k != TargetKind::Unspecified)
        .with_context(|| format!("unknown target kind {arg:?}"))
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(command(args))
}

async fn command(args: AdminArgs) -> anyhow::Result<()> {
    let mut client = RevocationServiceClient::new(operator_channel(
        &args.revocation,
        &args.credential,
        args.ca.as_deref(),
    )?);
    match args.command {
        AdminCommand::Revoke {
            kind: k,
            id,
            reason,
            note,
        } => {
            let reason = RevocationReason::from_str_name(&enum_name("REVOCATION_REASON_", &reason))
                .with_context(|| format!("unknown reason {reason:?}"))?;
            let response = client
                .revoke(RevokeRequest {
                    target_kind: kind(&k)?.into(),
                    target_id: id,
                    reason: reason.into(),
                    note,
                    ..RevokeRequest::default()
                })
                .await
                .map_err(|s| anyhow::anyhow!("revoke refused: {} ({})", s.message(), s.code()))?
                .into_inner();
            if let Some(entry) = response.entry {
                print_entry(&entry);
            }
            for entry in &response.cascaded {
                print!("  cascaded: ");
                print_entry(entry);
            }
        }
        AdminCommand::Reinstate {
            kind: k,
            id,
            reason,
            note,
        } => {
            let reason = ReinstateReason::from_str_name(&enum_name("REINSTATE_REASON_", &reason))
                .with_context(|| format!("unknown reason {reason:?}"))?;
            let response = client
                .reinstate(ReinstateRequest {
                    target_kind: kind(&k)?.into(),
                    target_id: id,
                    reason: reason.into(),
                    note,
                })
                .await
                .map_err(|s| anyhow::anyhow!("reinstate refused: {} ({})", s.message(), s.code()))?
                .into_inner();
            if let Some(entry) = response.entry {
                print_entry(&entry);
            }
        }
        AdminCommand::List { since } => {
            let mut page_token = String::new();
            loop {
                let page = client
                    .list(ListRequest {
                        since_epoch: since,
                        page_size: 0,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("list refused: {} ({})", s.message(), s.code()))?
                    .into_inner();
                page.entries.iter().for_each(print_entry);
                if page.next_page_token.is_empty() {
                    println!("head epoch {}", page.head_epoch);
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        AdminCommand::Snapshot { out } => {
            let snapshot = client
                .snapshot(SnapshotRequest { kinds: vec![] })
                .await
                .map_err(|s| anyhow::anyhow!("snapshot refused: {} ({})", s.message(), s.code()))?
                .into_inner();
            if snapshot.snapshot.is_empty() {
                bail!("empty snapshot");
            }
            std::fs::write(&out, &snapshot.snapshot)
                .with_context(|| format!("writing {}", out.display()))?;
            std::fs::write(out.with_extension("sig"), &snapshot.signature)
                .with_context(|| format!("writing {}", out.with_extension("sig").display()))?;
            println!(
                "wrote {} (epoch {}, {} bytes) and its signature",
                out.display(),
                snapshot.epoch,
                snapshot.snapshot.len()
            );
        }
    }
    Ok(())
}

/// A channel to `url` authenticated by the operator credential in `credential`.
/// The services' certificates are checked against `ca` if given, else against the CA
/// in the credential.
pub fn operator_channel(
    url: &str,
    credential: &str,
    ca: Option<&str>,
) -> anyhow::Result<tonic::transport::Channel> {
    let text = std::fs::read_to_string(credential)
        .with_context(|| format!("reading the operator credential {credential}"))?;
    let issued = citypass_pki::Issued::from_bundle(&text)
        .with_context(|| format!("operator credential {credential}"))?;
    let ca_pem = match ca {
        Some(path) => std::fs::read(path).with_context(|| format!("reading the CA {path}"))?,
        None => issued.ca_pem.clone().into_bytes(),
    };
    let tls = citypass_runtime::Tls::from_pem(
        &ca_pem,
        Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
    )
    .with_context(|| format!("operator credential {credential}"))?;
    citypass_runtime::UpstreamConfig::new(url)
        .channel(Some(&tls))
        .with_context(|| format!("connecting to {url}"))
}

fn print_entry(e: &RevocationEntry) {
    let name = |full: &str, prefix: &str| full.trim_start_matches(prefix).to_ascii_lowercase();
    println!(
        "epoch {:>6}  {:<9} {:<11} {}  {}",
        e.epoch,
        name(e.action().as_str_name(), "ENTRY_ACTION_"),
        name(e.target_kind().as_str_name(), "TARGET_KIND_"),
        e.target_id,
        if e.action() == citypass_proto::v1::EntryAction::Revoke {
            name(e.revocation_reason().as_str_name(), "REVOCATION_REASON_")
        } else {
            name(e.reinstate_reason().as_str_name(), "REINSTATE_REASON_")
        }
    );
}
