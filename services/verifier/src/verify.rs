//! The decision for one scan: the offline gate's pipeline (`citypass_gate`), composed
//! with the verifier's sources.
//!
//! In order:
//!
//! 1. the request's gate must be the caller's (else the call is refused
//!    `PERMISSION_DENIED`, not answered), and configured (`UNKNOWN_GATE`); the
//!    request's scene must be the gate's (`SCENE_MISMATCH`);
//! 2. the code itself, then the scope: [`citypass_gate::check_code`] (size cap and
//!    prefix, decoding, `kid`, pinned `alg`, signature, times with `decision.skew`, the
//!    gate's scene among the code's scopes) with the key set in force;
//! 3. revocation: [`citypass_gate::check_revocation`] on the follower's set, in memory.
//!    A code the set shows revoked is refused whatever the data's age; otherwise data
//!    older than `revocation.max_age`, or never synced, refuses every code
//!    (`REVOCATION_DATA_STALE`: fail closed);
//! 4. single use: the replay store (`replay.rs`), which writes the mark and this
//!    answer in one step, returns a retried scan's first answer, and refuses a replay,
//!    an older offline counter or a scan id reused with another code. A store that does
//!    not answer within the call's deadline refuses the code (`SERVICE_UNAVAILABLE`);
//! 5. the scene policy: none yet (transit, hospital, scenic and government policies
//!    come with the payments and pseudonym work);
//! 6. the answer, with the revocation epoch and age and the key set's age it used.
//!
//! The offline gate composes steps 2 and 3 the same way with a signed snapshot and its
//! own memories: one copy of the rules, two compositions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_gate::{DenyReason, Presented, check_code, check_revocation};
use citypass_revocation_follow::{Follower, Freshness, RevocationSet, RevocationView};
use citypass_runtime::Deadline;
use citypass_token::{kind_of, sha256, unix_now};

use crate::error::VerifierError;
use crate::gates::{Gate, GateDirection, Gates};
use crate::key_set::Keys;
use crate::metrics::Metrics;
use crate::model::{Answer, Basis, Direction, Refusal, Scan};
use crate::replay::{Arrival, Mark, Outcome, ReplayStore, StoredAnswer, Use};

/// Where the revocation step reads from: the follower's set ([`RevocationView`]) in
/// the service, a fixed set ([`FixedRevocations`]) in benches.
pub trait Revocations: Send + Sync + 'static {
    /// The epoch and age of the data now.
    fn freshness(&self) -> Freshness;
    /// [`check_revocation`] on the data, with the freshness of what it read.
    fn check(&self, presented: &Presented) -> (Result<(), DenyReason>, Freshness);
}

impl Revocations for RevocationView {
    fn freshness(&self) -> Freshness {
        RevocationView::freshness(self)
    }

    fn check(&self, presented: &Presented) -> (Result<(), DenyReason>, Freshness) {
        self.decide(|set| check_revocation(presented, set))
    }
}

/// A set that never changes and is always fresh: for benches and tests without a
/// revocation service, never in a running configuration.
#[derive(Debug, Default)]
pub struct FixedRevocations {
    set: RevocationSet,
}

impl FixedRevocations {
    /// Decides with `set`.
    pub fn new(set: RevocationSet) -> Self {
        FixedRevocations { set }
    }
}

impl Revocations for FixedRevocations {
    fn freshness(&self) -> Freshness {
        Freshness {
            epoch: self.set.epoch(),
            age: Some(Duration::ZERO),
        }
    }

    fn check(&self, presented: &Presented) -> (Result<(), DenyReason>, Freshness) {
        (check_revocation(presented, &self.set), self.freshness())
    }
}

/// What the decision needs besides its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Clock allowance, seconds.
    pub skew: u64,
    /// Oldest revocation data decided with.
    pub revocation_max_age: Duration,
}

/// The verifier's logic: its sources and the rules.
pub struct Verifier {
    rules: Rules,
    keys: Arc<Keys>,
    gates: Arc<Gates>,
    revocations: Arc<dyn Revocations>,
    replay: Arc<dyn ReplayStore>,
    /// The follower behind `revocations`, kept running as long as the verifier lives.
    _follower: Option<Arc<Follower>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("rules", &self.rules)
            .field("revocations", &self.revocations.freshness())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over these sources.
    pub fn new(
        rules: Rules,
        keys: Arc<Keys>,
        gates: Arc<Gates>,
        revocations: Arc<dyn Revocations>,
        replay: Arc<dyn ReplayStore>,
    ) -> Self {
        let metrics = Metrics::new(&keys);
        Verifier {
            rules,
            keys,
            gates,
            revocations,
            replay,
            _follower: None,
            metrics,
        }
    }

    /// Keeps `follower` (the one feeding the revocation view) running for as long as
    /// the verifier lives.
    pub fn keeping(mut self, follower: Arc<Follower>) -> Self {
        self._follower = Some(follower);
        self
    }

    /// The gate registry (to replace it in tests).
    pub fn gates(&self) -> &Arc<Gates> {
        &self.gates
    }

    /// The key set (to replace it in tests).
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The revocation data decided with.
    pub fn revocations(&self) -> &Arc<dyn Revocations> {
        &self.revocations
    }

    /// Decides on `scan` from the authenticated gate `caller` (see the module
    /// documentation). An `Err` is a request the verifier does not answer; a refused
    /// code is an `Ok` answer with a refusal.
    pub async fn verify(
        &self,
        caller: &str,
        scan: &Scan,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        let started = Instant::now();
        let answer = self.decide(caller, scan, deadline).await?;
        self.metrics.record(scan.scene, &answer, started.elapsed());
        Ok(answer)
    }

