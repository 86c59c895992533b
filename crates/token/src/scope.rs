//! Scenes and the scope bit set a code carries.
//!
//! A code lists the scenes it may open as a small integer bit set (one CBOR byte for
//! the common cases), which keeps the online QR inside version 9.

/// A place where a code is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scene {
    /// Metro gates (entry and exit).
    Metro,
    /// Bus readers (flat fare).
    Bus,
    /// Hospital registration desks.
    Hospital,
    /// Scenic-spot and park gates.
    Scenic,
    /// Government service hall counters (政务服务): granted only when asked for.
    Government,
}

impl Scene {
    /// Every scene, in bit order.
    pub const ALL: [Scene; 5] = [
        Scene::Metro,
        Scene::Bus,
        Scene::Hospital,
        Scene::Scenic,
        Scene::Government,
    ];

    fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// The lower-case name used in configuration and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Scene::Metro => "metro",
            Scene::Bus => "bus",
            Scene::Hospital => "hospital",
            Scene::Scenic => "scenic",
            Scene::Government => "government",
        }
    }

    /// The scene for a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Scene::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The scenes a code may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u64);

impl Scopes {
    /// No scene.
    pub const NONE: Scopes = Scopes(0);

    /// Every scene.
    pub fn all() -> Self {
        Scene::ALL.into_iter().collect()
    }

    /// The raw bit set, as carried in the claim. Unknown bits are kept so that a newer
    /// issuer's scopes survive a round trip through an older library.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Scopes from raw bits.
    pub fn from_bits(bits: u64) -> Self {
        Scopes(bits)
    }

    /// Whether `scene` is included.
    pub fn contains(self, scene: Scene) -> bool {
        self.0 & scene.bit() != 0
    }

    /// These scopes plus `scene`.
    pub fn with(self, scene: Scene) -> Self {
        Scopes(self.0 | scene.bit())
    }

    /// The known scenes included, in bit order.
    pub fn scenes(self) -> impl Iterator<Item = Scene> {
        Scene::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scene> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scene>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::NONE, Scopes::with)
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.scenes().map(Scene::name).collect();
        f.write_str(&names.join(","))
    }
}
