//! The ids a transit tap carries (gate, scan, station or route) as payments takes them
//! (TapIn, TapOut, RecordOfflineTap, VoidTap): 1 to [`MAX_LEN`] bytes of
//! `[A-Za-z0-9._:-]`. One rule for both sides: the verifier checks an uploaded scan's
//! id with it before it spends the scan's single-use mark, so that payments never
//! rejects, for its id, a tap whose mark is gone (the ride would go uncharged).

/// Longest id accepted.
pub const MAX_LEN: usize = 64;

/// Whether `text` is a usable tap id.
pub fn is_valid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        for good in ["a", "scan-1", "2026-12-03T10:00:00.123_x", &"x".repeat(64)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", "a\n", &"x".repeat(65)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
