//! Money: whole fen (分, 0.01 yuan), never a float, never negative.
//!
//! Every amount the fare model makes is bounded by [`Fen::MAX_FARE`] (a fare table
//! that names a larger fare is refused when it is loaded), and a day's spending by the
//! daily cap, so sums of a rider's day fit in a `u64` many times over. The arithmetic
//! that remains is checked anyway ([`Fen::checked_add`]) or saturating where the
//! meaning is "not below zero" ([`Fen::saturating_sub`]): no operation here wraps or
//! panics, whatever the input.

use std::fmt;

use serde::Deserialize;

/// An amount in fen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Fen(u64);

impl Fen {
    /// Nothing.
    pub const ZERO: Fen = Fen(0);
    /// The largest single fare a table may name: 10 000 yuan, far above any real fare,
    /// so that a typo in a table (an extra zero or five) is refused, not charged.
    pub const MAX_FARE: Fen = Fen(1_000_000);

    /// `fen` fen.
    pub const fn new(fen: u64) -> Self {
        Fen(fen)
    }

    /// The amount in fen.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The sum, or `None` if it would not fit.
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    /// The difference, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Fen) -> Fen {
        Fen(self.0.saturating_sub(other.0))
    }

    /// `percent` per cent of the amount, rounded down (in the rider's favour).
    /// `percent` is at most 100 (checked where tables are loaded), so this never grows
    /// the amount; the product is computed in `u128` and cannot overflow.
    pub fn percent(self, percent: u8) -> Fen {
        let scaled = u128::from(self.0) * u128::from(percent.min(100)) / 100;
        // At most self.0, so it fits.
        Fen(u64::try_from(scaled).unwrap_or(self.0))
    }
}

impl fmt::Display for Fen {
    /// Yuan with two decimals, e.g. `3.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_is_yuan_with_two_decimals() {
        assert_eq!(Fen::new(350).to_string(), "3.50");
        assert_eq!(Fen::new(5).to_string(), "0.05");
        assert_eq!(Fen::ZERO.to_string(), "0.00");
    }

    #[test]
    fn sums_past_u64_are_refused_not_wrapped() {
        assert_eq!(Fen::new(u64::MAX).checked_add(Fen::new(1)), None);
        assert_eq!(Fen::new(1).saturating_sub(Fen::new(2)), Fen::ZERO);
    }

    proptest! {
        /// A concession never raises a fare, never underflows, and rounds down.
        #[test]
        fn percent_is_bounded_and_rounds_down(fen in any::<u64>(), percent in any::<u8>()) {
            let out = Fen::new(fen).percent(percent);
            prop_assert!(out <= Fen::new(fen));
            let exact = u128::from(fen) * u128::from(percent.min(100));
            prop_assert!(u128::from(out.get()) * 100 <= exact);
            prop_assert!(exact < (u128::from(out.get()) + 1) * 100);
        }
    }
}
