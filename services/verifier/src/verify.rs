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
//!    gate's scene among the code's scopes) with the key set in force, as its two
//!    halves: [`Verifier::read`] ends with the code read up to its issuer's signature
//!    (`read_code`), [`Verifier::conclude`] begins with the signature (checked alone
//!    unless VerifyStream's batch decided it: [`crate::batch`]), times and scope;
//! 3. revocation: [`citypass_gate::check_revocation`] on the follower's set, in memory.
//!    A code the set shows revoked is refused whatever the data's age; otherwise data
//!    older than `revocation.max_age`, or never synced, refuses every code
//!    (`REVOCATION_DATA_STALE`: fail closed). Then the holder (when `subjects` is
//!    configured, [`crate::subjects`]): the code's sealed subject is opened (one that
//!    does not open is refused `UNSEAL_FAILED`, never an error), and a subject
//!    revocation dated after the code's issue time refuses it (`SUBJECT_REVOKED`, with
//!    the epoch decided with): online codes too, which carry no serial a cascade
//!    could reach. The opened subject goes to the scene policy in its context: a scan
//!    is unsealed once;
//! 4. single use: the replay store (`replay.rs`) reserves the mark for this scan (or,
//!    for a scene without a policy, writes it with this answer in one step), returns a
//!    retried scan's settled answer, and refuses a replay, an older offline counter or
//!    a scan id reused with another code. A store that does not answer within the
//!    call's deadline follows the scene's fail mode (`closed`: `SERVICE_UNAVAILABLE`);
//! 5. the scene policy (`scene/`: hospital, scenic, government, transit), bounded by the
//!    earlier of the gate's deadline and the scene's, then its answer settled on the
//!    reserved mark; a dependency that does not answer follows the scene's fail mode
//!    (`closed`: `SERVICE_UNAVAILABLE`, left unsettled so the retry tries again;
//!    `open`: ALLOW with `fail_open`, counted and logged);
//! 6. the answer, with the revocation epoch and age and the key set's age it used.
//!
//! The offline gate composes steps 2 and 3 the same way with a signed snapshot and its
//! own memories: one copy of the rules, two compositions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citypass_face::{Decision, Embedding};
use citypass_gate::{
    DenyReason, Presented, ReadCode, check_revocation, check_subject_revocation, read_code,
};
use citypass_revocation_follow::{Follower, Freshness, RevocationSet, RevocationView};
use citypass_runtime::Deadline;
use citypass_token::{DeviceId, SignatureCheck, SubjectId, kind_of, sha256, unix_now};

use crate::error::VerifierError;
use crate::face::{CounterFaces, FaceCheck, FacePolicy};
use crate::gates::{Gate, GateDirection, Gates};
use crate::key_set::Keys;
use crate::metrics::Metrics;
use crate::model::{
    Answer, Basis, Direction, FacePassRefusal, FaceScan, PresentedKind, Refusal, Scan,
};
use crate::replay::{Arrival, Mark, Outcome, ReplayStore, Settled, StoredAnswer, Use};
use crate::scene::{Context, FailMode, Policies, Verdict};
use crate::subjects::{PseudonymScope, Subjects};

/// A holder who passed every check of what they presented (a code's format, signature,
/// times, scope and revocations; a face's match and the subject's revocation): what
/// single use and the scene policy decide on, the same way for a code and a face.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedHolder {
    /// What was presented.
    pub kind: PresentedKind,
    /// The holder, when the verifier has a holder source (a face always has one).
    pub subject: Option<SubjectId>,
    /// What the use leaves in the replay store (see `replay.rs`).
    pub mark: Mark,
    /// The last second (Unix, inclusive) the mark must be kept.
    pub forget_at: u64,
    /// What the gate's scan id is claimed with: SHA-256 of the code's text, or of the
    /// face-pass mark (a retry must present the same).
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for PresentedHolder {
    /// Without the subject.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedHolder")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Where a holder passes: the gate, the scan, the way (metro).
#[derive(Clone, Copy)]
struct Station<'a> {
    gate: &'a Gate,
    gate_id: &'a str,
    scan_id: &'a str,
    way: Option<Direction>,
}

