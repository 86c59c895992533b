//! The development PKI of `citypass dev`, made on first use and kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use citypass_runtime::TlsConfig;

use crate::authority::Authority;
use crate::error::PkiError;
use crate::subject::Subject;
use crate::{CA_LIFE, SERVICE_LIFE};

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
