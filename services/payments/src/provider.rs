//! Payment providers: the adapter trait the outbox worker charges through, and the
//! sandbox that ships for development and tests.
//!
//! A provider charges a linked account under the charge's idempotency key
//! ([`ChargeKey`]): sending a key again must never charge twice, and answers what the
//! first request decided (Alipay, WeChat Pay and UnionPay all take such a key). That
//! is what makes a worker that crashed after sending, or a timeout after the provider
//! had already charged, safe to retry.
//!
//! [`Sandbox`] behaves so, with configurable outcomes: tokens starting with
//! `decline` are declined, a delay per call, and "timeout after success" (the first
//! `timeouts_after_success` calls of a key charge and then report a timeout). It keeps
//! a record of what it charged, to reconcile the ledger against, and of what it
//! decided for each key ([`Sandbox::decided`]), which its notifications report
//! ([`crate::notification::NotificationSigner::sandbox_callback`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::charge::ChargeKey;
use crate::link::{Provider, ProviderToken};
use crate::money::Fen;

/// One charge to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The idempotency key.
    pub key: ChargeKey,
    /// The provider of the link.
    pub provider: Provider,
    /// The link's token.
    pub token: ProviderToken,
    /// How much.
    pub amount: Fen,
}

/// What the provider decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Charged.
    Approved,
    /// Refused (insufficient funds, a closed agreement…): owed as arrears.
    Declined {
        /// The provider's code (no personal data).
        code: String,
    },
}

/// Why the provider's answer is not known: retry with the same key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time (the provider may have charged).
    #[error("the provider did not answer in time")]
    Timeout,
    /// The provider is unreachable or failed.
    #[error("the provider is unavailable")]
    Unavailable,
}

/// A payment provider's adapter.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `request` (idempotent in `request.key`).
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Outcome, ProviderError>>;
}

/// The sandbox's behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Waited before each answer.
    pub delay: Duration,
    /// How many times a key's first calls charge and then report a timeout.
    pub timeouts_after_success: u32,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Each key's decision.
    decided: HashMap<ChargeKey, (Outcome, Fen)>,
    /// Calls per key.
    calls: HashMap<ChargeKey, u32>,
}

/// The sandbox provider. See the module documentation.
#[derive(Debug, Default)]
pub struct Sandbox {
    config: SandboxConfig,
    ledger: Mutex<Ledger>,
}

impl Sandbox {
    /// A sandbox behaving as `config` says.
    pub fn new(config: SandboxConfig) -> Self {
        Sandbox {
            config,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// What it charged: every approved key with its amount.
    pub fn approved(&self) -> Vec<(ChargeKey, Fen)> {
        self.ledger.lock().map_or_else(
            |_| Vec::new(),
            |ledger| {
                ledger
                    .decided
                    .iter()
                    .filter(|(_, (outcome, _))| *outcome == Outcome::Approved)
                    .map(|(key, (_, amount))| (*key, *amount))
                    .collect()
            },
        )
    }

    /// What it decided for `key`, and for how much; `None` for a key it never
    /// received.
    pub fn decided(&self, key: ChargeKey) -> Option<(Outcome, Fen)> {
        self.ledger.lock().ok()?.decided.get(&key).cloned()
    }

    /// How many calls it received, all keys.
    pub fn calls(&self) -> u32 {
        self.ledger
            .lock()
            .map_or(0, |ledger| ledger.calls.values().sum())
    }
}

impl PaymentProvider for Sandbox {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<Outcome, ProviderError>> {
        Box::pin(async move {
            if !self.config.delay.is_zero() {
                tokio::time::sleep(self.config.delay).await;
            }
            let mut ledger = self.ledger.lock().map_err(|_| ProviderError::Unavailable)?;
            let calls = ledger.calls.entry(request.key).or_default();
            *calls += 1;
            let call = *calls;
            let decided = ledger
                .decided
                .entry(request.key)
                .or_insert_with(|| {
                    let outcome = if request.token.expose().starts_with("decline") {
                        Outcome::Declined {
                            code: "INSUFFICIENT_FUNDS".to_owned(),
                        }
                    } else {
                        Outcome::Approved
                    };
                    (outcome, request.amount)
                })
                .0
                .clone();
            if call <= self.config.timeouts_after_success {
                return Err(ProviderError::Timeout);
            }
            Ok(decided)
        })
    }
}
