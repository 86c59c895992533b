//! The app's calls to the identity, issuer and payments services.

use citypass_device_proof::{SignError, sign_request};
use citypass_proto::v1::bind_device_request::Authority;
use citypass_proto::v1::identity_service_client::IdentityServiceClient;
use citypass_proto::v1::issuer_service_client::IssuerServiceClient;
use citypass_proto::v1::payments_service_client::PaymentsServiceClient;
use citypass_proto::v1::{
    BindDeviceRequest, BindingAuthorization, Consent, CreateBindingChallengeRequest, DocumentType,
    EnrolFaceRequest, EnrolFaceResponse, EnrolRequest, FaceConsent, FacePurpose, GetArrearsRequest,
    GetArrearsResponse, GetKeySetRequest, GetKeySetResponse, GetLinkRequest, GetTripsRequest,
    GetTripsResponse, IssueDeviceCertificateRequest, IssueTokenRequest, IssueTokenResponse,
    LinkAccountRequest, PaymentLink, PaymentProvider, RecordFaceConsentRequest,
    RepayArrearsRequest, RepayArrearsResponse, Subject, UnlinkAccountRequest,
    WithdrawFaceConsentRequest, WithdrawFaceConsentResponse,
};
use citypass_token::{
    DeviceKey, KeySet, OfflineSigner, Scopes, SystemRandom, TokenError,
    binding_authorization_message, binding_message, verify_key_set,
};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use citypass_runtime::{Tls, UpstreamConfig};
use tonic::transport::Channel;

use crate::request_id::new_request_id;
use crate::state::{AppState, OfflineState};

/// Where the services listen, and the CA their certificates chain to.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// IdentityService URL, e.g. `https://127.0.0.1:50051`.
    pub identity: String,
    /// IssuerService URL.
    pub issuer: String,
    /// PaymentsService URL.
    pub payments: String,
    /// TLS with the deployment's CA and no client certificate: an app proves who it
    /// is by device signatures, not certificates. `None` only for `http://` URLs.
    pub tls: Option<Arc<Tls>>,
}

/// Why an app step failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A service refused or could not be reached.
    #[error("{service}: {status}")]
    Rpc {
        service: &'static str,
        status: Box<tonic::Status>,
    },
    /// The endpoint URL is malformed.
    #[error("bad endpoint {0}")]
    Endpoint(String),
    /// A step that needs an earlier one (enrol, bind, certificate) came first.
    #[error("{0}")]
    NotReady(&'static str),
    /// Key material or a code could not be made.
    #[error("token: {0}")]
    Token(#[from] TokenError),
    /// The device key could not sign a request.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Saved state is damaged.
    #[error("saved app state is damaged: {0}")]
    State(&'static str),
    /// The published key set does not verify with the key that signed it.
    #[error("the key set's signature does not verify")]
    KeySetSignature,
}

fn rpc(service: &'static str) -> impl Fn(tonic::Status) -> AppError {
    move |status| AppError::Rpc {
        service,
        status: Box::new(status),
    }
}

/// Retries of an Enrol whose answer was lost.
const ENROL_RETRIES: usize = 3;

/// Whether a call may have been lost on the way (the service or the network was down),
/// so that a retry with the same request id is worth it.
fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    )
}

fn connect(url: &str, tls: Option<&Arc<Tls>>) -> Result<Channel, AppError> {
    UpstreamConfig::new(url)
        .channel(tls)
        .map_err(|e| AppError::Endpoint(e.to_string()))
}

/// A citizen's app talking to a running citypass.
pub struct App {
    identity: IdentityServiceClient<Channel>,
    issuer: IssuerServiceClient<Channel>,
    payments: PaymentsServiceClient<Channel>,
    /// The state to persist after each step.
    pub state: AppState,
    rng: SystemRandom,
    /// The scenes online codes are asked for; `None`: what the issuer grants by
    /// default (which leaves out scenes granted only on request, e.g. government).
    scopes: Option<Scopes>,
}

impl App {
    /// An app with `state` against `endpoints` (connections open on first use).
    pub fn new(endpoints: &Endpoints, state: AppState) -> Result<Self, AppError> {
        Ok(App {
            identity: IdentityServiceClient::new(connect(
                &endpoints.identity,
                endpoints.tls.as_ref(),
            )?),
            issuer: IssuerServiceClient::new(connect(&endpoints.issuer, endpoints.tls.as_ref())?),
            payments: PaymentsServiceClient::new(connect(
                &endpoints.payments,
                endpoints.tls.as_ref(),
            )?),
            state,
            rng: SystemRandom::new(),
            scopes: None,
        })
    }

