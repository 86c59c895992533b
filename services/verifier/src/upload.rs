//! What offline gates allowed, recorded after the fact (UploadOfflineScans).
//!
//! A gate cut off from the network decides alone (`citypass_gate::Gate`) and keeps
//! the scans it allowed. Once back, it uploads them. For each scan, in order:
//!
//! 1. its shape (`convert.rs`: a scan id payments takes, 1 to 64 characters of
//!    `[A-Za-z0-9._:-]` (`citypass_proto::tap_id`), a code, a scan time) else
//!    `Invalid` with the reason ([`Malformed`]): checked before the mark is spent;
//! 2. the scan time within the upload window (`upload.window` back, the skew ahead)
//!    else `OutsideWindow`;
//! 3. the code as of its scan time: the shared [`check_code`] (format, key, signature,
//!    times with the skew, the gate's scene in its scopes), else `CodeRefused` with the
//!    reason: a gate that allowed it has a fault worth knowing about;
//! 4. its single-use mark, recorded in the replay store as a [`Arrival::Late`] use
//!    with the gate's scan id: from now on the code is refused at every gate. The store
//!    says what else held the mark: nothing (`Recorded`), this very scan
//!    (`AlreadyRecorded`: an upload retried), or another scan (`FraudSuspected`: two
//!    gates let the same code, or the same offline counter, through; a signal goes to
//!    the fraud log, `fraud.rs`). Offline counters are not held to their order here:
//!    uploads from several gates arrive in any order, so only a counter that another
//!    scan used is a double use.
//!
//! 5. a metro or bus scan whose mark is recorded by an upload (now, or before: an
//!    upload retried; the stored answer says [`StoredAnswer::uploaded`]) is passed on
//!    to payments as a late tap ([`TransitTaps::late_tap`],
//!    RecordOfflineTap) with the gate's scan id and the scan's own time, for the
//!    holder's transit account and fare class (the subject unsealed from the code, its
//!    profile from identity's cache) and the gate registry's station or route. Payments
//!    keys the tap by gate and scan id, so a retried upload, or one retried after a
//!    crash between the mark and the tap, changes nothing there; if identity or
//!    payments does not answer, the scan's outcome is `Unavailable` and the gate
//!    uploads it again (its mark then answers `AlreadyRecorded`, and the tap is passed
//!    on again). The answer says what payments did ([`TapPassed`]). A scan flagged as
//!    a fraud signal is not passed on: the same code or counter was used elsewhere;
//!    nor is a scan this gate had decided live (`DecidedLive`, ALREADY_RECORDED
//!    without a tap): payments took it, refused it (arrears, no link, a trip open) or
//!    never heard of it (left pending) then, and passing it on as a late tap would
//!    skip those refusals or close a real open trip at the maximum fare. Every pass-on's
//!    result, `rejected` included, is counted in `citypass.verifier.uploaded_taps`.
//!
//! An uploaded mark is kept `upload.window` longer than a live one, so that a second
//! gate's upload within the window still finds it. Live marks are not extended (the
//! city's online codes would multiply the store's size), so a live use is compared
//! with uploads only while its mark lives (a CP1 code's life plus twice the skew; a CP2
//! certificate's). Revocation is not checked here: the scan happened already; what the
//! gate's snapshot missed is the gate's staleness bound's business.

use std::sync::Arc;
use std::time::Duration;

use citypass_gate::check_code;
use citypass_runtime::Deadline;
use citypass_token::{Scene, sha256, unix_now};
use futures::StreamExt as _;

use citypass_gate::Presented;

use crate::error::VerifierError;
use crate::fraud::{FraudKind, FraudLog, FraudSignal, mark_digest};
use crate::gates::{Gate, Gates};
use crate::key_set::Keys;
use crate::metrics::UploadMetrics;
use crate::model::{Basis, Direction, Refusal};
use crate::replay::{Arrival, Mark, Outcome, ReplayStore, StoredAnswer, Use};
use crate::subjects::{Subjects, SubjectsError};
use crate::transit::{Tap, TapKind, TapRefused, Tapped, TransitError, TransitTaps, Trip};
use crate::verify::Revocations;

/// Most scans in one upload.
pub const MAX_SCANS: usize = 64;
/// Scans of one upload recorded at once.
const CONCURRENCY: usize = 16;
/// How long identity and payments may take for an uploaded scan when the gate named
/// no deadline.
const TAP_TIMEOUT: Duration = Duration::from_secs(5);

