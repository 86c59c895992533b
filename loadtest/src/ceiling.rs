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
//!
//! With a [`FloorTap`] it is the floor ([`crate::floor`]): the same, plus one outbound
//! TapIn over mutual TLS per code whose signature verifies.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use citypass_proto::v1::issuer_service_server::IssuerServiceServer;
use citypass_proto::v1::payments_service_server::PaymentsServiceServer;
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

use crate::bare_sign::BareSigner;
use crate::child::{self, ChildServer};
use crate::citizens::Citizen;
use crate::error::LoadError;
use crate::floor::{FloorScripts, FloorTap, TrivialTaps};
use crate::process::Pid;
use crate::signed_bytes;
use crate::target::{OWN_PROCESS, Target};

/// Checks one Ed25519 signature per request (and, as the floor, taps in once and runs
/// its shared-store steps per verified code).
#[derive(Clone)]
pub struct BareVerifier {
    key: Arc<UnparsedPublicKey<Vec<u8>>>,
    tap: Option<FloorTap>,
    scripts: Option<FloorScripts>,
}

/// The file, beside the run's server TLS files, that hands the floor's child its Redis
/// URL.
const FLOOR_REDIS_URL_FILE: &str = "floor-redis-url";

/// Writes `text` to a new file at `path` readable by this user only: whatever was
/// there (a file of other permissions, a link) is removed first, and the file is
/// created afresh, so the mode always applies and no link is followed.
fn write_private(path: &Path, text: &str) -> Result<(), LoadError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LoadError::File {
                path: path.to_owned(),
                problem: e.to_string(),
            });
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| LoadError::File {
            path: path.to_owned(),
            problem: e.to_string(),
        })
}

/// What the floor does per verified code beyond the bare server ([`crate::floor`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FloorShape {
    /// One TapIn at the trivial taps server (a transit gate's policy).
    pub tap: bool,
    /// This many one-key scripts on the Redis at `redis` (0: none).
    pub scripts: u8,
    /// The Redis for the scripts (the run's `--redis`); not in the report (a URL may
    /// hold a password).
    #[serde(skip)]
    pub redis: Option<String>,
}

impl Default for FloorShape {
    /// Run 6's floor: one TapIn, no scripts.
    fn default() -> Self {
        FloorShape {
            tap: true,
            scripts: 0,
            redis: None,
        }
    }
}

impl BareVerifier {
    /// Verifies against this Ed25519 public key (the issuer's signing key).
    pub fn new(public_key: &[u8]) -> Self {
        BareVerifier {
            key: Arc::new(UnparsedPublicKey::new(&ED25519, public_key.to_vec())),
            tap: None,
            scripts: None,
        }
    }

    /// The floor: also `scripts`' steps per code whose signature verifies.
    pub fn with_scripts(mut self, scripts: FloorScripts) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// The floor: also one TapIn through `tap` per code whose signature verifies.
    pub fn with_tap(mut self, tap: FloorTap) -> Self {
        self.tap = Some(tap);
        self
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
        Ok(Response::new(self.answer(request.get_ref()).await))
    }

    type VerifyStreamStream = Responses;

