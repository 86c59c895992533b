//! `citypass admin ...`: operators' revocations against a running RevocationService,
//! and the payments service's daily settlement (`settlement`, role auditor).
//!
//! Names on the command line are the proto enum names without their prefix, in lower
//! case with dashes (`device`, `device-lost`), so the CLI never keeps its own table
//! that could drift from the API.

use anyhow::{Context as _, bail};
use citypass_proto::v1::revocation_service_client::RevocationServiceClient;
use citypass_proto::v1::{
    EntryAction, GetRevocationSnapshotRequest, ListRevocationsRequest, ReinstateReason,
    ReinstateRequest, RevocationEntry, RevocationReason, RevokeRequest, TargetKind,
};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::clock;
use super::dev::{DEV_OPERATOR_CREDENTIAL, PAYMENTS_PORT, REVOCATION_PORT};
use super::pki::DEV_PKI_DIR;

#[derive(Args)]
pub struct AdminArgs {
    /// RevocationService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_REVOCATION_URL", default_value_t = format!("https://127.0.0.1:{REVOCATION_PORT}"))]
    revocation: String,
    /// PaymentsService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_PAYMENTS_URL", default_value_t = format!("https://127.0.0.1:{PAYMENTS_PORT}"))]
    payments: String,
    /// The operator's credential (certificate with roles, key and CA in one PEM file,
    /// from `citypass pki operator`; `citypass dev` writes one with every role).
    #[arg(long, global = true, env = "CITYPASS_CLI_CREDENTIAL", default_value_t = format!("{DEV_PKI_DIR}/{DEV_OPERATOR_CREDENTIAL}"))]
    credential: String,
    /// The CA that signs the services' certificates, when it is not the one in the
    /// credential (a deployment with a separate operators' CA).
    #[arg(long, global = true)]
    ca: Option<String>,
    /// Print one JSON object instead of text (entries with their times as RFC 3339 and
    /// Unix seconds).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print the payments settlement of one city day per transit operator (role
    /// auditor): charges, what is due, confirmed by the provider, pending, declined.
    Settlement {
        /// The city day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Also write the settlement as CSV (amounts in yuan) to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
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
        /// Kill what was issued before this time (default: now, by the server's clock;
        /// not in the future): RFC 3339 or Unix seconds.
        #[arg(long, value_name = "TIME", value_parser = clock::parse)]
        revoked_before: Option<u64>,
        /// When the entry may be forgotten, e.g. a token's exp (default: the server
        /// derives it): RFC 3339 or Unix seconds.
        #[arg(long, value_name = "TIME", value_parser = clock::parse)]
        expires_at: Option<u64>,
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
        AdminCommand::Settlement { date, csv } => {
            settlement(
                &args.payments,
                &args.credential,
                args.ca.as_deref(),
                args.json,
                &date,
                csv.as_deref(),
            )
            .await?;
        }
        AdminCommand::Revoke {
            kind: k,
            id,
            reason,
            note,
            revoked_before,
            expires_at,
        } => {
            let reason = RevocationReason::from_str_name(&enum_name("REVOCATION_REASON_", &reason))
                .with_context(|| format!("unknown reason {reason:?}"))?;
            let response = client
                .revoke(RevokeRequest {
                    target_kind: kind(&k)?.into(),
                    target_id: id,
                    reason: reason.into(),
                    note,
                    revoked_before: revoked_before.map(citypass_proto::time::timestamp),
                    expires_at: expires_at.map(citypass_proto::time::timestamp),
                })
                .await
                .map_err(|s| anyhow::anyhow!("revoke refused: {} ({})", s.message(), s.code()))?
                .into_inner();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "entry": response.entry.as_ref().map(entry_json),
                        "cascaded": response.cascaded.iter().map(entry_json).collect::<Vec<_>>(),
                    })
                );
                return Ok(());
            }
            if let Some(entry) = response.entry {
                println!("{}", entry_line(&entry));
            }
            for entry in &response.cascaded {
                println!("  cascaded: {}", entry_line(entry));
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
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "entry": response.entry.as_ref().map(entry_json) })
                );
            } else if let Some(entry) = response.entry {
                println!("{}", entry_line(&entry));
            }
        }
        AdminCommand::List { since } => {
            let mut page_token = String::new();
            let mut entries = Vec::new();
            loop {
                let page = client
                    .list_revocations(ListRevocationsRequest {
                        since_epoch: since,
                        page_size: 0,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("list refused: {} ({})", s.message(), s.code()))?
                    .into_inner();
                if args.json {
                    entries.extend(page.entries.iter().map(entry_json));
                } else {
                    for entry in &page.entries {
                        println!("{}", entry_line(entry));
                    }
                }
                if page.next_page_token.is_empty() {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({ "entries": entries, "head_epoch": page.head_epoch })
                        );
                    } else {
                        println!("head epoch {}", page.head_epoch);
                    }
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        AdminCommand::Snapshot { out } => {
            let snapshot = client
                .get_revocation_snapshot(GetRevocationSnapshotRequest { kinds: vec![] })
                .await
                .map_err(|s| anyhow::anyhow!("snapshot refused: {} ({})", s.message(), s.code()))?
                .into_inner();
            if snapshot.snapshot.is_empty() {
                bail!("empty snapshot");
            }
            std::fs::write(&out, &snapshot.snapshot)
                .with_context(|| format!("writing {}", out.display()))?;
            let signature = out.with_extension("sig");
            std::fs::write(&signature, &snapshot.signature)
                .with_context(|| format!("writing {}", signature.display()))?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "out": out.display().to_string(),
                        "signature": signature.display().to_string(),
                        "epoch": snapshot.epoch,
                        "bytes": snapshot.snapshot.len(),
                        "kid": hex::encode(&snapshot.kid),
                    })
                );
                return Ok(());
            }
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

