//! Scene policies: what a scene asks of a code's holder after every other check and
//! the single-use reservation, configured per scene (`scenes.*`).
//!
//! Each scene has a file of its own (`scene/hospital.rs`, `scene/scenic.rs`,
//! `scene/government.rs`, with the holder check hospital desks and government counters
//! share in `scene/holder_check.rs`, and `scene/transit.rs` for metro and bus); this
//! module holds what they share: the settings (`fail: closed|open`, `deadline`), the
//! context a policy decides in, and its verdict. The context carries the subject the
//! verifier's holder step opened: policies never unseal a code again (one unseal per
//! scan). A
//! policy runs after the mark is reserved (`replay.rs`: reserve, run the policy,
//! settle), so its effects (a venue's count) are keyed by the gate's scan and a retry
//! takes none twice.
//!
//! A policy's dependencies (identity through `Subjects`, the venue counts in Redis,
//! payments through `TransitTaps`) are
//! bounded by the earlier of the gate's deadline and the scene's `deadline`. When one
//! does not answer in time the verdict is [`Verdict::Unavailable`], and the scene's
//! [`FailMode`] decides: `closed` refuses (`SERVICE_UNAVAILABLE`, not settled, so the
//! gate's retry tries again), `open` allows, marked `fail_open` (the revocation data is
//! within its max age: staler data refuses every code before this step).

mod government;
mod holder_check;
mod hospital;
mod scenic;
mod transit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use citypass_face::Embedding;
use citypass_gate::Presented;
use citypass_runtime::Deadline;
use citypass_runtime::config::duration;
use citypass_token::{Scene, SubjectId};
use serde::Deserialize;

use crate::gates::Gate;
use crate::model::{Direction, PolicyRefusal, SceneFacts, SceneResult};
use crate::stand_in_transit::UnavailableTaps;
use crate::subjects::{Subjects, SubjectsError};
use crate::transit::{TransitError, TransitTaps, Trip};
use crate::venues::VenueStore;

pub use scenic::{UtcOffset, VenueSettings};

/// What a scene does when a dependency does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Refuse (`SERVICE_UNAVAILABLE`): the default.
    #[default]
    Closed,
    /// Allow, marked `fail_open` and counted (`citypass.verifier.fail_open`).
    Open,
}

/// One scene's policy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneSettings {
    /// `closed` (default) or `open`.
    pub fail: FailMode,
    /// Longest the policy's dependencies may take (default `300ms`), within the gate's
    /// own deadline.
    #[serde(deserialize_with = "duration::deserialize")]
    pub deadline: Duration,
}

impl Default for SceneSettings {
    fn default() -> Self {
        SceneSettings {
            fail: FailMode::Closed,
            deadline: Duration::from_millis(300),
        }
    }
}

/// The scenic scene's settings: the policy's, and each venue's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScenicSettings {
    /// `closed` (default) or `open`.
    pub fail: FailMode,
    /// As [`SceneSettings::deadline`].
    #[serde(deserialize_with = "duration::deserialize")]
    pub deadline: Duration,
    /// Venues by the gate registry's `venue`.
    pub venues: HashMap<String, VenueSettings>,
    /// For a venue not listed.
    pub default_venue: VenueSettings,
}

impl Default for ScenicSettings {
    fn default() -> Self {
        ScenicSettings {
            fail: FailMode::Closed,
            deadline: SceneSettings::default().deadline,
            venues: HashMap::new(),
            default_venue: VenueSettings::default(),
        }
    }
}

impl ScenicSettings {
    /// The settings of `venue`.
    pub fn venue(&self, venue: &str) -> &VenueSettings {
        self.venues.get(venue).unwrap_or(&self.default_venue)
    }
}

/// Every scene's policy settings (`scenes` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScenesConfig {
    /// Metro gates (the transit policy: payments' TapIn and TapOut).
    pub metro: SceneSettings,
    /// Bus readers (the transit policy: payments' TapIn).
    pub bus: SceneSettings,
    /// Hospital desks.
    pub hospital: SceneSettings,
    /// Scenic spots, museums, parks.
    pub scenic: ScenicSettings,
    /// Government service hall counters.
    pub government: SceneSettings,
}

