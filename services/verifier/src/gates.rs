//! The gate registry: which gates exist, and where each stands.
//!
//! A YAML file (a ConfigMap in Kubernetes; `gates.example.yaml` shows the format) maps
//! a gate id, the name in its certificate (`spiffe://citypass/gate/<id>`), to its
//! scene, its direction (metro), its station or stop, its venue, hospital or service
//! hall, and its operator. The file is followed with the runtime's key-file loader
//! (`citypass_runtime::FollowedKeyFile`: polled by content hash, read off the async
//! workers): a changed file that loads replaces the registry at once; one that does not
//! load keeps the registry in force (logged), and is tried again at the next poll.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use citypass_proto::face_place;
use citypass_runtime::key_file::{FollowedKeyFile, KeyFileError, KeyFormat};
use citypass_runtime::{Environment, caller::valid_name};
use citypass_token::Scene;
use serde::Deserialize;

/// Which way a metro gate lets people through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateDirection {
    /// Into the paid area.
    Entry,
    /// Out of the paid area.
    Exit,
    /// Either; each request says which.
    Both,
}

/// One gate, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// The scene the gate serves (`metro`, `bus`, `hospital`, `scenic`, `government`).
    #[serde(deserialize_with = "scene")]
    pub scene: Scene,
    /// Metro only: which way it lets people through.
    #[serde(default)]
    pub direction: Option<GateDirection>,
    /// Metro station.
    #[serde(default)]
    pub station: Option<String>,
    /// Bus stop or route.
    #[serde(default)]
    pub stop: Option<String>,
    /// Scenic spot, museum or park.
    #[serde(default)]
    pub venue: Option<String>,
    /// Hospital.
    #[serde(default)]
    pub hospital: Option<String>,
    /// Government service hall.
    #[serde(default)]
    pub hall: Option<String>,
    /// Who runs the gate.
    #[serde(default)]
    pub operator: Option<String>,
    /// The gate offers face pass (刷脸通行, VerifyFace): metro and scenic gates only,
    /// matched against the riders who consented to face pass at its station or venue.
    #[serde(default)]
    pub face_pass: bool,
    /// Staff stand at the gate (default false). An unattended face-pass gate must send
    /// its liveness check with each face.
    #[serde(default)]
    pub attended: bool,
}

impl Gate {
    /// The place a face-pass gate matches faces for, as FACE_PASS consents name it
    /// (`citypass_proto::face_place`): `station:<id>` (metro) or `venue:<id>` (scenic);
    /// `None` where the gate offers no face pass.
    pub fn face_pass_place(&self) -> Option<String> {
        if !self.face_pass {
            return None;
        }
        match self.scene {
            Scene::Metro => self.station.as_deref().map(face_place::station),
            Scene::Scenic => self.venue.as_deref().map(face_place::venue),
            _ => None,
        }
    }
}

fn scene<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Scene, D::Error> {
    let name = String::deserialize(deserializer)?;
    Scene::from_name(&name).ok_or_else(|| {
        serde::de::Error::custom("unknown scene (metro, bus, hospital, scenic or government)")
    })
}

/// Why a registry file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatesError {
    /// Not the registry's YAML shape.
    #[error("gate registry does not parse: {0}")]
    Parse(String),
    /// A gate id that no certificate can carry.
    #[error("gate id `{0}` is not a valid name (1-63 of a-z 0-9 - . _)")]
    BadId(String),
    /// A field that does not fit the gate's scene.
    #[error("gate `{id}`: {problem}")]
    Inconsistent {
        /// The gate.
        id: String,
        /// What is wrong.
        problem: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    gates: HashMap<String, Gate>,
}

/// The gates by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    gates: HashMap<String, Arc<Gate>>,
}

impl Registry {
    /// A registry of `gates`, checked as a file's would be.
    pub fn new(gates: impl IntoIterator<Item = (String, Gate)>) -> Result<Self, GatesError> {
        let mut map = HashMap::new();
        for (id, gate) in gates {
            check(&id, &gate)?;
            map.insert(id, Arc::new(gate));
        }
        Ok(Registry { gates: map })
    }

    /// Parses a registry file's text.
    pub fn parse(text: &str) -> Result<Self, GatesError> {
        let file: File =
            serde_saphyr::from_str(text).map_err(|e| GatesError::Parse(e.to_string()))?;
        Registry::new(file.gates)
    }

    /// The gate `id`, if configured.
    pub fn get(&self, id: &str) -> Option<&Arc<Gate>> {
        self.gates.get(id)
    }

    /// How many gates.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// Whether no gate is configured.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }
}

