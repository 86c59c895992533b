//! A private CA for citypass deployments without one: `citypass pki`, `citypass dev` and
//! the tests make their CA, service, gate and operator certificates here.
//!
//! In a cluster, cert-manager is the CA and issues the same shapes of certificate (see
//! docs/architecture.md, "Trust boundary"); nothing in a service links this crate.
//!
//! | certificate | URI SAN | other SANs | key usage | life (default) |
//! |---|---|---|---|---|
//! | CA | — | — | cert sign | 10 years |
//! | service | `spiffe://citypass/service/<name>` | DNS `<name>`, `localhost`, IP `127.0.0.1` | server + client auth | 90 days |
//! | gate | `spiffe://citypass/gate/<id>` | — | client auth | 90 days |
//! | operator | `spiffe://citypass/operator/<name>` + `urn:citypass:role:<role>` each | — | client auth | 8 hours |
//!
//! Files use cert-manager's names, so a service reads a dev bundle and a Kubernetes
//! Secret alike: `ca.crt`, `tls.crt`, `tls.key` in one directory per identity. An
//! operator's credential is one PEM file holding its certificate, its key and the CA.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use citypass_runtime::{Principal, Role, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// The CA's distinguished name. Issuing rebuilds the CA's parameters from it and the
/// CA key, so the CA certificate never has to be parsed back.
const CA_NAME: &str = "citypass private CA";
/// Default life of the CA.
pub const CA_LIFE: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Default life of a service or gate certificate.
pub const SERVICE_LIFE: Duration = Duration::from_secs(90 * 86_400);
/// Default life of an operator credential.
pub const OPERATOR_LIFE: Duration = Duration::from_secs(8 * 3600);
/// Longest life of an operator credential: it is a credential, not a badge.
pub const OPERATOR_MAX_LIFE: Duration = Duration::from_secs(24 * 3600);

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_owned();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The CA certificate that issued it.
    pub ca_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, replacing any
    /// earlier ones, and returns the matching TLS configuration. Each file is written
    /// to a temporary name and renamed, so a reloading service never reads half a file.
    pub fn write_dir(&self, dir: &Path) -> Result<TlsConfig, PkiError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let config = TlsConfig::in_dir(dir);
        write_file(&config.ca_file, &self.ca_pem, false)?;
        write_file(&config.key_file, &self.key_pem, true)?;
        write_file(&config.cert_file, &self.cert_pem, false)?;
        Ok(config)
    }

    /// One PEM file: certificate, key, then the CA (an operator's credential).
    pub fn bundle(&self) -> String {
        format!("{}{}{}", self.cert_pem, self.key_pem, self.ca_pem)
    }
}

impl Issued {
    /// Splits an operator's credential file ([`Issued::bundle`]): the first certificate
    /// is the operator's, the private key is its key, the other certificates are the CA.
    pub fn from_bundle(text: &str) -> Result<Issued, PkiError> {
        let mut cert_pem = String::new();
        let mut key_pem = String::new();
        let mut ca_pem = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block = &rest[start..];
            let Some(label_end) = block[11..].find("-----").map(|i| i + 11) else {
                break;
            };
            let label = &block[11..label_end];
            let end_marker = format!("-----END {label}-----");
            let Some(end) = block.find(&end_marker) else {
                return Err(PkiError::Invalid(format!("unterminated PEM block {label}")));
            };
            let whole = &block[..end + end_marker.len()];
            let whole = format!("{whole}\n");
            if label == "CERTIFICATE" {
                if cert_pem.is_empty() {
                    cert_pem = whole;
                } else {
                    ca_pem.push_str(&whole);
                }
            } else if label.ends_with("PRIVATE KEY") {
                key_pem = whole;
            }
            rest = &block[end + end_marker.len()..];
        }
        if cert_pem.is_empty() || key_pem.is_empty() || ca_pem.is_empty() {
            return Err(PkiError::Invalid(
                "a credential holds a certificate, its private key and the CA certificate".into(),
            ));
        }
        Ok(Issued {
            cert_pem,
            key_pem,
            ca_pem,
        })
    }
}