    /// Enrols a citizen; the subject id is kept in the state.
    pub async fn enrol(
        &mut self,
        document_type: DocumentType,
        document_number: &str,
        name: &str,
    ) -> Result<Subject, AppError> {
        let request = EnrolRequest {
            document_type: document_type.into(),
            document_number: document_number.to_owned(),
            name: name.to_owned(),
            // The same id on every try: a retry gets the first try's answer.
            request_id: new_request_id(&self.rng)
                .ok_or(AppError::State("no randomness for a request id"))?,
        };
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(ENROL_RETRIES)
            .with_jitter()
            .build();
        let enrolled = loop {
            match self.identity.enrol(request.clone()).await {
                Ok(answer) => break answer.into_inner(),
                Err(status) if retryable(&status) => match pauses.next() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(rpc("identity")(status)),
                },
                Err(status) => return Err(rpc("identity")(status)),
            }
        };
        let subject = enrolled
            .subject
            .ok_or(AppError::State("enrolment returned no subject"))?;
        self.state = AppState {
            subject_id: Some(subject.subject_id.clone()),
            enrolment_secret: Some(hex::encode(enrolled.enrolment_secret)),
            ..AppState::default()
        };
        Ok(subject)
    }

    fn subject_id(&self) -> Result<String, AppError> {
        self.state
            .subject_id
            .clone()
            .ok_or(AppError::NotReady("enrol first"))
    }

    fn device(&self) -> Result<(String, DeviceKey), AppError> {
        let id = self
            .state
            .device_id
            .clone()
            .ok_or(AppError::NotReady("bind a device first"))?;
        let pkcs8 = self
            .state
            .device_key_pkcs8
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .ok_or(AppError::State("device key"))?;
        Ok((id, DeviceKey::from_pkcs8(&pkcs8, &self.rng)?))
    }

    /// Makes a device key and binds it: the server's challenge is signed with it, and
    /// the binding is authorised by the device already bound (a new phone added from
    /// the old one) or else by the enrolment secret from Enrol (the first device).
    pub async fn bind(&mut self, label: &str) -> Result<String, AppError> {
        let subject_id = self.subject_id()?;
        let key = DeviceKey::generate(&self.rng)?;
        let challenge = self
            .identity
            .create_binding_challenge(CreateBindingChallengeRequest {
                subject_id: subject_id.clone(),
            })
            .await
            .map_err(rpc("identity"))?
            .into_inner()
            .challenge;
        let signature = key.sign(
            &self.rng,
            &binding_message(&subject_id, &challenge, key.public_key()),
        )?;
        let authority = match self.device() {
            Ok((device_id, bound)) => Authority::BoundDevice(BindingAuthorization {
                device_id,
                signature: bound.sign(
                    &self.rng,
                    &binding_authorization_message(&subject_id, &challenge, key.public_key()),
                )?,
            }),
            Err(_) => Authority::EnrolmentSecret(
                self.state
                    .enrolment_secret
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or(AppError::NotReady(
                        "no enrolment secret and no bound device: enrol again, or ask a service hall for a new secret",
                    ))?,
            ),
        };
        let device = self
            .identity
            .bind_device(BindDeviceRequest {
                subject_id,
                public_key: key.public_key().as_bytes().to_vec(),
                challenge,
                signature,
                label: label.to_owned(),
                authority: Some(authority),
            })
            .await
            .map_err(rpc("identity"))?
            .into_inner()
            .device
            .ok_or(AppError::State("binding returned no device"))?;
        self.state.enrolment_secret = None;
        self.state.device_id = Some(device.device_id.clone());
        self.state.device_key_pkcs8 = Some(hex::encode(key.pkcs8()));
        self.state.offline = None;
        Ok(device.device_id)
    }

    /// From now on, asks for codes scoped to `scopes` (`None`: the issuer's default).
    pub fn set_scopes(&mut self, scopes: Option<Scopes>) {
        self.scopes = scopes;
    }

    /// Asks for an online code, signed by the device key.
    pub async fn code(&mut self, want_svg: bool) -> Result<IssueTokenResponse, AppError> {
        let subject_id = self.subject_id()?;
        let (device_id, key) = self.device()?;
        let mut request = IssueTokenRequest {
            subject_id,
            device_id,
            requested_scopes: self
                .scopes
                .map(citypass_proto::scene::scopes_to_api)
                .unwrap_or_default(),
            want_svg,
            proof: None,
        };
        request.proof = Some(sign_request(
            citypass_device_proof::ISSUE_TOKEN,
            &request,
            &key,
        )?);
        Ok(self
            .issuer
            .issue_token(request)
            .await
            .map_err(rpc("issuer"))?
            .into_inner())
    }

    /// Makes a fresh offline key and gets a device certificate for it.
    pub async fn certificate(&mut self) -> Result<&OfflineState, AppError> {
        let subject_id = self.subject_id()?;
        let (device_id, key) = self.device()?;
        let offline = DeviceKey::generate(&self.rng)?;
        let mut request = IssueDeviceCertificateRequest {
            subject_id,
            device_id,
            offline_public_key: offline.public_key().as_bytes().to_vec(),
            ..IssueDeviceCertificateRequest::default()
        };
        request.proof = Some(sign_request(
            citypass_device_proof::ISSUE_DEVICE_CERTIFICATE,
            &request,
            &key,
        )?);
        let asked_at = citypass_token::unix_now();
        let response = self
            .issuer
            .issue_device_certificate(request)
            .await
            .map_err(rpc("issuer"))?
            .into_inner();
        let server_time = response.server_time.map_or(0, |t| t.seconds);
        let clock_offset = if server_time > 0 {
            server_time - i64::try_from(asked_at).unwrap_or(i64::MAX)
        } else {
            0
        };
        Ok(self.state.offline.insert(OfflineState {
            key_pkcs8: hex::encode(offline.pkcs8()),
            certificate: hex::encode(&response.certificate),
            counter: 0,
            clock_offset,
        }))
    }

    /// `request` with its device and proof set: signed by the bound device key for its
    /// own method (payments' citizen calls act for the device's transit account).
    fn signed<R: citypass_device_proof::SignedRequest>(
        &self,
        mut request: R,
        device_id: impl FnOnce(&mut R) -> &mut String,
    ) -> Result<R, AppError> {
        let (id, key) = self.device()?;
        *device_id(&mut request) = id;
        let proof = sign_request(R::METHOD, &request, &key)?;
        *request.proof_mut() = Some(proof);
        Ok(request)
    }

    /// Links a payment account (the provider's token, never a card number) with the
    /// citizen's consent to `consent_version` of the consent text, now.
    pub async fn link(
        &mut self,
        provider: PaymentProvider,
        token: &str,
        last4: &str,
        consent_version: &str,
    ) -> Result<PaymentLink, AppError> {
        let request = self.signed(
            LinkAccountRequest {
                provider: provider as i32,
                provider_token: token.to_owned(),
                last4: last4.to_owned(),
                consent: Some(Consent {
                    text_version: consent_version.to_owned(),
                    consented_at: Some(citypass_proto::time::timestamp(citypass_token::unix_now())),
                }),
                ..LinkAccountRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        self.payments
            .link_account(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner()
            .link
            .ok_or(AppError::State("LinkAccount answered without a link"))
    }

    /// The active payment link.
    pub async fn payment_link(&mut self) -> Result<PaymentLink, AppError> {
        let request = self.signed(GetLinkRequest::default(), |r| &mut r.device_id)?;
        self.payments
            .get_link(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner()
            .link
            .ok_or(AppError::State("GetLink answered without a link"))
    }

    /// Ends the active payment link.
    pub async fn unlink(&mut self) -> Result<PaymentLink, AppError> {
        let request = self.signed(UnlinkAccountRequest::default(), |r| &mut r.device_id)?;
        self.payments
            .unlink_account(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner()
            .link
            .ok_or(AppError::State("UnlinkAccount answered without a link"))
    }

    /// One page of the citizen's trips, newest first (`page_size` 0: the server's
    /// default; `page_token` empty: the first page).
    pub async fn trips(
        &mut self,
        page_size: u32,
        page_token: &str,
    ) -> Result<GetTripsResponse, AppError> {
        let request = self.signed(
            GetTripsRequest {
                page_size,
                page_token: page_token.to_owned(),
                ..GetTripsRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        Ok(self
            .payments
            .get_trips(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner())
    }

    /// What the citizen owes.
    pub async fn arrears(&mut self) -> Result<GetArrearsResponse, AppError> {
        let request = self.signed(GetArrearsRequest::default(), |r| &mut r.device_id)?;
        Ok(self
            .payments
            .get_arrears(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner())
    }

    /// Sends what is owed again to the active link; `idempotency_key` makes a retry of
    /// this request charge once.
    pub async fn repay(&mut self, idempotency_key: &str) -> Result<RepayArrearsResponse, AppError> {
        let request = self.signed(
            RepayArrearsRequest {
                idempotency_key: idempotency_key.to_owned(),
                ..RepayArrearsRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        Ok(self
            .payments
            .repay_arrears(request)
            .await
            .map_err(rpc("payments"))?
            .into_inner())
    }

    /// Records the citizen's separate consent to one face purpose, to version
    /// `text_version` of the notice they were shown (`places`: the stations and venues
    /// of a face pass), signed by the bound device.
    pub async fn face_consent(
        &mut self,
        purpose: FacePurpose,
        text_version: &str,
        places: &[String],
    ) -> Result<FaceConsent, AppError> {
        let request = self.signed(
            RecordFaceConsentRequest {
                subject_id: self.subject_id()?,
                purpose: purpose as i32,
                text_version: text_version.to_owned(),
                places: places.to_vec(),
                ..RecordFaceConsentRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        self.identity
            .record_face_consent(request)
            .await
            .map_err(rpc("identity"))?
            .into_inner()
            .consent
            .ok_or(AppError::State(
                "RecordFaceConsent answered without a consent",
            ))
    }

    /// Enrols the citizen's face template: the embedding computed on this device (the
    /// photo never leaves it), signed by the bound device.
    pub async fn face_enrol(&mut self, embedding: &[f32]) -> Result<EnrolFaceResponse, AppError> {
        let request = self.signed(
            EnrolFaceRequest {
                subject_id: self.subject_id()?,
                embedding: embedding.to_vec(),
                ..EnrolFaceRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        Ok(self
            .identity
            .enrol_face(request)
            .await
            .map_err(rpc("identity"))?
            .into_inner())
    }

    /// Withdraws one face purpose, or every one (`None`); the template is deleted with
    /// the last.
    pub async fn face_withdraw(
        &mut self,
        purpose: Option<FacePurpose>,
    ) -> Result<WithdrawFaceConsentResponse, AppError> {
        let request = self.signed(
            WithdrawFaceConsentRequest {
                subject_id: self.subject_id()?,
                purpose: purpose.unwrap_or(FacePurpose::Unspecified) as i32,
                ..WithdrawFaceConsentRequest::default()
            },
            |r| &mut r.device_id,
        )?;
        Ok(self
            .identity
            .withdraw_face_consent(request)
            .await
            .map_err(rpc("identity"))?
            .into_inner())
    }

    /// Makes an offline code (`CP2:`) on the phone, with no network, valid for
    /// `lifetime` seconds of server time. The counter in the state advances.
    pub fn offline_code(&mut self, lifetime: u64) -> Result<String, AppError> {
        let offline = self
            .state
            .offline
            .as_mut()
            .ok_or(AppError::NotReady("get a device certificate first"))?;
        let key = hex::decode(&offline.key_pkcs8).map_err(|_| AppError::State("offline key"))?;
        let certificate =
            hex::decode(&offline.certificate).map_err(|_| AppError::State("certificate"))?;
        let signer = OfflineSigner::new(DeviceKey::from_pkcs8(&key, &self.rng)?, certificate)?;
        let server_now = citypass_token::unix_now().saturating_add_signed(offline.clock_offset);
        offline.counter += 1;
        Ok(signer.make_code(server_now, lifetime, offline.counter, &self.rng)?)
    }

    /// Fetches the published key set and checks its signature with the key that
    /// signed it, which must be in the set itself and published for codes (first
    /// contact: trust on first use; gates pin the issuer key instead). A set signed by
    /// the snapshot key is refused.
    pub async fn key_set(&mut self) -> Result<(KeySet, GetKeySetResponse), AppError> {
        let response = self
            .issuer
            .get_key_set(GetKeySetRequest {})
            .await
            .map_err(rpc("issuer"))?
            .into_inner();
        let json = std::str::from_utf8(&response.jwks_json)
            .map_err(|_| AppError::State("key set is not UTF-8"))?;
        let set = KeySet::from_jwks(json)?;
        let kid = citypass_token::Kid::from_slice(&response.signing_kid)?;
        let signer = set.get(&kid).ok_or(AppError::KeySetSignature)?;
        verify_key_set(signer, &response.jwks_json, &response.signature)
            .map_err(|_| AppError::KeySetSignature)?;
        Ok((set, response))
    }
}
