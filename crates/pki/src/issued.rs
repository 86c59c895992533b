//! A certificate with its key and CA, as files or as one credential file.

use std::path::Path;

use citypass_runtime::TlsConfig;

use crate::error::{PkiError, io};
use crate::files::write_file;

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