/// One scan an offline gate allowed, checked for shape.
#[derive(Clone, PartialEq, Eq)]
pub struct OfflineScan {
    /// The gate's id for the scan.
    pub scan_id: String,
    /// The scanned text. Never logged.
    pub qr_text: String,
    /// When the gate allowed it (its clock, Unix seconds).
    pub scanned_at: u64,
    /// Metro only.
    pub direction: Direction,
    /// Metro station or bus stop.
    pub station_id: String,
}

impl std::fmt::Debug for OfflineScan {
    /// Without the code text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineScan")
            .field("scan_id", &self.scan_id)
            .field("scanned_at", &self.scanned_at)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

/// What was done with one uploaded scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Its mark is recorded now.
    Recorded,
    /// This scan was recorded before, by an upload.
    AlreadyRecorded,
    /// This gate's scan was decided live (online) before: what payments did then
    /// stands, and the scan is not passed on again (ALREADY_RECORDED on the wire,
    /// without a tap).
    DecidedLive,
    /// Another scan used the same mark first; a signal was recorded.
    FraudSuspected(FraudKind),
    /// The code fails a check as of its scan time.
    CodeRefused(Refusal),
    /// The scan time is outside the upload window.
    OutsideWindow,
    /// The gate used this scan id before with another code.
    ScanIdConflict,
    /// The replay store did not answer: upload it again later.
    Unavailable,
    /// The scan is malformed: why (`BAD_SCAN_ID`, …; see [`Malformed`]).
    Invalid(&'static str),
}

impl UploadOutcome {
    /// A stable snake-case name (metrics).
    pub fn name(&self) -> &'static str {
        match self {
            UploadOutcome::Recorded => "recorded",
            UploadOutcome::AlreadyRecorded => "already_recorded",
            UploadOutcome::DecidedLive => "decided_live",
            UploadOutcome::FraudSuspected(_) => "fraud_suspected",
            UploadOutcome::CodeRefused(_) => "code_refused",
            UploadOutcome::OutsideWindow => "outside_window",
            UploadOutcome::ScanIdConflict => "scan_id_conflict",
            UploadOutcome::Unavailable => "unavailable",
            UploadOutcome::Invalid(_) => "invalid",
        }
    }
}

/// What payments did with an uploaded metro or bus scan (see the module
/// documentation, step 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapPassed {
    /// Recorded: the trip as it stands.
    Trip(Trip),
    /// Payments refused the rider (no payment link): nothing recorded. Payments no
    /// longer refuses late taps (a ride without a link is owed as arrears); kept for
    /// an older payments.
    Refused(TapRefused),
    /// Payments refused the request itself, or the scan does not fit its gate: the
    /// reason (no personal data).
    Rejected(String),
    /// The code's subject does not open, or identity does not know it.
    UnknownHolder,
}

impl TapPassed {
    /// A stable snake-case name (metrics).
    pub fn name(&self) -> &'static str {
        match self {
            TapPassed::Trip(_) => "recorded",
            TapPassed::Refused(_) => "refused",
            TapPassed::Rejected(_) => "rejected",
            TapPassed::UnknownHolder => "unknown_holder",
        }
    }
}

/// One uploaded scan's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    /// The scan id to echo.
    pub scan_id: String,
    /// What was done with its mark.
    pub outcome: UploadOutcome,
    /// What payments did with its tap (metro and bus scans whose mark is recorded).
    pub tap: Option<TapPassed>,
}

/// A gate's upload, checked for shape: each scan, or the scan id to echo for a
/// malformed one.
#[derive(Debug)]
pub struct Upload {
    /// The gate the request names.
    pub gate_id: String,
    /// The scene the request names.
    pub scene: Scene,
    /// The scans in the request's order.
    pub scans: Vec<Result<OfflineScan, Malformed>>,
}

/// An uploaded scan whose shape is wrong: answered INVALID, nothing recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The scan id to echo (empty when it is not echoable).
    pub echo: String,
    /// What is wrong: `BAD_SCAN_ID` (not 1 to 64 characters of `[A-Za-z0-9._:-]`,
    /// payments' rule for tap ids, checked before the mark is spent so that a scan
    /// whose tap payments would reject is not recorded), `MISSING_CODE`,
    /// `MISSING_SCANNED_AT`, `BAD_DIRECTION`, `BAD_STATION_ID`.
    pub reason: &'static str,
}

