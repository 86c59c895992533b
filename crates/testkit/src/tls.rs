//! A throwaway CA for one test: the server's certificate, and clients with whatever
//! identity a test calls as (a service, a gate, an operator with roles, nobody), over
//! real TLS on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use citypass_pki::{Authority, CA_LIFE, Issued, OPERATOR_LIFE, Subject};
use citypass_runtime::{Principal, Role, Tls, TlsConfig, UpstreamConfig};
use tonic::transport::Channel;

/// Who a test client is.
#[derive(Debug, Clone)]
pub enum As {
    /// No certificate (a citizen's app).
    Nobody,
    /// The named citypass service.
    Service(&'static str),
    /// A gate.
    Gate(&'static str),
    /// An operator with these roles.
    Operator(&'static [Role]),
    /// A certificate from another CA of the same name (an impostor).
    OtherCa(Box<As>),
    /// A certificate of this CA that expired an hour ago.
    Expired(Box<As>),
}

/// The test's CA and the server's TLS identity.
pub struct TestPki {
    ca: Authority,
    issued: Issued,
    /// The server's identity: a certificate for `service` on loopback.
    pub server: Arc<Tls>,
}

impl TestPki {
    /// A fresh CA and a server certificate for service `service`.
    pub fn new(service: &str) -> TestPki {
        let ca = Authority::generate(CA_LIFE).expect("a CA");
        let issued = ca.issue(&Subject::service(service)).expect("a certificate");
        let server = Tls::from_pem(
            ca.cert_pem().as_bytes(),
            Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
        )
        .expect("server TLS");
        TestPki { ca, issued, server }
    }

    /// Writes the server's identity as files (`ca.crt`, `tls.crt`, `tls.key`) into
    /// `dir`, for a service built from its configuration.
    pub fn server_files(&self, dir: &std::path::Path) -> TlsConfig {
        self.issued.write_dir(dir).expect("write the TLS files")
    }

    /// The CA.
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// TLS for a client that is `who`.
    pub fn client(&self, who: &As) -> Arc<Tls> {
        let ca_pem = self.ca.cert_pem().as_bytes();
        let (authority, subject) = match who {
            As::Nobody => return Tls::from_pem(ca_pem, None).expect("client TLS"),
            As::OtherCa(inner) => (
                Authority::generate(CA_LIFE).expect("another CA"),
                subject(inner),
            ),
            As::Expired(inner) => {
                let mut subject = subject(inner);
                let now = SystemTime::now();
                subject.not_before = now - Duration::from_secs(7200);
                subject.not_after = now - Duration::from_secs(3600);
                return self.with(&self.ca, &subject);
            }
            other => return self.with(&self.ca, &subject(other)),
        };
        self.with(&authority, &subject)
    }

    fn with(&self, authority: &Authority, subject: &Subject) -> Arc<Tls> {
        let issued = authority.issue(subject).expect("a client certificate");
        Tls::from_pem(
            self.ca.cert_pem().as_bytes(),
            Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
        )
        .expect("client TLS")
    }

    /// A channel to `addr` over TLS as `who`.
    pub fn channel(&self, addr: SocketAddr, who: &As) -> Channel {
        UpstreamConfig::new(format!("https://{addr}"))
            .channel(Some(&self.client(who)))
            .expect("a channel")
    }
}

fn subject(who: &As) -> Subject {
    match who {
        As::Service(name) => Subject::service(name),
        As::Gate(id) => Subject::gate(id),
        As::Operator(roles) => Subject::operator("test-operator", roles, OPERATOR_LIFE),
        As::OtherCa(inner) | As::Expired(inner) => subject(inner),
        As::Nobody => Subject::gate("nobody"),
    }
}

impl As {
    /// The principal a valid certificate of this kind names, if any.
    pub fn principal(&self) -> Option<Principal> {
        match self {
            As::Nobody | As::OtherCa(_) | As::Expired(_) => None,
            other => Some(subject(other).principal),
        }
    }
}
