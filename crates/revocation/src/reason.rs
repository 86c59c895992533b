//! Why an operator revoked or reinstated a target, as the log records it for audit.
//!
//! The reasons are audit data, not enforcement data: a reason such as fraud or arrears
//! is personal data about a citizen (PIPL), and no gate or service needs it to decide.
//! So the log's [`crate::Entry`] (what the stream, snapshots, Watch and the hash chain
//! carry) keeps only [`RevocationReason::compromised`]; the reason itself lives in the
//! revocation service's log beside the actor and the note, and only auditors and
//! revokers are shown it.

/// Why a target was revoked (the proto's `RevocationReason` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// Not given.
    Unspecified = 0,
    /// The citizen reported the device lost or stolen.
    DeviceLost = 1,
    /// The device key is believed compromised.
    DeviceCompromised = 2,
    /// A signing key is believed compromised.
    KeyCompromised = 3,
    /// A signing key was withdrawn in an orderly way.
    KeyWithdrawn = 4,
    /// The citizen asked for it.
    SubjectRequest = 5,
    /// Suspected fraud or misuse.
    Fraud = 6,
    /// Unpaid arrears beyond the grace policy.
    Arrears = 7,
    /// An operator decision not covered above.
    Administrative = 8,
    /// Replaced by a newer credential.
    Superseded = 9,
}

impl RevocationReason {
    /// Whether revoking for this reason means the target's key is in someone else's
    /// hands, the one bit of the reason that the log's entries carry
    /// ([`crate::Action::Revoke`]).
    pub fn compromised(self) -> bool {
        matches!(
            self,
            RevocationReason::DeviceCompromised | RevocationReason::KeyCompromised
        )
    }

    /// The proto enum number.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a proto enum number; `None` for unknown numbers (0 is
    /// [`RevocationReason::Unspecified`], which is allowed).
    pub fn from_code(code: i32) -> Option<Self> {
        use RevocationReason::*;
        Some(match code {
            0 => Unspecified,
            1 => DeviceLost,
            2 => DeviceCompromised,
            3 => KeyCompromised,
            4 => KeyWithdrawn,
            5 => SubjectRequest,
            6 => Fraud,
            7 => Arrears,
            8 => Administrative,
            9 => Superseded,
            _ => return None,
        })
    }
}

/// Why a target was reinstated (the proto's `ReinstateReason` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReinstateReason {
    /// Not given.
    Unspecified = 0,
    /// The device that was reported lost was found.
    DeviceRecovered = 1,
    /// The arrears were repaid.
    ArrearsRepaid = 2,
    /// The revocation was a mistake.
    ErrorCorrected = 3,
    /// An operator decision not covered above.
    Administrative = 4,
}

impl ReinstateReason {
    /// The proto enum number.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a proto enum number; `None` for unknown numbers.
    pub fn from_code(code: i32) -> Option<Self> {
        use ReinstateReason::*;
        Some(match code {
            0 => Unspecified,
            1 => DeviceRecovered,
            2 => ArrearsRepaid,
            3 => ErrorCorrected,
            4 => Administrative,
            _ => return None,
        })
    }
}

/// The reason of one log record: a revocation's or a reinstatement's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Why a target was revoked.
    Revoke(RevocationReason),
    /// Why a target was reinstated.
    Reinstate(ReinstateReason),
}

impl Reason {
    /// The proto enum number of whichever reason it is.
    pub fn code(self) -> u8 {
        match self {
            Reason::Revoke(reason) => reason.code(),
            Reason::Reinstate(reason) => reason.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_compromise_reasons_are_compromised() {
        let compromised: Vec<RevocationReason> = (0..=9)
            .filter_map(RevocationReason::from_code)
            .filter(|r| r.compromised())
            .collect();
        assert_eq!(
            compromised,
            [
                RevocationReason::DeviceCompromised,
                RevocationReason::KeyCompromised
            ]
        );
    }
}
