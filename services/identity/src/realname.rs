//! The national real-name check: an external system, behind a trait.
//!
//! Enrolment asks the national system whether a name and a document number belong
//! together. That system lives outside citypass (and outside every developer's
//! laptop), so the service depends only on [`RealNameCheck`]. Two implement it:
//! [`Sandbox`], for development and tests, with outcomes chosen by configuration and
//! refused when the configuration says `environment: production`; and
//! [`tencent::Tencent`], production's, the provider's public HTTPS API
//! (`real_name: {provider: tencent, …}`; its request signing in [`tc3`]).
//!
//! How an outcome shows (identity.proto, `RealNameCheckOutcome`):
//!
//! | outcome | subject status | assurance level |
//! |---|---|---|
//! | MATCHED | ACTIVE | REAL_NAME_VERIFIED |
//! | MISMATCHED, NOT_FOUND | REJECTED | what the number alone gives |
//! | UNAVAILABLE | PENDING | what the number alone gives |
//!
//! ("what the number alone gives": DOCUMENT_CHECKED for numbers with a check digit,
//! SELF_ASSERTED otherwise.)

use citypass_proto::v1::{AssuranceLevel, RealNameCheckOutcome, SubjectStatus};
use futures::future::BoxFuture;
use serde::Deserialize;

use crate::document::Document;
use crate::error::Error;
use crate::name::Name;

pub mod tc3;
pub mod tencent;

/// The answer of a real-name check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Name and number belong together.
    Matched,
    /// The document exists but the name does not match.
    Mismatched,
    /// The document number is unknown.
    NotFound,
    /// The system did not answer (timeout, outage).
    Unavailable,
}

impl Outcome {
    /// The outcome as the API reports it.
    pub fn to_proto(self) -> RealNameCheckOutcome {
        match self {
            Outcome::Matched => RealNameCheckOutcome::Matched,
            Outcome::Mismatched => RealNameCheckOutcome::Mismatched,
            Outcome::NotFound => RealNameCheckOutcome::NotFound,
            Outcome::Unavailable => RealNameCheckOutcome::Unavailable,
        }
    }

    /// The status a new subject gets with this outcome.
    pub fn status(self) -> SubjectStatus {
        match self {
            Outcome::Matched => SubjectStatus::Active,
            Outcome::Mismatched | Outcome::NotFound => SubjectStatus::Rejected,
            Outcome::Unavailable => SubjectStatus::Pending,
        }
    }

    /// The assurance level a new subject gets with this outcome, given what the
    /// document number alone established.
    pub fn assurance(self, document_only: AssuranceLevel) -> AssuranceLevel {
        match self {
            Outcome::Matched => AssuranceLevel::RealNameVerified,
            _ => document_only,
        }
    }
}

/// The national real-name system, as enrolment sees it.
///
/// Implementations must not log the name or the number, and must turn every failure
/// of the external system (timeouts included) into [`Outcome::Unavailable`].
pub trait RealNameCheck: Send + Sync + 'static {
    /// Checks that `name` belongs to `document`.
    fn check<'a>(&'a self, document: &'a Document, name: &'a Name) -> BoxFuture<'a, Outcome>;
}

/// Configuration of the [`Sandbox`]: a default outcome and rules that override it.
///
/// ```yaml
/// real_name_sandbox:
///   default_outcome: matched
///   rules:
///     - outcome: unavailable
///       document_number_suffix: "0019"
///     - outcome: mismatched
///       name: Wrong Name
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// The outcome when no rule matches (default `matched`).
    #[serde(default = "default_outcome")]
    pub default_outcome: Outcome,
    /// Checked in order; the first rule that matches decides.
    #[serde(default)]
    pub rules: Vec<SandboxRule>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            default_outcome: default_outcome(),
            rules: Vec::new(),
        }
    }
}

fn default_outcome() -> Outcome {
    Outcome::Matched
}

/// One sandbox rule: its criteria (all given ones must match) and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRule {
    /// The outcome when the rule matches.
    pub outcome: Outcome,
    /// Matches document numbers ending with this (case-insensitive).
    #[serde(default)]
    pub document_number_suffix: Option<String>,
    /// Matches this full name (case-insensitive, whitespace normalised).
    #[serde(default)]
    pub name: Option<String>,
}

/// A real-name check with configured outcomes, for development and tests.
#[derive(Debug, Clone)]
pub struct Sandbox {
    default_outcome: Outcome,
    rules: Vec<(Outcome, Option<String>, Option<String>)>,
}

impl Sandbox {
    /// A sandbox that answers `outcome` to everything.
    pub fn always(outcome: Outcome) -> Self {
        Sandbox {
            default_outcome: outcome,
            rules: Vec::new(),
        }
    }

