//! The API's `Scene` numbers and the code format's [`Scene`]: one mapping for every
//! service (the issuer grants scenes, the verifier checks them).

use citypass_token::{Scene, Scopes};

use crate::v1 as pb;

/// The token crate's scene for an API `Scene` value; `None` for UNSPECIFIED and values
/// this build does not know.
pub fn from_api(value: i32) -> Option<Scene> {
    match pb::Scene::try_from(value).ok()? {
        pb::Scene::Metro => Some(Scene::Metro),
        pb::Scene::Bus => Some(Scene::Bus),
        pb::Scene::Hospital => Some(Scene::Hospital),
        pb::Scene::Scenic => Some(Scene::Scenic),
        pb::Scene::Government => Some(Scene::Government),
        pb::Scene::Unspecified => None,
    }
}

/// The API `Scene` value of a scene.
pub fn to_api(scene: Scene) -> i32 {
    let api = match scene {
        Scene::Metro => pb::Scene::Metro,
        Scene::Bus => pb::Scene::Bus,
        Scene::Hospital => pb::Scene::Hospital,
        Scene::Scenic => pb::Scene::Scenic,
        Scene::Government => pb::Scene::Government,
    };
    api as i32
}

/// The API values of the scenes in `scopes`, in bit order.
pub fn scopes_to_api(scopes: Scopes) -> Vec<i32> {
    scopes.scenes().map(to_api).collect()
}

/// The scenes named by API values, or `None` when none is named (meaning "every scene
/// allowed"). Values this build does not know are dropped: naming only those names
/// nothing, which grants nothing.
pub fn requested_scopes(values: &[i32]) -> Option<Scopes> {
    (!values.is_empty()).then(|| values.iter().filter_map(|&s| from_api(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_values_round_trip() {
        for scene in Scene::ALL {
            assert_eq!(from_api(to_api(scene)), Some(scene));
        }
        assert_eq!(scopes_to_api(Scopes::all()), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn unknown_and_unspecified_values_are_dropped() {
        assert_eq!(requested_scopes(&[]), None);
        assert_eq!(
            requested_scopes(&[0, 99, pb::Scene::Bus as i32]),
            Some(Scopes::NONE.with(Scene::Bus))
        );
        assert_eq!(requested_scopes(&[99]), Some(Scopes::NONE));
    }
}
