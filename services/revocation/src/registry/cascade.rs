//! The cascade's later sweeps: a device's or subject's certificates recorded at
//! identity after its revocation was written are revoked too, a few times over the
//! window in which an issuer may still certify (security finding 5).

use std::sync::Arc;

use citypass_revocation::Target;
use citypass_token::unix_now;

use super::FanOut;
use crate::config::Settings;
use crate::directory::{CertificateDirectory, Owner};
use crate::log::Log;
use crate::model::{Cascade, Record};

/// The owner whose certificates a revocation of `target` cascades to: devices and
/// subjects only.
pub(super) fn owner(target: &Target) -> Option<Owner<'_>> {
    match target {
        Target::Device(id) => Some(Owner::Device(id)),
        Target::Subject(id) => Some(Owner::Subject(id)),
        _ => None,
    }
}

/// Sweeps `parent`'s certificates after `cascade_sweep_delay`, then at doubling
/// intervals until `cascade_sweep_window` has passed (none when the delay is zero).
pub(super) fn spawn_sweeps(
    log: Arc<dyn Log>,
    directory: Arc<dyn CertificateDirectory>,
    fanout: FanOut,
    parent: Record,
    settings: &Settings,
) {
    let delay = settings.cascade_sweep_delay;
    if delay.is_zero() {
        return;
    }
    let margin = settings.clock_skew.as_secs();
    let window = settings.cascade_sweep_window;
    // An issuer keeps certifying until its follower hears of the revocation (at most
    // its `revocation.max_age`, which the window must exceed), and each certificate it
    // made meanwhile is recorded at identity before the app gets it. Most such
    // certificates come in the first seconds.
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut wait = delay;
        loop {
            tokio::time::sleep(wait).await;
            sweep(&*log, &*directory, &fanout, &parent, margin).await;
            if started.elapsed() >= window {
                break;
            }
            wait = wait.saturating_mul(2);
        }
    });
}

/// One sweep of `parent`'s certificates (see [`spawn_sweeps`]).
async fn sweep(
    log: &dyn Log,
    directory: &dyn CertificateDirectory,
    fanout: &FanOut,
    parent: &Record,
    margin: u64,
) {
    let Some(owner) = owner(&parent.entry.target) else {
        return;
    };
    let certificates = match directory.live_certificates(owner, None).await {
        Ok(certificates) => certificates,
        Err(err) => {
            tracing::warn!(error = %err, epoch = parent.entry.epoch, "cascade sweep: cannot list certificates");
            return;
        }
    };
    let cascade = Cascade {
        certificates: &certificates,
        expiry_margin: margin,
    };
    match log.cascade(parent, cascade, unix_now()).await {
        Ok(written) if written.is_empty() => {}
        Ok(written) => {
            tracing::info!(
                count = written.len(),
                epoch = parent.entry.epoch,
                "cascade sweep revoked certificates recorded after the revocation"
            );
            fanout.publish(written).await;
        }
        Err(err) => {
            tracing::warn!(error = %err, epoch = parent.entry.epoch, "cascade sweep: cannot write");
        }
    }
}
