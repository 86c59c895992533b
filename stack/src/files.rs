//! The files the stack writes for the verifier, as a cluster would mount them: the
//! issuer's published key set (rewritten on every rotation), the subject keys exported
//! from the issuer's ring (a secret: owner-only), and the gate registry (sample gates
//! of every scene, written once and then left to the developer). Each is written aside
//! and renamed, so the verifier never reads half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use citypass_issuer::{KeySource, Keys};
use citypass_token::SubjectKeyFile;

use crate::error::StackError;

/// Where the verifier's files are.
pub(crate) struct VerifierFiles {
    /// The issuer's published key set (JWKS).
    pub key_set: PathBuf,
    /// The subject keys, exported from the ring.
    pub subject_keys: PathBuf,
    /// The gate registry.
    pub gates: PathBuf,
}

impl VerifierFiles {
    /// The verifier's files in `dir`.
    pub(crate) fn at(dir: &Path) -> Self {
        VerifierFiles {
            key_set: dir.join("keyset.jwks.json"),
            subject_keys: dir.join("subject-keys.json"),
            gates: dir.join("gates.yaml"),
        }
    }

    /// Writes them: the key set `keys` publishes now, `subject_keys`, and the sample gate
    /// registry with a gate for each of `venues` unless a registry is there already.
    pub(crate) fn write(
        &self,
        keys: &Keys,
        subject_keys: &SubjectKeyFile,
        venues: &[(String, citypass_verifier::VenueSettings)],
    ) -> Result<(), StackError> {
        if let Some(dir) = self.key_set.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StackError::Files {
                path: dir.to_owned(),
                source,
            })?;
        }
        publish_key_set(keys, &self.key_set)?;
        write_secret(&self.subject_keys, subject_keys.to_json())?;
        if !self.gates.exists() {
            let mut gates = SAMPLE_GATES.to_owned();
            for (venue, _) in venues {
                gates.push_str(&venue_gate(venue));
            }
            write(&self.gates, gates)?;
        }
        Ok(())
    }
}

/// The subject keys of the issuer's ring, which the verifier opens subjects with (never
/// the signing seeds). Read at start: after a `citypass keys sealing-add`/
/// `sealing-rotate`, restart `citypass dev`.
pub(crate) fn subject_key_file(keys: &KeySource) -> Result<SubjectKeyFile, StackError> {
    match keys {
        KeySource::File { path, .. } => {
            let text = std::fs::read_to_string(path).map_err(|source| StackError::Files {
                path: path.clone(),
                source,
            })?;
            Ok(citypass_token::Keyring::from_json(&text)
                .map_err(|e| StackError::Files {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .subject_key_file())
        }
        KeySource::Memory(ring) => Ok(ring.subject_key_file()),
    }
}

/// The gate id of a configured scenic venue's gate
/// ([`crate::StackConfig::scenic_venues`]).
pub fn venue_gate_id(venue: &str) -> String {
    format!("{venue}-gate")
}

/// A configured venue's gate, as a line of the registry file.
fn venue_gate(venue: &str) -> String {
    format!(
        "  {}: {{scene: scenic, venue: {venue}, operator: {venue}}}\n",
        venue_gate_id(venue)
    )
}

/// The verifier's sample gates, one or more per scene, written to its registry file on
/// first run (each also gets a dev certificate, `pki/gate-<id>/`).
pub const SAMPLE_GATE_IDS: [&str; 9] = [
    "metro-entry-1",
    "metro-exit-1",
    "bus-1",
    "hospital-desk-1",
    "scenic-gate-1",
    "hall-counter-1",
    "metro-face-in",
    "metro-face-out",
    "scenic-face-1",
];

/// The sample gate registry (the verifier's `gates.yaml` as `citypass dev` writes it
/// on first run).
pub const SAMPLE_GATES: &str = "\
# The verifier's gate registry (citypass dev): gate id (the name in the gate's
# certificate) -> where it stands. Edit freely: the verifier reloads it on change.
gates:
  metro-entry-1: {scene: metro, direction: entry, station: pingguoyuan, operator: metro}
  metro-exit-1: {scene: metro, direction: exit, station: xidan, operator: metro}
  bus-1: {scene: bus, stop: \"1\", operator: bjbus}
  hospital-desk-1: {scene: hospital, hospital: dev-hospital, operator: dev-hospital}
  scenic-gate-1: {scene: scenic, venue: dev-park, operator: dev-park}
  hall-counter-1: {scene: government, hall: dev-service-hall, operator: dev-government}
  # Face pass (刷脸通行) for riders who consented at the station or venue; unattended,
  # so each face must come with the gate's liveness check.
  metro-face-in: {scene: metro, direction: entry, station: pingguoyuan, operator: metro, face_pass: true}
  metro-face-out: {scene: metro, direction: exit, station: xidan, operator: metro, face_pass: true}
  scenic-face-1: {scene: scenic, venue: dev-park, operator: dev-park, face_pass: true}
";

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), StackError> {
    let files = |source| StackError::Files {
        path: path.to_owned(),
        source,
    };
    // Written aside and renamed, so the verifier never reads half a file.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, bytes).map_err(files)?;
    std::fs::rename(&aside, path).map_err(files)
}

/// [`write`] for a secret (the verifier's subject keys): the file is created
/// owner-only (0600) before a byte is written, as `citypass keys` writes its copy.
fn write_secret(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), StackError> {
    use std::io::Write as _;
    let files = |source| StackError::Files {
        path: path.to_owned(),
        source,
    };
    let aside = path.with_extension("tmp");
    // A leftover from a crash keeps its mode when reopened: start afresh.
    match std::fs::remove_file(&aside) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(files(err)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&aside).map_err(files)?;
    file.write_all(bytes.as_ref()).map_err(files)?;
    std::fs::rename(&aside, path).map_err(files)
}

/// Writes the issuer's published key set (the JWKS GetKeySet returns) where the
/// verifier reads it.
fn publish_key_set(keys: &Keys, path: &Path) -> Result<(), StackError> {
    write(path, keys.current().jwks_json())
}

/// Rewrites the verifier's key set file whenever the issuer publishes a new one (a
/// `citypass keys rotate`), until the issuer's keys are dropped.
pub(crate) async fn follow_key_set(keys: Arc<Keys>, path: PathBuf) {
    let mut published = keys.subscribe();
    drop(keys);
    while published.changed().await.is_ok() {
        let jwks = published.borrow_and_update().jwks_json().to_vec();
        if let Err(e) = write(&path, jwks) {
            tracing::warn!(error = %e, "the verifier's key set file was not updated");
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secrets_are_written_owner_only() {
        let dir = std::env::temp_dir().join(format!("citypass-stack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("subject-keys.json");
        std::fs::write(path.with_extension("tmp"), b"left by a crash").unwrap();
        super::write_secret(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((mode, text.as_str()), (0o600, "{}"));
    }
}