impl ScenesConfig {
    /// The fail mode and deadline of `scene`.
    pub fn settings(&self, scene: Scene) -> SceneSettings {
        match scene {
            Scene::Metro => self.metro,
            Scene::Bus => self.bus,
            Scene::Hospital => self.hospital,
            Scene::Scenic => SceneSettings {
                fail: self.scenic.fail,
                deadline: self.scenic.deadline,
            },
            Scene::Government => self.government,
        }
    }

    /// The first setting out of its limits, as (key, problem).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let limit = Duration::from_secs(10);
        for (key, settings) in [
            ("scenes.metro.deadline", self.metro),
            ("scenes.bus.deadline", self.bus),
            ("scenes.hospital.deadline", self.hospital),
            ("scenes.scenic.deadline", self.settings(Scene::Scenic)),
            ("scenes.government.deadline", self.government),
        ] {
            if settings.deadline.is_zero() || settings.deadline > limit {
                return Err((key, "must be more than 0 and at most 10s"));
            }
        }
        for venue in self
            .scenic
            .venues
            .values()
            .chain([&self.scenic.default_venue])
        {
            venue.check()?;
        }
        Ok(())
    }
}

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Open, with the scene's result (`None`: a scene without one).
    Allow(Option<SceneResult>),
    /// The policy refuses the holder (settled: the retry gets the same).
    Refuse(PolicyRefusal),
    /// A dependency did not answer in time: the scene's fail mode decides.
    Unavailable,
}

impl From<SubjectsError> for Verdict {
    fn from(err: SubjectsError) -> Self {
        match err {
            SubjectsError::Unsealable(_) => Verdict::Refuse(PolicyRefusal::UnsealFailed),
            SubjectsError::UnknownSubject => Verdict::Refuse(PolicyRefusal::UnknownSubject),
            SubjectsError::Unavailable => Verdict::Unavailable,
        }
    }
}

/// Why a gate's void of its tap did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidFailure {
    /// The code's holder could not be read.
    Holder(SubjectsError),
    /// Payments refused the void or did not answer.
    Transit(TransitError),
}

/// One scan as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The gate (from the registry).
    pub gate: &'a Gate,
    /// The gate's id (authenticated).
    pub gate_id: &'a str,
    /// The gate's scan id (a policy's effects are keyed by gate and scan id).
    pub scan_id: &'a str,
    /// Metro only: the way the rider goes (the gate's, or the request's at a two-way
    /// gate).
    pub direction: Option<Direction>,
    /// The holder as the holder step found them (a code: CP1 its `sub`, CP2 its
    /// certificate's; a face: the matched rider); `None` when the verifier has no
    /// holder source configured (dev), and then a policy that needs the holder is
    /// [`Verdict::Unavailable`]. Policies see the holder, never what was presented.
    pub subject: Option<SubjectId>,
    /// Counter scenes: the face at the counter (see [`crate::face`]).
    pub live_face: Option<&'a Embedding>,
    /// The verifier's clock (Unix seconds).
    pub now: u64,
    /// The earlier of the gate's deadline and the scene's.
    pub deadline: Deadline,
}

impl Context<'_> {
    /// The holder the holder step opened, or the verdict of a verifier without one:
    /// unavailable (the scene's fail mode decides), as when identity does not answer.
    pub(crate) fn holder(&self) -> Result<SubjectId, Verdict> {
        self.subject.ok_or(Verdict::Unavailable)
    }
}

/// The policies, with their sources.
pub struct Policies {
    config: ScenesConfig,
    subjects: Arc<dyn Subjects>,
    venues: Arc<dyn VenueStore>,
    transit: Arc<dyn TransitTaps>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Policies configured by `config`, deciding with these sources; transit taps
    /// are unavailable until [`Policies::with_transit`].
    pub fn new(
        config: ScenesConfig,
        subjects: Arc<dyn Subjects>,
        venues: Arc<dyn VenueStore>,
    ) -> Self {
        Policies {
            config,
            subjects,
            venues,
            transit: Arc::new(UnavailableTaps),
        }
    }

