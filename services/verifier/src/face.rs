//! The counter's face check (1:1): is the person at a hospital desk or a government
//! counter the holder of the code they show? It stops a code lent to someone else,
//! for the citizens who chose it.
//!
//! Face is never the only way (《人脸识别技术应用安全管理办法》, 2025): a holder who
//! enrolled no face, or withdrew, is answered [`FaceResult::NotEnrolled`] and the
//! counter checks the ID card; a face that does not match asks for the ID card too. The
//! check never turns an ALLOW into a DENY. Each counter scene's policy
//! ([`FacePolicy`]) says whether it takes faces at all (`off`: a gate sending one is
//! refused, so no biometric data travels where it is not used), `offered` (the result is
//! shown, nothing required) or `required` (the holder must be confirmed: by face, else
//! by ID card).
//!
//! The live face arrives as an embedding the counter's own device computed; the
//! holder's template is looked up in [`FaceTemplates`] (in memory, filled from
//! identity's feed of sealed templates: [`feed`]) and the two are compared here.
//! Neither the score nor the template leaves the verifier: the answer has a
//! [`ScoreBand`].
//!
//! The same galleries serve the 1:N face pass at gates (刷脸通行, `VerifyFace`): one
//! gallery per station or venue, holding the riders whose live `FACE_PASS` consent
//! names it ([`FaceTemplates::face_pass`]), searched with the margin rule
//! ([`FacePassSettings`]: why its threshold is above the counters'). The decision around
//! a match (liveness, revocation, single use, the scene policy) is `verify.rs`'s.

pub mod feed;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::num::NonZeroU32;

use citypass_face::{Decision, Embedding, Gallery, MatchRule, Similarity, TemplateKeys};
use citypass_runtime::config::duration;
use citypass_runtime::{Environment, Secret};
use citypass_token::{DeviceId, Scene, SubjectId};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

/// Whether a counter scene takes a face check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacePolicy {
    /// No face check; a scan carrying a face is refused (`FACE_NOT_USED_HERE`).
    #[default]
    Off,
    /// A face may be sent; its result is shown, nothing more.
    Offered,
    /// The holder must be confirmed: a match, or else the ID card.
    Required,
}

/// The `face` section: each counter scene's policy, the 1:1 rule, and where the
/// templates come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaceSettings {
    /// Hospital desks (default `off`).
    pub hospital: FacePolicy,
    /// Government service hall counters (default `off`).
    pub government: FacePolicy,
    /// Least cosine similarity of a match (default 0.5; see docs/face-models.md for how
    /// it was measured on the shipped model).
    pub threshold: f32,
    /// Width of the bands either side of the threshold (default 0.1): `medium` is
    /// [threshold, threshold + width), `low` is [threshold − width, threshold).
    pub band_width: f32,
    /// Identity's feed of sealed templates (through `subjects.identity`). Without it
    /// no template is held and every holder reads as not enrolled.
    pub feed: Option<FeedSettings>,
    /// The 1:N face pass at gates the registry marks `face_pass`.
    pub pass: FacePassSettings,
}

impl Default for FaceSettings {
    fn default() -> Self {
        FaceSettings {
            hospital: FacePolicy::Off,
            government: FacePolicy::Off,
            threshold: 0.5,
            band_width: 0.1,
            feed: None,
            pass: FacePassSettings::default(),
        }
    }
}

/// `face.pass`: the 1:N match rule, the liveness bar at unattended gates, the window in
/// which the same rider matched again at an entry (or exit) of the same place is a
/// replay, and each gate's allowance of calls.
///
/// Why the threshold is above the counters' 0.5: a 1:1 check compares with one claimed
/// template, a 1:N search with every consenting rider at the place, so its false
/// accepts grow with N. On the shipped model (docs/face-models.md) the same person
/// scores 0.66–0.72 and different people at most 0.32 (≤ 0.16 on the fixtures): 0.6
/// keeps every measured same-person pair and leaves 0.28 above the worst stranger; the
/// margin (0.1) refuses a face two riders resemble alike.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FacePassSettings {
    /// Least cosine similarity of the best match (default 0.6).
    pub threshold: f32,
    /// Least lead of the best over the second best (default 0.1).
    pub margin: f32,
    /// Least liveness score an unattended gate must report (default 0.5).
    pub liveness_threshold: f32,
    /// The same rider matched again at an entry (or exit) gate of the same station or
    /// venue within this (default `20s`) is refused as a replay: one rider, one passage.
    #[serde(deserialize_with = "duration::deserialize")]
    pub window: Duration,
    /// VerifyFace calls one gate may make per second (default 10, bursts of twice
    /// that; 1 to 1 000). A turnstile passes about one person a second, and each call
    /// searches the place's whole gallery: the allowance keeps one gate (compromised or
    /// looping) from taking a replica's cores (face review G3).
    pub per_gate_per_second: u32,
}

