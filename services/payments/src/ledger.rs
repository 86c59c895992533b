//! The ledger: every movement of money is one balanced double entry.
//!
//! Three kinds of account (signed amounts, in fen; a posting's entries sum to zero):
//!
//! | account | holds | moves |
//! |---|---|---|
//! | `rider:<transit account>` | what the rider owes (negative) | −fare at a charge, +fare when the provider pays or the charge is cancelled, +difference at a refund |
//! | `operator:<name>` | what the operator is due (receivable) | +fare at a charge, −fare at a cancellation or a settlement payout, −difference at a refund |
//! | `provider:<name>` | provider clearing: money the provider collected, not yet paid out | −fare when the provider confirms, +fare at payout |
//!
//! Postings so far ([`PostingKind`]): a **charge** (rider −F, operator +F), written in
//! the same transaction as the charge and its outbox row; a **reversal** of a
//! cancelled charge (rider +F, operator −F); a **capture** when the provider approved
//! it (rider +F, provider clearing −F). Payouts to operators come with settlement. A posting's id is derived from its charge and kind, so a charge is posted
//! once whatever retries happen.
//!
//! [`LedgerReport`] is what a store sums; [`verify`] proves from it that nothing was
//! created or lost: every posting balances, the whole ledger sums to zero, every live
//! charge was posted once, every cancelled one reversed once and every approved one
//! captured once, the operators' receivables equal the live charges less their refunds,
//! and the providers hold exactly the approved ones.
//!
//! A **refund** (rider +D, operator −D) returns part of a charge: a trip charged the
//! maximum fare without its entry (or its exit), re-priced when the missing tap is
//! uploaded late by an offline gate (`crate::tap::late`). It is made once per charge
//! (its id, like every posting's, is derived from the charge and its kind), only on a
//! live charge and never for more than the charge; a charge with a refund is not
//! cancelled afterwards (a void of such a trip is refused), so a reversal never
//! returns the same money twice. The rider's account then holds the refund as a
//! credit against what the provider collected.

use std::fmt;

use crate::account::TransitAccount;
use crate::charge::{Charge, ChargeKey};
use crate::money::Fen;

/// A ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    /// A rider, by transit account.
    Rider(TransitAccount),
    /// A transit operator's receivable.
    Operator(String),
    /// A payment provider's clearing account.
    ProviderClearing(&'static str),
}

impl Account {
    /// The number stored for its kind.
    pub fn kind_code(&self) -> i16 {
        match self {
            Account::Rider(_) => 1,
            Account::Operator(_) => 2,
            Account::ProviderClearing(_) => 3,
        }
    }

    /// The name stored beside the kind (the transit account's hex for a rider).
    pub fn name(&self) -> String {
        match self {
            Account::Rider(account) => account.to_string(),
            Account::Operator(name) => name.clone(),
            Account::ProviderClearing(name) => (*name).to_owned(),
        }
    }
}

/// Why a posting was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingKind {
    /// A charge: the rider owes the fare to the operator.
    Charge,
    /// A cancelled charge, reversed.
    Reversal,
    /// The provider collected the fare: the rider's debt is paid, the provider holds it.
    Capture,
    /// Part of a charge returned: the trip was re-priced lower (a late tap).
    Refund,
}

impl PostingKind {
    /// The number stored.
    pub fn code(self) -> i16 {
        match self {
            PostingKind::Charge => 1,
            PostingKind::Reversal => 2,
            PostingKind::Capture => 3,
            PostingKind::Refund => 4,
        }
    }
}

/// One side of a posting: an account and a signed amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account.
    pub account: Account,
    /// Signed fen.
    pub amount: i64,
}

/// A posting's id: SHA-256("citypass/v1/posting\0" ‖ charge key ‖ kind)[..16].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostingId(pub [u8; 16]);

impl fmt::Debug for PostingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostingId({})", hex::encode(self.0))
    }
}

/// A balanced double entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// Its id.
    pub id: PostingId,
    /// Its kind.
    pub kind: PostingKind,
    /// The charge it belongs to.
    pub charge: ChargeKey,
    /// The two entries, summing to zero.
    pub entries: [Entry; 2],
    /// When, Unix seconds.
    pub at: u64,
}

impl Posting {
    fn new(kind: PostingKind, charge: &Charge, sign: i64, at: u64) -> Option<Self> {
        Posting::of_amount(kind, charge, charge.amount, sign, at)
    }