    /// A sandbox from its configuration; every rule needs at least one criterion.
    pub fn new(config: &SandboxConfig) -> Result<Self, Error> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let suffix = rule
                .document_number_suffix
                .as_deref()
                .map(|s| s.trim().to_ascii_uppercase());
            let name = rule.name.as_deref().map(normalise_name);
            if suffix.as_deref().is_none_or(str::is_empty)
                && name.as_deref().is_none_or(str::is_empty)
            {
                return Err(Error::Config(format!(
                    "real_name_sandbox.rules[{i}] needs a non-empty document_number_suffix or name"
                )));
            }
            rules.push((
                rule.outcome,
                suffix.filter(|s| !s.is_empty()),
                name.filter(|n| !n.is_empty()),
            ));
        }
        Ok(Sandbox {
            default_outcome: config.default_outcome,
            rules,
        })
    }

    /// The outcome for a document number and name.
    pub fn outcome(&self, document: &Document, name: &Name) -> Outcome {
        let name = normalise_name(name.as_str());
        self.rules
            .iter()
            .find(|(_, suffix, rule_name)| {
                suffix
                    .as_deref()
                    .is_none_or(|s| document.number().ends_with(s))
                    && rule_name.as_deref().is_none_or(|n| n == name)
            })
            .map_or(self.default_outcome, |(outcome, _, _)| *outcome)
    }
}

fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl RealNameCheck for Sandbox {
    fn check<'a>(&'a self, document: &'a Document, name: &'a Name) -> BoxFuture<'a, Outcome> {
        Box::pin(std::future::ready(self.outcome(document, name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Date;
    use citypass_proto::v1::DocumentType;

    fn passport(number: &str) -> Document {
        let today = Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        Document::parse(DocumentType::Passport, number, today).unwrap()
    }

    fn name(n: &str) -> Name {
        Name::parse(n).unwrap()
    }

    #[test]
    fn the_default_is_matched_and_rules_override_it_in_order() {
        let config: SandboxConfig = SandboxConfig {
            default_outcome: Outcome::Matched,
            rules: vec![
                SandboxRule {
                    outcome: Outcome::Unavailable,
                    document_number_suffix: Some("0019".into()),
                    name: None,
                },
                SandboxRule {
                    outcome: Outcome::Mismatched,
                    document_number_suffix: None,
                    name: Some("  wrong   NAME ".into()),
                },
                SandboxRule {
                    outcome: Outcome::NotFound,
                    document_number_suffix: Some("e9".into()),
                    name: Some("Jane Roe".into()),
                },
            ],
        };
        let sandbox = Sandbox::new(&config).unwrap();
        let john = name("John Smith");
        assert_eq!(
            sandbox.outcome(&passport("E12345678"), &john),
            Outcome::Matched
        );
        assert_eq!(
            sandbox.outcome(&passport("E12340019"), &john),
            Outcome::Unavailable
        );
        assert_eq!(
            sandbox.outcome(&passport("E12345678"), &name("Wrong Name")),
            Outcome::Mismatched
        );
        // Both criteria must match.
        assert_eq!(
            sandbox.outcome(&passport("XE12345E9"), &john),
            Outcome::Matched
        );
        assert_eq!(
            sandbox.outcome(&passport("XE12345E9"), &name("jane roe")),
            Outcome::NotFound
        );
        // The first matching rule wins.
        assert_eq!(
            sandbox.outcome(&passport("E12340019"), &name("Wrong Name")),
            Outcome::Unavailable
        );
        let down = Sandbox::always(Outcome::Unavailable);
        assert_eq!(
            down.outcome(&passport("E12345678"), &john),
            Outcome::Unavailable
        );
    }

    #[test]
    fn a_rule_without_criteria_is_refused() {
        let config = SandboxConfig {
            default_outcome: Outcome::Matched,
            rules: vec![SandboxRule {
                outcome: Outcome::Mismatched,
                document_number_suffix: Some(" ".into()),
                name: None,
            }],
        };
        assert!(Sandbox::new(&config).is_err());
    }

    #[test]
    fn outcomes_show_in_status_and_assurance() {
        let checked = AssuranceLevel::DocumentChecked;
        assert_eq!(Outcome::Matched.status(), SubjectStatus::Active);
        assert_eq!(
            Outcome::Matched.assurance(checked),
            AssuranceLevel::RealNameVerified
        );
        assert_eq!(Outcome::Mismatched.status(), SubjectStatus::Rejected);
        assert_eq!(Outcome::NotFound.status(), SubjectStatus::Rejected);
        assert_eq!(Outcome::NotFound.assurance(checked), checked);
        assert_eq!(Outcome::Unavailable.status(), SubjectStatus::Pending);
        assert_eq!(
            Outcome::Unavailable.assurance(AssuranceLevel::SelfAsserted),
            AssuranceLevel::SelfAsserted
        );
        assert_eq!(
            Outcome::Unavailable.to_proto(),
            RealNameCheckOutcome::Unavailable
        );
    }
}