impl Default for FacePassSettings {
    fn default() -> Self {
        FacePassSettings {
            threshold: 0.6,
            margin: 0.1,
            liveness_threshold: 0.5,
            window: Duration::from_secs(20),
            per_gate_per_second: 10,
        }
    }
}

impl FacePassSettings {
    /// The gallery's match rule.
    pub fn rule(&self) -> MatchRule {
        MatchRule {
            threshold: self.threshold,
            margin: self.margin,
        }
    }
}

/// `face.feed`: how often identity's feed is polled, how old the galleries may get,
/// and the template keys (the same as identity's: `face_template_key…`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// Between polls (default `2s`): how long a withdrawal takes to reach the counters.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "duration::deserialize"
    )]
    pub poll_interval: Duration,
    /// Oldest galleries used (default `30s`); older, no template is used at all.
    #[serde(
        default = "default_max_age",
        deserialize_with = "duration::deserialize"
    )]
    pub max_age: Duration,
    /// Longest one page of the feed may take (default `5s`): the feed's own, not
    /// `subjects.identity`'s request timeout (300 ms), which is sized for a profile
    /// lookup on the hot path; a page of 500 sealed templates from a busy identity may
    /// take longer, and a feed that always times out leaves the galleries stale.
    #[serde(
        default = "default_feed_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub timeout: Duration,
    /// How often the galleries are rebuilt whole from the start of the feed (default
    /// `10m`, 1 minute to 24 hours), in the background and swapped in at once: whatever
    /// the incremental polls missed (a restored identity database whose new writes
    /// carried its sequence past this verifier's cursor between two polls: SECURITY.md
    /// F5) is gone after at most this long.
    #[serde(
        default = "default_rebuild_interval",
        deserialize_with = "duration::deserialize"
    )]
    pub rebuild_interval: Duration,
    /// The current template key (hex, or `dev:…` outside production).
    #[serde(default)]
    pub template_key: Option<Secret>,
    /// File holding `template_key` (a mounted Secret).
    #[serde(default)]
    pub template_key_file: Option<PathBuf>,
    /// Its id (default 1).
    #[serde(default = "default_key_id")]
    pub template_key_id: u16,
    /// Keys of earlier rotations, which open templates identity has not re-sealed yet.
    #[serde(default)]
    pub previous_template_keys: Vec<PreviousTemplateKey>,
}

/// A template key of an earlier rotation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousTemplateKey {
    pub id: u16,
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_max_age() -> Duration {
    Duration::from_secs(30)
}

fn default_feed_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_rebuild_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_key_id() -> u16 {
    1
}

impl FeedSettings {
    /// The development settings: identity's development template key.
    pub fn dev() -> Self {
        FeedSettings {
            poll_interval: default_poll_interval(),
            max_age: default_max_age(),
            timeout: default_feed_timeout(),
            rebuild_interval: default_rebuild_interval(),
            template_key: Some(Secret::new(citypass_face::template::DEV_TEMPLATE_KEY)),
            template_key_file: None,
            template_key_id: default_key_id(),
            previous_template_keys: Vec::new(),
        }
    }

    /// The template keys, read (files) and checked: production refuses a dev key.
    pub fn keys(&self, environment: Environment) -> Result<TemplateKeys, String> {
        let current = read_key(
            "face.feed.template_key",
            self.template_key.as_ref(),
            self.template_key_file.as_ref(),
            environment,
        )?;
        let mut previous = Vec::with_capacity(self.previous_template_keys.len());
        for (i, p) in self.previous_template_keys.iter().enumerate() {
            let name = format!("face.feed.previous_template_keys[{i}]");
            let key = read_key(&name, p.key.as_ref(), p.key_file.as_ref(), environment)?;
            previous.push((p.id, key));
        }
        let previous: Vec<(u16, &[u8])> = previous.iter().map(|(id, k)| (*id, k.bytes())).collect();
        TemplateKeys::new((self.template_key_id, current.bytes()), &previous)
            .map_err(|e| format!("face.feed.template_key: {e}"))
    }
}

/// A key given inline or in a file (never both), hex or `dev:…`; a dev key is refused
/// in production.
pub(crate) fn read_key(
    name: &str,
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
    environment: Environment,
) -> Result<citypass_pseudonym::Key, String> {
    let text = match (inline, file) {
        (Some(_), Some(_)) => return Err(format!("{name} and {name}_file are both set")),
        (Some(secret), None) => secret.expose().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{name}_file {}: {e}", path.display()))?,
        (None, None) => return Err(format!("{name} (or {name}_file) is required")),
    };
    let key = citypass_pseudonym::Key::parse(&text, name).map_err(|e| e.to_string())?;
    if key.is_dev() && environment == Environment::Production {
        return Err(format!("{name} is a development key in production"));
    }
    Ok(key)
}

