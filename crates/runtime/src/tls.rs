//! A process's TLS identity: the deployment's CA, its own certificate and key, read
//! from files and reloaded when they change, without a restart.
//!
//! In Kubernetes the three files are a mounted Secret (written by cert-manager, which
//! renews certificates long before they expire); in `citypass dev` they are the dev PKI
//! that `citypass pki init` makes. One [`Tls`] serves both directions: servers present
//! the certificate and check callers' certificates against the CA; clients (a service
//! calling another) present the same certificate and check the server's against the CA
//! and the host name in the URL.
//!
//! tonic's own TLS takes certificates once, at start; renewing a certificate would need
//! a restart. Here rustls asks [`Tls`] for the current material on every handshake, so a
//! reload takes effect on the next connection. A reload that fails (a half-written
//! file, a key that does not match its certificate) keeps the previous material and is
//! logged: a broken renewal must not take a serving pod down.
//!
//! Client certificates are optional at the handshake (a citizen's app has none) and
//! checked right after it, by [`crate::peer`]: a caller that presents a certificate
//! still proves possession of its key during the handshake (rustls checks the
//! CertificateVerify signature through [`Tls`]), but a chain that does not verify
//! becomes an `UNAUTHENTICATED` answer from the authorisation layer instead of a
//! broken connection, so callers learn what is wrong.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

pub use crate::config::TlsConfig;
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// ALPN protocol of gRPC.
const ALPN_H2: &[u8] = b"h2";

/// Why TLS material could not be loaded. Names the file; never prints key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM object of the kind expected.
    #[error("{path}: {problem}")]
    Pem { path: PathBuf, problem: String },
    /// The certificates or key were refused by rustls (e.g. a key that does not match).
    #[error("TLS material refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA bundle cannot verify anything.
    #[error("CA bundle: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The certificate does not chain to the CA bundle, or is expired or not yet
    /// valid: serving it would lock every caller out.
    #[error("{path}: the certificate does not verify against the CA bundle: {source}")]
    Unusable {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Which CA a caller's certificate chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// The deployment's CA (`ca_file`): services and gates, and operators when no
    /// operator CA is configured.
    Deployment,
    /// The operators' CA (`operator_ca_file`).
    Operators,
}

/// The material in use at one moment.
#[derive(Debug)]
struct Material {
    /// The raw files, to tell whether a reload changed anything.
    source: Vec<u8>,
    certified: Option<Arc<CertifiedKey>>,
    /// The same identity as PEM, for a TLS stack that takes PEM only
    /// ([`Tls::identity_pem`]); a new `Arc` with every reload.
    identity_pem: Option<Arc<IdentityPem>>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    operator_verifier: Option<Arc<dyn ClientCertVerifier>>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

/// A certificate chain and its key as PEM text (the key never shows in `Debug`).
pub(crate) struct IdentityPem {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for IdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityPem(..)")
    }
}

/// A reloadable TLS identity (see the module documentation).
#[derive(Debug)]
pub struct Tls {
    current: ArcSwap<Material>,
    files: Option<TlsConfig>,
    /// The provider's signature algorithms: handshake signatures (a peer's proof that
    /// it holds its certificate's key) are checked with them whatever the CA.
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// The one crypto provider: ring (no C build), installed as the process default so that
/// libraries that build their own rustls configuration (redis, sqlx) use it too.
pub fn provider() -> Arc<CryptoProvider> {
    // A second install (another test in the same process) fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads the files of `config`; call [`Tls::spawn_reloader`] to follow changes.
    pub fn from_files(config: &TlsConfig) -> Result<Arc<Tls>, TlsError> {
        let material = load_files(config)?;
        Ok(Arc::new(Tls {
            current: ArcSwap::from_pointee(material),
            files: Some(config.clone()),
            algorithms: provider().signature_verification_algorithms,
        }))
    }

    /// TLS from PEM text held in memory: a CA bundle and, for a process with an
    /// identity, its certificate chain and key (a citizen's app has none).
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Arc<Tls>, TlsError> {
        let material = build(ca, None, identity, Path::new("<memory>"), false)?;
        Ok(Arc::new(Tls {
            current: ArcSwap::from_pointee(material),
            files: None,
            algorithms: provider().signature_verification_algorithms,
        }))
    }

    /// Checks the files every `reload_interval` and swaps in changed material; the task
    /// ends when the last `Arc<Tls>` is dropped. Call inside a tokio runtime. Does
    /// nothing for material loaded from memory.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let Some(files) = self.files.clone() else {
            return;
        };
        let weak: Weak<Tls> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(files.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                let files = files.clone();
                // File reads are blocking; keep them off the async workers.
                let loaded = tokio::task::spawn_blocking(move || read_sources(&files)).await;
                let Ok(Ok(sources)) = loaded else {
                    tracing::warn!("TLS files unreadable; keeping the current certificate");
                    continue;
                };
                if sources.joined() == tls.current.load().source {
                    continue;
                }
                match sources.build() {
                    Ok(material) => {
                        tls.current.store(Arc::new(material));
                        tracing::info!("TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the current certificate");
                    }
                }
            }
        });
    }

    /// Reloads the files now (what the reloader does on a change); for tests and tools.
    pub fn reload(&self) -> Result<(), TlsError> {
        let files = self.files.as_ref().ok_or_else(|| TlsError::Pem {
            path: PathBuf::from("<memory>"),
            problem: "TLS material held in memory has no files to reload".to_owned(),
        })?;
        self.current.store(Arc::new(load_files(files)?));
        Ok(())
    }

    /// The rustls configuration of a server with this identity: client certificates
    /// requested but optional, checked after the handshake ([`crate::peer`]).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(DeferredClientAuth(self.clone())))
            .with_cert_resolver(Arc::new(Identity(self.clone())));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// The rustls configuration of a client: servers checked against the CA and the
    /// URL's host, this identity's certificate presented when it has one.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(Identity(self.clone())));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// A verifier of servers against the current CA bundle (it follows reloads), for a
    /// TLS stack that builds its own configuration: tonic's, under the balanced
    /// upstream channels ([`crate::upstream`]).
    pub(crate) fn server_verifier(self: &Arc<Self>) -> Arc<dyn ServerCertVerifier> {
        Arc::new(CurrentServerVerifier(self.clone()))
    }

    /// This identity's certificate chain and key as PEM (none for a citizen's app): a
    /// new `Arc` after each reload, so a holder of a copy can tell it is out of date.
    pub(crate) fn identity_pem(&self) -> Option<Arc<IdentityPem>> {
        self.current.load().identity_pem.clone()
    }

    /// Checks a client's chain against the current CA bundles at `now`; says which
    /// one it chains to.
    pub(crate) fn verify_client_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Issuer, rustls::Error> {
        let material = self.current.load();
        let deployment =
            material
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now);
        match (deployment, &material.operator_verifier) {
            (Ok(_), _) => Ok(Issuer::Deployment),
            (Err(e), None) => Err(e),
            (Err(e), Some(operators)) => operators
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| Issuer::Operators)
                .map_err(|_| e),
        }
    }

    /// Whether operators must come from their own CA.
    pub(crate) fn separate_operator_ca(&self) -> bool {
        self.current.load().operator_verifier.is_some()
    }
}

