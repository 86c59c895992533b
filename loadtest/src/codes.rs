//! The codes of a run, made before it starts.
//!
//! Signing costs about as much CPU as verifying, so a generator that signed while it
//! ran would take the server's cores and flatter nobody: every code is signed here,
//! with the issuer's key ring, before the first request is due. Each kind is made the
//! way it arises in the field: a replayed code is a good code that a gate has already
//! used (spent once before the run, see [`Plan::spend_first`]), an expired one was
//! issued ten minutes ago, a forged one is a good code with a byte of its signature
//! flipped, a garbled one is something a scanner read that is not a code at all.
//!
//! Every code is sealed for one of the run's riders (`holders`: enrolled and linked to
//! a payment account, [`crate::riders`]), code *i* for rider *i* mod the pool, so that a transit gate's
//! policy finds its holder at identity and taps payments for a fresh code, as it
//! would for a real rider's.

use citypass_token::{Issuer, Scopes, SubjectId, TokenError};

use crate::mix::CodeKind;

/// Lifetime of the good codes: the most gates accept for an online code, so that the
/// codes made before a run last through it.
pub const CODE_LIFETIME: u64 = 300;
/// How long before the run the expired codes were issued (far beyond the skew).
const EXPIRED_AGE: u64 = 600;
/// The expired codes' lifetime (a normal one).
const EXPIRED_LIFETIME: u64 = 60;
/// Texts a scanner might read that are not codes, each failing a different early
/// check (prefix, Base45, CBOR).
const GARBLED: [&str; 3] = [
    "NOT-A-CITYPASS-CODE",
    "CP1:lower case is not base45",
    // Base45 of the CBOR bytes 01 02 03: one integer, then trailing bytes.
    "CP1:X5030",
];

/// One request's code.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What it is meant to test.
    pub kind: CodeKind,
    /// The QR text the gate sends.
    pub text: String,
}

/// Every code of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One per request, in order.
    pub requests: Vec<Planned>,
    /// Codes to use once before the run, so that their second use in it is a replay.
    pub spend_first: Vec<String>,
}

/// Makes the codes for `kinds`, one per request, with `issuer` at time `now`, code
/// *i* sealed for holder *i* mod their number (none: `MissingClaim("sub")`).
pub fn make(
    issuer: &Issuer,
    kinds: &[CodeKind],
    holders: &[SubjectId],
    now: u64,
) -> Result<Plan, TokenError> {
    if holders.is_empty() {
        return Err(TokenError::MissingClaim("sub"));
    }
    let mut requests = Vec::with_capacity(kinds.len());
    let mut spend_first = Vec::new();
    let mut garbled = GARBLED.iter().cycle();
    for (i, &kind) in kinds.iter().enumerate() {
        let subject = holders[i % holders.len()].as_bytes();
        let text = match kind {
            CodeKind::Fresh => fresh(issuer, subject, now)?,
            CodeKind::Replayed => {
                let text = fresh(issuer, subject, now)?;
                spend_first.push(text.clone());
                text
            }
            CodeKind::Expired => {
                let iat = now.saturating_sub(EXPIRED_AGE);
                issuer
                    .issue_token(subject, Scopes::all(), iat, EXPIRED_LIFETIME)?
                    .text
            }
            CodeKind::Forged => forge(&fresh(issuer, subject, now)?)?,
            CodeKind::Garbled => garbled.next().copied().unwrap_or("").to_owned(),
        };
        requests.push(Planned { kind, text });
    }
    Ok(Plan {
        requests,
        spend_first,
    })
}

fn fresh(issuer: &Issuer, subject: &[u8], now: u64) -> Result<String, TokenError> {
    Ok(issuer
        .issue_token(subject, Scopes::all(), now, CODE_LIFETIME)?
        .text)
}

/// `text` with the last byte of its COSE_Sign1 flipped: the last item of the array is
/// the signature, so the code still decodes and only the signature check fails.
pub fn forge(text: &str) -> Result<String, TokenError> {
    let (prefix, body) = text.split_at(text.find(':').map_or(0, |at| at + 1));
    let mut bytes = base45::decode(body).map_err(|_| TokenError::BadBase45)?;
    let last = bytes.last_mut().ok_or(TokenError::Truncated)?;
    *last ^= 0x01;
    Ok(format!("{prefix}{}", base45::encode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use citypass_token::{IssuerKey, KeySet, KeyStatus, KeyUsage, PublishedKey, SubjectKey};
    use citypass_token::{ObjectType, Validation, verify_online};

    fn riders(n: u8) -> Vec<SubjectId> {
        (1..=n).map(|b| SubjectId::from_bytes([b; 16])).collect()
    }

    fn issuer() -> Issuer {
        Issuer::new(
            "cp",
            IssuerKey::from_seed(&[7; 32]).unwrap(),
            SubjectKey::from_bytes(&[8; 32]).unwrap(),
        )
    }

    fn check(issuer: &Issuer, text: &str, now: u64) -> Result<(), TokenError> {
        verified(issuer, text, now).map(|_| ())
    }

    fn verified(
        issuer: &Issuer,
        text: &str,
        now: u64,
    ) -> Result<citypass_token::VerifiedToken, TokenError> {
        let keys = KeySet::new(vec![PublishedKey {
            key: issuer.key().public_key().clone(),
            status: KeyStatus::Active,
            usage: KeyUsage::Code,
        }])
        .unwrap();
        verify_online(text, &keys, &Validation::at(now))
    }

    #[test]
    fn each_kind_fails_the_check_it_is_meant_for() {
        let issuer = issuer();
        let now = citypass_token::unix_now();
        let plan = make(&issuer, &CodeKind::ALL, &riders(2), now).unwrap();
        let by_kind = |k| &plan.requests.iter().find(|p| p.kind == k).unwrap().text;
        assert!(check(&issuer, by_kind(CodeKind::Fresh), now).is_ok());
        assert!(check(&issuer, by_kind(CodeKind::Replayed), now).is_ok());
        assert_eq!(plan.spend_first, vec![by_kind(CodeKind::Replayed).clone()]);
        assert_eq!(
            check(&issuer, by_kind(CodeKind::Expired), now),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(&issuer, by_kind(CodeKind::Forged), now),
            Err(TokenError::BadSignature)
        );
        assert!(check(&issuer, by_kind(CodeKind::Garbled), now).is_err());
    }

    #[test]
    fn codes_are_sealed_for_the_riders_in_turn() {
        let issuer = issuer();
        let now = citypass_token::unix_now();
        let opener = SubjectKey::from_bytes(&[8; 32]).unwrap();
        let plan = make(&issuer, &[CodeKind::Fresh; 5], &riders(3), now).unwrap();
        for (i, planned) in plan.requests.iter().enumerate() {
            let claims = verified(&issuer, &planned.text, now).unwrap().claims;
            let subject = opener
                .open(
                    &claims.sealed_sub,
                    claims.cti.as_bytes(),
                    ObjectType::Online.typ(),
                )
                .unwrap();
            let rider = u8::try_from(i % 3 + 1).unwrap();
            assert_eq!(subject, vec![rider; 16], "code {i}");
        }
        assert!(make(&issuer, &[CodeKind::Fresh], &[], now).is_err());
    }

    #[test]
    fn every_garbled_text_is_refused_before_any_key_is_needed() {
        let issuer = issuer();
        let now = citypass_token::unix_now();
        for text in GARBLED {
            let err = check(&issuer, text, now).unwrap_err();
            assert!(
                !matches!(err, TokenError::BadSignature | TokenError::UnknownKid),
                "{text}: {err:?}"
            );
        }
    }
}