impl FaceSettings {
    /// The policy of `scene`: `off` for every scene without a counter.
    pub fn policy(&self, scene: Scene) -> FacePolicy {
        match scene {
            Scene::Hospital => self.hospital,
            Scene::Government => self.government,
            _ => FacePolicy::Off,
        }
    }

    /// The setting that is out of range, if one is, with why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(("face.threshold", "must be between 0 and 1"));
        }
        if !(self.band_width > 0.0 && self.band_width <= 0.5) {
            return Err(("face.band_width", "must be above 0 and at most 0.5"));
        }
        let pass = &self.pass;
        if !(pass.threshold > 0.0 && pass.threshold < 1.0) {
            return Err(("face.pass.threshold", "must be between 0 and 1"));
        }
        if !(pass.margin >= 0.0 && pass.margin < 1.0) {
            return Err(("face.pass.margin", "must be at least 0 and below 1"));
        }
        if !(pass.liveness_threshold >= 0.0 && pass.liveness_threshold <= 1.0) {
            return Err(("face.pass.liveness_threshold", "must be between 0 and 1"));
        }
        if pass.window.is_zero() || pass.window > Duration::from_secs(600) {
            return Err(("face.pass.window", "must be above 0 and at most 10m"));
        }
        if !(1..=1_000).contains(&pass.per_gate_per_second) {
            return Err(("face.pass.per_gate_per_second", "must be 1 to 1000"));
        }
        if let Some(feed) = &self.feed {
            if feed.poll_interval.is_zero() || feed.poll_interval > Duration::from_secs(60) {
                return Err(("face.feed.poll_interval", "must be above 0 and at most 1m"));
            }
            if feed.max_age < feed.poll_interval || feed.max_age > Duration::from_secs(600) {
                return Err((
                    "face.feed.max_age",
                    "must be at least poll_interval and at most 10m",
                ));
            }
            if feed.timeout.is_zero() || feed.timeout > Duration::from_secs(60) {
                return Err(("face.feed.timeout", "must be above 0 and at most 1m"));
            }
            if feed.rebuild_interval < Duration::from_secs(60)
                || feed.rebuild_interval > Duration::from_secs(86_400)
            {
                return Err(("face.feed.rebuild_interval", "must be 1m to 24h"));
            }
        }
        Ok(())
    }
}

/// The result of a counter's face check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceResult {
    Match,
    NoMatch,
    /// The holder has no face enrolled for counter checks.
    NotEnrolled,
    /// The counter sent no face.
    NotPresented,
    /// The check could not be made (no holder opened; allowed fail-open).
    Unavailable,
}

/// How far the similarity is from the threshold (the score itself is not given out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreBand {
    High,
    Medium,
    Low,
    None,
}

/// What the answer carries about the face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceCheck {
    pub result: FaceResult,
    /// When compared.
    pub band: Option<ScoreBand>,
    /// The policy requires the holder confirmed and the face did not.
    pub id_card_required: bool,
}

impl FaceCheck {
    /// `f:<result>:<band|->:<0|1>`, as a settled answer stores it (so that a retry
    /// gets the first check back and never a second comparison).
    pub fn code(&self) -> String {
        let result = match self.result {
            FaceResult::Match => "m",
            FaceResult::NoMatch => "n",
            FaceResult::NotEnrolled => "e",
            FaceResult::NotPresented => "p",
            FaceResult::Unavailable => "u",
        };
        let band = match self.band {
            None => "-",
            Some(ScoreBand::High) => "h",
            Some(ScoreBand::Medium) => "m",
            Some(ScoreBand::Low) => "l",
            Some(ScoreBand::None) => "0",
        };
        format!("f:{result}:{band}:{}", u8::from(self.id_card_required))
    }

    /// Reads what [`FaceCheck::code`] wrote.
    pub fn from_code(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        if parts.next()? != "f" {
            return None;
        }
        let result = match parts.next()? {
            "m" => FaceResult::Match,
            "n" => FaceResult::NoMatch,
            "e" => FaceResult::NotEnrolled,
            "p" => FaceResult::NotPresented,
            "u" => FaceResult::Unavailable,
            _ => return None,
        };
        let band = match parts.next()? {
            "-" => None,
            "h" => Some(ScoreBand::High),
            "m" => Some(ScoreBand::Medium),
            "l" => Some(ScoreBand::Low),
            "0" => Some(ScoreBand::None),
            _ => return None,
        };
        let id_card_required = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(FaceCheck {
            result,
            band,
            id_card_required,
        })
    }
}

