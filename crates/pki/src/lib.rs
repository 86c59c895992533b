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

mod authority;
mod dev;
mod error;
mod files;
mod issued;
mod subject;

use std::time::Duration;

pub use authority::Authority;
pub use dev::DevPki;
pub use error::PkiError;
pub use files::write_file;
pub use issued::Issued;
pub use subject::Subject;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::SystemTime;

    use citypass_runtime::{Principal, Role};

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
