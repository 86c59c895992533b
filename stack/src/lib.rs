//! Every service built so far (identity, issuer, revocation, verifier, payments), in one
//! process, each on its own loopback socket, each built by its own `build(config)`.
//!
//! `citypass dev` runs this on fixed ports with embedded (in-memory) stores so a
//! laptop needs no server at all; the end-to-end tests run it on ephemeral ports with
//! PostgreSQL and Redis. Both get the same wiring, and it is the wiring of the
//! services' own binaries: the stack only writes each service's dev [`Config`]s (ports,
//! stores, the dev PKI's certificates, the other services' URLs) and calls the
//! service's `build`. Services talk to each other over real gRPC with mutual TLS,
//! exactly as in Kubernetes: nothing is shortcut because it shares a process.
//!
//! - [`config`]: how to run the stack ([`StackConfig`]);
//! - `services`: each service's dev configuration, one function per service;
//! - `files`: the files written for the verifier (key set, subject keys, gate registry);
//! - [`launch`]: the services as separate processes instead (each its own binary, as
//!   a container runs it), for the launch test and the load generator;
//! - this module: the order of start-up ([`Stack::start`]) and the running stack.
//!
//! [`Config`]: citypass_issuer::Config
#![forbid(unsafe_code)]

pub mod config;
mod error;
mod files;
pub mod launch;
mod services;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use citypass_app::Endpoints;
use citypass_issuer::{Keys, RevocationView};
use citypass_pki::{Authority, DevPki, Subject};
use citypass_runtime::{Role, Tls};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{
    IdentityStore, IssuanceConfig, KeyFile, KeySource, NonceBackend, RevocationBackend, StackConfig,
};
pub use error::StackError;
pub use files::{SAMPLE_GATE_IDS, SAMPLE_GATES, venue_gate_id};

use error::built;
use files::VerifierFiles;
use services::{Addresses, server, url};

/// A well-formed resident ID number (GB 11643: a Beijing district, a real birth date,
/// the right check character) ending in `seq`, for demo citizens.
pub fn sample_resident_id(seq: u16) -> String {
    let first17 = format!("11010519900307{:03}", seq % 1000);
    // 17 ASCII digits: the check character always exists.
    let check = citypass_identity::document::gb11643_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// How long start-up waits for the first revocation sync of the issuer, the verifier
/// and payments.
const REVOCATION_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A running stack. Dropping it does not stop the services: call [`Stack::shutdown`].
pub struct Stack {
    /// Identity's bound address.
    pub identity: SocketAddr,
    /// The issuer's bound address.
    pub issuer: SocketAddr,
    /// The revocation service's bound address.
    pub revocation: SocketAddr,
    /// The verifier's bound address.
    pub verifier: SocketAddr,
    /// The payments service's bound address (memory store, the sandbox provider).
    pub payments: SocketAddr,
    /// The issuer's keys (to rotate or observe reloads).
    pub keys: Arc<Keys>,
    /// The issuer's view of the revocation log (epoch, age, queries).
    pub issuer_revocations: RevocationView,
    /// The verifier's view of the revocation log.
    pub verifier_revocations: RevocationView,
    /// The verifier's gate registry file (sample gates of every scene, written on
    /// first run and then left to the developer; reloaded on change).
    pub gates_file: PathBuf,
    /// The dev PKI the services' certificates come from.
    pub pki: DevPki,
    ca: Authority,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), citypass_runtime::ServeError>>,
}

