//! What the gates present: the kinds of code and their shares in a run.
//!
//! A real gate sees mostly good codes and a tail of bad ones, and each bad kind costs
//! the verifier differently (a garbled text stops at the prefix, a forged one after a
//! signature check, a replay after a store round trip), so the mix is part of what is
//! measured. Kinds are spread evenly through the run (smooth weighted round robin),
//! so a short run holds every kind in its share, not bunched at one end.

use std::str::FromStr;

use serde::Serialize;

use crate::error::LoadError;

/// The kind of code one request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// A code never used before: the verifier allows it.
    Fresh,
    /// A code already used once before the run: REPLAYED.
    Replayed,
    /// A code whose time is past: EXPIRED.
    Expired,
    /// A good code with one byte of its signature flipped: BAD_SIGNATURE.
    Forged,
    /// Text that is not a code: a format reason.
    Garbled,
}

impl CodeKind {
    /// Every kind, in the order of the report.
    pub const ALL: [CodeKind; 5] = [
        CodeKind::Fresh,
        CodeKind::Replayed,
        CodeKind::Expired,
        CodeKind::Forged,
        CodeKind::Garbled,
    ];

    /// The kind's name in `--mix` and in the report.
    pub fn name(self) -> &'static str {
        match self {
            CodeKind::Fresh => "fresh",
            CodeKind::Replayed => "replayed",
            CodeKind::Expired => "expired",
            CodeKind::Forged => "forged",
            CodeKind::Garbled => "garbled",
        }
    }
}

/// Relative shares of each kind (weights, not necessarily adding up to 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mix {
    shares: Vec<(CodeKind, u32)>,
}

impl Default for Mix {
    /// Mostly good codes: 80 fresh, 5 of each bad kind.
    fn default() -> Self {
        Mix {
            shares: vec![
                (CodeKind::Fresh, 80),
                (CodeKind::Replayed, 5),
                (CodeKind::Expired, 5),
                (CodeKind::Forged, 5),
                (CodeKind::Garbled, 5),
            ],
        }
    }
}

impl Mix {
    /// A mix with these shares (kinds left out have none).
    pub fn new(shares: impl IntoIterator<Item = (CodeKind, u32)>) -> Result<Mix, LoadError> {
        let mut all: Vec<(CodeKind, u32)> = CodeKind::ALL.iter().map(|k| (*k, 0)).collect();
        for (kind, share) in shares {
            if let Some(slot) = all.iter_mut().find(|(k, _)| *k == kind) {
                slot.1 = slot.1.saturating_add(share);
            }
        }
        if all.iter().all(|(_, share)| *share == 0) {
            return Err(LoadError::Mix {
                text: String::new(),
                problem: "every share is zero".to_owned(),
            });
        }
        Ok(Mix { shares: all })
    }

    /// The share of `kind`.
    pub fn share(&self, kind: CodeKind) -> u32 {
        self.shares
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, share)| *share)
    }

    /// The kinds of `n` requests in order, each kind in its share, spread evenly.
    pub fn plan(&self, n: usize) -> Vec<CodeKind> {
        let total: i64 = self.shares.iter().map(|(_, s)| i64::from(*s)).sum();
        let mut current = vec![0i64; self.shares.len()];
        let mut kinds = Vec::with_capacity(n);
        for _ in 0..n {
            let mut best = 0;
            for (i, (_, share)) in self.shares.iter().enumerate() {
                current[i] += i64::from(*share);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            kinds.push(self.shares[best].0);
        }
        kinds
    }
}

impl FromStr for Mix {
    type Err = LoadError;

    /// `fresh=80,replayed=5,expired=5,forged=5,garbled=5`; kinds left out have none.
    fn from_str(text: &str) -> Result<Mix, LoadError> {
        let bad = |problem: String| LoadError::Mix {
            text: text.to_owned(),
            problem,
        };
        let mut shares = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, share) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not kind=share")))?;
            let kind = CodeKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    bad(format!(
                        "unknown kind {name:?} (fresh, replayed, expired, forged, garbled)"
                    ))
                })?;
            let share: u32 = share
                .trim()
                .parse()
                .map_err(|_| bad(format!("{share:?} is not a whole number")))?;
            shares.push((kind, share));
        }
        Mix::new(shares).map_err(|_| bad("every share is zero".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_holds_each_kind_in_its_share_spread_out() {
        let mix: Mix = "fresh=2,forged=1,garbled=1".parse().unwrap();
        let plan = mix.plan(400);
        let count = |k| plan.iter().filter(|p| **p == k).count();
        assert_eq!(count(CodeKind::Fresh), 200);
        assert_eq!(count(CodeKind::Forged), 100);
        assert_eq!(count(CodeKind::Garbled), 100);
        assert_eq!(count(CodeKind::Replayed), 0);
        // Every window of 4 holds each kind in its share: nothing bunched.
        for window in plan.chunks(4) {
            assert_eq!(window.iter().filter(|k| **k == CodeKind::Forged).count(), 1);
        }
    }

    #[test]
    fn bad_mixes_are_refused_by_name() {
        assert!("fresh=1,stolen=2".parse::<Mix>().is_err());
        assert!("fresh".parse::<Mix>().is_err());
        assert!("fresh=-1".parse::<Mix>().is_err());
        assert!("fresh=0".parse::<Mix>().is_err());
        assert_eq!(Mix::default().share(CodeKind::Fresh), 80);
    }
}
