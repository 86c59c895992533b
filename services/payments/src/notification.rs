//! A payment provider's signed notification of a charge's outcome (NotifyCharge).
//!
//! Providers answer a charge twice: in the call's own response, and later in a signed
//! notification (Alipay's `notify_url`, WeChat Pay's and UnionPay's callbacks), which
//! is the only answer the service gets when the call timed out although the provider
//! charged. The outbox worker would learn it too when it sends the key again, but
//! only after its backoff; the notification settles the charge at once.
//!
//! A notification is trusted for its signature alone: whoever delivers it (the
//! provider, or an edge that receives its HTTPS callbacks and forwards them) proves
//! nothing. So the signature is checked first, before the body is parsed or any store
//! is read ([`NotificationKeys::verify`]), with the provider's notification key named
//! by the request, and over a message that names the provider
//! ([`signed_message`]: a sandbox notification never passes as another provider's).
//!
//! A notification speaks only for charges its provider was sent: the charge's link is
//! the signing provider's, and its outbox row was dispatched (a key never sent cannot
//! be answered; a charge made while no link was active is never sent). So a provider's
//! key, or a notification signed by it for another merchant, cannot settle another
//! provider's charge, clear a `NO_PAYMENT_LINK` debt, or stop a charge from being sent.
//!
//! Applying it ([`crate::payments::Payments::notify`]) uses the same transition as the
//! worker's answer ([`crate::store::PaymentsStore::settle`], [`crate::outbox::settles`]),
//! so the two can race in any order and the charge takes one outcome, captured once.
//! A repeated notification finds the outcome there already; a stale one (a decline
//! reported for a charge that succeeded since) changes nothing. Freshness is therefore
//! not needed for safety, and providers retry their notifications for a day or more,
//! so `notified_at` is recorded in the log, not checked.
//!
//! The body's layout is the sandbox's (JSON, like the providers' own): `out_trade_no`
//! (the 32 hex digits of the provider key the charge was sent under), `result`
//! (`approved` or `declined`), `decline_code`, `amount_fen` and `notified_at`. Real
//! providers' layouts and signature schemes (RSA2 for Alipay, WeChat Pay's v3
//! signatures) come with their adapters; until then only the sandbox's keys can be
//! configured ([`crate::config::Config::validate`]).

use std::collections::HashMap;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::charge::{Charge, ChargeKey, ChargeStatus};
use crate::error::Error;
use crate::link::Provider;
use crate::money::Fen;
use crate::outbox::{OutboxStatus, Settlement, settles};
use crate::provider::{Outcome, Sandbox};
use crate::store::{ChargeRow, PaymentsStore};

/// The id of the sandbox's development notification key.
pub const DEV_NOTIFICATION_KEY_ID: &str = "sandbox-dev-1";
/// The sandbox's development notification seed: public, for dev and tests only (the
/// sandbox is refused in production, and so is any key but the sandbox's).
pub const DEV_NOTIFICATION_SEED: [u8; 32] = *b"citypass dev sandbox notify key!";

/// Largest notification body taken.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest key id.
const MAX_KEY_ID_BYTES: usize = 64;
/// The context of every notification signature.
const DOMAIN: &[u8] = b"citypass/v1/provider-notification\0";

/// What a provider says of one charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The key the charge was sent under (its `provider_key`).
    pub provider_key: ChargeKey,
    /// The provider's decision.
    pub outcome: Outcome,
    /// The amount the provider decided on.
    pub amount: Fen,
    /// When the provider sent it, Unix seconds (recorded, not checked).
    pub notified_at: u64,
}

/// A notification as delivered: the body exactly as signed, and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNotification {
    /// The provider that signed it.
    pub provider: Provider,
    /// Which of its notification keys.
    pub key_id: String,
    /// The body, exactly as signed.
    pub body: Vec<u8>,
    /// The signature over [`signed_message`].
    pub signature: Vec<u8>,
}