    fn of_amount(
        kind: PostingKind,
        charge: &Charge,
        amount: Fen,
        sign: i64,
        at: u64,
    ) -> Option<Self> {
        let other = match kind {
            PostingKind::Capture => {
                Account::ProviderClearing(charge.link.map_or("none", |(_, p)| p.name()))
            }
            _ => Account::Operator(charge.operator.clone()),
        };
        // Amounts are at most a day's cap, far inside i64; refused otherwise.
        let amount = i64::try_from(amount.get()).ok()?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"citypass/v1/posting\0");
        ctx.update(&charge.key.0);
        ctx.update(&kind.code().to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&ctx.finish().as_ref()[..16]);
        Some(Posting {
            id: PostingId(id),
            kind,
            charge: charge.key,
            entries: [
                Entry {
                    account: Account::Rider(charge.account),
                    amount: -sign * amount,
                },
                Entry {
                    account: other,
                    amount: sign * amount,
                },
            ],
            at,
        })
    }

    /// The posting of a new charge: rider −amount, operator +amount. `None` if the
    /// amount does not fit the ledger's integers (impossible for a checked fare).
    pub fn charge(charge: &Charge) -> Option<Self> {
        Posting::new(PostingKind::Charge, charge, 1, charge.created_at)
    }

    /// The reversal of a cancelled charge: rider +amount, operator −amount.
    pub fn reversal(charge: &Charge, at: u64) -> Option<Self> {
        Posting::new(PostingKind::Reversal, charge, -1, at)
    }

    /// The provider's capture of a charge: rider +amount, provider clearing −amount.
    pub fn capture(charge: &Charge, at: u64) -> Option<Self> {
        Posting::new(PostingKind::Capture, charge, -1, at)
    }

    /// The refund of `amount` of a charge: rider +amount, operator −amount. `None`
    /// for nothing, or for more than the charge.
    pub fn refund(charge: &Charge, amount: Fen, at: u64) -> Option<Self> {
        if amount == Fen::ZERO || amount > charge.amount {
            return None;
        }
        Posting::of_amount(PostingKind::Refund, charge, amount, -1, at)
    }
}

/// A refund posted: part of a charge owed back to its rider (settlement takes it off
/// the operator's due).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The charge refunded in part.
    pub charge: ChargeKey,
    /// The operator whose receivable it reduces.
    pub operator: String,
    /// How much.
    pub amount: Fen,
    /// When it was posted, Unix seconds.
    pub at: u64,
}

/// What a store sums over its ledger and charges, for [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReport {
    /// Postings whose entries do not sum to zero, or that have other than two entries.
    pub unbalanced_postings: u64,
    /// The sum of every entry.
    pub total: i128,
    /// Sums per account kind.
    pub riders: i128,
    /// Sum of operator receivables.
    pub operators: i128,
    /// Sum of provider clearing accounts.
    pub providers: i128,
    /// Charge postings.
    pub charge_postings: u64,
    /// Reversal postings.
    pub reversal_postings: u64,
    /// Capture postings.
    pub capture_postings: u64,
    /// Refund postings.
    pub refund_postings: u64,
    /// Sum of the refunds (positive).
    pub refunded: i128,
    /// Refunds of a cancelled charge, or of more than their charge.
    pub bad_refunds: u64,
    /// Charges the provider approved.
    pub succeeded_charges: u64,
    /// Sum of the charges the provider approved.
    pub captured: i128,
    /// Charges (all).
    pub charges: u64,
    /// Cancelled charges.
    pub cancelled_charges: u64,
    /// Sum of live (not cancelled) charges.
    pub live_charged: i128,
    /// Postings that name a charge that does not exist.
    pub orphan_postings: u64,
}

/// One broken invariant of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imbalance {
    /// Some postings do not balance.
    UnbalancedPostings(u64),
    /// The entries do not sum to zero.
    NonZeroTotal(i128),
    /// Charge postings do not match charges one to one.
    ChargePostings {
        /// Charges.
        charges: u64,
        /// Charge postings.
        postings: u64,
    },
    /// Reversals do not match cancelled charges one to one.
    Reversals {
        /// Cancelled charges.
        cancelled: u64,
        /// Reversal postings.
        postings: u64,
    },
    /// Refunds of a cancelled charge or of more than their charge.
    BadRefunds(u64),
    /// Operators are due other than the live charges less their refunds.
    Receivables {
        /// Live charges less refunds.
        charged: i128,
        /// Operator receivables.
        receivable: i128,
    },
    /// Postings without their charge.
    OrphanPostings(u64),
    /// Captures do not match approved charges, or the providers hold other than them.
    Captures {
        /// Approved charges and their sum.
        succeeded: (u64, i128),
        /// Capture postings and the providers' clearing total (negated).
        postings: (u64, i128),
    },
}

