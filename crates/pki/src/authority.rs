//! A certificate authority: its certificate and key, made, saved, loaded, and issuing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::CA_NAME;
use crate::error::{PkiError, io};
use crate::files::write_file;
use crate::issued::Issued;
use crate::subject::{Subject, random_serial};

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