/// Writes `text` to `path` through a fresh temporary file (created exclusively, mode
/// 0600, beside `path`) and a rename, so that a reader never sees half a file and a
/// private key is never readable by others, even for a moment. Public files are
/// opened to 0644 before the rename.
pub fn write_file(path: &Path, text: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("create a file in", dir))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(io("write", path))?;
    if !private {
        publish(file.path())?;
    }
    file.persist(path)
        .map_err(|e| io("rename onto", path)(e.error))?;
    Ok(())
}

#[cfg(unix)]
fn publish(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(io("set permissions of", path))
}

#[cfg(not(unix))]
fn publish(_path: &Path) -> Result<(), PkiError> {
    Ok(())
}

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

    fn params(&self) -> Result<CertificateParams, PkiError> {
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
fn random_serial() -> Result<SerialNumber, PkiError> {
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

/// A certificate authority: its certificate and its key.
pub struct Authority {
    key: KeyPair,
    params: CertificateParams,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn ca_params(not_before: SystemTime, not_after: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "citypass");
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

impl Authority {
    /// A new CA valid from a minute ago for `life`.
    pub fn generate(life: Duration) -> Result<Authority, PkiError> {
        let now = SystemTime::now();
        let key = KeyPair::generate()?;
        let mut params = ca_params(now - Duration::from_secs(60), now + life)?;
        params.serial_number = Some(random_serial()?);
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Authority {
            key,
            params,
            cert_pem,
        })
    }

    /// The CA in `dir` (`ca.crt`, `ca.key`, as [`Authority::save`] writes them).
    pub fn load(dir: &Path) -> Result<Authority, PkiError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io("read", &cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io("read", &key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        // Only the name and key identify an issuer; the dates here are not used.
        let now = SystemTime::now();
        let params = ca_params(now, now + Duration::from_secs(1))?;
        Ok(Authority {
            key,
            params,
            cert_pem,
        })
    }

    /// Writes `ca.crt` and `ca.key` (mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        write_file(&dir.join("ca.key"), &self.key.serialize_pem(), true)?;
        write_file(&dir.join("ca.crt"), &self.cert_pem, false)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Certifies `subject` under a fresh P-256 key.
    pub fn issue(&self, subject: &Subject) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = subject.params()?.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }
}

/// The development PKI of `citypass dev`: a CA in `dir` and one directory per service,
/// made on first use and kept, so restarts and `citypass app` agree on the CA.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The PKI's root directory (`keys/dev/pki`).
    pub dir: PathBuf,
}

impl DevPki {
    /// The dev PKI under `dir`, with a CA (made now if there is none).
    pub fn ensure(dir: &Path) -> Result<(DevPki, Authority), PkiError> {
        let ca = if dir.join("ca.key").exists() {
            Authority::load(dir)?
        } else {
            let ca = Authority::generate(CA_LIFE)?;
            ca.save(dir)?;
            ca
        };
        Ok((
            DevPki {
                dir: dir.to_owned(),
            },
            ca,
        ))
    }

    /// The CA certificate's path.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The TLS files of service `name`, issued now if missing or due to expire within
    /// a day.
    pub fn service(&self, ca: &Authority, name: &str) -> Result<TlsConfig, PkiError> {
        self.identity(ca, &format!("service-{name}"), &Subject::service(name))
    }

    /// The TLS files of gate `id` (as for a service).
    pub fn gate(&self, ca: &Authority, id: &str) -> Result<TlsConfig, PkiError> {
        self.identity(ca, &format!("gate-{id}"), &Subject::gate(id))
    }

    fn identity(
        &self,
        ca: &Authority,
        dir: &str,
        subject: &Subject,
    ) -> Result<TlsConfig, PkiError> {
        let dir = self.dir.join(dir);
        let config = TlsConfig::in_dir(&dir);
        if fresh(&config) {
            return Ok(config);
        }
        ca.issue(subject)?.write_dir(&dir)
    }
}

/// Whether the files exist and were written less than (service life − a day) ago.
fn fresh(config: &TlsConfig) -> bool {
    let Ok(meta) = std::fs::metadata(&config.cert_file) else {
        return false;
    };
    if !config.key_file.exists() || !config.ca_file.exists() {
        return false;
    }
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age + Duration::from_secs(86_400) < SERVICE_LIFE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_principal() {
        let ca = Authority::generate(CA_LIFE).unwrap();
        let subject = Subject::operator("alice", &[Role::Revoker, Role::Auditor], OPERATOR_LIFE);
        let issued = ca.issue(&subject).unwrap();
        let der = rustls_der(&issued.cert_pem);
        let (principal, not_after) = citypass_runtime::peer::read_identity(&der).unwrap();
        assert_eq!(
            principal,
            Principal::Operator {
                name: "alice".into(),
                roles: vec![Role::Revoker, Role::Auditor]
            }
        );
        assert!(not_after > SystemTime::now());
        let service = ca.issue(&Subject::service("issuer")).unwrap();
        let (principal, _) =
            citypass_runtime::peer::read_identity(&rustls_der(&service.cert_pem)).unwrap();
        assert_eq!(principal, Principal::Service("issuer".into()));
        assert!(ca.issue(&Subject::gate("Not Valid")).is_err());
    }

    #[test]
    fn a_saved_ca_issues_what_the_original_would() {
        use citypass_runtime::peer::{Credential, authenticate};
        let dir = tempfile::tempdir().unwrap();
        let (pki, ca) = DevPki::ensure(dir.path()).unwrap();
        let files = pki.service(&ca, "identity").unwrap();
        let again = DevPki::ensure(dir.path()).unwrap().1;
        assert_eq!(again.cert_pem(), ca.cert_pem());
        // A certificate from the reloaded CA verifies against the CA file on disk; one
        // from another CA of the same name does not.
        let tls = citypass_runtime::Tls::from_files(&files).unwrap();
        let issued = again.issue(&Subject::gate("g1")).unwrap();
        let chain = pem_certificates(issued.cert_pem.as_bytes()).unwrap();
        assert!(matches!(
            authenticate(&tls, &chain),
            Credential::Valid { .. }
        ));
        let other = Authority::generate(CA_LIFE).unwrap();
        let forged = other.issue(&Subject::gate("g1")).unwrap();
        let chain = pem_certificates(forged.cert_pem.as_bytes()).unwrap();
        assert!(matches!(authenticate(&tls, &chain), Credential::Invalid(_)));
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate(CA_LIFE).unwrap();
        let files = ca
            .issue(&Subject::gate("g1"))
            .unwrap()
            .write_dir(dir.path())
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key_file), 0o600);
        assert_eq!(mode(&files.cert_file), 0o644);
        ca.save(dir.path()).unwrap();
        assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    }

    #[test]
    fn a_credential_bundle_splits_back() {
        let ca = Authority::generate(CA_LIFE).unwrap();
        let issued = ca
            .issue(&Subject::operator("bob", &[Role::Auditor], OPERATOR_LIFE))
            .unwrap();
        let back = Issued::from_bundle(&issued.bundle()).unwrap();
        assert_eq!(back.cert_pem.trim(), issued.cert_pem.trim());
        assert_eq!(back.key_pem.trim(), issued.key_pem.trim());
        assert_eq!(back.ca_pem.trim(), issued.ca_pem.trim());
        assert!(Issued::from_bundle(&issued.cert_pem).is_err());
    }

    fn rustls_der(pem: &str) -> Vec<u8> {
        pem_certificates(pem.as_bytes()).unwrap().remove(0).to_vec()
    }

    use citypass_runtime::tls::pem_certificates;
}