/// The upload logic over the verifier's sources; see the module documentation.
pub struct Uploads {
    keys: Arc<Keys>,
    gates: Arc<Gates>,
    revocations: Arc<dyn Revocations>,
    replay: Arc<dyn ReplayStore>,
    fraud: Arc<dyn FraudLog>,
    subjects: Arc<dyn Subjects>,
    transit: Arc<dyn TransitTaps>,
    skew: u64,
    window: Duration,
    metrics: UploadMetrics,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("skew", &self.skew)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// What [`Uploads`] reads and writes.
pub struct UploadSources {
    /// The key set in force.
    pub keys: Arc<Keys>,
    /// The gate registry.
    pub gates: Arc<Gates>,
    /// The revocation data (only its freshness is recorded with a mark).
    pub revocations: Arc<dyn Revocations>,
    /// The single-use marks (shared with the live decision).
    pub replay: Arc<dyn ReplayStore>,
    /// Where signals go.
    pub fraud: Arc<dyn FraudLog>,
    /// The holder of an uploaded metro or bus scan (its transit account, fare class).
    pub subjects: Arc<dyn Subjects>,
    /// Payments' late taps.
    pub transit: Arc<dyn TransitTaps>,
}

impl Uploads {
    /// Uploads over `sources`, with the decision's `skew` (seconds) and how far back a
    /// scan may be uploaded (`window`).
    pub fn new(sources: UploadSources, skew: u64, window: Duration) -> Self {
        Uploads {
            keys: sources.keys,
            gates: sources.gates,
            revocations: sources.revocations,
            replay: sources.replay,
            fraud: sources.fraud,
            subjects: sources.subjects,
            transit: sources.transit,
            skew,
            window,
            metrics: UploadMetrics::new(),
        }
    }

    /// The fraud log (ListFraudSignals reads it).
    pub fn fraud(&self) -> &Arc<dyn FraudLog> {
        &self.fraud
    }

