//! Payment links: a transit account's link to a payment provider's account, with the
//! consent the citizen gave.
//!
//! What is stored is the provider's own token for the account (a payment agreement,
//! refreshed by the provider's SDK) and the last 4 digits for display, never a card
//! number: a token or last4 that looks like one ([`crate::card`]) is refused before
//! anything is stored. At most one link per transit account is active; unlinking keeps
//! the row (its charges stay in the ledger's history). Token, last 4 digits and
//! account are personal data: their `Debug` forms hide them.

use std::fmt;

use crate::account::TransitAccount;
use crate::card::contains_card_number;
use crate::error::Error;

/// Longest provider token accepted.
pub const MAX_TOKEN_LEN: usize = 256;
/// Shortest provider token accepted (provider agreements are long random strings).
pub const MIN_TOKEN_LEN: usize = 8;
/// Longest consent text version accepted.
pub const MAX_CONSENT_VERSION_LEN: usize = 32;

/// A payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The sandbox adapter, for dev and tests.
    Sandbox,
    /// Alipay.
    Alipay,
    /// WeChat Pay.
    WechatPay,
    /// UnionPay.
    UnionPay,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 4] = [
        Provider::Sandbox,
        Provider::Alipay,
        Provider::WechatPay,
        Provider::UnionPay,
    ];

    /// The number stored (the proto enum's number).
    pub fn code(self) -> i16 {
        match self {
            Provider::Sandbox => 1,
            Provider::Alipay => 2,
            Provider::WechatPay => 3,
            Provider::UnionPay => 4,
        }
    }

    /// From its stored number.
    pub fn from_code(code: i16) -> Option<Self> {
        Provider::ALL.into_iter().find(|p| p.code() == code)
    }

    /// Its name in the ledger (the provider clearing account).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Sandbox => "sandbox",
            Provider::Alipay => "alipay",
            Provider::WechatPay => "wechat-pay",
            Provider::UnionPay => "unionpay",
        }
    }

    /// The provider [`Provider::name`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The provider's token for the account: printable ASCII, 8 to 256 characters, not a
/// card number. Never returned, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderToken(String);

impl ProviderToken {
    /// Checks `text` (field `provider_token`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        const FIELD: &str = "provider_token";
        if text.is_empty() {
            return Err(Error::invalid(FIELD, "is required"));
        }
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len()) {
            return Err(Error::invalid(FIELD, "must be 8 to 256 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                FIELD,
                "must be printable ASCII without spaces",
            ));
        }
        if contains_card_number(text) {
            return Err(Error::invalid(
                FIELD,
                "looks like a card number; link with the provider's token, never the card number",
            ));
        }
        Ok(ProviderToken(text.to_owned()))
    }

    /// The token, for the provider adapter and the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderToken(…)")
    }
}

/// The last 4 digits of the card or account, for display: exactly 4 ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Last4([u8; 4]);

impl Last4 {
    /// Checks `text` (field `last4`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bytes: [u8; 4] = text
            .as_bytes()
            .try_into()
            .map_err(|_| Error::invalid("last4", "must be exactly 4 digits"))?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Error::invalid("last4", "must be exactly 4 digits"));
        }
        Ok(Last4(bytes))
    }

    /// The 4 digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Last4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Last4(…)")
    }
}

/// The citizen's consent to be charged, as given in the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Version of the consent text agreed to, e.g. `2026-01`.
    pub text_version: String,
    /// When the citizen agreed (the app's clock), Unix seconds.
    pub consented_at: u64,
}

impl Consent {
    /// Checks the version (field `consent.text_version`): 1 to 32 characters of
    /// `[A-Za-z0-9._-]`, never a card number.
    pub fn new(text_version: &str, consented_at: u64) -> Result<Self, Error> {
        let ok = !text_version.is_empty()
            && text_version.len() <= MAX_CONSENT_VERSION_LEN
            && text_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(Error::invalid(
                "consent.text_version",
                "must be 1 to 32 characters of letters, digits, '.', '_' or '-'",
            ));
        }
        // Every free-text field of a link is searched, not only the token.
        if contains_card_number(text_version) {
            return Err(Error::invalid(
                "consent.text_version",
                "looks like a card number; send the consent text's version",
            ));
        }
        Ok(Consent {
            text_version: text_version.to_owned(),
            consented_at,
        })
    }
}

/// A link's id: 16 random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(pub [u8; 16]);

impl LinkId {
    /// A fresh random id.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| Error::Randomness)?;
        Ok(LinkId(bytes))
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A link to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    /// Its id.
    pub id: LinkId,
    /// The linked transit account.
    pub account: TransitAccount,
    /// The provider.
    pub provider: Provider,
    /// The provider's token.
    pub token: ProviderToken,
    /// Last 4 digits, for display.
    pub last4: Last4,
    /// The consent given.
    pub consent: Consent,
}

/// A stored link (without its token, which only the provider adapter reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its id.
    pub id: LinkId,
    /// The linked transit account.
    pub account: TransitAccount,
    /// The provider.
    pub provider: Provider,
    /// Last 4 digits, for display.
    pub last4: Last4,
    /// The consent given.
    pub consent: Consent,
    /// When the server recorded the link and its consent, Unix seconds.
    pub linked_at: u64,
    /// When it was unlinked; `None` while active.
    pub unlinked_at: Option<u64>,
}

impl Link {
    /// Whether charges go to this link.
    pub fn is_active(&self) -> bool {
        self.unlinked_at.is_none()
    }

    /// The stored view of `new`, linked at `now`.
    pub fn from_new(new: &NewLink, now: u64) -> Self {
        Link {
            id: new.id,
            account: new.account,
            provider: new.provider,
            last4: new.last4,
            consent: new.consent.clone(),
            linked_at: now,
            unlinked_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_refused_as_tokens() {
        for card in [
            "4111111111111111",
            "tok-4111-1111-1111-1111",
            "6212345678901265",
            "tok.4111.1111.1111.1111",
            "tok_4111_1111_1111_1111",
            "tok/4111/1111/1111/1111",
            "tok_41111111111111119",
        ] {
            let err = ProviderToken::parse(card).unwrap_err();
            assert!(err.to_string().contains("card number"), "{err}");
            assert!(!err.to_string().contains(card));
        }
        assert!(ProviderToken::parse("agr_sandbox_4f9c2a7e1b").is_ok());
        assert!(ProviderToken::parse("short").is_err());
        assert!(ProviderToken::parse("has space in it").is_err());
        assert!(ProviderToken::parse(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn last4_is_four_digits_and_hidden_from_debug() {
        assert_eq!(Last4::parse("1234").unwrap().as_str(), "1234");
        for bad in ["", "123", "12345", "12a4", "１２３４"] {
            assert!(Last4::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Last4::parse("1234").unwrap()), "Last4(…)");
        let token = ProviderToken::parse("agr_sandbox_4f9c2a7e1b").unwrap();
        assert!(!format!("{token:?}").contains("agr"));
    }

    #[test]
    fn consent_versions_are_short_and_plain() {
        assert!(Consent::new("2026-01", 1).is_ok());
        assert!(Consent::new("", 1).is_err());
        assert!(Consent::new("v 1", 1).is_err());
        assert!(Consent::new(&"v".repeat(33), 1).is_err());
        for card in [
            "4111111111111111",
            "4111.1111.1111.1111",
            "v4111_1111_1111_1111",
        ] {
            match Consent::new(card, 1) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "consent.text_version");
                    assert!(reason.contains("card number") && !reason.contains("4111"));
                }
                other => panic!("{card}: {other:?}"),
            }
        }
    }
}