/// The bytes a provider signs: a context naming a provider notification, the
/// provider's name, a NUL, then the body.
pub fn signed_message(provider: Provider, body: &[u8]) -> Vec<u8> {
    let name = provider.name().as_bytes();
    let mut message = Vec::with_capacity(DOMAIN.len() + name.len() + 1 + body.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(name);
    message.push(0);
    message.extend_from_slice(body);
    message
}

/// The body's layout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    out_trade_no: String,
    result: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    decline_code: String,
    amount_fen: u64,
    notified_at: u64,
}

/// A malformed body: which part, never its value.
fn malformed(reason: &'static str) -> Error {
    Error::InvalidArgument {
        field: "body",
        reason: reason.into(),
    }
}

impl Notification {
    /// Reads a body whose signature was checked.
    pub fn parse(body: &[u8]) -> Result<Notification, Error> {
        if body.len() > MAX_BODY_BYTES {
            return Err(malformed("longer than 4 KiB"));
        }
        let body: Body =
            serde_json::from_slice(body).map_err(|_| malformed("not a notification's JSON"))?;
        let mut key = [0u8; 16];
        hex::decode_to_slice(&body.out_trade_no, &mut key)
            .map_err(|_| malformed("out_trade_no is not 32 hex digits"))?;
        let outcome = match body.result.as_str() {
            "approved" => Outcome::Approved,
            "declined" => {
                let code = body.decline_code;
                if code.is_empty()
                    || code.len() > 64
                    || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(malformed(
                        "a decline needs a decline_code of at most 64 letters, digits or _",
                    ));
                }
                Outcome::Declined { code }
            }
            _ => return Err(malformed("result is neither approved nor declined")),
        };
        if body.amount_fen == 0 {
            return Err(malformed("amount_fen is zero"));
        }
        Ok(Notification {
            provider_key: ChargeKey(key),
            outcome,
            amount: Fen::new(body.amount_fen),
            notified_at: body.notified_at,
        })
    }

    /// The body a sandbox sends for it.
    pub fn to_body(&self) -> Vec<u8> {
        let (result, decline_code) = match &self.outcome {
            Outcome::Approved => ("approved", String::new()),
            Outcome::Declined { code } => ("declined", code.clone()),
        };
        let body = Body {
            out_trade_no: self.provider_key.to_string(),
            result: result.to_owned(),
            decline_code,
            amount_fen: self.amount.get(),
            notified_at: self.notified_at,
        };
        // A struct of strings and integers always serialises.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// What a notification did to its charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The charge took the provider's outcome now.
    Now,
    /// The charge had it already.
    Already,
    /// The charge is in a state the outcome cannot change (logged for reconciliation).
    Superseded,
}

/// Applies `notification`, signed by `provider` (checked), to the charge sent under its
/// key, at `now`. The charge must be one `provider` was sent: its link's provider, its
/// outbox row dispatched at least once (a provider cannot answer a key it never
/// received; a charge made while no link was active is never sent), else
/// [`Error::ChargeNotFound`]; its amount must be the provider's. Then the worker's own
/// transition ([`PaymentsStore::settle`]). Returns what it did and the charge as it
/// stands.
pub async fn apply(
    store: &dyn PaymentsStore,
    provider: Provider,
    notification: &Notification,
    now: u64,
) -> Result<(Applied, Charge), Error> {
    let ChargeRow { charge, outbox } = store
        .charge_by_provider_key(notification.provider_key)
        .await?
        .ok_or(Error::ChargeNotFound)?;
    let sent = matches!(outbox, Some(OutboxStatus::Dispatched | OutboxStatus::Done));
    if charge.link.map(|(_, p)| p) != Some(provider) || !sent {
        return Err(Error::ChargeNotFound);
    }
    if charge.amount != notification.amount {
        // The charge key is a hash of the trip: no rider in it.
        tracing::warn!(charge = %charge.key, "provider notification with another amount than the charge's; not applied");
        return Err(Error::AmountMismatch);
    }
    let settlement = match &notification.outcome {
        Outcome::Approved => Settlement::Approved,
        Outcome::Declined { code } => Settlement::Declined { code: code.clone() },
    };
    if has(&charge, &notification.outcome) {
        return Ok((Applied::Already, charge));
    }
    if !settles(charge.status, &settlement) {
        tracing::warn!(
            charge = %charge.key,
            status = ?charge.status,
            approved = matches!(notification.outcome, Outcome::Approved),
            "provider notification cannot change the charge; kept for reconciliation"
        );
        return Ok((Applied::Superseded, charge));
    }
    let settled = store.settle(charge.key, settlement, now).await?;
    // The worker may have applied an answer between the read and the settle; the
    // store applied at most one, and says which.
    let applied = if has(&settled, &notification.outcome) {
        Applied::Now
    } else {
        Applied::Superseded
    };
    Ok((applied, settled))
}