fn check(id: &str, gate: &Gate) -> Result<(), GatesError> {
    if !valid_name(id) {
        return Err(GatesError::BadId(id.to_owned()));
    }
    let inconsistent = |problem| {
        Err(GatesError::Inconsistent {
            id: id.to_owned(),
            problem,
        })
    };
    if gate.face_pass {
        match gate.scene {
            Scene::Metro if gate.station.is_none() => {
                return inconsistent("a face-pass metro gate needs a station");
            }
            Scene::Metro | Scene::Scenic => {}
            _ => return inconsistent("only metro and scenic gates may offer face pass"),
        }
    }
    match gate.scene {
        Scene::Metro if gate.direction.is_none() => {
            inconsistent("a metro gate needs a direction (entry, exit or both)")
        }
        Scene::Metro => Ok(()),
        _ if gate.direction.is_some() => inconsistent("only metro gates have a direction"),
        // The venue's capacity and once-a-day rule are counted by venue.
        Scene::Scenic if gate.venue.is_none() => inconsistent("a scenic gate needs a venue"),
        Scene::Government if gate.hall.is_none() => {
            inconsistent("a government service gate needs a hall")
        }
        _ => Ok(()),
    }
}

const FORMAT: KeyFormat<Registry, GatesError> = KeyFormat {
    parse: Registry::parse,
    // A registry names no secret: nothing in it is for development only.
    is_dev: |_| false,
};

/// The registry in force, swapped whole when its file changes.
#[derive(Debug)]
pub struct Gates {
    current: ArcSwap<Registry>,
}

impl Gates {
    /// A registry held in memory (tests; `citypass dev` writes a file instead).
    pub fn fixed(registry: Registry) -> Arc<Self> {
        Arc::new(Gates {
            current: ArcSwap::from_pointee(registry),
        })
    }

    /// Loads the file at `path` now and follows it every `reload_interval` with a task
    /// that ends when the returned handle is dropped. Call inside a tokio runtime.
    pub fn follow(
        path: &Path,
        reload_interval: Duration,
        environment: Environment,
    ) -> Result<Arc<Self>, KeyFileError<GatesError>> {
        let (file, registry) = FollowedKeyFile::open(path, environment, FORMAT)?;
        let gates = Gates::fixed(registry);
        file.follow(&gates, reload_interval, "gate registry", |gates, fresh| {
            if let Some(registry) = fresh {
                tracing::info!(gates = registry.len(), "gate registry reloaded");
                gates.replace(registry);
            }
        });
        Ok(gates)
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    /// Puts `registry` in force.
    pub fn replace(&self, registry: Registry) {
        self.current.store(Arc::new(registry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gates.example.yaml");
        let registry = Registry::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let gate = registry.get("metro-entry-1").expect("configured");
        assert_eq!(gate.scene, Scene::Metro);
        assert_eq!(gate.direction, Some(GateDirection::Entry));
        assert_eq!(
            registry.get("hospital-desk-1").map(|g| g.scene),
            Some(Scene::Hospital)
        );
        assert_eq!(
            registry.get("hall-counter-1").map(|g| g.scene),
            Some(Scene::Government)
        );
        assert!(registry.get("nowhere").is_none());
        let face = registry
            .get("metro-face-1")
            .expect("a face-pass metro gate");
        assert!(face.face_pass && !face.attended);
        assert_eq!(
            face.face_pass_place(),
            face.station.as_deref().map(face_place::station)
        );
        assert_eq!(gate.face_pass_place(), None);
    }

    #[test]
    fn face_pass_gates_match_for_their_station_or_venue() {
        let registry = Registry::parse(
            "gates: {m: {scene: metro, direction: both, station: s1, face_pass: true, attended: true},\n\
             p: {scene: scenic, venue: park, face_pass: true}}",
        )
        .unwrap();
        let metro = registry.get("m").unwrap();
        assert_eq!(metro.face_pass_place().as_deref(), Some("station:s1"));
        assert!(metro.attended);
        let park = registry.get("p").unwrap();
        assert_eq!(park.face_pass_place().as_deref(), Some("venue:park"));
        assert!(!park.attended);
    }

    #[test]
    fn inconsistent_gates_are_refused() {
        let cases = [
            "gates: {m1: {scene: metro}}",
            "gates: {b1: {scene: bus, direction: entry}}",
            "gates: {b1: {scene: tram}}",
            "gates: {B1: {scene: bus}}",
            "gates: {b1: {scene: bus, colour: red}}",
            "gates: {s1: {scene: scenic}}",
            "gates: {h1: {scene: government, venue: west-lake}}",
            "gates: {b1: {scene: bus}}\ngates: {b2: {scene: bus}}",
            "gates: {b1: {scene: bus, face_pass: true}}",
            "gates: {d1: {scene: hospital, face_pass: true}}",
            "gates: {m1: {scene: metro, direction: entry, face_pass: true}}",
        ];
        for text in cases {
            assert!(Registry::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_followed_and_a_bad_one_keeps_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gates.yaml");
        std::fs::write(&path, "gates: {b1: {scene: bus}}").unwrap();
        let gates = Gates::follow(&path, Duration::from_millis(20), Environment::Dev).unwrap();
        assert!(gates.current().get("b1").is_some());

        std::fs::write(&path, "gates: {b1: {scene: bus}, h1: {scene: hospital}}").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while gates.current().get("h1").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "reload not seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        std::fs::write(&path, "gates: {h1: {scene: nowhere}}").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(gates.current().len(), 2, "a bad file keeps the registry");
    }
}