async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StackError> {
    let bind = |source| StackError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

impl Stack {
    /// Starts every service and returns once each is listening.
    pub async fn start(config: StackConfig) -> Result<Stack, StackError> {
        let (pki, ca) = DevPki::ensure(&config.dir.join("pki"))?;
        let (identity_listener, identity) = listen(config.identity_listen).await?;
        let (revocation_listener, revocation) = listen(config.revocation_listen).await?;
        let (issuer_listener, issuer) = listen(config.issuer_listen).await?;
        let (verifier_listener, verifier) = listen(config.verifier_listen).await?;
        let (payments_listener, payments) = listen(config.payments_listen).await?;
        let at = Addresses {
            identity,
            revocation,
            payments,
        };

        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();

        // Each service's configuration first (certificates from the dev PKI), then each
        // built and served in order: identity, revocation, issuer, verifier, payments.
        let verifier_files = VerifierFiles::at(&config.dir.join("verifier"));
        let subject_key_file = files::subject_key_file(&config.keys)?;
        let identity_config = services::identity(
            &config,
            server("identity", identity, pki.service(&ca, "identity")?),
        );
        let revocation_config = services::revocation(
            &config,
            server("revocation", revocation, pki.service(&ca, "revocation")?),
            &at,
        );
        let issuer_config = services::issuer(
            &config,
            server("issuer", issuer, pki.service(&ca, "issuer")?),
            &at,
        );
        let verifier_config = services::verifier(
            &config,
            server("verifier", verifier, pki.service(&ca, "verifier")?),
            &at,
            &verifier_files,
        );
        let payments_config = services::payments(
            &config,
            server("payments", payments, pki.service(&ca, "payments")?),
            &at,
        );

        let identity_built = citypass_identity::build(identity_config)
            .await
            .map_err(built("identity"))?;
        tasks.spawn(identity_built.server.serve(identity_listener, shutdown()));

        let revocation_built = citypass_revocation_service::build(revocation_config)
            .await
            .map_err(built("revocation"))?;
        tasks.spawn(
            revocation_built
                .server
                .serve(revocation_listener, shutdown()),
        );

        let issuer_built = match config.keys {
            KeySource::File { .. } => citypass_issuer::build(issuer_config).await,
            KeySource::Memory(ring) => citypass_issuer::build_with(issuer_config, Some(ring)).await,
        }
        .map_err(built("issuer"))?;
        // Issuance fails closed until the issuer has heard from the log once.
        tokio::time::timeout(
            REVOCATION_SYNC_TIMEOUT,
            issuer_built.revocations.wait_synced(),
        )
        .await
        .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        let keys = issuer_built.keys.clone();
        let issuer_revocations = issuer_built.revocations.clone();
        tasks.spawn(issuer_built.server.serve(issuer_listener, shutdown()));

        verifier_files.write(&keys, &subject_key_file, &config.scenic_venues)?;
        for gate in SAMPLE_GATE_IDS {
            pki.gate(&ca, gate)?;
        }
        let verifier_built = citypass_verifier::build(verifier_config)
            .await
            .map_err(built("verifier"))?;
        tokio::time::timeout(
            REVOCATION_SYNC_TIMEOUT,
            verifier_built.revocations.wait_synced(),
        )
        .await
        .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        let verifier_revocations = verifier_built.revocations.clone();
        tokio::spawn(files::follow_key_set(
            keys.clone(),
            verifier_files.key_set.clone(),
        ));
        tasks.spawn(verifier_built.server.serve(verifier_listener, shutdown()));

        let payments_built = citypass_payments::build(payments_config)
            .await
            .map_err(built("payments"))?;
        if let Some(revocations) = &payments_built.revocations {
            // Citizens' calls fail closed until payments has heard from the log once.
            tokio::time::timeout(REVOCATION_SYNC_TIMEOUT, revocations.wait_synced())
                .await
                .map_err(|_| StackError::RevocationSilent(REVOCATION_SYNC_TIMEOUT))?;
        }
        tasks.spawn(payments_built.server.serve(payments_listener, shutdown()));

        Ok(Stack {
            identity,
            issuer,
            revocation,
            verifier,
            payments,
            keys,
            issuer_revocations,
            verifier_revocations,
            gates_file: verifier_files.gates,
            pki,
            ca,
            stop,
            tasks,
        })
    }

    /// TLS for a client of the stack: the dev CA, and a certificate for `subject` if
    /// given (an operator, a gate, a service), none for a citizen's app.
    pub fn client_tls(&self, subject: Option<&Subject>) -> Result<Arc<Tls>, StackError> {
        let ca = self.ca.cert_pem().as_bytes();
        let tls = match subject {
            None => Tls::from_pem(ca, None),
            Some(subject) => {
                let issued = self.ca.issue(subject)?;
                Tls::from_pem(
                    ca,
                    Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
                )
            }
        };
        tls.map_err(|e| StackError::Pki(citypass_pki::PkiError::Invalid(e.to_string())))
    }

    /// TLS for an operator of the stack holding `roles`.
    pub fn operator_tls(&self, name: &str, roles: &[Role]) -> Result<Arc<Tls>, StackError> {
        self.client_tls(Some(&Subject::operator(
            name,
            roles,
            citypass_pki::OPERATOR_LIFE,
        )))
    }

    /// The CA that issued the services' certificates.
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// The URLs an app uses, with TLS that trusts the dev CA.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            identity: url(self.identity),
            issuer: url(self.issuer),
            payments: url(self.payments),
            tls: self.client_tls(None).ok(),
        }
    }

    /// The verifier's URL.
    pub fn verifier_url(&self) -> String {
        url(self.verifier)
    }

    /// TLS for gate `id` of the stack (any id: the verifier answers UNKNOWN_GATE for
    /// one its registry does not list).
    pub fn gate_tls(&self, id: &str) -> Result<Arc<Tls>, StackError> {
        self.client_tls(Some(&Subject::gate(id)))
    }

    /// The revocation service's URL.
    pub fn revocation_url(&self) -> String {
        url(self.revocation)
    }

    /// Stops every service (health NOT_SERVING, drain, exit) and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while let Some(result) = self.tasks.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "a service stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "a service task failed"),
            }
        }
    }

    /// Waits until any service stops on its own (an error), for `citypass dev`.
    pub async fn wait_any(&mut self) -> Option<String> {
        match self.tasks.join_next().await? {
            Ok(Ok(())) => Some("a service stopped".to_owned()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }
}