/// Where the holders' counter-check templates come from.
pub trait FaceTemplates: Send + Sync + 'static {
    /// The similarity of `probe` to `subject`'s template for counter checks; `None`
    /// when the subject has none (never consented, or withdrew).
    fn counter_similarity(&self, subject: &SubjectId, probe: &Embedding) -> Option<Similarity>;

    /// The 1:N search of `probe` among the riders who consented to face pass at
    /// `place` (a station or venue id), decided by `rule`; `None` when the templates
    /// may not be used (stale or never synced: the gate asks for the code).
    fn face_pass(
        &self,
        place: &str,
        probe: &Embedding,
        rule: MatchRule,
    ) -> Option<Decision<SubjectId>>;

    /// The bound device that enrolled `subject`'s face-pass template from the app.
    fn face_pass_device(&self, subject: &SubjectId) -> Option<DeviceId>;
}

/// The templates in memory: the counter-check gallery, and one face-pass gallery per
/// station or venue, filled and emptied as identity's feed reports enrolments and
/// withdrawals.
///
/// Memory: a face-pass rider has a row (512 × 4 bytes, 2 KiB) in the gallery of each
/// place their consent names, so a rider consenting at five stations costs 10 KiB; a
/// search reads one place's rows only.
#[derive(Default)]
pub struct FaceGalleries {
    counter: RwLock<Gallery<SubjectId>>,
    /// Face pass, by place.
    pass: RwLock<Places>,
    /// When fed by identity's feed: how old the galleries may get.
    feed: Option<FeedClock>,
}

/// The face-pass galleries by place, and each rider's places (to remove every row of a
/// rider who changes or withdraws).
#[derive(Default)]
struct Places {
    galleries: HashMap<String, Gallery<SubjectId>>,
    of_rider: HashMap<SubjectId, Vec<String>>,
    /// The bound device that enrolled a rider's template from the app: once it is
    /// revoked (a phone reported stolen), the template is not used.
    device_of: HashMap<SubjectId, DeviceId>,
}

impl Places {
    fn withdraw(&mut self, subject: &SubjectId) -> bool {
        self.device_of.remove(subject);
        let Some(places) = self.of_rider.remove(subject) else {
            return false;
        };
        for place in places {
            if let Some(gallery) = self.galleries.get_mut(&place) {
                gallery.remove(subject);
                if gallery.is_empty() {
                    self.galleries.remove(&place);
                }
            }
        }
        true
    }
}

/// When the feed last brought the galleries up to date.
#[derive(Debug)]
struct FeedClock {
    max_age: Duration,
    started: Instant,
    /// Milliseconds from `started` to the last complete sync; `u64::MAX`: never.
    synced_ms: AtomicU64,
}

/// Sizes and freshness only: the embeddings are biometric data.
impl std::fmt::Debug for FaceGalleries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceGalleries")
            .field("counter", &self.counter_len())
            .field("pass_places", &self.pass_read().galleries.len())
            .field("fresh", &self.fresh())
            .finish()
    }
}

impl FaceGalleries {
    /// Galleries filled by hand (tests, benches): always current.
    pub fn new() -> Self {
        Self::default()
    }

