//! The riders of a Verify run: real citizens, linked to a payment account, whose
//! subject ids the run's codes are sealed for.
//!
//! Since the transit policy, a metro or bus gate asks identity for the code's holder
//! (the profile: active, transit account, fare class) and taps payments (TapIn,
//! TapOut): a code sealed for a subject nobody enrolled is refused UNKNOWN_SUBJECT,
//! one of a rider without a payment link NO_PAYMENT_LINK. So before the run the tool
//! enrols `--riders N` citizens through identity as the citizen app does, binds a
//! device for each and links a sandbox payment account, device-signed
//! ([`citizens::enrol`] with [`Then::LinkPayment`]); the codes are then signed by the
//! tool itself (still before the run) for those subjects, round-robin
//! ([`crate::codes`], which takes the subjects only). The subject ids are kept as ids only: never printed or logged.

use citypass_app::Endpoints;
use citypass_token::SubjectId;

use crate::citizens::{self, Then};
use crate::error::LoadError;

/// Riders enrolled when `--riders` is not given.
pub const DEFAULT_RIDERS: usize = 32;

/// The subjects of the enrolled, linked riders.
#[derive(Clone)]
pub struct Riders {
    subjects: Vec<SubjectId>,
}

impl std::fmt::Debug for Riders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Riders({})", self.subjects.len())
    }
}

impl Riders {
    /// Riders for these subjects (at least one).
    pub fn new(subjects: Vec<SubjectId>) -> Result<Riders, LoadError> {
        if subjects.is_empty() {
            return Err(LoadError::Settings(
                "a run needs at least one rider".to_owned(),
            ));
        }
        Ok(Riders { subjects })
    }

    /// Enrols `n` riders at `endpoints`: each enrolled, a device bound, a sandbox
    /// payment account linked.
    pub async fn enrol(endpoints: &Endpoints, n: usize) -> Result<Riders, LoadError> {
        let enrolled = citizens::enrol(endpoints, n, Then::LinkPayment).await?;
        let subjects = enrolled
            .iter()
            .map(|c| {
                SubjectId::parse(&c.subject_id)
                    .map_err(|e| LoadError::Citizens(format!("a rider's subject id: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Riders::new(subjects)
    }

    /// Their subjects, the codes' holders in turn.
    pub fn subjects(&self) -> &[SubjectId] {
        &self.subjects
    }

    /// How many riders.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Never: a pool has at least one rider.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }
}
