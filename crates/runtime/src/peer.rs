//! Connections as the server sees them: TLS accepted off the accept loop, and the
//! caller's certificate checked and read once per connection.
//!
//! [`incoming`] turns a TCP listener into a stream of connections for tonic. Each TLS
//! handshake runs in its own task with a time limit, so a client that stalls its
//! handshake holds up nobody else. Each connection carries a [`PeerInfo`] (tonic puts
//! it in every request's extensions), which the authorisation layer reads: no
//! certificate, a valid one naming a [`Principal`], or an invalid one (another CA,
//! expired, no citypass identity) with the reason.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::caller::Principal;
use crate::tls::{Issuer, Tls};

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 256;
/// TLS handshakes in progress at once; a connection beyond them is closed at once, so
/// a flood of half-open handshakes cannot grow without bound.
const MAX_HANDSHAKES: usize = 1024;

/// What a connection's client proved about itself.
#[derive(Debug, Clone)]
pub enum Credential {
    /// No certificate: a plaintext connection, or TLS without a client certificate.
    None,
    /// A certificate that chains to the CA and names a citypass identity.
    Valid {
        principal: Arc<Principal>,
        /// The certificate's end; calls after it are refused though the connection
        /// may live on.
        not_after: SystemTime,
    },
    /// A certificate that was presented but cannot be trusted; why, for the answer.
    Invalid(Arc<str>),
}

/// The connection facts every request of the connection carries.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Its certificate, checked.
    pub credential: Credential,
}

/// One accepted connection, TLS or plaintext.
pub enum Connection {
    /// TLS (the boxed stream is large).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, PeerInfo),
    /// Plaintext: only where configured, behind a mesh that terminates mTLS.
    Plain(TcpStream, PeerInfo),
}

impl Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Connection::Tls(_, info) | Connection::Plain(_, info) => info.clone(),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Connection::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Connection::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
            Connection::Plain(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Connection::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Connection::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tls(s, _) => s.is_write_vectored(),
            Connection::Plain(s, _) => s.is_write_vectored(),
        }
    }
}

/// The connections of `listener`, through TLS with `tls` or, if `None`, in plaintext.
/// The accept loop ends when the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
) -> Result<impl Stream<Item = io::Result<Connection>>, crate::tls::TlsError> {
    let acceptor = match &tls {
        Some(tls) => Some(TlsAcceptor::from(tls.server_config()?)),
        None => None,
    };
    let (tx, rx) = mpsc::channel::<io::Result<Connection>>(BACKLOG);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (stream, remote_addr) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Per-connection errors (e.g. reset before accept, too many
                        // files): log, pause briefly, keep accepting.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match (&acceptor, &tls) {
                (Some(acceptor), Some(tls)) => {
                    let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                        tracing::debug!("too many TLS handshakes in progress: connection closed");
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let tls = tls.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        drop(permit);
                        match handshake {
                            Ok(Ok(stream)) => {
                                let credential = {
                                    let (_, session) = stream.get_ref();
                                    authenticate(
                                        &tls,
                                        session.peer_certificates().unwrap_or_default(),
                                    )
                                };
                                let info = PeerInfo {
                                    remote_addr: Some(remote_addr),
                                    credential,
                                };
                                let _ = tx.send(Ok(Connection::Tls(Box::new(stream), info))).await;
                            }
                            // A failed handshake is the client's problem, not the
                            // server's: debug only (a scanner would flood the log).
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
                _ => {
                    let info = PeerInfo {
                        remote_addr: Some(remote_addr),
                        credential: Credential::None,
                    };
                    if tx.send(Ok(Connection::Plain(stream, info))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Checks a presented chain (leaf first) against the CA and reads its identity.
pub fn authenticate(tls: &Tls, chain: &[CertificateDer<'_>]) -> Credential {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Credential::None;
    };
    let issuer = match tls.verify_client_chain(leaf, intermediates, UnixTime::now()) {
        Ok(issuer) => issuer,
        Err(e) => {
            return Credential::Invalid(Arc::from(format!("client certificate refused: {e}")));
        }
    };
    match read_identity(leaf) {
        Ok((principal, not_after)) => {
            // With an operators' CA, each CA vouches for its own kind only.
            let operator = matches!(principal, Principal::Operator { .. });
            if tls.separate_operator_ca() && operator != (issuer == Issuer::Operators) {
                return Credential::Invalid(Arc::from(
                    "client certificate: operators' certificates come from the operators' CA only, and only they do",
                ));
            }
            Credential::Valid {
                principal: Arc::new(principal),
                not_after,
            }
        }
        Err(reason) => Credential::Invalid(Arc::from(format!("client certificate: {reason}"))),
    }
}

/// The principal named by a certificate's URI SANs, and the certificate's end.
pub fn read_identity(der: &[u8]) -> Result<(Principal, SystemTime), String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("malformed: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let not_after = tbs.validity.not_after.to_system_time();
    let mut uris = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id == const_oid_san() {
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|e| format!("malformed subject alternative names: {e}"))?;
            for name in san.0 {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    uris.push(uri.to_string());
                }
            }
        }
    }
    let principal = Principal::from_uris(uris.iter().map(String::as_str))?;
    Ok((principal, not_after))
}

fn const_oid_san() -> x509_cert::der::oid::ObjectIdentifier {
    use x509_cert::der::oid::AssociatedOid as _;
    SubjectAltName::OID
}