    async fn decide(
        &self,
        caller: &str,
        scan: &Scan,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        if scan.gate_id != caller {
            return Err(VerifierError::GateMismatch);
        }
        let now = unix_now();
        let (keys, key_set_age) = self.keys.current();
        let freshness = self.revocations.freshness();
        let mut basis = Basis {
            revocation_epoch: freshness.epoch,
            revocation_age: freshness.age,
            key_set_age: Some(key_set_age),
        };
        let code_kind = kind_of(&scan.qr_text).ok();
        let answer = |refusal: Option<Refusal>, basis: Basis| Answer {
            refusal,
            code_kind,
            basis,
            decided_at: now,
            idempotent_replay: false,
        };

        let registry = self.gates.current();
        let Some(gate) = registry.get(&scan.gate_id) else {
            return Ok(answer(Some(Refusal::UnknownGate), basis));
        };
        if gate.scene != scan.scene {
            return Ok(answer(Some(Refusal::SceneMismatch), basis));
        }
        direction(gate, scan.direction)?;

        let presented = match check_code(&scan.qr_text, &keys, gate.scene, self.rules.skew, now) {
            Ok(presented) => presented,
            Err(reason) => return Ok(answer(Some(reason.into()), basis)),
        };

        let (revoked, freshness) = self.revocations.check(&presented);
        basis.revocation_epoch = freshness.epoch;
        basis.revocation_age = freshness.age;
        if let Err(reason) = revoked {
            return Ok(answer(Some(reason.into()), basis));
        }
        if !freshness.within(self.rules.revocation_max_age) {
            return Ok(answer(
                Some(Refusal::Code(DenyReason::RevocationsStale)),
                basis,
            ));
        }

        let (mark, forget_at) = Mark::of(&presented, self.rules.skew);
        let kind = presented.kind();
        let stored = StoredAnswer {
            code_kind: kind,
            basis,
            decided_at: now,
        };
        let used = Use {
            gate_id: &scan.gate_id,
            scan_id: &scan.scan_id,
            fingerprint: sha256(scan.qr_text.as_bytes()),
            mark,
            forget_at,
            answer: stored,
            arrival: Arrival::Live,
        };
        let refusal = match self.replay.record(used, now, deadline).await {
            Ok(Outcome::First) => None,
            Ok(Outcome::Retry(first)) => return Ok(retried(first)),
            Ok(Outcome::Replayed) => Some(Refusal::Code(DenyReason::Replayed)),
            Ok(Outcome::CounterReplay) => Some(Refusal::Code(DenyReason::CounterReplay)),
            Ok(Outcome::ScanIdConflict) => Some(Refusal::ScanIdConflict),
            Err(err) => {
                tracing::warn!(error = %err, "replay store failed; code refused");
                Some(Refusal::ServiceUnavailable)
            }
        };
        Ok(Answer {
            refusal,
            code_kind: Some(kind),
            basis,
            decided_at: now,
            idempotent_replay: false,
        })
    }
}

/// The way a metro rider goes: the request's, which must agree with a one-way gate and
/// is required at a two-way one; no other scene has a direction. (Used by the transit
/// policy, next.)
pub fn direction(gate: &Gate, requested: Direction) -> Result<Option<Direction>, VerifierError> {
    use GateDirection as G;
    match (gate.direction, requested) {
        (None, Direction::Unspecified) => Ok(None),
        (None, _) => Err(VerifierError::DirectionMismatch),
        (Some(G::Both), Direction::Unspecified) => Err(VerifierError::DirectionRequired),
        (Some(G::Both), way) => Ok(Some(way)),
        (Some(G::Entry), Direction::Unspecified | Direction::Entry) => Ok(Some(Direction::Entry)),
        (Some(G::Exit), Direction::Unspecified | Direction::Exit) => Ok(Some(Direction::Exit)),
        (Some(_), _) => Err(VerifierError::DirectionMismatch),
    }
}

/// The answer a retried scan gets: the first one, marked as such.
fn retried(first: StoredAnswer) -> Answer {
    Answer {
        refusal: None,
        code_kind: Some(first.code_kind),
        basis: first.basis,
        decided_at: first.decided_at,
        idempotent_replay: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::Scene;

    fn gate(scene: Scene, direction: Option<GateDirection>) -> Gate {
        Gate {
            scene,
            direction,
            station: None,
            stop: None,
            venue: None,
            hospital: None,
            hall: None,
            operator: None,
        }
    }

    #[test]
    fn directions_follow_the_gate() {
        let entry = gate(Scene::Metro, Some(GateDirection::Entry));
        let both = gate(Scene::Metro, Some(GateDirection::Both));
        let bus = gate(Scene::Bus, None);
        assert_eq!(
            direction(&entry, Direction::Unspecified).unwrap(),
            Some(Direction::Entry)
        );
        assert_eq!(
            direction(&entry, Direction::Entry).unwrap(),
            Some(Direction::Entry)
        );
        assert!(matches!(
            direction(&entry, Direction::Exit),
            Err(VerifierError::DirectionMismatch)
        ));
        assert!(matches!(
            direction(&both, Direction::Unspecified),
            Err(VerifierError::DirectionRequired)
        ));
        assert_eq!(
            direction(&both, Direction::Exit).unwrap(),
            Some(Direction::Exit)
        );
        assert_eq!(direction(&bus, Direction::Unspecified).unwrap(), None);
        assert!(matches!(
            direction(&bus, Direction::Entry),
            Err(VerifierError::DirectionMismatch)
        ));
    }
}