/// Whether `charge` stands where `outcome` would put it.
fn has(charge: &Charge, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Approved => charge.status == ChargeStatus::Succeeded,
        Outcome::Declined { code } => {
            charge.status == ChargeStatus::Declined && charge.decline_code.as_ref() == Some(code)
        }
    }
}

/// The notification keys the service trusts: per provider, by key id.
#[derive(Debug, Default)]
pub struct NotificationKeys {
    keys: HashMap<(Provider, String), UnparsedPublicKey<Vec<u8>>>,
}

impl NotificationKeys {
    /// No key: every notification is refused.
    pub fn new() -> Self {
        NotificationKeys::default()
    }

    /// Trusts `public_key` (32 bytes of Ed25519) as `provider`'s key `key_id`.
    pub fn insert(
        &mut self,
        provider: Provider,
        key_id: &str,
        public_key: &[u8],
    ) -> Result<(), Error> {
        if public_key.len() != 32 {
            return Err(Error::Config(format!(
                "notification key {key_id}: an Ed25519 public key is 32 bytes"
            )));
        }
        if key_id.is_empty() || key_id.len() > MAX_KEY_ID_BYTES {
            return Err(Error::Config(
                "notification key: its id is 1 to 64 bytes".into(),
            ));
        }
        self.keys.insert(
            (provider, key_id.to_owned()),
            UnparsedPublicKey::new(&ED25519, public_key.to_vec()),
        );
        Ok(())
    }

    /// Checks `signed`'s signature; [`Error::NotificationSignature`] for an unknown key
    /// or a signature that does not verify (the same error: a caller learns nothing
    /// of which keys exist).
    pub fn verify(&self, signed: &SignedNotification) -> Result<(), Error> {
        let key = self
            .keys
            .get(&(signed.provider, signed.key_id.clone()))
            .ok_or(Error::NotificationSignature)?;
        key.verify(
            &signed_message(signed.provider, &signed.body),
            &signed.signature,
        )
        .map_err(|_| Error::NotificationSignature)
    }
}

/// A provider's notification key (the sandbox's, in dev and tests).
pub struct NotificationSigner {
    provider: Provider,
    key_id: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for NotificationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSigner")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl NotificationSigner {
    /// `provider`'s key `key_id` from a 32-byte Ed25519 seed.
    pub fn from_seed(provider: Provider, key_id: &str, seed: &[u8]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| Error::Config("notification key: a seed is 32 bytes".into()))?;
        Ok(NotificationSigner {
            provider,
            key_id: key_id.to_owned(),
            pair,
        })
    }

    /// Its public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Its key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The sandbox's callback for `key` at `now`: what it decided, signed (as a
    /// provider calls back after its answer was lost); `None` for a key it never
    /// received.
    pub fn sandbox_callback(
        &self,
        sandbox: &Sandbox,
        key: ChargeKey,
        now: u64,
    ) -> Option<SignedNotification> {
        let (outcome, amount) = sandbox.decided(key)?;
        Some(self.sign(&Notification {
            provider_key: key,
            outcome,
            amount,
            notified_at: now,
        }))
    }

    /// `notification`, signed.
    pub fn sign(&self, notification: &Notification) -> SignedNotification {
        let body = notification.to_body();
        let signature = self
            .pair
            .sign(&signed_message(self.provider, &body))
            .as_ref()
            .to_vec();
        SignedNotification {
            provider: self.provider,
            key_id: self.key_id.clone(),
            body,
            signature,
        }
    }
}