    /// Records `upload` from the authenticated gate `caller`: one outcome per scan, in
    /// order, with the scan id to echo. An `Err` is an upload not taken at all (another
    /// gate's id, an unknown gate, another scene, too many scans).
    pub async fn upload(
        &self,
        caller: &str,
        upload: Upload,
        deadline: Option<Deadline>,
    ) -> Result<Vec<ScanResult>, VerifierError> {
        if upload.gate_id != caller {
            return Err(VerifierError::GateMismatch);
        }
        if upload.scans.len() > MAX_SCANS {
            return Err(VerifierError::TooManyScans);
        }
        let registry = self.gates.current();
        let gate = registry
            .get(&upload.gate_id)
            .ok_or(VerifierError::UnknownGate)?;
        if gate.scene != upload.scene {
            return Err(VerifierError::SceneMismatch);
        }
        let scene = gate.scene;
        let gate_id = upload.gate_id.as_str();
        let results = futures::stream::iter(upload.scans)
            .map(|scan| async move {
                match scan {
                    Ok(scan) => {
                        let (outcome, tap) = self.record(gate_id, gate, &scan, deadline).await;
                        ScanResult {
                            scan_id: scan.scan_id,
                            outcome,
                            tap,
                        }
                    }
                    Err(malformed) => ScanResult {
                        scan_id: malformed.echo,
                        outcome: UploadOutcome::Invalid(malformed.reason),
                        tap: None,
                    },
                }
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for result in &results {
            self.metrics.record(scene, result.outcome.name());
        }
        Ok(results)
    }

    /// Records one scan's mark, then passes a metro or bus scan on to payments.
    async fn record(
        &self,
        gate_id: &str,
        gate: &Gate,
        scan: &OfflineScan,
        deadline: Option<Deadline>,
    ) -> (UploadOutcome, Option<TapPassed>) {
        let scene = gate.scene;
        let now = unix_now();
        let oldest = now.saturating_sub(self.window.as_secs());
        if scan.scanned_at < oldest || scan.scanned_at > now.saturating_add(self.skew) {
            return (UploadOutcome::OutsideWindow, None);
        }
        let (keys, _) = self.keys.current();
        let presented = match check_code(&scan.qr_text, &keys, scene, self.skew, scan.scanned_at) {
            Ok(presented) => presented,
            Err(reason) => return (UploadOutcome::CodeRefused(reason.into()), None),
        };
        let outcome = self
            .mark(gate_id, scene, scan, &presented, now, deadline)
            .await;
        let transit = matches!(scene, Scene::Metro | Scene::Bus);
        if !transit
            || !matches!(
                outcome,
                UploadOutcome::Recorded | UploadOutcome::AlreadyRecorded
            )
        {
            return (outcome, None);
        }
        let deadline = deadline.unwrap_or_else(|| Deadline::after(TAP_TIMEOUT));
        let passed = match self
            .pass_on(gate_id, gate, scan, &presented, deadline)
            .await
        {
            Ok(passed) => passed,
            Err(TransitError::Unavailable) => {
                self.metrics.tap(scene, "unavailable");
                return (UploadOutcome::Unavailable, None);
            }
            Err(TransitError::Rejected { reason }) => TapPassed::Rejected(reason),
        };
        self.metrics.tap(scene, passed.name());
        (outcome, Some(passed))
    }

    /// The scan as a late tap at payments, for the code's holder.
    async fn pass_on(
        &self,
        gate_id: &str,
        gate: &Gate,
        scan: &OfflineScan,
        presented: &Presented,
        deadline: Deadline,
    ) -> Result<TapPassed, TransitError> {
        let rejected = |reason: &str| Ok(TapPassed::Rejected(reason.to_owned()));
        let (kind, station) = match gate.scene {
            Scene::Bus => (TapKind::Bus, gate.stop.as_deref()),
            _ => match crate::verify::direction(gate, scan.direction) {
                Ok(Some(Direction::Exit)) => (TapKind::MetroExit, gate.station.as_deref()),
                Ok(_) => (TapKind::MetroEntry, gate.station.as_deref()),
                Err(_) => return rejected("DIRECTION_MISMATCH"),
            },
        };
        let Some(station) = station else {
            return rejected("NO_STATION");
        };
        let subject = match self.subjects.unseal(presented) {
            Ok(subject) => subject,
            Err(_) => return Ok(TapPassed::UnknownHolder),
        };
        let profile = match self.subjects.profile(subject, Some(deadline)).await {
            Ok(profile) => profile,
            Err(SubjectsError::Unavailable) => return Err(TransitError::Unavailable),
            Err(_) => return Ok(TapPassed::UnknownHolder),
        };
        let tap = Tap {
            transit_account: profile.transit_account.clone(),
            kind,
            gate_id: gate_id.to_owned(),
            station_id: station.to_owned(),
            scan_id: scan.scan_id.clone(),
            tapped_at: scan.scanned_at,
            fare_class: profile.fare_class,
        };
        Ok(match self.transit.late_tap(tap, deadline).await? {
            Tapped::Trip(trip) => TapPassed::Trip(trip),
            Tapped::Refused(refused) => TapPassed::Refused(refused),
        })
    }

    /// Records the scan's single-use mark (step 4).
    async fn mark(
        &self,
        gate_id: &str,
        scene: Scene,
        scan: &OfflineScan,
        presented: &Presented,
        now: u64,
        deadline: Option<Deadline>,
    ) -> UploadOutcome {
        let (_, key_set_age) = self.keys.current();
        let (mark, forget_at) = Mark::of(presented, self.skew);
        let freshness = self.revocations.freshness();
        let used = Use {
            gate_id,
            scan_id: &scan.scan_id,
            fingerprint: sha256(scan.qr_text.as_bytes()),
            mark,
            forget_at: forget_at.saturating_add(self.window.as_secs()),
            answer: Some(StoredAnswer {
                uploaded: true,
                ..StoredAnswer::allow(
                    presented.kind(),
                    Basis {
                        revocation_epoch: freshness.epoch,
                        revocation_age: freshness.age,
                        key_set_age: Some(key_set_age),
                    },
                    scan.scanned_at,
                )
            }),
            arrival: Arrival::Late,
        };
        match self.replay.record(used, now, deadline).await {
            Ok(Outcome::First) => UploadOutcome::Recorded,
            // An upload retried: its tap is passed on again.
            Ok(Outcome::Retry(answer)) if answer.uploaded => UploadOutcome::AlreadyRecorded,
            // This gate's own live scan (settled, or left pending: an upload's answer is
            // written with its mark, so it is never pending): payments had it then, or
            // refused it (arrears, no link, a trip open), or never heard of it; either
            // way it is not a late tap to take now.
            Ok(Outcome::Retry(_) | Outcome::Pending) => UploadOutcome::DecidedLive,
            Ok(Outcome::ScanIdConflict) => UploadOutcome::ScanIdConflict,
            // A late use is never held to the counter order, so only a mark another
            // scan holds comes back; either way the mark was used twice.
            Ok(Outcome::Replayed | Outcome::CounterReplay) => {
                let kind = FraudKind::of(&mark);
                let signal = FraudSignal {
                    detected_at: now,
                    scanned_at: scan.scanned_at,
                    gate_id: gate_id.to_owned(),
                    scene,
                    kind,
                    mark_digest: mark_digest(&mark),
                };
                self.metrics.signal(scene, kind.name());
                if let Err(err) = self.fraud.record(signal, deadline).await {
                    tracing::warn!(error = %err, kind = kind.name(), "fraud signal not logged (counted)");
                }
                UploadOutcome::FraudSuspected(kind)
            }
            Err(err) => {
                tracing::warn!(error = %err, "replay store failed; uploaded scan left for a retry");
                UploadOutcome::Unavailable
            }
        }
    }
}
