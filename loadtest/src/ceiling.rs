//! The bare verify server: the ceiling the verifier is measured against.
//!
//! The same tonic `VerifierService`, behind the same server as every citypass service
//! (`citypass_runtime::Server`: the same mTLS, authorisation table, limits and tower
//! stack) with the verifier's own server certificate, started by the tool in its
//! process and loaded with the same client and rate. Per request it does only what no
//! verifier can avoid: read the Base45 text, slice out the signed bytes
//! ([`crate::signed_bytes`]) and make one ring Ed25519 verify with the issuer's key.
//! No strict decoding, no key set, no revocation, no replay store: the verifier's
//! figures over these are what its decision costs on top of the transport and the
//! signature. `VerifyStream` is answered the same way, each scan in the order it came
//! (no batching: one signature check is all there is to do).
//!
//! It runs in the tool's process, or (`--spawn`) as the tool's own child process
//! (`serve bare-verify`), so that its CPU and memory are read apart.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::verifier_service_server::{VerifierService, VerifierServiceServer};
use citypass_proto::v1::{
    Decision, DenyReason, VerifyRequest, VerifyResponse, VerifyStreamRequest, VerifyStreamResponse,
};
use citypass_runtime::{Server, ServerConfig, Tls};
use ring::signature::{ED25519, UnparsedPublicKey};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::child::{self, ChildServer};
use crate::error::LoadError;
use crate::process::Pid;
use crate::signed_bytes;
use crate::target::{OWN_PROCESS, Target};

/// Checks one Ed25519 signature per request.
#[derive(Clone)]
pub struct BareVerifier {
    key: Arc<UnparsedPublicKey<Vec<u8>>>,
}

impl BareVerifier {
    /// Verifies against this Ed25519 public key (the issuer's signing key).
    pub fn new(public_key: &[u8]) -> Self {
        BareVerifier {
            key: Arc::new(UnparsedPublicKey::new(&ED25519, public_key.to_vec())),
        }
    }

    /// ALLOW when the signature verifies, else the first check that failed.
    pub fn decide(&self, text: &str) -> Result<(), DenyReason> {
        let body = text.strip_prefix("CP1:").ok_or(DenyReason::BadPrefix)?;
        let bytes = base45::decode(body).map_err(|_| DenyReason::BadBase45)?;
        let signed = signed_bytes::slice(&bytes).ok_or(DenyReason::Malformed)?;
        self.key
            .verify(&signed.message, signed.signature)
            .map_err(|_| DenyReason::BadSignature)
    }
}

type Responses =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<VerifyStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl VerifierService for BareVerifier {
    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        Ok(Response::new(self.answer(request.get_ref())))
    }

    type VerifyStreamStream = Responses;

    async fn verify_stream(
        &self,
        request: Request<Streaming<VerifyStreamRequest>>,
    ) -> Result<Response<Self::VerifyStreamStream>, Status> {
        let bare = self.clone();
        let answers = request.into_inner().map(move |item| {
            let scan = item?;
            Ok(VerifyStreamResponse {
                response: Some(bare.answer(&scan.request.unwrap_or_default())),
                error: None,
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

impl BareVerifier {
    fn answer(&self, request: &VerifyRequest) -> VerifyResponse {
        let (decision, reason) = match self.decide(&request.qr_text) {
            Ok(()) => (Decision::Allow, DenyReason::Unspecified),
            Err(reason) => (Decision::Deny, reason),
        };
        VerifyResponse {
            decision: decision as i32,
            deny_reason: reason as i32,
            scan_id: request.scan_id.clone(),
            ..VerifyResponse::default()
        }
    }
}

/// A bare server the tool started, in its own process or as a child.
pub enum BareServer {
    /// In this process.
    InProcess(Ceiling),
    /// A child process (`serve bare-verify`) at this URL.
    Child { server: ChildServer, url: String },
}

impl BareServer {
    /// Its URL.
    pub fn url(&self) -> String {
        match self {
            BareServer::InProcess(ceiling) => ceiling.url(),
            BareServer::Child { url, .. } => url.clone(),
        }
    }

    /// The process whose CPU and memory are its figures, how to label them, and for a
    /// child the time it took to become ready.
    pub fn process(&self) -> (Pid, String, Option<Duration>) {
        match self {
            BareServer::InProcess(_) => (Pid::Own, OWN_PROCESS.to_owned(), None),
            BareServer::Child { server, .. } => (
                server.pid(),
                format!("child process: {}", server.name),
                Some(server.ready_after),
            ),
        }
    }

    /// Starts the bare verify server for `target`: in this process, or with
    /// `loadtest` (this tool's binary) as a child process.
    pub async fn start(target: &Target, loadtest: Option<&Path>) -> Result<BareServer, LoadError> {
        let key = target.issuer.key().public_key().as_bytes().to_vec();
        let Some(program) = loadtest else {
            let ceiling =
                Ceiling::start(BareVerifier::new(&key), target.server_tls.clone()).await?;
            return Ok(BareServer::InProcess(ceiling));
        };
        let gate = target
            .gates
            .first()
            .ok_or_else(|| LoadError::NoGates("no gate to probe the bare server".to_owned()))?;
        let port = child::free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let args = [
            "serve",
            "bare-verify",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-dir",
            &target.server_tls_dir.display().to_string(),
            "--public-key",
            &hex::encode(&key),
        ]
        .map(str::to_owned);
        let (server, ()) = ChildServer::spawn("bare verify server", program, &args, || {
            let (url, tls) = (url.clone(), gate.tls.clone());
            async move { child::healthy(&url, &tls).await }
        })
        .await?;
        Ok(BareServer::Child { server, url })
    }
}

/// A running bare server; dropping it stops it.
pub struct Ceiling {
    /// Its loopback address.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Ceiling {
    /// Serves `verifier` with `tls` on an ephemeral loopback port.
    pub async fn start(verifier: BareVerifier, tls: Arc<Tls>) -> Result<Ceiling, LoadError> {
        Ceiling::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), verifier, tls).await
    }

    /// Serves `verifier` with `tls` on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        verifier: BareVerifier,
        tls: Arc<Tls>,
    ) -> Result<Ceiling, LoadError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| LoadError::Ceiling(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LoadError::Ceiling(e.to_string()))?;
        let mut config = ServerConfig::new("citypass-loadtest-ceiling");
        config.listen = addr;
        let server = Server::new(config).tls(tls).add_service(
            VerifierServiceServer::new(verifier),
            &citypass_verifier::AUTHORIZATION,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the bare verify server stopped");
            }
        });
        Ok(Ceiling { addr, _stop: stop })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{Issuer, IssuerKey, Scopes, SubjectKey};

    #[test]
    fn the_bare_check_allows_a_good_code_and_refuses_the_rest() {
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[5; 32]).unwrap(),
            SubjectKey::from_bytes(&[6; 32]).unwrap(),
        );
        let bare = BareVerifier::new(issuer.key().public_key().as_bytes());
        let text = issuer
            .issue_token(&[1; 16], Scopes::all(), citypass_token::unix_now(), 60)
            .unwrap()
            .text;
        assert_eq!(bare.decide(&text), Ok(()));
        let forged = crate::codes::forge(&text).unwrap();
        assert_eq!(bare.decide(&forged), Err(DenyReason::BadSignature));
        assert_eq!(bare.decide("HELLO"), Err(DenyReason::BadPrefix));
        assert_eq!(bare.decide("CP1:lower"), Err(DenyReason::BadBase45));
        assert_eq!(bare.decide("CP1:X5030"), Err(DenyReason::Malformed));
    }
}