/// The sandbox's development notification key ([`DEV_NOTIFICATION_SEED`]), which
/// `Config::dev` trusts.
pub fn dev_sandbox_signer() -> NotificationSigner {
    NotificationSigner {
        provider: Provider::Sandbox,
        key_id: DEV_NOTIFICATION_KEY_ID.to_owned(),
        pair: Ed25519KeyPair::from_seed_unchecked(&DEV_NOTIFICATION_SEED)
            .unwrap_or_else(|_| unreachable!("a 32-byte seed is always a key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NotificationSigner {
        NotificationSigner::from_seed(Provider::Sandbox, "sandbox-1", &[7u8; 32]).unwrap()
    }

    fn trusting(signer: &NotificationSigner) -> NotificationKeys {
        let mut keys = NotificationKeys::new();
        keys.insert(Provider::Sandbox, signer.key_id(), signer.public_key())
            .unwrap();
        keys
    }

    fn approval() -> Notification {
        Notification {
            provider_key: ChargeKey([0xab; 16]),
            outcome: Outcome::Approved,
            amount: Fen::new(500),
            notified_at: 1_764_000_000,
        }
    }

    #[test]
    fn a_signed_notification_verifies_and_reads_back() {
        let signer = signer();
        let signed = signer.sign(&approval());
        trusting(&signer).verify(&signed).unwrap();
        assert_eq!(Notification::parse(&signed.body).unwrap(), approval());
        let decline = Notification {
            outcome: Outcome::Declined {
                code: "INSUFFICIENT_FUNDS".into(),
            },
            ..approval()
        };
        assert_eq!(
            Notification::parse(&signer.sign(&decline).body).unwrap(),
            decline
        );
    }

    #[test]
    fn a_changed_body_another_key_or_another_provider_is_refused() {
        let signer = signer();
        let keys = trusting(&signer);
        let signed = signer.sign(&approval());

        let mut tampered = signed.clone();
        tampered.body = Notification {
            amount: Fen::new(1),
            ..approval()
        }
        .to_body();
        assert!(matches!(
            keys.verify(&tampered),
            Err(Error::NotificationSignature)
        ));

        let mut unknown = signed.clone();
        unknown.key_id = "sandbox-2".into();
        assert!(matches!(
            keys.verify(&unknown),
            Err(Error::NotificationSignature)
        ));

        // The same key trusted for Alipay does not make a sandbox signature Alipay's.
        let mut keys_for_alipay = NotificationKeys::new();
        keys_for_alipay
            .insert(Provider::Alipay, signer.key_id(), signer.public_key())
            .unwrap();
        let mut as_alipay = signed.clone();
        as_alipay.provider = Provider::Alipay;
        assert!(matches!(
            keys_for_alipay.verify(&as_alipay),
            Err(Error::NotificationSignature)
        ));

        let stranger = NotificationSigner::from_seed(Provider::Sandbox, "sandbox-1", &[8u8; 32])
            .unwrap()
            .sign(&approval());
        assert!(matches!(
            keys.verify(&stranger),
            Err(Error::NotificationSignature)
        ));
    }

    #[test]
    fn malformed_bodies_name_what_is_wrong() {
        for (body, part) in [
            (&b"{"[..], "JSON"),
            (
                br#"{"out_trade_no":"zz","result":"approved","amount_fen":1,"notified_at":0}"#,
                "out_trade_no",
            ),
            (
                br#"{"out_trade_no":"abababababababababababababababab","result":"maybe","amount_fen":1,"notified_at":0}"#,
                "result",
            ),
            (
                br#"{"out_trade_no":"abababababababababababababababab","result":"declined","amount_fen":1,"notified_at":0}"#,
                "decline_code",
            ),
            (
                br#"{"out_trade_no":"abababababababababababababababab","result":"approved","amount_fen":0,"notified_at":0}"#,
                "zero",
            ),
            (
                br#"{"out_trade_no":"abababababababababababababababab","result":"approved","amount_fen":1,"notified_at":0,"extra":1}"#,
                "JSON",
            ),
        ] {
            match Notification::parse(body) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "body");
                    assert!(reason.contains(part), "{reason} should name {part}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(Notification::parse(&vec![b' '; MAX_BODY_BYTES + 1]).is_err());
    }
}