/// `citypass admin settlement`: GetSettlement with the operator's credential; the CSV
/// written where asked.
async fn settlement(
    url: &str,
    credential: &str,
    ca: Option<&str>,
    json: bool,
    date: &str,
    csv: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut payments = citypass_proto::v1::payments_service_client::PaymentsServiceClient::new(
        operator_channel(url, credential, ca)?,
    );
    let settlement = payments
        .get_settlement(citypass_proto::v1::GetSettlementRequest {
            date: date.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("settlement refused: {} ({})", s.message(), s.code()))?
        .into_inner();
    if let Some(path) = csv {
        std::fs::write(path, &settlement.csv)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{}", super::payments::settlement_json(&settlement));
    } else {
        super::payments::print_settlement(&settlement);
        if let Some(path) = csv {
            println!("wrote {}", path.display());
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

/// A proto enum value's name as the command line spells it (`device_lost`).
fn short(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_ascii_lowercase()
}

/// The reason of an entry: its revocation reason, or its reinstatement reason.
fn reason(e: &RevocationEntry) -> String {
    if e.action() == EntryAction::Revoke {
        short(e.revocation_reason().as_str_name(), "REVOCATION_REASON_")
    } else {
        short(e.reinstate_reason().as_str_name(), "REINSTATE_REASON_")
    }
}

/// An entry as one line: epoch, action, kind, id, reason, when written and, for a
/// revocation, what it kills (issued before) if that differs.
fn entry_line(e: &RevocationEntry) -> String {
    let created = clock::from_proto(e.created_at.as_ref());
    let mut line = format!(
        "epoch {:>6}  {:<9} {:<11} {}  {}",
        e.epoch,
        short(e.action().as_str_name(), "ENTRY_ACTION_"),
        short(e.target_kind().as_str_name(), "TARGET_KIND_"),
        e.target_id,
        reason(e),
    );
    if let Some(at) = created {
        line.push_str(&format!("  at {}", clock::show(at)));
    }
    if let Some(before) = clock::from_proto(e.revoked_before.as_ref())
        && Some(before) != created
    {
        line.push_str(&format!("  issued before {}", clock::show(before)));
    }
    line
}

/// An entry as JSON, every field of the API's entry; times twice (RFC 3339, Unix).
fn entry_json(e: &RevocationEntry) -> serde_json::Value {
    clock::with_times(
        serde_json::json!({
            "epoch": e.epoch,
            "action": short(e.action().as_str_name(), "ENTRY_ACTION_"),
            "target_kind": short(e.target_kind().as_str_name(), "TARGET_KIND_"),
            "target_id": e.target_id,
            "reason": reason(e),
            "actor": e.actor,
            "note": e.note,
        }),
        &[
            ("created_at", clock::from_proto(e.created_at.as_ref())),
            (
                "revoked_before",
                clock::from_proto(e.revoked_before.as_ref()),
            ),
            ("expires_at", clock::from_proto(e.expires_at.as_ref())),
        ],
    )
}