    async fn verify_stream(
        &self,
        request: Request<Streaming<VerifyStreamRequest>>,
    ) -> Result<Response<Self::VerifyStreamStream>, Status> {
        let bare = self.clone();
        let scans = request.into_inner();
        if self.tap.is_none() && self.scripts.is_none() {
            let answers = scans.map(move |item| {
                let request = item?.request.unwrap_or_default();
                let decided = bare.decide(&request.qr_text);
                Ok(VerifyStreamResponse {
                    response: Some(respond(&request, decided)),
                    error: None,
                })
            });
            return Ok(Response::new(Box::pin(answers)));
        }
        // The floor: each scan in the order it came, its calls awaited before the next.
        let answers = scans.then(move |item| {
            let bare = bare.clone();
            async move {
                let scan = item?;
                Ok(VerifyStreamResponse {
                    response: Some(bare.answer(&scan.request.unwrap_or_default()).await),
                    error: None,
                })
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn upload_offline_scans(
        &self,
        _request: Request<citypass_proto::v1::UploadOfflineScansRequest>,
    ) -> Result<Response<citypass_proto::v1::UploadOfflineScansResponse>, Status> {
        Err(Status::unimplemented(
            "the bare verify server only verifies",
        ))
    }

    async fn list_fraud_signals(
        &self,
        _request: Request<citypass_proto::v1::ListFraudSignalsRequest>,
    ) -> Result<Response<citypass_proto::v1::ListFraudSignalsResponse>, Status> {
        Err(Status::unimplemented(
            "the bare verify server only verifies",
        ))
    }

    async fn void_scan(
        &self,
        _request: Request<citypass_proto::v1::VoidScanRequest>,
    ) -> Result<Response<citypass_proto::v1::VoidScanResponse>, Status> {
        Err(Status::unimplemented(
            "the bare verify server only verifies",
        ))
    }

    async fn verify_face(
        &self,
        _request: Request<citypass_proto::v1::VerifyFaceRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        Err(Status::unimplemented(
            "the bare verify server only verifies",
        ))
    }
}

impl BareVerifier {
    /// The answer to `request`: the signature checked, then (the floor) the TapIn and
    /// the shared-store steps.
    async fn answer(&self, request: &VerifyRequest) -> VerifyResponse {
        let mut decided = self.decide(&request.qr_text);
        if let (Ok(()), Some(tap)) = (decided, &self.tap) {
            decided = tap.tap(&request.gate_id, &request.scan_id).await;
        }
        if let (Ok(()), Some(scripts)) = (decided, &self.scripts) {
            decided = scripts.run(&request.scan_id).await;
        }
        respond(request, decided)
    }
}

/// The answer to `request` decided `decided`.
fn respond(request: &VerifyRequest, decided: Result<(), DenyReason>) -> VerifyResponse {
    let (decision, reason) = match decided {
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

/// A bare server the tool started (verify or sign), in its own process or as a
/// child.
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
        let args = [
            "--tls-dir".to_owned(),
            target.server_tls_dir.display().to_string(),
            "--public-key".to_owned(),
            hex::encode(&key),
        ];
        BareServer::spawn(
            "bare verify server",
            "bare-verify",
            program,
            &args,
            &gate.tls,
        )
        .await
    }

    /// Starts the floor for `target` ([`crate::floor`]) in the shape `shape`: the
    /// trivial taps server (when the floor taps in), then the bare verify server that
    /// taps in there and runs its shared-store steps once per verified code; in this
    /// process, or each as a child process of `loadtest`. The floor first, its taps
    /// server second.
    pub async fn start_floor(
        target: &Target,
        loadtest: Option<&Path>,
        shape: &FloorShape,
    ) -> Result<(BareServer, Option<BareServer>), LoadError> {
        let key = target.issuer.key().public_key().as_bytes().to_vec();
        let redis = match (&shape.redis, shape.scripts) {
            (_, 0) => None,
            (Some(url), _) => Some(url.clone()),
            (None, _) => {
                return Err(LoadError::Settings(
                    "the floor's scripts need a Redis (--services with --redis)".to_owned(),
                ));
            }
        };
        let Some(program) = loadtest else {
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let mut verifier = BareVerifier::new(&key);
            let mut taps = None;
            if shape.tap {
                let server = Ceiling::start_taps(any, target.server_tls.clone()).await?;
                verifier = verifier.with_tap(FloorTap::new(&server.url(), &target.server_tls)?);
                taps = Some(BareServer::InProcess(server));
            }
            if let Some(url) = &redis {
                verifier = verifier.with_scripts(FloorScripts::connect(url, shape.scripts).await?);
            }
            let floor = Ceiling::start(verifier, target.server_tls.clone()).await?;
            return Ok((BareServer::InProcess(floor), taps));
        };
        let gate = target
            .gates
            .first()
            .ok_or_else(|| LoadError::NoGates("no gate to probe the floor".to_owned()))?;
        let tls_dir = [
            "--tls-dir".to_owned(),
            target.server_tls_dir.display().to_string(),
        ];
        let mut args = tls_dir.to_vec();
        args.extend(["--public-key".to_owned(), hex::encode(&key)]);
        let taps = if shape.tap {
            let taps = BareServer::spawn(
                "trivial taps server",
                "bare-taps",
                program,
                &tls_dir,
                &gate.tls,
            )
            .await?;
            args.extend(["--tap-url".to_owned(), taps.url()]);
            Some(taps)
        } else {
            None
        };
        if let Some(url) = redis {
            // In a file only this user reads, not on the child's command line, which
            // every local user can list: the URL may hold a password (the sign floor's
            // the same way).
            let path = target.server_tls_dir.join(FLOOR_REDIS_URL_FILE);
            write_private(&path, &url)?;
            args.extend([
                "--redis-url-file".to_owned(),
                path.display().to_string(),
                "--scripts".to_owned(),
                shape.scripts.to_string(),
            ]);
        }
        let floor = BareServer::spawn("floor", "bare-verify", program, &args, &gate.tls).await?;
        Ok((floor, taps))
    }

    /// Starts the bare sign server for `target`'s issuer, knowing `citizens`' device
    /// keys: in this process, or with `loadtest` as a child process (which reads the
    /// ring from the keys directory and the devices from a file written there). With
    /// `nonces` (a Redis URL) it is the sign floor ([`crate::bare_sign`]): each
    /// verified proof's nonce marked used there first.
    pub async fn start_signer(
        target: &Target,
        citizens: &[Citizen],
        loadtest: Option<&Path>,
        nonces: Option<&str>,
    ) -> Result<BareServer, LoadError> {
        let apps = target.apps.as_ref().ok_or_else(|| {
            LoadError::Settings(
                "IssueToken needs the stack's issuer (in process or --spawn)".to_owned(),
            )
        })?;
        let Some(program) = loadtest else {
            let devices = citizens
                .iter()
                .map(|c| (c.device_id.clone(), c.key.public_key().clone()))
                .collect();
            let mut signer = BareSigner::new(target.issuer.clone(), devices);
            if let Some(url) = nonces {
                signer = signer.with_nonces(FloorScripts::connect(url, 0).await?);
            }
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let ceiling = Ceiling::start_signer(any, signer, apps.server_tls.clone()).await?;
            return Ok(BareServer::InProcess(ceiling));
        };
        let devices: Vec<String> = citizens
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.device_id,
                    hex::encode(c.key.public_key().as_bytes())
                )
            })
            .collect();
        let devices_file = apps.keys_dir.join("loadtest-devices.txt");
        std::fs::write(&devices_file, devices.join("\n") + "\n").map_err(|e| LoadError::File {
            path: devices_file.clone(),
            problem: e.to_string(),
        })?;
        let mut args = vec![
            "--tls-dir".to_owned(),
            apps.server_tls_dir.display().to_string(),
            "--keys-dir".to_owned(),
            apps.keys_dir.display().to_string(),
            "--devices".to_owned(),
            devices_file.display().to_string(),
        ];
        let name = match nonces {
            None => "bare sign server",
            Some(url) => {
                let path = apps.server_tls_dir.join(FLOOR_REDIS_URL_FILE);
                write_private(&path, url)?;
                args.extend(["--redis-url-file".to_owned(), path.display().to_string()]);
                "sign floor"
            }
        };
        let tls = apps
            .endpoints
            .tls
            .clone()
            .ok_or_else(|| LoadError::Settings("the apps' TLS is missing".to_owned()))?;
        BareServer::spawn(name, "bare-sign", program, &args, &tls).await
    }

    /// Spawns `program serve <command> --listen ADDR <args>` and waits for its health.
    async fn spawn(
        name: &str,
        command: &str,
        program: &Path,
        args: &[String],
        probe_tls: &Arc<Tls>,
    ) -> Result<BareServer, LoadError> {
        let port = child::free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let mut all = vec![
            "serve".to_owned(),
            command.to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        all.extend_from_slice(args);
        let (server, ()) = ChildServer::spawn(name, program, &all, || {
            let (url, tls) = (url.clone(), probe_tls.clone());
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
        Ceiling::serve(addr, tls, |server| {
            server.add_service(
                VerifierServiceServer::new(verifier),
                &citypass_verifier::AUTHORIZATION,
            )
        })
        .await
    }

    /// Serves the trivial taps server ([`crate::floor`]) with `tls` on `addr`, with
    /// payments' authorisation table.
    pub async fn start_taps(addr: SocketAddr, tls: Arc<Tls>) -> Result<Ceiling, LoadError> {
        Ceiling::serve(addr, tls, |server| {
            server.add_service(
                PaymentsServiceServer::new(TrivialTaps),
                &citypass_payments::AUTHORIZATION,
            )
        })
        .await
    }

    /// Serves the bare sign server `signer` with `tls` on `addr`, with the issuer's
    /// authorisation table.
    pub async fn start_signer(
        addr: SocketAddr,
        signer: BareSigner,
        tls: Arc<Tls>,
    ) -> Result<Ceiling, LoadError> {
        Ceiling::serve(addr, tls, |server| {
            server.add_service(
                IssuerServiceServer::new(signer),
                &citypass_issuer::AUTHORIZATION,
            )
        })
        .await
    }

    async fn serve(
        addr: SocketAddr,
        tls: Arc<Tls>,
        add: impl FnOnce(Server) -> Server,
    ) -> Result<Ceiling, LoadError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| LoadError::Ceiling(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LoadError::Ceiling(e.to_string()))?;
        let mut config = ServerConfig::new("citypass-loadtest-ceiling");
        config.listen = addr;
        let server = add(Server::new(config).tls(tls));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "a bare server stopped");
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
