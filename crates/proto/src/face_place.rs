//! The places a FACE_PASS consent names, as identity stores them and the verifier keys
//! its face-pass galleries: `station:<id>` or `venue:<id>`, the id exactly as the gate
//! registry writes it (1 to [`MAX_ID_LEN`] of `[A-Za-z0-9._-]`, e.g. `station:L1-S03`,
//! `venue:west-lake`). One rule for both sides, so a consent recorded through identity
//! names the gallery a gate searches; the kind keeps a station and a venue that happen
//! to share an id apart (a consent for one never matches at the other).

/// Longest station or venue id.
pub const MAX_ID_LEN: usize = 64;

/// A station's place.
pub fn station(id: &str) -> String {
    format!("station:{id}")
}

/// A venue's place.
pub fn venue(id: &str) -> String {
    format!("venue:{id}")
}

/// Whether `place` is `station:<id>` or `venue:<id>` with a usable id.
pub fn is_valid(place: &str) -> bool {
    let id = place
        .strip_prefix("station:")
        .or_else(|| place.strip_prefix("venue:"));
    id.is_some_and(|id| {
        !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_have_a_kind_and_a_registry_id() {
        for good in [
            station("L1-S03"),
            venue("west-lake"),
            station(&"x".repeat(64)),
            "venue:a.b_c".to_owned(),
        ] {
            assert!(is_valid(&good), "{good}");
        }
        for bad in [
            "L1-S03",
            "station:",
            "venue: west",
            "gate:metro-1",
            "station:a:b",
            "Station:L1",
            &station(&"x".repeat(65)),
            "venue:ä",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
