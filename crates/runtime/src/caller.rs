//! Who is calling: the identities of the trust boundary and how certificates name them.
//!
//! Every service, gate and operator holds a certificate from the deployment's private CA
//! whose URI SAN names it, in the SPIFFE form:
//!
//! | URI SAN | principal |
//! |---|---|
//! | `spiffe://citypass/service/<name>` | a citypass service (`issuer`, `verifier`, …) |
//! | `spiffe://citypass/gate/<gate-id>` | one gate scanner |
//! | `spiffe://citypass/operator/<name>` | one operator, with roles as `urn:citypass:role:<role>` SANs |
//!
//! Operator certificates are short-lived (hours): they are the "signed credential with
//! roles" an operator gives `citypass admin`, and, being a TLS client certificate, they
//! cannot be replayed by anyone who sees the traffic, unlike a bearer token.
//!
//! A caller with no certificate (a citizen's app) is anonymous at the transport; the
//! app proves who it is per request by a device signature where the RPC needs one.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The SPIFFE trust domain of every citypass identity.
pub const TRUST_DOMAIN: &str = "citypass";
/// The URN prefix of an operator role SAN.
pub const ROLE_URN_PREFIX: &str = "urn:citypass:role:";

/// An operator role. Each admin RPC names the role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Revokes and reinstates codes, devices, subjects, certificates and keys.
    Revoker,
    /// Changes subjects' attributes and status; reads subjects and devices.
    IdentityAdmin,
    /// Administers signing keys (a key revocation also needs this role).
    KeyAdmin,
    /// Reads logs and lists (revocations, certificates, subjects), changes nothing.
    Auditor,
    /// A face counter (a hospital desk, a service hall): enrols a citizen's face after
    /// checking their document in person, and records their consents. Apart from
    /// `identity-admin` so that administering subjects does not make an operator "the
    /// counter" whose templates the lending check trusts (face review finding F8).
    FaceCounter,
}

impl Role {
    /// Every role, for help texts and tests.
    pub const ALL: [Role; 5] = [
        Role::Revoker,
        Role::IdentityAdmin,
        Role::KeyAdmin,
        Role::Auditor,
        Role::FaceCounter,
    ];

    /// The role's name, as in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Revoker => "revoker",
            Role::IdentityAdmin => "identity-admin",
            Role::KeyAdmin => "key-admin",
            Role::Auditor => "auditor",
            Role::FaceCounter => "face-counter",
        }
    }

    /// The role named `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The URI SAN that grants this role.
    pub fn uri(self) -> String {
        format!("{ROLE_URN_PREFIX}{}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated identity, from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A citypass service, by name (`issuer`).
    Service(String),
    /// A gate scanner, by gate id.
    Gate(String),
    /// An operator, by name, with the roles the certificate grants.
    Operator { name: String, roles: Vec<Role> },
}

impl Principal {
    /// The identity's SPIFFE URI.
    pub fn uri(&self) -> String {
        let (kind, name) = match self {
            Principal::Service(name) => ("service", name),
            Principal::Gate(id) => ("gate", id),
            Principal::Operator { name, .. } => ("operator", name),
        };
        format!("spiffe://{TRUST_DOMAIN}/{kind}/{name}")
    }

    /// Reads a principal from a certificate's URI SANs: exactly one SPIFFE identity of
    /// this trust domain, plus role URNs for an operator. Anything else is refused, so a
    /// certificate cannot be read two ways.
    pub fn from_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Result<Principal, String> {
        let mut identity: Option<(&str, &str)> = None;
        let mut roles = Vec::new();
        let prefix = format!("spiffe://{TRUST_DOMAIN}/");
        for uri in uris {
            if let Some(role) = uri.strip_prefix(ROLE_URN_PREFIX) {
                let role = Role::parse(role).ok_or("unknown role in certificate")?;
                if !roles.contains(&role) {
                    roles.push(role);
                }
            } else if let Some(path) = uri.strip_prefix(&prefix) {
                let (kind, name) = path
                    .split_once('/')
                    .ok_or("SPIFFE id without a kind and a name")?;
                if identity.is_some() {
                    return Err("more than one SPIFFE id in certificate".to_owned());
                }
                if !valid_name(name) {
                    return Err("malformed name in SPIFFE id".to_owned());
                }
                identity = Some((kind, name));
            } else if uri.starts_with("spiffe://") {
                return Err("SPIFFE id of another trust domain".to_owned());
            }
        }
        let (kind, name) = identity.ok_or("certificate names no citypass identity")?;
        roles.sort();
        if kind != "operator" && !roles.is_empty() {
            return Err("roles on a certificate that is not an operator's".to_owned());
        }
        match kind {
            "service" => Ok(Principal::Service(name.to_owned())),
            "gate" => Ok(Principal::Gate(name.to_owned())),
            "operator" => Ok(Principal::Operator {
                name: name.to_owned(),
                roles,
            }),
            _ => Err("unknown kind of SPIFFE id".to_owned()),
        }
    }
}

/// A service name, gate id or operator name: 1-63 of `a-z 0-9 - . _`, starting with a
/// letter or digit (DNS-label-like, safe in logs and URIs).
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
}

impl fmt::Display for Principal {
    /// `service:issuer`, `gate:metro-entry-1`, `operator:alice`: the audit form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Service(name) => write!(f, "service:{name}"),
            Principal::Gate(id) => write!(f, "gate:{id}"),
            Principal::Operator { name, .. } => write!(f, "operator:{name}"),
        }
    }
}

/// The caller of one request, as the authorisation layer established it; handlers find
/// it in the request's extensions (`request.extensions().get::<Caller>()`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated identity, if the caller presented a valid certificate.
    pub principal: Option<Arc<Principal>>,
    /// The peer's address (the rate-limit key of anonymous callers).
    pub address: Option<IpAddr>,
}

impl Caller {
    /// The audit form of the caller (`operator:alice`), or `anonymous`.
    pub fn actor(&self) -> String {
        match &self.principal {
            Some(principal) => principal.to_string(),
            None => "anonymous".to_owned(),
        }
    }

    /// The caller from a tonic request's extensions, if the layer ran.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }
}