/// Where the revocation step reads from: the follower's set ([`RevocationView`]) in
/// the service, a fixed set ([`FixedRevocations`]) in benches.
pub trait Revocations: Send + Sync + 'static {
    /// The epoch and age of the data now.
    fn freshness(&self) -> Freshness;
    /// [`check_revocation`] on the data, with the freshness of what it read.
    fn check(&self, presented: &Presented) -> (Result<(), DenyReason>, Freshness);
    /// [`check_subject_revocation`] on the data, for the subject unsealed from
    /// `presented`.
    fn check_subject(
        &self,
        presented: &Presented,
        subject: &SubjectId,
    ) -> (Result<(), DenyReason>, Freshness);
    /// A holder found without a code (a face): refused while the subject's latest
    /// entry is a revocation (there is no issue time to compare with).
    fn check_holder(&self, subject: &SubjectId) -> (Result<(), DenyReason>, Freshness);
    /// Whether a device that enrolled a face from the app is revoked now (its latest
    /// entry is a revocation: a phone reported stolen), so its enrolment is not used.
    fn enrolling_device_revoked(&self, device: &DeviceId) -> bool;
}

fn holder_revocation(subject: &SubjectId, set: &RevocationSet) -> Result<(), DenyReason> {
    if set.issuance_blocked_subject(subject) {
        return Err(DenyReason::SubjectRevoked);
    }
    Ok(())
}

impl Revocations for RevocationView {
    fn freshness(&self) -> Freshness {
        RevocationView::freshness(self)
    }

    fn check(&self, presented: &Presented) -> (Result<(), DenyReason>, Freshness) {
        self.decide(|set| check_revocation(presented, set))
    }

    fn check_subject(
        &self,
        presented: &Presented,
        subject: &SubjectId,
    ) -> (Result<(), DenyReason>, Freshness) {
        self.decide(|set| check_subject_revocation(presented, subject, set))
    }

    fn check_holder(&self, subject: &SubjectId) -> (Result<(), DenyReason>, Freshness) {
        self.decide(|set| holder_revocation(subject, set))
    }