    /// Galleries filled by identity's feed: used only while the last complete sync is
    /// at most `max_age` old, and not before the first.
    pub fn fed(max_age: Duration) -> Self {
        FaceGalleries {
            counter: RwLock::default(),
            pass: RwLock::default(),
            feed: Some(FeedClock {
                max_age,
                started: Instant::now(),
                synced_ms: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// The feed brought the galleries up to date now.
    pub fn mark_synced(&self) {
        if let Some(clock) = &self.feed {
            let ms = u64::try_from(clock.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            clock.synced_ms.store(ms, Ordering::Release);
        }
    }

    /// Whether the templates may be used: always without a feed, else while the last
    /// complete sync is at most `max_age` old.
    pub fn fresh(&self) -> bool {
        let Some(clock) = &self.feed else {
            return true;
        };
        let synced = clock.synced_ms.load(Ordering::Acquire);
        if synced == u64::MAX {
            return false;
        }
        let age = clock
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(synced));
        age <= clock.max_age
    }

    /// Enrols (or replaces) `subject`'s counter-check template.
    pub fn enrol_counter(&self, subject: SubjectId, template: &Embedding) {
        self.write().insert(subject, template);
    }

    /// Removes `subject`'s counter-check template (a withdrawal); false when none.
    pub fn withdraw_counter(&self, subject: &SubjectId) -> bool {
        self.write().remove(subject)
    }

    /// Puts `subject`'s face-pass template in the gallery of each of `places` (and in
    /// no other: a changed consent moves the rows); `device`: the bound device that
    /// enrolled it from the app (none for a counter's).
    pub fn enrol_face_pass(
        &self,
        subject: SubjectId,
        places: &[String],
        template: &Embedding,
        device: Option<DeviceId>,
    ) {
        let mut pass = self.pass_write();
        pass.withdraw(&subject);
        if let Some(device) = device {
            pass.device_of.insert(subject, device);
        }
        let mut mine: Vec<String> = Vec::with_capacity(places.len());
        for place in places {
            if place.is_empty() || mine.contains(place) {
                continue;
            }
            pass.galleries
                .entry(place.clone())
                .or_default()
                .insert(subject, template);
            mine.push(place.clone());
        }
        if !mine.is_empty() {
            pass.of_rider.insert(subject, mine);
        }
    }

    /// Removes `subject`'s face-pass rows from every place (a withdrawal); false when
    /// none.
    pub fn withdraw_face_pass(&self, subject: &SubjectId) -> bool {
        self.pass_write().withdraw(subject)
    }

    /// How many face-pass rows `place`'s gallery holds.
    pub fn face_pass_len(&self, place: &str) -> usize {
        self.pass_read()
            .galleries
            .get(place)
            .map_or(0, Gallery::len)
    }

    /// Drops every template (the feed is read again from its start).
    pub fn clear(&self) {
        *self.write() = Gallery::new();
        *self.pass_write() = Places::default();
    }

    /// Replaces every template held with those of `rebuilt` (a full read of the feed),
    /// which is left empty: what the incremental polls got wrong is gone at once.
    pub fn replace_with(&self, rebuilt: &FaceGalleries) {
        let counter = std::mem::replace(&mut *rebuilt.write(), Gallery::new());
        let pass = std::mem::take(&mut *rebuilt.pass_write());
        *self.write() = counter;
        *self.pass_write() = pass;
    }

    /// How many counter-check templates are held.
    pub fn counter_len(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Gallery<SubjectId>> {
        // A panic while holding the lock cannot leave a gallery half-changed in a way
        // that matters more than refusing every face check: carry on with it.
        self.counter.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Gallery<SubjectId>> {
        self.counter.write().unwrap_or_else(|e| e.into_inner())
    }

    fn pass_read(&self) -> std::sync::RwLockReadGuard<'_, Places> {
        self.pass.read().unwrap_or_else(|e| e.into_inner())
    }

    fn pass_write(&self) -> std::sync::RwLockWriteGuard<'_, Places> {
        self.pass.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl FaceTemplates for FaceGalleries {
    fn counter_similarity(&self, subject: &SubjectId, probe: &Embedding) -> Option<Similarity> {
        if !self.fresh() {
            // A withdrawal may not have arrived: use no template at all.
            return None;
        }
        self.read().similarity_to(subject, probe)
    }

    fn face_pass(
        &self,
        place: &str,
        probe: &Embedding,
        rule: MatchRule,
    ) -> Option<Decision<SubjectId>> {
        if !self.fresh() {
            // A withdrawal may not have arrived: match nobody (the gate asks for the
            // code), never fail open.
            return None;
        }
        Some(match self.pass_read().galleries.get(place) {
            Some(gallery) => gallery.decide(probe, rule),
            None => Decision::NoMatch,
        })
    }

    fn face_pass_device(&self, subject: &SubjectId) -> Option<DeviceId> {
        self.pass_read().device_of.get(subject).copied()
    }
}

/// The counter face check: the settings and the templates (and the face pass's
/// allowance per gate).
#[derive(Clone)]
pub struct CounterFaces {
    settings: FaceSettings,
    templates: Arc<dyn FaceTemplates>,
    per_gate: Arc<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for CounterFaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterFaces")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for CounterFaces {
    /// Every counter `off`, no templates.
    fn default() -> Self {
        CounterFaces::new(FaceSettings::default(), Arc::new(FaceGalleries::new()))
    }
}

impl CounterFaces {
    pub fn new(settings: FaceSettings, templates: Arc<dyn FaceTemplates>) -> Self {
        // Validated to 1..=1000; the fallback only guards a settings value built by hand.
        let rate = NonZeroU32::new(settings.pass.per_gate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        CounterFaces {
            settings,
            templates,
            per_gate: Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// Counts one VerifyFace call of `gate` against its allowance
    /// (`face.pass.per_gate_per_second`); `false` over it.
    pub fn admit_face_pass(&self, gate: &str) -> bool {
        if self.per_gate.len() > 10_000 {
            self.per_gate.retain_recent();
        }
        self.per_gate.check_key(&gate.to_owned()).is_ok()
    }

    /// The policy of `scene`.
    pub fn policy(&self, scene: Scene) -> FacePolicy {
        self.settings.policy(scene)
    }

    /// The face-pass settings.
    pub fn pass_settings(&self) -> &FacePassSettings {
        &self.settings.pass
    }

    /// The face-pass search at `place` under the configured rule; `None` when the
    /// templates may not be used.
    pub fn face_pass(&self, place: &str, probe: &Embedding) -> Option<Decision<SubjectId>> {
        self.templates
            .face_pass(place, probe, self.settings.pass.rule())
    }

    /// The device that enrolled `subject`'s face-pass template from the app, if any.
    pub fn face_pass_device(&self, subject: &SubjectId) -> Option<DeviceId> {
        self.templates.face_pass_device(subject)
    }

    /// The check of an allowed scan at `scene` when it could not be made; `None` where
    /// the policy is `off`.
    pub fn unavailable(&self, scene: Scene) -> Option<FaceCheck> {
        let policy = self.policy(scene);
        (policy != FacePolicy::Off).then_some(FaceCheck {
            result: FaceResult::Unavailable,
            band: None,
            id_card_required: policy == FacePolicy::Required,
        })
    }

    /// The face check of an allowed scan at `scene` of `holder`, with the live face the
    /// counter sent; `None` at a scene whose policy is `off`.
    pub fn check(
        &self,
        scene: Scene,
        holder: &SubjectId,
        live: Option<&Embedding>,
    ) -> Option<FaceCheck> {
        let policy = self.policy(scene);
        if policy == FacePolicy::Off {
            return None;
        }
        let (result, band) = match live {
            None => (FaceResult::NotPresented, None),
            Some(probe) => match self.templates.counter_similarity(holder, probe) {
                None => (FaceResult::NotEnrolled, None),
                Some(score) => {
                    let result = if score.0 >= self.settings.threshold {
                        FaceResult::Match
                    } else {
                        FaceResult::NoMatch
                    };
                    (result, Some(self.band(score)))
                }
            },
        };
        Some(FaceCheck {
            result,
            band,
            id_card_required: policy == FacePolicy::Required && result != FaceResult::Match,
        })
    }

    fn band(&self, score: Similarity) -> ScoreBand {
        let FaceSettings {
            threshold,
            band_width,
            ..
        } = &self.settings;
        let (threshold, band_width) = (*threshold, *band_width);
        if score.0 >= threshold + band_width {
            ScoreBand::High
        } else if score.0 >= threshold {
            ScoreBand::Medium
        } else if score.0 >= threshold - band_width {
            ScoreBand::Low
        } else {
            ScoreBand::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_face::DIMENSION;

    /// A unit embedding pointing mostly along axis `axis`, with `other` of axis 0.
    fn face(axis: usize, other: f32) -> Embedding {
        let mut raw = vec![0.0f32; DIMENSION];
        raw[axis] = 1.0;
        raw[0] += other;
        Embedding::normalise(&raw).unwrap()
    }

    fn faces(hospital: FacePolicy, government: FacePolicy) -> (CounterFaces, Arc<FaceGalleries>) {
        let galleries = Arc::new(FaceGalleries::new());
        let settings = FaceSettings {
            hospital,
            government,
            ..FaceSettings::default()
        };
        (CounterFaces::new(settings, galleries.clone()), galleries)
    }

    fn subject() -> SubjectId {
        SubjectId::generate().unwrap()
    }

    #[test]
    fn a_match_confirms_the_holder_and_a_stranger_asks_for_the_id_card() {
        let (faces, galleries) = faces(FacePolicy::Required, FacePolicy::Offered);
        let holder = subject();
        galleries.enrol_counter(holder, &face(1, 0.0));
        let same = faces.check(Scene::Hospital, &holder, Some(&face(1, 0.3)));
        assert_eq!(
            same,
            Some(FaceCheck {
                result: FaceResult::Match,
                band: Some(ScoreBand::High),
                id_card_required: false
            })
        );
        let stranger = faces.check(Scene::Hospital, &holder, Some(&face(2, 0.0)));
        assert_eq!(
            stranger,
            Some(FaceCheck {
                result: FaceResult::NoMatch,
                band: Some(ScoreBand::None),
                id_card_required: true
            })
        );
        // Offered: the result is shown, the ID card is not asked for.
        let offered = faces.check(Scene::Government, &holder, Some(&face(2, 0.0)));
        assert_eq!(offered.map(|c| c.id_card_required), Some(false));
    }

    #[test]
    fn declining_face_falls_back_to_the_id_card_never_to_a_refusal() {
        let (faces, galleries) = faces(FacePolicy::Required, FacePolicy::Required);
        let holder = subject();
        let not_enrolled = faces.check(Scene::Hospital, &holder, Some(&face(1, 0.0)));
        assert_eq!(
            not_enrolled,
            Some(FaceCheck {
                result: FaceResult::NotEnrolled,
                band: None,
                id_card_required: true
            })
        );
        galleries.enrol_counter(holder, &face(1, 0.0));
        assert!(galleries.withdraw_counter(&holder));
        let withdrawn = faces.check(Scene::Government, &holder, Some(&face(1, 0.0)));
        assert_eq!(withdrawn.map(|c| c.result), Some(FaceResult::NotEnrolled));
        let none = faces.check(Scene::Government, &holder, None);
        assert_eq!(
            none,
            Some(FaceCheck {
                result: FaceResult::NotPresented,
                band: None,
                id_card_required: true
            })
        );
    }

    #[test]
    fn a_stored_check_reads_back_and_junk_is_refused() {
        let results = [
            FaceResult::Match,
            FaceResult::NoMatch,
            FaceResult::NotEnrolled,
            FaceResult::NotPresented,
            FaceResult::Unavailable,
        ];
        let bands = [
            None,
            Some(ScoreBand::High),
            Some(ScoreBand::Medium),
            Some(ScoreBand::Low),
            Some(ScoreBand::None),
        ];
        for result in results {
            for band in bands {
                for id_card_required in [false, true] {
                    let check = FaceCheck {
                        result,
                        band,
                        id_card_required,
                    };
                    assert_eq!(FaceCheck::from_code(&check.code()), Some(check));
                }
            }
        }
        for junk in [
            "",
            "f",
            "f:m:h",
            "f:x:h:0",
            "f:m:x:0",
            "f:m:h:2",
            "f:m:h:0:1",
            "g:m:h:0",
        ] {
            assert_eq!(FaceCheck::from_code(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_check_that_cannot_be_made_still_asks_for_the_id_card_where_required() {
        let (faces, _) = faces(FacePolicy::Required, FacePolicy::Offered);
        let check = |result, id_card_required| {
            Some(FaceCheck {
                result,
                band: None,
                id_card_required,
            })
        };
        assert_eq!(
            faces.unavailable(Scene::Hospital),
            check(FaceResult::Unavailable, true)
        );
        assert_eq!(
            faces.unavailable(Scene::Government),
            check(FaceResult::Unavailable, false)
        );
        assert_eq!(faces.unavailable(Scene::Metro), None);
    }

    #[test]
    fn face_pass_rows_follow_the_consented_places() {
        let galleries = FaceGalleries::new();
        let rule = FacePassSettings::default().rule();
        let rider = subject();
        let places = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        galleries.enrol_face_pass(rider, &places(&["a", "b", "a"]), &face(1, 0.0), None);
        assert_eq!(galleries.face_pass_len("a"), 1);
        assert_eq!(galleries.face_pass_len("b"), 1);
        assert!(matches!(
            galleries.face_pass("a", &face(1, 0.1), rule),
            Some(Decision::Match(c)) if c.key == rider
        ));
        assert_eq!(
            galleries.face_pass("c", &face(1, 0.1), rule),
            Some(Decision::NoMatch)
        );
        // A changed consent moves the rows: gone from `a`, now at `c`.
        galleries.enrol_face_pass(rider, &places(&["b", "c"]), &face(1, 0.0), None);
        assert_eq!(galleries.face_pass_len("a"), 0);
        assert_eq!(galleries.face_pass_len("c"), 1);
        assert!(galleries.withdraw_face_pass(&rider));
        assert!(!galleries.withdraw_face_pass(&rider));
        assert_eq!(
            galleries.face_pass_len("b") + galleries.face_pass_len("c"),
            0
        );
        // Stale fed galleries match nobody.
        let fed = FaceGalleries::fed(Duration::from_secs(600));
        fed.enrol_face_pass(rider, &places(&["a"]), &face(1, 0.0), None);
        assert_eq!(fed.face_pass("a", &face(1, 0.0), rule), None);
        fed.mark_synced();
        assert!(fed.face_pass("a", &face(1, 0.0), rule).is_some());
    }

    #[test]
    fn galleries_debug_shows_no_embedding() {
        let galleries = FaceGalleries::new();
        galleries.enrol_counter(subject(), &face(1, 0.0));
        assert_eq!(
            format!("{galleries:?}"),
            "FaceGalleries { counter: 1, pass_places: 0, fresh: true }"
        );
    }

    #[test]
    fn bands_lie_either_side_of_the_threshold() {
        let (faces, _) = faces(FacePolicy::Offered, FacePolicy::Off);
        let at = |s: f32| faces.band(Similarity(s));
        assert_eq!(at(0.65), ScoreBand::High);
        assert_eq!(at(0.55), ScoreBand::Medium);
        assert_eq!(at(0.45), ScoreBand::Low);
        assert_eq!(at(0.2), ScoreBand::None);
    }

    #[test]
    fn scenes_without_a_counter_and_off_policies_check_nothing() {
        let (faces, galleries) = faces(FacePolicy::Offered, FacePolicy::Off);
        let holder = subject();
        galleries.enrol_counter(holder, &face(1, 0.0));
        for scene in [Scene::Metro, Scene::Bus, Scene::Scenic, Scene::Government] {
            assert_eq!(faces.check(scene, &holder, Some(&face(1, 0.0))), None);
            assert_eq!(faces.policy(scene), FacePolicy::Off);
        }
    }

    #[test]
    fn fed_galleries_are_used_only_while_fresh() {
        // A max age no busy machine outruns between the sync and the check.
        let galleries = FaceGalleries::fed(Duration::from_secs(600));
        let holder = subject();
        galleries.enrol_counter(holder, &face(1, 0.0));
        assert_eq!(
            galleries.counter_similarity(&holder, &face(1, 0.0)),
            None,
            "not before the first sync"
        );
        galleries.mark_synced();
        assert!(
            galleries
                .counter_similarity(&holder, &face(1, 0.0))
                .is_some()
        );
        // Galleries that age fast: wait for the condition, with a generous deadline.
        let ageing = FaceGalleries::fed(Duration::from_millis(50));
        ageing.enrol_counter(holder, &face(1, 0.0));
        ageing.mark_synced();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ageing.fresh() {
            assert!(Instant::now() < deadline, "the galleries never aged");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(ageing.counter_similarity(&holder, &face(1, 0.0)), None);
        assert!(FaceGalleries::new().fresh());
    }

    #[test]
    fn template_keys_come_inline_or_from_a_file_and_dev_keys_stay_out_of_production() {
        let dev = FeedSettings::dev();
        assert!(dev.keys(Environment::Dev).is_ok());
        let err = dev.keys(Environment::Production).unwrap_err();
        assert!(err.contains("development key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("template.key");
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        let from_file = FeedSettings {
            template_key: None,
            template_key_file: Some(path.clone()),
            ..FeedSettings::dev()
        };
        assert_eq!(
            from_file
                .keys(Environment::Production)
                .unwrap()
                .current_id(),
            1
        );
        let both = FeedSettings {
            template_key_file: Some(path),
            ..FeedSettings::dev()
        };
        assert!(
            both.keys(Environment::Dev)
                .unwrap_err()
                .contains("both set")
        );
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let bad = FaceSettings {
            threshold: 1.5,
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.threshold");
        let bad = FaceSettings {
            band_width: 0.0,
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.band_width");
        assert!(FaceSettings::default().check().is_ok());
        let bad = FaceSettings {
            feed: Some(FeedSettings {
                max_age: Duration::from_millis(500),
                ..FeedSettings::dev()
            }),
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.feed.max_age");
        let bad = FaceSettings {
            feed: Some(FeedSettings {
                timeout: Duration::ZERO,
                ..FeedSettings::dev()
            }),
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.feed.timeout");
        let bad = FaceSettings {
            feed: Some(FeedSettings {
                rebuild_interval: Duration::from_secs(1),
                ..FeedSettings::dev()
            }),
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.feed.rebuild_interval");
        let bad = FaceSettings {
            pass: FacePassSettings {
                margin: -0.1,
                ..FacePassSettings::default()
            },
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.pass.margin");
        let bad = FaceSettings {
            pass: FacePassSettings {
                window: Duration::ZERO,
                ..FacePassSettings::default()
            },
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.pass.window");
        let bad = FaceSettings {
            pass: FacePassSettings {
                per_gate_per_second: 0,
                ..FacePassSettings::default()
            },
            ..FaceSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "face.pass.per_gate_per_second");
    }

    /// SECURITY.md F5: a rebuild from the start of the feed replaces whatever the
    /// incremental polls held, a rider they missed the withdrawal of included.
    #[test]
    fn a_rebuild_replaces_every_template_held() {
        let live = FaceGalleries::new();
        let stale = SubjectId::from_bytes([1; 16]);
        let kept = SubjectId::from_bytes([2; 16]);
        live.enrol_counter(stale, &Embedding::sample(1));
        live.enrol_face_pass(
            stale,
            &["station:A".to_owned()],
            &Embedding::sample(1),
            None,
        );
        let rebuilt = FaceGalleries::new();
        rebuilt.enrol_face_pass(kept, &["station:B".to_owned()], &Embedding::sample(2), None);
        live.replace_with(&rebuilt);
        assert_eq!(live.counter_len(), 0, "the missed withdrawal is gone");
        assert_eq!(live.face_pass_len("station:A"), 0);
        assert_eq!(live.face_pass_len("station:B"), 1);
        assert_eq!(rebuilt.face_pass_len("station:B"), 0, "moved, not copied");
    }

    /// Face review G3: each VerifyFace searches a whole gallery, so a gate has an
    /// allowance of its own (bursts of twice the rate), and one gate over it does not
    /// spend another's.
    #[test]
    fn each_gate_has_its_own_face_pass_allowance() {
        let faces = CounterFaces::new(
            FaceSettings {
                pass: FacePassSettings {
                    per_gate_per_second: 1,
                    ..FacePassSettings::default()
                },
                ..FaceSettings::default()
            },
            Arc::new(FaceGalleries::new()),
        );
        assert!(faces.admit_face_pass("gate-a"));
        assert!(faces.admit_face_pass("gate-a"));
        assert!(!faces.admit_face_pass("gate-a"), "over the burst of 2");
        assert!(
            faces.admit_face_pass("gate-b"),
            "another gate's allowance is its own"
        );
    }
}
