//! Which scenes a subject's codes may open, decided from the subject's attributes.
//!
//! A code's scopes are what gates check first, so they must follow the subject's
//! standing, not the app's wishes: the app may ask for fewer scenes (a smaller code
//! that discloses less), never for more. [`Policy::grant`] therefore intersects the
//! request with what the attributes allow and never widens it. Scenes the issuer does
//! not know (a newer app) are dropped, like any scene not allowed.
//!
//! The rules: transit (metro, bus) and scenic spots for every ACTIVE subject; the
//! hospital and government service hall scenes only from a configured assurance level
//! up (real-name verified by default), since a hospital desk or a service counter
//! relies on the code for who stands there. The government scene is granted only when
//! the app asks for it ([`ON_REQUEST_ONLY`]): a code that tells a counter who its
//! holder is must be one the citizen chose to show there. Fares,
//! arrears and venue capacity are the verifier's business at the gate, not the
//! issuer's: a rider whose charge is declined during a ride must still leave through
//! the exit gate, which a code without the metro scope would not open, and the entry
//! gate refuses `ARREARS` anyway (payments' TapIn).

use citypass_proto::v1::{AssuranceLevel, Attributes, SubjectStatus};
use citypass_token::{Scene, Scopes};
use serde::Deserialize;

/// A least assurance level, as written in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinAssurance {
    /// Anything the citizen typed.
    SelfAsserted,
    /// A well-formed document number.
    DocumentChecked,
    /// Confirmed by the national real-name check.
    RealNameVerified,
    /// Checked in person at a counter.
    InPerson,
}

impl MinAssurance {
    /// The API's level for this setting.
    pub fn level(self) -> AssuranceLevel {
        match self {
            MinAssurance::SelfAsserted => AssuranceLevel::SelfAsserted,
            MinAssurance::DocumentChecked => AssuranceLevel::DocumentChecked,
            MinAssurance::RealNameVerified => AssuranceLevel::RealNameVerified,
            MinAssurance::InPerson => AssuranceLevel::InPerson,
        }
    }
}

/// Scenes granted only when the request names them, never by default.
pub const ON_REQUEST_ONLY: [Scene; 1] = [Scene::Government];

/// The scene rules (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    hospital_min_assurance: AssuranceLevel,
}

impl Policy {
    /// Rules with the hospital scene from `hospital_min_assurance` up.
    pub fn new(hospital_min_assurance: MinAssurance) -> Self {
        Policy {
            hospital_min_assurance: hospital_min_assurance.level(),
        }
    }

    /// Every scene a subject in `status` with `attributes` may get codes for. Nothing
    /// unless the subject is ACTIVE.
    pub fn allowed(&self, status: SubjectStatus, attributes: &Attributes) -> Scopes {
        if status != SubjectStatus::Active {
            return Scopes::NONE;
        }
        let mut scopes = Scopes::NONE
            .with(Scene::Metro)
            .with(Scene::Bus)
            .with(Scene::Scenic);
        // Assurance levels are ordered by number (common.proto); a newer, stronger
        // level than this build knows still compares correctly.
        if attributes.assurance_level >= self.hospital_min_assurance as i32 {
            scopes = scopes.with(Scene::Hospital).with(Scene::Government);
        }
        scopes
    }

    /// What to grant for `requested`: all that is allowed when the request names no
    /// scene (`None`), else the allowed part of the request.
    pub fn grant(
        &self,
        status: SubjectStatus,
        attributes: &Attributes,
        requested: Option<Scopes>,
    ) -> Scopes {
        let allowed = self.allowed(status, attributes);
        match requested {
            None => allowed
                .scenes()
                .filter(|scene| !ON_REQUEST_ONLY.contains(scene))
                .collect(),
            Some(wanted) => Scopes::from_bits(wanted.bits() & allowed.bits()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(level: AssuranceLevel) -> Attributes {
        Attributes {
            assurance_level: level as i32,
            ..Attributes::default()
        }
    }

    #[test]
    fn hospital_needs_the_configured_assurance() {
        let policy = Policy::new(MinAssurance::RealNameVerified);
        let active = SubjectStatus::Active;
        let low = policy.allowed(active, &attributes(AssuranceLevel::DocumentChecked));
        assert!(!low.contains(Scene::Hospital));
        assert!(
            low.contains(Scene::Metro) && low.contains(Scene::Bus) && low.contains(Scene::Scenic)
        );
        for level in [AssuranceLevel::RealNameVerified, AssuranceLevel::InPerson] {
            assert_eq!(policy.allowed(active, &attributes(level)), Scopes::all());
        }
        let strict = Policy::new(MinAssurance::InPerson);
        assert!(
            !strict
                .allowed(active, &attributes(AssuranceLevel::RealNameVerified))
                .contains(Scene::Hospital)
        );
    }

    #[test]
    fn the_government_scene_is_granted_only_when_asked_for() {
        let policy = Policy::new(MinAssurance::RealNameVerified);
        let active = SubjectStatus::Active;
        let verified = attributes(AssuranceLevel::RealNameVerified);
        let default = policy.grant(active, &verified, None);
        assert!(!default.contains(Scene::Government));
        assert!(default.contains(Scene::Hospital) && default.contains(Scene::Metro));
        let asked = Scopes::NONE.with(Scene::Government);
        assert_eq!(policy.grant(active, &verified, Some(asked)), asked);
        let weak = attributes(AssuranceLevel::DocumentChecked);
        assert_eq!(
            policy.grant(active, &weak, Some(asked)),
            Scopes::NONE,
            "real-name assurance is required"
        );
    }

    #[test]
    fn only_active_subjects_get_scenes() {
        let policy = Policy::new(MinAssurance::SelfAsserted);
        for status in [
            SubjectStatus::Pending,
            SubjectStatus::Suspended,
            SubjectStatus::Rejected,
            SubjectStatus::Unspecified,
        ] {
            assert_eq!(
                policy.allowed(status, &attributes(AssuranceLevel::InPerson)),
                Scopes::NONE
            );
        }
    }

    #[test]
    fn requests_are_intersected_never_widened() {
        let policy = Policy::new(MinAssurance::RealNameVerified);
        let low = attributes(AssuranceLevel::SelfAsserted);
        let active = SubjectStatus::Active;
        let granted = policy.grant(
            active,
            &low,
            Some(Scopes::NONE.with(Scene::Hospital).with(Scene::Metro)),
        );
        assert_eq!(granted, Scopes::NONE.with(Scene::Metro));
        // Nothing requested: everything allowed.
        assert_eq!(
            policy.grant(active, &low, None),
            policy.allowed(active, &low)
        );
        assert_eq!(
            policy.grant(active, &low, Some(Scopes::NONE.with(Scene::Hospital))),
            Scopes::NONE
        );
        assert_eq!(policy.grant(active, &low, Some(Scopes::NONE)), Scopes::NONE);
    }
}
