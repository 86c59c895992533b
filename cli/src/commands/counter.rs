//! `citypass counter ...`: a face counter (a hospital desk, a service hall) enrolling a
//! citizen's face in person for the 1:1 counter check, with the counter's own
//! credential (role `face-counter`; `citypass dev` writes one for `hospital-desk-1`).
//!
//! The counter's staff check the citizen's document (and a guardian's for a child under
//! 14) before enrolling; identity records the counter's name in the processing record
//! (`face_audit`, actor `counter:<name>`). An `identity-admin` cannot enrol (face
//! review finding F8): the lending check trusts counter-enrolled templates only.

use std::path::PathBuf;

use anyhow::Context as _;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::{EnrolFaceRequest, RecordFaceConsentRequest, WithdrawFaceConsentRequest};
use clap::{Args, Subcommand};

use super::admin::operator_channel;
use super::dev::{DEV_COUNTER_CREDENTIAL, IDENTITY_PORT};
use super::face::{self, PurposeArg};
use super::pki::DEV_PKI_DIR;

#[derive(Args)]
pub struct CounterArgs {
    /// IdentityService URL.
    #[arg(long, global = true, env = "CITYPASS_CLI_IDENTITY_URL", default_value_t = format!("https://127.0.0.1:{IDENTITY_PORT}"))]
    identity: String,
    /// The counter's credential (certificate with the face-counter role, key and CA in
    /// one PEM file; `citypass dev` writes one for hospital-desk-1).
    #[arg(long, global = true, env = "CITYPASS_CLI_COUNTER_CREDENTIAL", default_value_t = format!("{DEV_PKI_DIR}/{DEV_COUNTER_CREDENTIAL}"))]
    credential: String,
    /// The CA that signs the services' certificates, when it is not the credential's.
    #[arg(long, global = true)]
    ca: Option<String>,
    #[command(subcommand)]
    command: CounterCommand,
}

#[derive(Subcommand)]
enum CounterCommand {
    /// Enrol a citizen's face at the counter, after checking their document: the
    /// embedding is computed here (the photo never leaves this machine), the consent
    /// recorded and the template enrolled. Without --consent, prints the notice.
    FaceEnrol {
        /// The citizen's subject id (`citypass app status` shows it).
        #[arg(long)]
        subject: String,
        /// A JPEG or PNG photo with one face, taken at the counter.
        photo: PathBuf,
        #[command(flatten)]
        consent: face::ConsentArgs,
        /// A child under 14: the guardian's subject id (checked in person).
        #[arg(long)]
        guardian: Option<String>,
    },
    /// Withdraw a citizen's face consent at the counter (every one without --purpose).
    FaceWithdraw {
        /// The citizen's subject id.
        #[arg(long)]
        subject: String,
        /// The purpose to withdraw (default: every one).
        #[arg(long, value_enum)]
        purpose: Option<PurposeArg>,
    },
}

pub fn run(args: CounterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(command(args))
}

async fn command(args: CounterArgs) -> anyhow::Result<()> {
    let rpc = |call: &'static str| {
        move |status: tonic::Status| {
            anyhow::anyhow!("{call}: {:?} {}", status.code(), status.message())
        }
    };
    match args.command {
        CounterCommand::FaceEnrol {
            subject,
            photo,
            consent,
            guardian,
        } => {
            consent.require(
                "no face enrolled: read the notice above to the citizen and enrol with \
                 --consent only if they agree",
            )?;
            let face::ConsentArgs {
                purpose,
                places,
                notice_version,
                ..
            } = consent;
            let local = face::from_photo(&photo)?;
            let mut identity = IdentityServiceClient::new(operator_channel(
                &args.identity,
                &args.credential,
                args.ca.as_deref(),
            )?);
            identity
                .record_face_consent(RecordFaceConsentRequest {
                    subject_id: subject.clone(),
                    purpose: citypass_proto::v1::FacePurpose::from(purpose) as i32,
                    text_version: notice_version.clone(),
                    places,
                    guardian_subject_id: guardian.unwrap_or_default(),
                    ..RecordFaceConsentRequest::default()
                })
                .await
                .map_err(rpc("RecordFaceConsent"))?;
            let enrolled = identity
                .enrol_face(EnrolFaceRequest {
                    subject_id: subject,
                    embedding: local.embedding.clone(),
                    ..EnrolFaceRequest::default()
                })
                .await
                .map_err(rpc("EnrolFace"))?
                .into_inner();
            let purposes: Vec<&str> = enrolled.purposes().map(face::purpose_name).collect();
            println!(
                "consent recorded at the counter (notice {notice_version}); face enrolled for {}",
                purposes.join(", ")
            );
            println!(
                "  {} numbers sent, the photo stayed here; {}",
                local.embedding.len(),
                local.liveness_line()
            );
        }
        CounterCommand::FaceWithdraw { subject, purpose } => {
            let mut identity = IdentityServiceClient::new(operator_channel(
                &args.identity,
                &args.credential,
                args.ca.as_deref(),
            )?);
            let withdrawn = identity
                .withdraw_face_consent(WithdrawFaceConsentRequest {
                    subject_id: subject,
                    purpose: purpose
                        .map(citypass_proto::v1::FacePurpose::from)
                        .unwrap_or_default() as i32,
                    ..WithdrawFaceConsentRequest::default()
                })
                .await
                .map_err(rpc("WithdrawFaceConsent"))?
                .into_inner();
            let purposes: Vec<&str> = withdrawn.withdrawn().map(face::purpose_name).collect();
            println!(
                "withdrawn: {}{}",
                if purposes.is_empty() {
                    "nothing".to_owned()
                } else {
                    purposes.join(", ")
                },
                if withdrawn.template_deleted {
                    "; the face template is deleted"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