/// Checks `report`; every broken invariant is returned.
pub fn verify(report: &LedgerReport) -> Result<(), Vec<Imbalance>> {
    let mut broken = Vec::new();
    if report.unbalanced_postings != 0 {
        broken.push(Imbalance::UnbalancedPostings(report.unbalanced_postings));
    }
    if report.total != 0 || report.riders + report.operators + report.providers != 0 {
        broken.push(Imbalance::NonZeroTotal(report.total));
    }
    if report.charge_postings != report.charges {
        broken.push(Imbalance::ChargePostings {
            charges: report.charges,
            postings: report.charge_postings,
        });
    }
    if report.reversal_postings != report.cancelled_charges {
        broken.push(Imbalance::Reversals {
            cancelled: report.cancelled_charges,
            postings: report.reversal_postings,
        });
    }
    if report.operators != report.live_charged - report.refunded {
        broken.push(Imbalance::Receivables {
            charged: report.live_charged - report.refunded,
            receivable: report.operators,
        });
    }
    if report.bad_refunds != 0 {
        broken.push(Imbalance::BadRefunds(report.bad_refunds));
    }
    if report.capture_postings != report.succeeded_charges || -report.providers != report.captured {
        broken.push(Imbalance::Captures {
            succeeded: (report.succeeded_charges, report.captured),
            postings: (report.capture_postings, -report.providers),
        });
    }
    if report.orphan_postings != 0 {
        broken.push(Imbalance::OrphanPostings(report.orphan_postings));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// A rider's balance as a debt: what a negative rider balance of `amount` owes.
pub fn owed(amount: i128) -> Fen {
    Fen::new(u64::try_from(-amount.min(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::ChargeStatus;
    use crate::trip::TapKey;

    fn charge(amount: u64) -> Charge {
        Charge {
            key: ChargeKey([1; 16]),
            provider_key: ChargeKey([1; 16]),
            trip: TapKey([2; 16]),
            account: TransitAccount::from_bytes([3; 16]),
            link: None,
            operator: "metro".to_owned(),
            amount: Fen::new(amount),
            status: ChargeStatus::Pending,
            decline_code: None,
            created_at: 10,
            settled_at: None,
        }
    }

    #[test]
    fn postings_balance_and_reversals_undo_them() {
        let c = charge(400);
        let posting = Posting::charge(&c).unwrap();
        let reversal = Posting::reversal(&c, 11).unwrap();
        assert_eq!(posting.entries.iter().map(|e| e.amount).sum::<i64>(), 0);
        assert_eq!(posting.entries[0].amount, -400);
        assert_ne!(posting.id, reversal.id);
        let net: i64 = posting
            .entries
            .iter()
            .chain(reversal.entries.iter())
            .filter(|e| e.account == Account::Rider(c.account))
            .map(|e| e.amount)
            .sum();
        assert_eq!(net, 0);
        assert_eq!(Posting::charge(&charge(u64::MAX)), None);
    }

    #[test]
    fn refunds_balance_are_bounded_and_counted() {
        let c = charge(1000);
        let refund = Posting::refund(&c, Fen::new(500), 12).unwrap();
        assert_eq!(refund.kind, PostingKind::Refund);
        assert_eq!(refund.entries.iter().map(|e| e.amount).sum::<i64>(), 0);
        assert_eq!(refund.entries[0].amount, 500, "the rider gets it back");
        assert_ne!(refund.id, Posting::reversal(&c, 12).unwrap().id);
        assert_eq!(Posting::refund(&c, Fen::ZERO, 12), None);
        assert_eq!(Posting::refund(&c, Fen::new(1001), 12), None);
        // A charge of 1000 with 500 refunded: the operator is due 500.
        let good = LedgerReport {
            riders: -500,
            operators: 500,
            charge_postings: 1,
            refund_postings: 1,
            refunded: 500,
            charges: 1,
            live_charged: 1000,
            ..LedgerReport::default()
        };
        assert_eq!(verify(&good), Ok(()));
        let bad = LedgerReport {
            operators: 1000,
            riders: -1000,
            bad_refunds: 1,
            ..good
        };
        let broken = verify(&bad).unwrap_err();
        assert!(broken.contains(&Imbalance::BadRefunds(1)));
        assert!(broken.contains(&Imbalance::Receivables {
            charged: 500,
            receivable: 1000
        }));
    }

    #[test]
    fn verify_names_each_broken_invariant() {
        let good = LedgerReport {
            total: 0,
            riders: -400,
            operators: 400,
            charge_postings: 1,
            charges: 1,
            live_charged: 400,
            ..LedgerReport::default()
        };
        assert_eq!(verify(&good), Ok(()));
        let bad = LedgerReport {
            operators: 500,
            total: 100,
            charge_postings: 2,
            ..good.clone()
        };
        let broken = verify(&bad).unwrap_err();
        assert!(broken.contains(&Imbalance::NonZeroTotal(100)));
        assert!(broken.contains(&Imbalance::ChargePostings {
            charges: 1,
            postings: 2
        }));
        assert!(broken.contains(&Imbalance::Receivables {
            charged: 400,
            receivable: 500
        }));
        assert_eq!(owed(-250), Fen::new(250));
        assert_eq!(owed(10), Fen::ZERO);
    }
}
