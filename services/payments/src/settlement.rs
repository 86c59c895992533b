//! The daily settlement per transit operator: what is due to each (the metro, each bus
//! company) for the charges made that city day, and how much of it the provider has
//! confirmed, is still sending, or declined (owed by riders as arrears).
//!
//! A charge counts on the city day it was made (`created_at`, the trip's close);
//! cancelled charges count nowhere. A refund (a trip re-priced lower by an offline
//! gate's late tap, `crate::tap::late`) counts on the day it was posted, in its
//! operator's `refunded`: owed back to the rider, to come off the operator's payout
//! (`due` stays the charges' sum, which the provider's statement shows). [`DailySettlement::to_csv`] is the file an operator
//! reconciles against the provider's statement. (`citypass admin settlement --date D`
//! will print and write it.)

use std::collections::BTreeMap;

use crate::charge::{Charge, ChargeStatus};
use crate::error::Error;
use crate::ledger::Refund;
use crate::money::Fen;

/// One operator's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorLine {
    /// The operator.
    pub operator: String,
    /// Charges made.
    pub charges: u64,
    /// Their sum: what the operator is due.
    pub due: Fen,
    /// Confirmed by the provider.
    pub confirmed: Fen,
    /// Not answered yet (pending or retrying).
    pub pending: Fen,
    /// Declined: owed by riders as arrears.
    pub declined: Fen,
    /// Refunded that day: owed back to riders, off the operator's payout.
    pub refunded: Fen,
}

/// A day's settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySettlement {
    /// The city day (days since 1970-01-01 in the city's local time).
    pub day: i64,
    /// One line per operator, by name.
    pub lines: Vec<OperatorLine>,
}

impl DailySettlement {
    /// Sums `charges` and `refunds` (those of one day) per operator.
    pub fn of(day: i64, charges: &[Charge], refunds: &[Refund]) -> Result<Self, Error> {
        let overflow = || Error::AmountOutOfRange("settlement");
        let mut lines: BTreeMap<&str, OperatorLine> = BTreeMap::new();
        for refund in refunds {
            let line = lines
                .entry(refund.operator.as_str())
                .or_insert_with(|| OperatorLine {
                    operator: refund.operator.clone(),
                    ..OperatorLine::default()
                });
            line.refunded = line
                .refunded
                .checked_add(refund.amount)
                .ok_or_else(overflow)?;
        }
        for charge in charges.iter().filter(|c| c.is_live()) {
            let line = lines
                .entry(charge.operator.as_str())
                .or_insert_with(|| OperatorLine {
                    operator: charge.operator.clone(),
                    ..OperatorLine::default()
                });
            line.charges += 1;
            line.due = line.due.checked_add(charge.amount).ok_or_else(overflow)?;
            let bucket = match charge.status {
                ChargeStatus::Succeeded => &mut line.confirmed,
                ChargeStatus::Declined => &mut line.declined,
                ChargeStatus::Pending | ChargeStatus::Retrying | ChargeStatus::Cancelled => {
                    &mut line.pending
                }
            };
            *bucket = bucket.checked_add(charge.amount).ok_or_else(overflow)?;
        }
        Ok(DailySettlement {
            day,
            lines: lines.into_values().collect(),
        })
    }

    /// The CSV: a header, then one line per operator, amounts in yuan with two decimals.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("operator,charges,due,confirmed,pending,declined,refunded\n");
        for line in &self.lines {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                line.operator,
                line.charges,
                line.due,
                line.confirmed,
                line.pending,
                line.declined,
                line.refunded
            ));
        }
        csv
    }
}
