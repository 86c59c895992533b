//! What to certify: a service, a gate or an operator, and for how long.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use citypass_runtime::{Principal, Role};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

use crate::SERVICE_LIFE;
use crate::error::PkiError;

/// What to certify.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Who (service, gate or operator with roles).
    pub principal: Principal,
    /// DNS names the certificate serves under (services).
    pub dns_names: Vec<String>,
    /// IP addresses it serves under (services).
    pub ips: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Subject {
    /// A service reachable as `name` and on loopback, valid for [`SERVICE_LIFE`].
    pub fn service(name: &str) -> Self {
        let now = SystemTime::now();
        Subject {
            principal: Principal::Service(name.to_owned()),
            dns_names: vec![name.to_owned(), "localhost".to_owned()],
            ips: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
            not_before: now - Duration::from_secs(60),
            not_after: now + SERVICE_LIFE,
        }
    }

    /// A gate, valid for [`SERVICE_LIFE`].
    pub fn gate(id: &str) -> Self {
        Subject::client(Principal::Gate(id.to_owned()), SERVICE_LIFE)
    }

    /// An operator with `roles`, valid for `life`.
    pub fn operator(name: &str, roles: &[Role], life: Duration) -> Self {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        Subject::client(
            Principal::Operator {
                name: name.to_owned(),
                roles,
            },
            life,
        )
    }

    fn client(principal: Principal, life: Duration) -> Self {
        let now = SystemTime::now();
        Subject {
            principal,
            dns_names: Vec::new(),
            ips: Vec::new(),
            not_before: now - Duration::from_secs(60),
            not_after: now + life,
        }
    }

    pub(crate) fn params(&self) -> Result<CertificateParams, PkiError> {
        let name = match &self.principal {
            Principal::Service(n) | Principal::Gate(n) | Principal::Operator { name: n, .. } => n,
        };
        if !citypass_runtime::caller::valid_name(name) {
            return Err(PkiError::Invalid(format!(
                "{name:?} is not a valid name (1-63 of a-z 0-9 - . _)"
            )));
        }
        if self.not_after <= self.not_before {
            return Err(PkiError::Invalid(
                "the validity ends before it starts".into(),
            ));
        }
        let mut params = CertificateParams::new(self.dns_names.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.principal.to_string());
        params.distinguished_name = dn;
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if matches!(self.principal, Principal::Service(_)) {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let uri = |u: String| {
            u.try_into()
                .map(SanType::URI)
                .map_err(|e: rcgen::Error| PkiError::Invalid(e.to_string()))
        };
        params.subject_alt_names.push(uri(self.principal.uri())?);
        if let Principal::Operator { roles, .. } = &self.principal {
            for role in roles {
                params.subject_alt_names.push(uri(role.uri())?);
            }
        }
        for ip in &self.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        Ok(params)
    }
}

/// A random positive 16-byte serial (RFC 5280 allows up to 20 octets).
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let key = KeyPair::generate()?;
    // The public key of a fresh key pair is as good a source of randomness as any, and
    // keeps this crate free of a second random number generator.
    let raw = key.public_key_raw();
    let mut serial = [0u8; 16];
    let take = raw.len().min(16);
    serial[..take].copy_from_slice(&raw[raw.len() - take..]);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(SerialNumber::from_slice(&serial))
}