    fn enrolling_device_revoked(&self, device: &DeviceId) -> bool {
        self.issuance_blocked_device(device)
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

    fn check_subject(
        &self,
        presented: &Presented,
        subject: &SubjectId,
    ) -> (Result<(), DenyReason>, Freshness) {
        (
            check_subject_revocation(presented, subject, &self.set),
            self.freshness(),
        )
    }

    fn check_holder(&self, subject: &SubjectId) -> (Result<(), DenyReason>, Freshness) {
        (holder_revocation(subject, &self.set), self.freshness())
    }

    fn enrolling_device_revoked(&self, device: &DeviceId) -> bool {
        self.set.issuance_blocked_device(device)
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
    /// The code's holder (unsealing, profiles, pseudonyms); without it the subject is
    /// not opened and subject revocations reach online codes only through their life.
    subjects: Option<Arc<dyn Subjects>>,
    policies: Arc<Policies>,
    /// The counters' face check.
    faces: CounterFaces,
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

/// A scan read as far as its code's issuer signature ([`Verifier::read`]): what a
/// stream's batch gathers before [`Verifier::conclude`].
#[derive(Debug)]
pub struct ReadScan {
    /// When the decision began (the decision-duration metric).
    started: Instant,
    step: Step,
}

#[derive(Debug)]
enum Step {
    /// Refused before the signature (an unknown gate, another scene, a code that does
    /// not read).
    Answered(Answer),
    /// The code read; its signature, times and scope are next.
    Read(Box<Read>),
}

/// What reading found and the rest of the decision uses.
#[derive(Debug)]
struct Read {
    gate: Arc<Gate>,
    way: Option<Direction>,
    now: u64,
    basis: Basis,
    code_kind: Option<PresentedKind>,
    code: ReadCode,
}

impl ReadScan {
    /// The code's issuer signature, if the scan got that far and it is not decided:
    /// for a batch (`citypass_token::check_batch`).
    pub fn signature_mut(&mut self) -> Option<&mut SignatureCheck> {
        match &mut self.step {
            Step::Read(read) => Some(read.code.signature_mut()),
            Step::Answered(_) => None,
        }
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
        policies: Arc<Policies>,
    ) -> Self {
        let metrics = Metrics::new(&keys);
        Verifier {
            rules,
            keys,
            gates,
            revocations,
            replay,
            subjects: None,
            policies,
            faces: CounterFaces::default(),
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

    /// Opens codes' subjects with `subjects` and checks subject revocations.
    pub fn with_subjects(mut self, subjects: Arc<dyn Subjects>) -> Self {
        self.subjects = Some(subjects);
        self
    }

    /// Checks faces at counters as `faces` says (without it every counter is `off`).
    pub fn with_faces(mut self, faces: CounterFaces) -> Self {
        self.faces = faces;
        self
    }

    /// The holder source, if configured.
    pub fn subjects(&self) -> Option<&Arc<dyn Subjects>> {
        self.subjects.as_ref()
    }

    /// The gate registry (to replace it in tests).
    pub fn gates(&self) -> &Arc<Gates> {
        &self.gates
    }

    /// The key set (to replace it in tests).
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// The scene policies.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// The decision's instruments.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The decision's rules.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// The revocation data decided with.
    pub fn revocations(&self) -> &Arc<dyn Revocations> {
        &self.revocations
    }

    /// Decides on `scan` from the authenticated gate `caller` (see the module
    /// documentation). An `Err` is a request the verifier does not answer; a refused
    /// code is an `Ok` answer with a refusal.
    ///
    /// It is [`Verifier::read`] then [`Verifier::conclude`]; VerifyStream reads the
    /// scans waiting on a stream, decides their signatures as one batch
    /// ([`crate::batch`]), and concludes each.
    pub async fn verify(
        &self,
        caller: &str,
        scan: &Scan,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        let read = self.read(caller, scan)?;
        self.conclude(scan, read, deadline).await
    }

    /// Step 1 and the first half of step 2: the gate, the scene, the direction, and
    /// the code read up to its issuer's signature (no I/O, no signature math).
    pub fn read(&self, caller: &str, scan: &Scan) -> Result<ReadScan, VerifierError> {
        let started = Instant::now();
        if scan.gate_id != caller {
            return Err(VerifierError::GateMismatch);
        }
        let now = unix_now();
        let (keys, key_set_age) = self.keys.current();
        let freshness = self.revocations.freshness();
        let basis = Basis {
            revocation_epoch: freshness.epoch,
            revocation_age: freshness.age,
            key_set_age: Some(key_set_age),
        };
        let code_kind = kind_of(&scan.qr_text).ok().map(PresentedKind::from);
        let answered = |refusal: Refusal| ReadScan {
            started,
            step: Step::Answered(Answer {
                refusal: Some(refusal),
                code_kind,
                basis,
                decided_at: now,
                idempotent_replay: false,
                scene: None,
                fail_open: false,
                face: None,
            }),
        };

        let registry = self.gates.current();
        let Some(gate) = registry.get(&scan.gate_id) else {
            return Ok(answered(Refusal::UnknownGate));
        };
        if gate.scene != scan.scene {
            return Ok(answered(Refusal::SceneMismatch));
        }
        let way = direction(gate, scan.direction)?;
        if scan.live_face.is_some() && self.faces.policy(gate.scene) == FacePolicy::Off {
            return Err(VerifierError::FaceNotUsedHere);
        }
        let code = match read_code(&scan.qr_text, &keys, self.rules.skew, now) {
            Ok(code) => code,
            Err(reason) => return Ok(answered(reason.into())),
        };
        Ok(ReadScan {
            started,
            step: Step::Read(Box::new(Read {
                gate: gate.clone(),
                way,
                now,
                basis,
                code_kind,
                code,
            })),
        })
    }

    /// The rest of the decision on a scan [`Verifier::read`] read: the signature
    /// (alone unless a batch decided it), times and scope, then steps 3 to 6; the
    /// answer is counted in the metrics. `read` must be what `read` made of this
    /// `scan`.
    pub async fn conclude(
        &self,
        scan: &Scan,
        read: ReadScan,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        let answer = match read.step {
            Step::Answered(answer) => answer,
            Step::Read(read) => self.decide(scan, *read, deadline).await?,
        };
        self.metrics
            .record(scan.scene, &answer, read.started.elapsed());
        Ok(answer)
    }

    async fn decide(
        &self,
        scan: &Scan,
        read: Read,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        let Read {
            gate,
            way,
            now,
            mut basis,
            code_kind,
            code,
        } = read;
        let gate = &*gate;
        let answer = |refusal: Option<Refusal>, basis: Basis| Answer {
            refusal,
            code_kind,
            basis,
            decided_at: now,
            idempotent_replay: false,
            scene: None,
            fail_open: false,
            face: None,
        };
        let presented = match code.finish(gate.scene) {
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
        // The holder, opened once: the scene policy and a retry's result reuse it.
        let mut subject = None;
        if let Some(subjects) = &self.subjects {
            let opened = match subjects.unseal(&presented) {
                Ok(subject) => subject,
                Err(err) => {
                    // The reason names a key id or layout, never the subject.
                    tracing::warn!(error = %err, "code refused: its subject does not open");
                    return Ok(answer(Some(Refusal::SubjectUnreadable), basis));
                }
            };
            let (revoked, freshness) = self.revocations.check_subject(&presented, &opened);
            basis.revocation_epoch = freshness.epoch;
            basis.revocation_age = freshness.age;
            if let Err(reason) = revoked {
                return Ok(answer(Some(reason.into()), basis));
            }
            subject = Some(opened);
        }

        let (mark, forget_at) = Mark::of(&presented, self.rules.skew);
        let holder = PresentedHolder {
            kind: presented.kind().into(),
            subject,
            mark,
            forget_at,
            fingerprint: sha256(scan.qr_text.as_bytes()),
        };
        let at = Station {
            gate,
            gate_id: &scan.gate_id,
            scan_id: &scan.scan_id,
            way,
        };
        Ok(self
            .pass(at, holder, scan.live_face.as_ref(), basis, now, deadline)
            .await)
    }

    /// Steps 4 to 6 for a holder who passed every check of what they presented (a
    /// code, or a face at a face-pass gate): single use, the scene policy, the answer
    /// settled. One pipeline for both, so a face pass is charged, counted and replayed
    /// exactly as a code is.
    async fn pass(
        &self,
        at: Station<'_>,
        holder: PresentedHolder,
        live_face: Option<&Embedding>,
        basis: Basis,
        now: u64,
        deadline: Option<Deadline>,
    ) -> Answer {
        let Station {
            gate,
            gate_id,
            scan_id,
            way,
        } = at;
        let kind = holder.kind;
        let scene = gate.scene;
        let settings = self.policies.settings(scene);
        let has_policy = Policies::has_policy(scene);
        let used = Use {
            gate_id,
            scan_id,
            fingerprint: holder.fingerprint,
            mark: holder.mark,
            forget_at: holder.forget_at,
            // A scene without a policy writes its answer with the mark in one step;
            // one with a policy reserves the mark and settles it after the policy.
            answer: (!has_policy).then(|| StoredAnswer::allow(kind, basis, now)),
            arrival: Arrival::Live,
        };
        let policy_deadline = self.policies.deadline(scene, deadline);
        let ctx = Context {
            gate,
            gate_id,
            scan_id,
            direction: way,
            subject: holder.subject,
            live_face,
            now,
            deadline: policy_deadline,
        };
        let decided = |refusal: Option<Refusal>| Answer {
            refusal,
            code_kind: Some(kind),
            basis,
            decided_at: now,
            idempotent_replay: false,
            scene: None,
            fail_open: false,
            face: None,
        };
        match self.replay.record(used.clone(), now, deadline).await {
            Ok(Outcome::First | Outcome::Pending) if has_policy => {}
            Ok(Outcome::First | Outcome::Pending) => return decided(None),
            Ok(Outcome::Retry(first)) => return self.retried(first, ctx).await,
            Ok(Outcome::Replayed) => return decided(Some(DenyReason::Replayed.into())),
            Ok(Outcome::CounterReplay) => {
                return decided(Some(DenyReason::CounterReplay.into()));
            }
            Ok(Outcome::ScanIdConflict) => return decided(Some(Refusal::ScanIdConflict)),
            Err(err) => {
                tracing::warn!(error = %err, scene = scene.name(), "replay store failed");
                let mut answer = self.unavailable(scene, settings.fail, decided(None));
                if answer.allowed() {
                    // Not compared: an answer that is not stored could be asked again.
                    answer.face = self.faces.unavailable(scene);
                }
                return answer;
            }
        }

        // The mark is this scan's: the policy, then its answer settled on the mark.
        let mut stored = StoredAnswer::allow(kind, basis, now);
        let result = match self.policies.decide(ctx).await {
            Verdict::Allow(result) => {
                stored.scene = result.as_ref().map(|r| r.facts());
                result
            }
            Verdict::Refuse(refusal) => {
                stored.refusal = Some(refusal);
                None
            }
            Verdict::Unavailable if settings.fail == FailMode::Closed => {
                // Not settled: the gate's retry with this scan id runs the policy again.
                tracing::warn!(
                    scene = scene.name(),
                    "scene policy unavailable; fail closed"
                );
                return decided(Some(Refusal::ServiceUnavailable));
            }
            Verdict::Unavailable => {
                self.fail_open(scene);
                stored.fail_open = true;
                None
            }
        };
        let refusal = stored.refusal.map(Refusal::Policy);
        // Compared once, stored with the answer: a retry gets this check back.
        stored.face = self.face_check(refusal.as_ref(), &ctx);
        let answer = Answer {
            face: stored.face,
            refusal,
            scene: result,
            fail_open: stored.fail_open,
            ..decided(None)
        };
        match self.replay.settle(used, stored, deadline).await {
            Ok(Settled::Now | Settled::Lost) => answer,
            // A concurrent try of the same scan settled first: its answer, for both.
            Ok(Settled::Before(first)) => self.retried(first, ctx).await,
            Err(err) => {
                // The policy's effects are idempotent by scan: a retry finds the mark
                // PENDING, runs the policy again, and settles the same answer.
                tracing::warn!(error = %err, scene = scene.name(), "answer not settled");
                answer
            }
        }
    }

    /// Decides on a face at the face-pass gate `caller` (VerifyFace, 刷脸通行). An
    /// `Err` is a request the verifier does not answer; every refusal is an `Ok`
    /// answer, and each one means "scan your code" at the gate. In order:
    ///
    /// 1. the gate must be configured (`UNKNOWN_GATE`) and offer face pass
    ///    (`FACE_PASS_NOT_HERE`); the direction as for a code;
    /// 2. at an unattended gate, the gate's liveness check must have run
    ///    (`LIVENESS_REQUIRED`) and scored at least `face.pass.liveness_threshold`
    ///    (`LIVENESS_FAILED`). It runs on the gate, like the embedding: the verifier
    ///    trusts the gate's certificate for it;
    /// 3. revocation data within its max age (`REVOCATION_DATA_STALE`), then the 1:N
    ///    search among the riders consenting to face pass at the gate's station or
    ///    venue: galleries past `face.feed.max_age` match nobody
    ///    (`FACE_PASS_UNAVAILABLE`, fail-closed); below the threshold or within the
    ///    margin of a second rider is `FACE_NOT_RECOGNISED`;
    /// 4. the matched rider's revocation (`SUBJECT_REVOKED`);
    /// 5. then the code's own steps 4 to 6 ([`Verifier::pass`]): the scan id claimed,
    ///    the face-pass mark (a keyed digest of rider and gate, no personal data) kept
    ///    for `face.pass.window` so that the rider matched again at this gate is
    ///    `REPLAYED`, the scene policy (metro: payments' taps with the rider's transit
    ///    account; scenic: capacity and once a day), the answer settled.
    ///
    /// Neither the score nor the rider is in the answer, a log or a span.
    pub async fn verify_face(
        &self,
        caller: &str,
        scan: &FaceScan,
        deadline: Option<Deadline>,
    ) -> Result<Answer, VerifierError> {
        let started = Instant::now();
        let now = unix_now();
        let (_, key_set_age) = self.keys.current();
        let freshness = self.revocations.freshness();
        let mut basis = Basis {
            revocation_epoch: freshness.epoch,
            revocation_age: freshness.age,
            key_set_age: Some(key_set_age),
        };
        let refused = |refusal: Refusal, basis: Basis| Answer {
            refusal: Some(refusal),
            code_kind: Some(PresentedKind::Face),
            basis,
            decided_at: now,
            idempotent_replay: false,
            scene: None,
            fail_open: false,
            face: None,
        };
        let registry = self.gates.current();
        let Some(gate) = registry.get(caller) else {
            let answer = refused(Refusal::UnknownGate, basis);
            self.metrics.face_pass(&answer);
            return Ok(answer);
        };
        let gate = gate.clone();
        // Each call searches the place's whole gallery: a gate has its allowance
        // (face review G3).
        if !self.faces.admit_face_pass(caller) {
            return Err(VerifierError::FacePassRateLimited);
        }
        // The direction before the search, so that its refusal says nothing about
        // whether the face matched (face review G2).
        let way = direction(&gate, scan.direction)?;
        let answer = match self
            .match_face(&gate, way, scan, &mut basis, now)
            .map_err(|refusal| refused(refusal, basis))
        {
            Err(refusal) => refusal,
            Ok(found) => {
                let at = Station {
                    gate: &gate,
                    gate_id: caller,
                    scan_id: &scan.scan_id,
                    way,
                };
                self.pass(at, found, None, basis, now, deadline).await
            }
        };
        // Operators count the real outcome; the gate learns only ALLOW or "scan your
        // code".
        self.metrics.face_pass(&answer);
        self.metrics.record(gate.scene, &answer, started.elapsed());
        Ok(conceal_after_match(answer))
    }

    /// Steps 1 to 4 of [`Verifier::verify_face`]: the rider the face is, as a holder
    /// for the shared pipeline, or why none.
    fn match_face(
        &self,
        gate: &Gate,
        way: Option<Direction>,
        scan: &FaceScan,
        basis: &mut Basis,
        now: u64,
    ) -> Result<PresentedHolder, Refusal> {
        let Some(place) = gate.face_pass_place() else {
            return Err(Refusal::FacePass(FacePassRefusal::NotHere));
        };
        let settings = *self.faces.pass_settings();
        if !gate.attended {
            match scan.liveness {
                None => return Err(Refusal::FacePass(FacePassRefusal::LivenessRequired)),
                Some(score) if score < settings.liveness_threshold => {
                    return Err(Refusal::FacePass(FacePassRefusal::LivenessFailed));
                }
                Some(_) => {}
            }
        }
        let freshness = self.revocations.freshness();
        if !freshness.within(self.rules.revocation_max_age) {
            return Err(Refusal::Code(DenyReason::RevocationsStale));
        }
        // Without a holder source there are no galleries (the feed needs identity) and
        // no key for the mark: face pass is unavailable, never open.
        let Some(subjects) = &self.subjects else {
            return Err(Refusal::FacePass(FacePassRefusal::Unavailable));
        };
        let rider = match self.faces.face_pass(&place, &scan.live_face) {
            None => return Err(Refusal::FacePass(FacePassRefusal::Unavailable)),
            Some(Decision::Match(candidate)) => candidate.key,
            Some(Decision::NoMatch | Decision::Ambiguous) => {
                return Err(Refusal::FacePass(FacePassRefusal::NotRecognised));
            }
        };
        let (revoked, freshness) = self.revocations.check_holder(&rider);
        basis.revocation_epoch = freshness.epoch;
        basis.revocation_age = freshness.age;
        revoked.map_err(Refusal::from)?;
        // A template enrolled from a phone since revoked (reported stolen) is not the
        // rider's word any more: not recognised, the gate asks for the code.
        if let Some(device) = self.faces.face_pass_device(&rider)
            && self.revocations.enrolling_device_revoked(&device)
        {
            return Err(Refusal::FacePass(FacePassRefusal::NotRecognised));
        }
        // The mark: a keyed digest of rider, place and way (the pseudonym key's
        // `face-pass-mark:<place>/<way>` scope), so Redis holds nothing a person is
        // found by, and a face replayed at another entry (or exit) gate of the same
        // station or venue within the window is REPLAYED too (face review G4), while
        // the rider's own way out of the station they came in by is not.
        let way = match way {
            Some(Direction::Entry) => "entry",
            Some(Direction::Exit) => "exit",
            _ => "any",
        };
        let keyed = subjects.pseudonym(
            &rider,
            PseudonymScope::FacePassMark(&format!("{place}/{way}")),
        );
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&sha256(keyed.as_bytes())[..16]);
        Ok(PresentedHolder {
            kind: PresentedKind::Face,
            subject: Some(rider),
            mark: Mark::Face { digest },
            forget_at: now.saturating_add(settings.window.as_secs().max(1)),
            fingerprint: sha256(&[b"face\0".as_slice(), digest.as_slice()].concat()),
        })
    }

    /// The answer when a dependency did not answer: `closed` refuses
    /// (`SERVICE_UNAVAILABLE`); `open` allows, marked, counted and logged.
    fn unavailable(&self, scene: citypass_token::Scene, fail: FailMode, base: Answer) -> Answer {
        match fail {
            FailMode::Closed => Answer {
                refusal: Some(Refusal::ServiceUnavailable),
                ..base
            },
            FailMode::Open => {
                self.fail_open(scene);
                Answer {
                    refusal: None,
                    fail_open: true,
                    ..base
                }
            }
        }
    }

    /// Records a scan allowed under `scene`'s fail-open policy (no personal data).
    fn fail_open(&self, scene: citypass_token::Scene) {
        self.metrics.fail_open(scene);
        tracing::warn!(
            scene = scene.name(),
            "dependency unavailable; allowed under the scene's fail-open policy"
        );
    }

    /// The answer a retried scan gets: the settled one, marked as such, with its scene
    /// result completed from the code (pseudonyms and names are not stored).
    async fn retried(&self, first: StoredAnswer, ctx: Context<'_>) -> Answer {
        let scene = match &first.scene {
            Some(facts) => self.policies.complete(facts, ctx).await,
            None => None,
        };
        Answer {
            // The first try's check, never a second comparison.
            face: first.face,
            refusal: first.refusal.map(Refusal::Policy),
            code_kind: Some(first.code_kind),
            basis: first.basis,
            decided_at: first.decided_at,
            idempotent_replay: true,
            scene,
            fail_open: first.fail_open,
        }
    }

    /// The counter's face check of an allowed scan (see [`crate::face`]): compared
    /// with the holder's template, or unavailable when no holder was opened; `None`
    /// for a refusal and at scenes whose policy is `off`.
    fn face_check(&self, refusal: Option<&Refusal>, ctx: &Context<'_>) -> Option<FaceCheck> {
        if refusal.is_some() {
            return None;
        }
        match ctx.subject {
            Some(holder) => self.faces.check(ctx.gate.scene, &holder, ctx.live_face),
            None => self.faces.unavailable(ctx.gate.scene),
        }
    }
}

/// The way a metro rider goes: the request's, which must agree with a one-way gate and
/// is required at a two-way one; no other scene has a direction (the transit policy
/// taps in or out by it).
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

/// A face-pass answer as the gate may see it (face review G2): every refusal made
/// once the face matched a rider (revoked, replayed, a trip already open, no payment
/// link, arrears, a venue full, a dependency down…) reads as `FACE_NOT_RECOGNISED`,
/// the same as a face that matched nobody. Otherwise a gate certificate, which may
/// send any embedding, would learn from the reason that it had matched a consenting
/// rider, and facts about that rider's account, without charging anyone. The gate
/// asks for the code, whose scan gives the real reason to its holder.
fn conceal_after_match(mut answer: Answer) -> Answer {
    if let Some(refusal) = &answer.refusal {
        let before_match = matches!(
            refusal,
            Refusal::UnknownGate
                | Refusal::FacePass(_)
                | Refusal::Code(DenyReason::RevocationsStale)
        );
        if !before_match {
            answer.refusal = Some(Refusal::FacePass(FacePassRefusal::NotRecognised));
            answer.scene = None;
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use citypass_token::{
        Issuer, IssuerKey, KeySet, KeyStatus, KeyUsage, PublishedKey, Scene, Scopes, SubjectKey,
    };
    use futures::future::BoxFuture;

    use crate::gates::Registry;
    use crate::model::SceneResult;
    use crate::replay::MemoryReplayStore;
    use crate::scene::ScenesConfig;
    use crate::stand_in_subjects::FixedSubjects;
    use crate::subjects::{PseudonymScope, SubjectProfile, SubjectsError};
    use crate::venues::MemoryVenueStore;

    /// [`FixedSubjects`], counting the unseals asked of it.
    struct CountingSubjects {
        inner: FixedSubjects,
        unseals: AtomicUsize,
    }

    impl Subjects for CountingSubjects {
        fn unseal(&self, presented: &Presented) -> Result<SubjectId, SubjectsError> {
            self.unseals.fetch_add(1, Ordering::SeqCst);
            self.inner.unseal(presented)
        }

        fn profile(
            &self,
            subject: SubjectId,
            deadline: Option<Deadline>,
        ) -> BoxFuture<'_, Result<Arc<SubjectProfile>, SubjectsError>> {
            self.inner.profile(subject, deadline)
        }

        fn pseudonym(&self, subject: &SubjectId, scope: PseudonymScope<'_>) -> String {
            self.inner.pseudonym(subject, scope)
        }
    }

    /// A verifier over `registry` whose policies' `Subjects` count their unseals (no
    /// holder step until `with_subjects`), with the code issuer and the holder.
    fn counted(registry: Registry) -> (Issuer, SubjectId, Arc<CountingSubjects>, Verifier) {
        let issuer = Issuer::new(
            "cp",
            IssuerKey::from_seed(&[0x11; 32]).unwrap(),
            SubjectKey::from_bytes(&[0x22; 32]).unwrap(),
        );
        let keys = KeySet::new(vec![PublishedKey {
            key: issuer.key().public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Code,
        }])
        .unwrap();
        let subject = SubjectId::from_bytes([0x5a; 16]);
        let subjects = Arc::new(CountingSubjects {
            inner: FixedSubjects::new(FixedSubjects::citizen(subject)),
            unseals: AtomicUsize::new(0),
        });
        let verifier = Verifier::new(
            Rules {
                skew: 30,
                revocation_max_age: Duration::from_secs(10),
            },
            Keys::fixed(keys),
            Gates::fixed(registry),
            Arc::new(FixedRevocations::default()),
            Arc::new(MemoryReplayStore::new(1_000)),
            Arc::new(
                Policies::new(
                    ScenesConfig::default(),
                    subjects.clone(),
                    Arc::new(MemoryVenueStore::new(1_000)),
                )
                .with_transit(Arc::new(crate::FixedTaps::default())),
            ),
        );
        (issuer, subject, subjects, verifier)
    }

    /// One scan, and a retry of it, at each scene with a policy (bus taps through
    /// `FixedTaps`): the holder step opens the code's subject once, and neither the policy nor
    /// the retry's result opens it again.
    #[tokio::test]
    async fn each_scan_unseals_its_subject_once() {
        let mut scenic = gate(Scene::Scenic, None);
        scenic.venue = Some("park".to_owned());
        let mut hall = gate(Scene::Government, None);
        hall.hall = Some("hall".to_owned());
        let registry = Registry::new([
            ("desk".to_owned(), desk()),
            ("park-gate".to_owned(), scenic),
            ("counter".to_owned(), hall),
            ("bus".to_owned(), gate(Scene::Bus, None)),
        ])
        .unwrap();
        let (issuer, subject, subjects, verifier) = counted(registry);
        let verifier = verifier.with_subjects(subjects.clone());

        for (gate_id, scene) in [
            ("desk", Scene::Hospital),
            ("park-gate", Scene::Scenic),
            ("counter", Scene::Government),
            ("bus", Scene::Bus),
        ] {
            let code = issuer
                .issue_token(subject.as_bytes(), Scopes::all(), unix_now(), 60)
                .unwrap();
            let scan = Scan {
                gate_id: gate_id.to_owned(),
                scene,
                scan_id: format!("{gate_id}-1"),
                qr_text: code.text,
                direction: Direction::Unspecified,
                station_id: String::new(),
                live_face: None,
            };
            for try_ in ["first", "retry"] {
                let before = subjects.unseals.load(Ordering::SeqCst);
                let answer = verifier.verify(gate_id, &scan, None).await.unwrap();
                assert!(answer.allowed(), "{gate_id} {try_}: {answer:?}");
                assert_eq!(answer.idempotent_replay, try_ == "retry");
                // The result needs the holder: it was there to use.
                match scene {
                    Scene::Hospital => assert!(
                        matches!(answer.scene, Some(SceneResult::Hospital { .. })),
                        "{answer:?}"
                    ),
                    Scene::Scenic => assert!(
                        matches!(answer.scene, Some(SceneResult::Scenic { .. })),
                        "{answer:?}"
                    ),
                    Scene::Government => assert!(
                        matches!(answer.scene, Some(SceneResult::Government { .. })),
                        "{answer:?}"
                    ),
                    _ => assert!(
                        matches!(answer.scene, Some(SceneResult::Transit(_))),
                        "{answer:?}"
                    ),
                }
                assert_eq!(
                    subjects.unseals.load(Ordering::SeqCst) - before,
                    1,
                    "unseals for one scan at {gate_id} ({try_})"
                );
            }
        }
    }

    /// Without a holder source the holder step opens nothing, and a scene that needs
    /// the holder follows its fail mode (closed: SERVICE_UNAVAILABLE) instead of
    /// opening the code itself.
    #[tokio::test]
    async fn without_a_holder_step_policies_do_not_unseal() {
        let registry = Registry::new([("desk".to_owned(), desk())]).unwrap();
        let (issuer, subject, subjects, verifier) = counted(registry);
        let code = issuer
            .issue_token(subject.as_bytes(), Scopes::all(), unix_now(), 60)
            .unwrap();
        let scan = Scan {
            gate_id: "desk".to_owned(),
            scene: Scene::Hospital,
            scan_id: "desk-1".to_owned(),
            qr_text: code.text,
            direction: Direction::Unspecified,
            station_id: String::new(),
            live_face: None,
        };
        let answer = verifier.verify("desk", &scan, None).await.unwrap();
        assert_eq!(
            answer.refusal,
            Some(Refusal::ServiceUnavailable),
            "{answer:?}"
        );
        assert_eq!(subjects.unseals.load(Ordering::SeqCst), 0);
    }

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
            face_pass: false,
            attended: false,
        }
    }

    fn desk() -> Gate {
        Gate {
            hospital: Some("hospital".to_owned()),
            ..gate(Scene::Hospital, None)
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