    /// Metro and bus taps go to `transit` (payments).
    pub fn with_transit(mut self, transit: Arc<dyn TransitTaps>) -> Self {
        self.transit = transit;
        self
    }

    /// The transit taps (for the gate's void).
    pub fn transit(&self) -> &Arc<dyn TransitTaps> {
        &self.transit
    }

    /// The fail mode and deadline of `scene`.
    pub fn settings(&self, scene: Scene) -> SceneSettings {
        self.config.settings(scene)
    }

    /// Whether `scene` has a policy (else its answer is written with the mark in one
    /// step).
    pub fn has_policy(scene: Scene) -> bool {
        matches!(
            scene,
            Scene::Hospital | Scene::Scenic | Scene::Government | Scene::Metro | Scene::Bus
        )
    }

    /// The earlier of `gate_deadline` and `scene`'s deadline from now.
    pub fn deadline(&self, scene: Scene, gate_deadline: Option<Deadline>) -> Deadline {
        let own = Deadline::after(self.settings(scene).deadline);
        match gate_deadline {
            Some(gate) if gate.instant() < own.instant() => gate,
            _ => own,
        }
    }

    /// Runs the policy of the gate's scene, bounded by `ctx.deadline`.
    pub async fn decide(&self, ctx: Context<'_>) -> Verdict {
        let work = async {
            match ctx.gate.scene {
                Scene::Hospital => hospital::decide(self.subjects.as_ref(), &ctx).await,
                Scene::Scenic => {
                    scenic::decide(
                        self.subjects.as_ref(),
                        self.venues.as_ref(),
                        &self.config.scenic,
                        &ctx,
                    )
                    .await
                }
                Scene::Government => government::decide(self.subjects.as_ref(), &ctx).await,
                Scene::Metro | Scene::Bus => {
                    transit::decide(self.subjects.as_ref(), self.transit.as_ref(), &ctx).await
                }
            }
        };
        ctx.deadline.run(work).await.unwrap_or(Verdict::Unavailable)
    }

    /// Voids gate `gate_id`'s tap `scan_id` for `presented`'s holder (the transit
    /// scene's), bounded by `deadline`.
    pub async fn void_tap(
        &self,
        presented: &Presented,
        gate_id: &str,
        scan_id: &str,
        now: u64,
        deadline: Deadline,
    ) -> Result<Trip, VoidFailure> {
        let work = transit::void(
            self.subjects.as_ref(),
            self.transit.as_ref(),
            presented,
            gate_id,
            scan_id,
            now,
            deadline,
        );
        deadline
            .run(work)
            .await
            .unwrap_or(Err(VoidFailure::Transit(TransitError::Unavailable)))
    }

    /// The scene result a retry gets: the stored `facts`, with the pseudonyms, name
    /// and account derived again from the code (none of them is stored). `None` when
    /// the holder cannot be established now (the gate still gets the stored decision).
    pub async fn complete(&self, facts: &SceneFacts, ctx: Context<'_>) -> Option<SceneResult> {
        let work = async {
            match facts {
                SceneFacts::Hospital {
                    medical_insurance_linked,
                } => hospital::complete(self.subjects.as_ref(), &ctx, *medical_insurance_linked),
                SceneFacts::Scenic {
                    entries_today,
                    remaining_capacity,
                } => scenic::complete(
                    self.subjects.as_ref(),
                    &ctx,
                    *entries_today,
                    *remaining_capacity,
                ),
                SceneFacts::Government { .. } => {
                    government::complete(self.subjects.as_ref(), &ctx).await
                }
                SceneFacts::Transit { .. } => {
                    transit::complete(self.subjects.as_ref(), &ctx, facts).await
                }
            }
        };
        ctx.deadline.run(work).await.ok().flatten()
    }
}
