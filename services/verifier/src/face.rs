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
//! identity's feed of sealed templates) and the two are compared here. Neither the
//! score nor the template leaves the verifier: the answer has a [`ScoreBand`].

use std::sync::{Arc, RwLock};

use citypass_face::{Embedding, Gallery, Similarity};
use citypass_token::{Scene, SubjectId};
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

/// The `face` section: each counter scene's policy and the 1:1 rule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
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
}

impl Default for FaceSettings {
    fn default() -> Self {
        FaceSettings {
            hospital: FacePolicy::Off,
            government: FacePolicy::Off,
            threshold: 0.5,
            band_width: 0.1,
        }
    }
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

/// Where the holders' counter-check templates come from.
pub trait FaceTemplates: Send + Sync + 'static {
    /// The similarity of `probe` to `subject`'s template for counter checks; `None`
    /// when the subject has none (never consented, or withdrew).
    fn counter_similarity(&self, subject: &SubjectId, probe: &Embedding) -> Option<Similarity>;
}

/// The templates in memory: the counter-check gallery, filled and emptied as identity's
/// feed reports enrolments and withdrawals.
#[derive(Debug, Default)]
pub struct FaceGalleries {
    counter: RwLock<Gallery<SubjectId>>,
}

impl FaceGalleries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enrols (or replaces) `subject`'s counter-check template.
    pub fn enrol_counter(&self, subject: SubjectId, template: &Embedding) {
        self.write().insert(subject, template);
    }

    /// Removes `subject`'s counter-check template (a withdrawal); false when none.
    pub fn withdraw_counter(&self, subject: &SubjectId) -> bool {
        self.write().remove(subject)
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
}

impl FaceTemplates for FaceGalleries {
    fn counter_similarity(&self, subject: &SubjectId, probe: &Embedding) -> Option<Similarity> {
        self.read().similarity_to(subject, probe)
    }
}

/// The counter face check: the settings and the templates.
#[derive(Clone)]
pub struct CounterFaces {
    settings: FaceSettings,
    templates: Arc<dyn FaceTemplates>,
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
        CounterFaces {
            settings,
            templates,
        }
    }

    /// The policy of `scene`.
    pub fn policy(&self, scene: Scene) -> FacePolicy {
        self.settings.policy(scene)
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
        } = self.settings;
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
    }
}
