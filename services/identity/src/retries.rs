//! Safe retries of Enrol (AIP-155): a client-chosen `request_id` makes a retry return
//! the first answer instead of enrolling again.
//!
//! Without it, an app whose Enrol succeeded but whose answer was lost (a timeout, a
//! dropped connection) could never get its subject id and enrolment secret: a second
//! Enrol of the same document is refused (it is enrolled now), with the one refusal
//! that says nothing. With a `request_id` (a UUID the app makes once per enrolment and
//! reuses for its retries), the first successful answer is remembered, subject and
//! secret included, and a retry with the same id *and the same document and name*
//! gets it again, without another real-name lookup. The same id with another document
//! or name is INVALID_ARGUMENT; only successes are remembered (a refusal is given again
//! by asking again).
//!
//! The answers live in this replica's memory until their enrolment secret expires (it
//! is useless after), at most [`MAX_REMEMBERED`] at once (beyond, new answers are not
//! remembered). A retry that reaches another replica, or comes after a restart, is
//! enrolled again and refused; the app then recovers as any enrolled citizen does (a
//! service counter, IssueEnrolmentSecret). Two retries racing each other are not
//! merged: one enrols, the other is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use citypass_token::sha256;

use crate::document::DocumentHash;
use crate::enrolment::Enrolled;
use crate::error::Error;
use crate::model::Timestamp;
use crate::name::Name;

/// Most answers remembered at once.
pub const MAX_REMEMBERED: usize = 10_000;

/// A request id as AIP-155 has it: a UUID, 36 characters, lower or upper case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The id of a request; `None` for an empty one (no retry safety asked for).
    pub fn parse(text: &str) -> Result<Option<RequestId>, Error> {
        if text.is_empty() {
            return Ok(None);
        }
        let uuid = text.len() == 36
            && text.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if !uuid {
            return Err(Error::invalid(
                "request_id",
                "must be empty or a UUID (8-4-4-4-12 hexadecimal digits)",
            ));
        }
        Ok(Some(RequestId(text.to_ascii_lowercase())))
    }
}

/// What a retry must repeat: the document (its keyed hash) and the name, hashed.
fn fingerprint(document: DocumentHash, name: &Name) -> [u8; 32] {
    let mut input = Vec::with_capacity(32 + name.as_str().len());
    input.extend_from_slice(&document.0);
    input.extend_from_slice(name.as_str().as_bytes());
    sha256(&input)
}

struct Remembered {
    fingerprint: [u8; 32],
    enrolled: Enrolled,
}

/// The remembered answers.
#[derive(Default)]
pub struct EnrolRetries {
    answers: Mutex<HashMap<RequestId, Remembered>>,
}

impl std::fmt::Debug for EnrolRetries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolRetries").finish_non_exhaustive()
    }
}

impl EnrolRetries {
    /// The first answer to `id`, if this is a retry of it; INVALID_ARGUMENT if `id` was
    /// used for another document or name.
    pub fn first_answer(
        &self,
        id: &RequestId,
        document: DocumentHash,
        name: &Name,
        now: Timestamp,
    ) -> Result<Option<Enrolled>, Error> {
        let answers = self.answers.lock().map_err(|_| Error::Poisoned)?;
        match answers.get(id) {
            Some(r) if r.enrolled.secret_expires_at <= now => Ok(None),
            Some(r) if r.fingerprint == fingerprint(document, name) => Ok(Some(r.enrolled.clone())),
            Some(_) => Err(Error::invalid(
                "request_id",
                "was used for another enrolment: make a new one for each enrolment",
            )),
            None => Ok(None),
        }
    }

    /// Remembers the answer to `id` (dropping expired ones; not at all when full).
    pub fn remember(
        &self,
        id: RequestId,
        document: DocumentHash,
        name: &Name,
        enrolled: &Enrolled,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut answers = self.answers.lock().map_err(|_| Error::Poisoned)?;
        if answers.len() >= MAX_REMEMBERED {
            answers.retain(|_, r| r.enrolled.secret_expires_at > now);
        }
        if answers.len() < MAX_REMEMBERED {
            answers.insert(
                id,
                Remembered {
                    fingerprint: fingerprint(document, name),
                    enrolled: enrolled.clone(),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuids() {
        assert_eq!(RequestId::parse("").unwrap(), None);
        let id = RequestId::parse("0F8FAD5B-D9CB-469F-A165-70867728950E")
            .unwrap()
            .unwrap();
        assert_eq!(id.0, "0f8fad5b-d9cb-469f-a165-70867728950e");
        for bad in [
            "0f8fad5b",
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5b-d9cb-469f-a165_70867728950e",
        ] {
            assert!(RequestId::parse(bad).is_err(), "{bad}");
        }
    }
}
