//! Fraud signals: a code, or an offline certificate's counter, that two scans used.
//!
//! An offline gate cannot know that another offline gate already let the same code
//! through; the verifier finds out when the second gate uploads its scans
//! (`upload.rs`) and the replay store answers that another scan owns the mark. Each
//! such finding is a signal: counted (`citypass.verifier.fraud_signals`) and kept in a
//! bounded log that operators list (ListFraudSignals, auditor role), newest first.
//!
//! A signal holds no personal data: the gate, the scene, the times and a short digest
//! of the mark, which only tells whether two signals concern the same mark. Log:
//! memory (`citypass dev`, tests) or Redis beside the marks (every replica's signals in
//! one list); both pass `tests/fraud_contract.rs`.

mod memory;
mod redis;

use citypass_runtime::Deadline;
use citypass_token::Scene;
use futures::future::BoxFuture;

use crate::replay::Mark;

pub use memory::MemoryFraudLog;
pub use redis::RedisFraudLog;

/// What was used twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudKind {
    /// An online code (its `cti`).
    CodeReused,
    /// An offline certificate's counter (a copied phone or code).
    CounterReused,
}

impl FraudKind {
    /// The kind of double use of `mark`.
    pub fn of(mark: &Mark) -> Self {
        match mark {
            // Uploads carry codes only: a face-pass mark never reaches the fraud log.
            Mark::Token { .. } | Mark::Face { .. } => FraudKind::CodeReused,
            Mark::Offline { .. } => FraudKind::CounterReused,
        }
    }

    /// A stable snake-case name (metrics, the stored form).
    pub fn name(self) -> &'static str {
        match self {
            FraudKind::CodeReused => "code_reused",
            FraudKind::CounterReused => "counter_reused",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [FraudKind::CodeReused, FraudKind::CounterReused]
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudSignal {
    /// When the verifier found it (Unix seconds).
    pub detected_at: u64,
    /// When the uploading gate scanned the second use (its clock).
    pub scanned_at: u64,
    /// The uploading gate.
    pub gate_id: String,
    /// Its scene.
    pub scene: Scene,
    /// What was used twice.
    pub kind: FraudKind,
    /// [`mark_digest`] of the mark.
    pub mark_digest: String,
}

/// The first 16 hex characters of SHA-256 over the mark: equal for signals about one
/// mark, and no way back to the code.
pub fn mark_digest(mark: &Mark) -> String {
    let bytes = match mark {
        Mark::Token { cti } => [b"t".as_slice(), cti.as_bytes()].concat(),
        Mark::Face { digest } => [b"f".as_slice(), digest.as_slice()].concat(),
        Mark::Offline { serial, counter } => [
            b"o".as_slice(),
            serial.as_bytes(),
            counter.to_be_bytes().as_slice(),
        ]
        .concat(),
    };
    hex::encode(&citypass_token::sha256(&bytes)[..8])
}

/// One page of signals, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignalPage {
    /// The signals.
    pub signals: Vec<FraudSignal>,
    /// Where the next page starts; `None` at the end.
    pub next_page_token: Option<String>,
}

/// Why the log could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FraudError {
    /// Redis failed.
    #[error("fraud log backend failed")]
    Backend(#[source] ::redis::RedisError),
    /// The call's deadline (or the log's timeout) passed first.
    #[error("fraud log did not answer in time")]
    Timeout,
    /// A page token this log did not give out.
    #[error("page_token is not one this log gave out")]
    BadPageToken,
    /// The log holds an entry this build cannot read.
    #[error("fraud log holds an unreadable entry")]
    Corrupt,
}

/// The bounded log of signals; see the module documentation.
pub trait FraudLog: Send + Sync + 'static {
    /// Appends `signal` (the oldest go once the log is full).
    fn record(
        &self,
        signal: FraudSignal,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<(), FraudError>>;

    /// Up to `page_size` signals, newest first, older than the page `page_token` ends
    /// (from the newest when `None`).
    fn list(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> BoxFuture<'_, Result<SignalPage, FraudError>>;
}

impl FraudSignal {
    /// The stored form: one line of space-separated fields (gate ids have no spaces:
    /// the registry's ids are `[A-Za-z0-9._-]`).
    fn encode(&self) -> String {
        format!(
            "1 {} {} {} {} {} {}",
            self.detected_at,
            self.scanned_at,
            self.scene.name(),
            self.kind.name(),
            self.mark_digest,
            self.gate_id
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(7, ' ');
        if parts.next()? != "1" {
            return None;
        }
        Some(FraudSignal {
            detected_at: parts.next()?.parse().ok()?,
            scanned_at: parts.next()?.parse().ok()?,
            scene: Scene::from_name(parts.next()?)?,
            kind: FraudKind::from_name(parts.next()?)?,
            mark_digest: parts.next()?.to_owned(),
            gate_id: parts.next()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{CertSerial, Cti};

    #[test]
    fn signals_round_trip_and_junk_is_refused() {
        let signal = FraudSignal {
            detected_at: 1_800_000_100,
            scanned_at: 1_800_000_000,
            gate_id: "bus-12-reader-3".into(),
            scene: Scene::Bus,
            kind: FraudKind::CounterReused,
            mark_digest: "00112233aabbccdd".into(),
        };
        assert_eq!(FraudSignal::decode(&signal.encode()), Some(signal));
        for junk in [
            "",
            "2 1 1 bus code_reused d g",
            "1 x 1 bus code_reused d g",
            "1 1 1 ship code_reused d g",
            "1 1 1 bus copied d g",
            "1 1 1 bus code_reused d",
        ] {
            assert_eq!(FraudSignal::decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn digests_tell_marks_apart_and_hide_them() {
        let cti = Cti::from_bytes([7; 16]);
        let serial = CertSerial::from_bytes([7; 16]);
        let token = mark_digest(&Mark::Token { cti });
        let first = mark_digest(&Mark::Offline { serial, counter: 1 });
        let second = mark_digest(&Mark::Offline { serial, counter: 2 });
        assert_eq!(token.len(), 16);
        assert_ne!(token, first);
        assert_ne!(first, second);
        assert_eq!(first, mark_digest(&Mark::Offline { serial, counter: 1 }));
        assert!(!token.contains(&hex::encode([7u8; 8])));
    }
}