/// The certificates in PEM text, DER-encoded, in order.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The raw bytes of the files.
struct Sources {
    path: PathBuf,
    ca: Vec<u8>,
    operator_ca: Option<Vec<u8>>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Sources {
    fn joined(&self) -> Vec<u8> {
        let operator_ca = self.operator_ca.as_deref().unwrap_or_default();
        [self.ca.as_slice(), operator_ca, &self.cert, &self.key].concat()
    }

    fn build(&self) -> Result<Material, TlsError> {
        let mut material = build(
            &self.ca,
            self.operator_ca.as_deref(),
            Some((&self.cert, &self.key)),
            &self.path,
            true,
        )?;
        material.source = self.joined();
        Ok(material)
    }
}

fn read_sources(files: &TlsConfig) -> Result<Sources, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    Ok(Sources {
        path: files.cert_file.clone(),
        ca: read(&files.ca_file)?,
        operator_ca: files.operator_ca_file.as_ref().map(read).transpose()?,
        cert: read(&files.cert_file)?,
        key: read(&files.key_file)?,
    })
}

fn load_files(files: &TlsConfig) -> Result<Material, TlsError> {
    read_sources(files)?.build()
}

fn pem_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The certificates of a CA bundle.
fn root_store(pem: &[u8], path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| pem_error(path, format!("CA bundle: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(pem_error(path, "a CA bundle holds no certificate"));
    }
    Ok(Arc::new(roots))
}

fn build(
    ca: &[u8],
    operator_ca: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
    path: &Path,
    served: bool,
) -> Result<Material, TlsError> {
    let provider = provider();
    let roots = root_store(ca, path)?;
    let certified = match identity {
        None => None,
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, format!("certificate: {e}")))?;
            if chain.is_empty() {
                return Err(pem_error(path, "no certificate in the certificate file"));
            }
            // The key's PEM error text never contains key material.
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| pem_error(path, format!("private key: {e}")))?;
            Some(Arc::new(CertifiedKey::from_der(chain, key, &provider)?))
        }
    };
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let operator_verifier = match operator_ca {
        Some(pem) => Some(
            WebPkiClientVerifier::builder_with_provider(root_store(pem, path)?, provider.clone())
                .build()?,
        ),
        None => None,
    };
    // A served certificate (a service's files) must be one callers accept: chained to
    // the CA and valid now; a renewal that fails this keeps the old material. (A
    // client's own certificate may come from another CA, e.g. the operators'.)
    if served
        && let Some(certified) = &certified
        && let Some((leaf, intermediates)) = certified.cert.split_first()
    {
        client_verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|source| TlsError::Unusable {
                path: path.to_owned(),
                source,
            })?;
    }
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
    Ok(Material {
        source: Vec::new(),
        certified,
        identity_pem: identity.map(|(cert, key)| {
            Arc::new(IdentityPem {
                cert: cert.to_vec(),
                key: key.to_vec(),
            })
        }),
        client_verifier,
        operator_verifier,
        server_verifier,
    })
}

/// Presents the current certificate, as a server and as a client.
#[derive(Debug)]
struct Identity(Arc<Tls>);

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().certified.clone()
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().certified.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.current.load().certified.is_some()
    }
}

/// Asks for a client certificate without requiring one, and leaves the chain check to
/// [`crate::peer`] (see the module documentation). The handshake signature, which
/// proves the client holds the certificate's key, is checked here as rustls' own
/// verifier checks it.
#[derive(Debug)]
struct DeferredClientAuth(Arc<Tls>);

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // rustls wants a borrowed slice; the hints only steer the client's choice of
        // certificate, so an empty list (any certificate) is correct if less helpful.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .current
            .load()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// Checks servers against the current CA bundle (reloaded like the certificate).
#[derive(Debug)]
struct CurrentServerVerifier(Arc<Tls>);

impl ServerCertVerifier for CurrentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current.load().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .current
            .load()
            .server_verifier
            .supported_verify_schemes()
    }
}
