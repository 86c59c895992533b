//! Scenic spots, museums and parks: a daily capacity per venue, and one entry per
//! person per venue per day unless the venue allows more (`entries_per_day`).
//!
//! The person is the venue pseudonym (`Subjects::pseudonym(Venue(venue))`), derived
//! locally from the subject the holder step opened: no identity call at a scenic gate
//! and no second unseal. The counts
//! live in the [`VenueStore`] (`venues.rs`), per venue and local day (the venue's UTC
//! offset), each entry counted once per gate scan, so a retry of the same scan counts
//! nothing twice; a replayed code never reaches this step.

use serde::Deserialize;

use super::{Context, ScenicSettings, Verdict};
use crate::model::{PolicyRefusal, SceneResult};
use crate::replay::owner;
use crate::subjects::{PseudonymScope, Subjects};
use crate::venues::{Admission, Entry, VenueStore};

/// A fixed offset from UTC, written `+08:00` or `-03:30`: a venue's day runs from its
/// local midnight to the next (the city's zones keep no daylight saving; an IANA zone
/// database is not needed for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset {
    seconds: i64,
}

impl UtcOffset {
    /// UTC+8 (China Standard Time).
    pub const CHINA: UtcOffset = UtcOffset { seconds: 8 * 3600 };

    /// Parses `±HH:MM` (at most 14 hours).
    pub fn parse(text: &str) -> Option<Self> {
        let (sign, rest) = match text.as_bytes().first()? {
            b'+' => (1, &text[1..]),
            b'-' => (-1, &text[1..]),
            _ => return None,
        };
        let (hours, minutes) = rest.split_once(':')?;
        if hours.len() != 2 || minutes.len() != 2 {
            return None;
        }
        let hours: i64 = hours.parse().ok()?;
        let minutes: i64 = minutes.parse().ok()?;
        if hours > 14 || minutes > 59 {
            return None;
        }
        Some(UtcOffset {
            seconds: sign * (hours * 3600 + minutes * 60),
        })
    }

    /// The local day number (days since 1970-01-01 local) at `now` (Unix seconds).
    pub fn day(self, now: u64) -> i64 {
        (i64::try_from(now).unwrap_or(i64::MAX) + self.seconds).div_euclid(86_400)
    }

    /// The Unix second at which local day `day` ends.
    pub fn day_end(self, day: i64) -> u64 {
        u64::try_from((day + 1) * 86_400 - self.seconds).unwrap_or(0)
    }
}

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        UtcOffset::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a UTC offset is written +HH:MM or -HH:MM"))
    }
}

/// One venue's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenueSettings {
    /// Entries a day (default 10 000).
    pub capacity: u32,
    /// Entries a day per person (default 1).
    pub entries_per_day: u32,
    /// The venue's offset from UTC, for its day (default `+08:00`).
    pub utc_offset: UtcOffset,
}

impl Default for VenueSettings {
    fn default() -> Self {
        VenueSettings {
            capacity: 10_000,
            entries_per_day: 1,
            utc_offset: UtcOffset::CHINA,
        }
    }
}

impl VenueSettings {
    pub(super) fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.capacity == 0 {
            return Err(("scenes.scenic.venues.capacity", "must be at least 1"));
        }
        if self.entries_per_day == 0 {
            return Err(("scenes.scenic.venues.entries_per_day", "must be at least 1"));
        }
        Ok(())
    }
}

/// How long a venue's day is kept after it ends: a late retry still finds its count.
const KEEP_AFTER_DAY: u64 = 3_600;

/// The scenic policy.
pub(super) async fn decide(
    subjects: &dyn Subjects,
    venues: &dyn VenueStore,
    settings: &ScenicSettings,
    ctx: &Context<'_>,
) -> Verdict {
    let subject = match ctx.holder() {
        Ok(subject) => subject,
        Err(verdict) => return verdict,
    };
    let venue = venue_of(ctx);
    let rules = settings.venue(venue);
    let pseudonym = subjects.pseudonym(&subject, PseudonymScope::Venue(venue));
    let day = rules.utc_offset.day(ctx.now);
    let entry = Entry {
        venue,
        day,
        visitor: visitor(&pseudonym),
        scan: owner(ctx.gate_id, ctx.scan_id),
        capacity: rules.capacity,
        entries_per_day: rules.entries_per_day,
        forget_at: rules.utc_offset.day_end(day) + KEEP_AFTER_DAY,
    };
    match venues.enter(entry, Some(ctx.deadline)).await {
        Ok(Admission::Entered {
            entries_today,
            remaining_capacity,
        }) => Verdict::Allow(Some(SceneResult::Scenic {
            venue_pseudonym: pseudonym,
            entries_today,
            remaining_capacity,
        })),
        Ok(Admission::CapacityReached) => Verdict::Refuse(PolicyRefusal::CapacityReached),
        Ok(Admission::AlreadyEntered) => Verdict::Refuse(PolicyRefusal::AlreadyEnteredToday),
        Err(err) => {
            tracing::warn!(error = %err, "venue store failed");
            Verdict::Unavailable
        }
    }
}

/// A retry's result: the stored counts and the pseudonym derived again.
pub(super) fn complete(
    subjects: &dyn Subjects,
    ctx: &Context<'_>,
    entries_today: u32,
    remaining_capacity: u32,
) -> Option<SceneResult> {
    let subject = ctx.subject?;
    Some(SceneResult::Scenic {
        venue_pseudonym: subjects.pseudonym(&subject, PseudonymScope::Venue(venue_of(ctx))),
        entries_today,
        remaining_capacity,
    })
}

/// The gate's venue (the registry requires one at scenic gates; the gate id
/// otherwise).
fn venue_of<'a>(ctx: &Context<'a>) -> &'a str {
    ctx.gate.venue.as_deref().unwrap_or(ctx.gate_id)
}

/// The visitor as the venue store keys them: a hash of the venue pseudonym, so the
/// store holds no pseudonym a venue's systems know.
fn visitor(pseudonym: &str) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, pseudonym.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_days_turn_at_local_midnight() {
        assert_eq!(UtcOffset::parse("+08:00"), Some(UtcOffset::CHINA));
        assert_eq!(
            UtcOffset::parse("-03:30").map(|o| o.seconds),
            Some(-(3 * 3600 + 1800))
        );
        for bad in ["", "08:00", "+8:00", "+15:00", "+08:60", "+08"] {
            assert_eq!(UtcOffset::parse(bad), None, "{bad}");
        }
        // 2026-12-03 15:59:59 UTC is 23:59:59 in UTC+8; a second later the next day.
        let before = 1_796_313_599;
        let china = UtcOffset::CHINA;
        assert_eq!(china.day(before) + 1, china.day(before + 1));
        assert_eq!(china.day_end(china.day(before)), before + 1);
    }
}
