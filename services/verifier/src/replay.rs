//! Single use across every gate: first use wins, and a gate's retry gets its first
//! answer back, scene result included.
//!
//! # Reserve, run the policy, settle
//!
//! A code that passes every other step leaves a **mark**: its `cti` for an online code;
//! its certificate serial and counter for an offline code (a phone's counter only goes
//! up within a certificate, so a lower counter is an older copy: `COUNTER_REPLAY`). The
//! mark is written **together with the gate's scan** (gate id and `scan_id`, hashed:
//! the mark's *owner*) in one atomic step (one Lua script on the mark's key).
//!
//! A scene whose policy has effects or can refuse (`scene/`) cannot know its answer
//! when the mark is written, so the mark is first **reserved**: written with its owner
//! and a PENDING answer ([`Use::answer`] `None`). The policy then runs, its effects
//! idempotent by the scan (a venue's count keyed by the scan's owner, a transit tap
//! keyed by gate and scan id), and the answer (decision, reason, the scene's facts) is
//! **settled** on the mark in a second atomic step ([`ReplayStore::settle`], which
//! writes only over PENDING and only for the owner). So:
//!
//! - the same scan again finds its own mark: settled, it gets the stored answer
//!   ([`Outcome::Retry`], `idempotent_replay`); still PENDING (the first try crashed,
//!   lost its reply, or failed closed on a dependency), it gets [`Outcome::Pending`]
//!   and runs the policy again, which takes no second effect, then settles;
//! - any other scan finds the mark taken: `REPLAYED`, whether the first scan was
//!   allowed, refused by the policy, or is still pending. A pending mark is never given
//!   to another scan, since its policy may have taken effect;
//! - two tries of one scan racing each other both run the idempotent policy; the first
//!   settle wins and the second gets the settled answer back, so both replies agree.
//!
//! A scene without a policy writes its final answer with the mark in one step
//! ([`Use::answer`] `Some`), as before.
//!
//! # Scan ids
//!
//! Before the mark, the gate's scan id is claimed with the code's fingerprint
//! (SHA-256 of its text): a second, different code under a used scan id is
//! `SCAN_ID_CONFLICT` (a gate bug), and leaves that code unused. The claim is a step of
//! its own on purpose: it lives on another key than the mark (see below), and a claim
//! without a mark is harmless (the retry claims again, finds its own fingerprint, and
//! goes on to the mark). Scan ids are claimed only by codes that reach this step: a
//! code refused earlier leaves nothing behind.
//!
//! # Keys (Redis Cluster)
//!
//! Every key carries a hash tag (`{…}`) of what it is about: `{t:<cti>}` for an online
//! mark, `{o:<serial>}` for a certificate's counters, `{s:<hash of gate and scan
//! id>}` for a scan claim. Each script touches one key, so the city's marks spread over
//! the shards of a cluster by code, and no script needs two slots. Keys hold no personal
//! data: random code ids, hashes, and the stored answer (decision, reason, kind, epoch,
//! ages, the scene's non-personal facts: see [`StoredAnswer::encode`]).
//!
//! Marks live until the code expires plus twice the skew (an offline certificate's
//! counters until the certificate does, plus as much): the verifier accepts a code up
//! to and including the second `exp + skew` by its own clock, and Redis, whose clock
//! expires the mark, may run ahead of it by up to the skew. `forget_at` is the last
//! second a mark is kept, whole (Redis: `PEXPIREAT (forget_at + 1) × 1000`).

mod memory;
mod redis;

use std::time::Duration;

use citypass_gate::Presented;
use citypass_runtime::Deadline;
use citypass_token::{CertSerial, Cti};
use futures::future::BoxFuture;

use citypass_proto::v1::{AssuranceLevel, ChargeStatus, FareClass};

use crate::face::FaceCheck;
use crate::model::{Basis, PolicyRefusal, PresentedKind, SceneFacts};

pub use memory::MemoryReplayStore;
pub use redis::{Connection as RedisConnection, Key, RedisReplayStore};

/// What a code leaves when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// An online code: its `cti`.
    Token { cti: Cti },
    /// An offline code: its certificate's serial and its counter.
    Offline { serial: CertSerial, counter: u64 },
    /// A face pass: a keyed digest of the rider and the gate (no personal data in the
    /// store), kept for the face-pass window, so that the same rider matched again at
    /// the same gate within it is a replay (one rider, one turn of the turnstile).
    Face { digest: [u8; 16] },
}

impl Mark {
    /// The mark `presented` leaves, and the last second (Unix, inclusive) it must be
    /// kept: a skew longer than the code can be accepted, since the store's clock
    /// (Redis) may run ahead of this one by up to the skew; an offline certificate's
    /// counters as long as the certificate.
    pub fn of(presented: &Presented, skew: u64) -> (Mark, u64) {
        match presented {
            Presented::Online { cti, .. } => (
                Mark::Token { cti: *cti },
                presented.forget_at(skew).saturating_add(skew),
            ),
            Presented::Offline {
                serial,
                counter,
                certificate_exp,
                ..
            } => (
                Mark::Offline {
                    serial: *serial,
                    counter: *counter,
                },
                certificate_exp.saturating_add(2 * skew),
            ),
        }
    }
}

/// The answer settled on a mark: what a retried scan gets back. A mark is left only by
/// a code that passed every step before single use, so the answer is an ALLOW or a
/// scene policy's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The kind of code, or a face.
    pub code_kind: PresentedKind,
    /// What the first decision used.
    pub basis: Basis,
    /// When it was taken (Unix seconds).
    pub decided_at: u64,
    /// `None`: ALLOW; else the scene policy's refusal.
    pub refusal: Option<PolicyRefusal>,
    /// The scene result's facts (ALLOW with a policy that has a result).
    pub scene: Option<SceneFacts>,
    /// Allowed under a fail-open policy.
    pub fail_open: bool,
    /// Written by an offline gate's upload ([`Arrival::Late`]), not by a live
    /// decision: only such a mark is passed on to payments as a late tap when its
    /// upload is retried (a live scan went to payments, or was refused, when decided).
    pub uploaded: bool,
    /// The counter's face check, made once: a retry gets it back (a second comparison
    /// per retry would let a counter probe the holder's template).
    pub face: Option<FaceCheck>,
}

impl StoredAnswer {
    /// An ALLOW without a scene result.
    pub fn allow(code_kind: impl Into<PresentedKind>, basis: Basis, decided_at: u64) -> Self {
        StoredAnswer {
            code_kind: code_kind.into(),
            basis,
            decided_at,
            refusal: None,
            scene: None,
            fail_open: false,
            uploaded: false,
            face: None,
        }
    }
}

/// When a use reaches the store, which decides how an offline counter is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Decided now, at an online gate: a counter must be above every counter already
    /// used under its certificate (a phone's counter only goes up).
    Live,
    /// Uploaded after the fact by a gate that decided offline: uses of one certificate
    /// arrive out of order from different gates, so only a counter already used by
    /// another scan is a replay (a double use); the highest counter still moves up.
    Late,
}

/// One use of a code at one gate.
#[derive(Debug, Clone)]
pub struct Use<'a> {
    /// The gate (authenticated).
    pub gate_id: &'a str,
    /// The gate's scan id.
    pub scan_id: &'a str,
    /// SHA-256 of the code's text.
    pub fingerprint: [u8; 32],
    /// The code's mark.
    pub mark: Mark,
    /// The last second (Unix, inclusive) the mark must be kept.
    pub forget_at: u64,
    /// The final answer to write with the mark in one step; `None` reserves the mark
    /// with a PENDING answer, settled later ([`ReplayStore::settle`]).
    pub answer: Option<StoredAnswer>,
    /// Live or uploaded (offline counters are judged differently).
    pub arrival: Arrival,
}

/// What the store says about a use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// First use: the mark is stored, with the answer or reserved (PENDING).
    First,
    /// The same gate and scan id again, whose first try reserved the mark and never
    /// settled it: run the policy again (its effects are idempotent) and settle.
    Pending,
    /// The same gate and scan id again: the answer settled by an earlier try.
    Retry(StoredAnswer),
    /// Used before, by another scan.
    Replayed,
    /// An offline code whose counter is not above one already used for its
    /// certificate.
    CounterReplay,
    /// The scan id was used by this gate with another code.
    ScanIdConflict,
}

/// What a settlement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// This answer is the mark's now.
    Now,
    /// Another try of the same scan settled first: its answer is in force.
    Before(StoredAnswer),
    /// The mark is not this scan's (it expired, or was never reserved).
    Lost,
}

/// Why the store could not answer. The decision then fails closed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Redis failed.
    #[error("replay store backend failed")]
    Backend(#[source] ::redis::RedisError),
    /// The call's deadline (or the store's timeout) passed first.
    #[error("replay store did not answer in time")]
    Timeout,
    /// The in-memory store is full of live marks (refuse rather than forget).
    #[error("replay store full")]
    Full,
    /// Redis holds a value this build cannot read.
    #[error("replay store holds an unreadable answer")]
    Corrupt,
    /// The Redis server lacks a command the scripts need.
    #[error("the replay store's Redis is too old: {0}")]
    Unsupported(&'static str),
}

/// Single-use marks with their answers; see the module documentation.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `used` at `now` (Unix seconds), unless its scan id or mark says
    /// otherwise.
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        now: u64,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Outcome, ReplayError>>;

    /// Settles `answer` on the mark `used` reserved: written only over PENDING and only
    /// for `used`'s scan.
    fn settle<'a>(
        &'a self,
        used: Use<'a>,
        answer: StoredAnswer,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Settled, ReplayError>>;
}

/// The owner of a mark: which gate and scan made it (hashed: fixed length, no text of
/// the gate's in the store).
pub fn owner(gate_id: &str, scan_id: &str) -> [u8; 16] {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &[gate_id.as_bytes(), b"\0", scan_id.as_bytes()].concat(),
    );
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

// ---------------------------------------------------------------------------------
// Stored answers as text (what Redis holds).

fn kind_name(kind: PresentedKind) -> &'static str {
    match kind {
        PresentedKind::Online => "cp1",
        PresentedKind::Offline => "cp2",
        PresentedKind::Face => "face",
    }
}

fn millis(age: Option<Duration>) -> String {
    age.map_or_else(|| "-".to_owned(), |a| a.as_millis().to_string())
}

/// What a reserved mark holds instead of an answer.
pub(crate) const PENDING: &str = "p";

fn scene_text(scene: Option<&SceneFacts>) -> String {
    match scene {
        None => "-".to_owned(),
        Some(SceneFacts::Hospital {
            medical_insurance_linked,
        }) => format!("h:{}", u8::from(*medical_insurance_linked)),
        Some(SceneFacts::Scenic {
            entries_today,
            remaining_capacity,
        }) => format!("s:{entries_today}:{remaining_capacity}"),
        Some(SceneFacts::Government { assurance_level }) => {
            format!("g:{}", *assurance_level as i32)
        }
        Some(SceneFacts::Transit {
            trip_id,
            fare_minor_units,
            currency_code,
            charge_status,
            fare_class,
        }) => format!(
            "t:{}:{}:{}:{}:{}",
            hex::encode(trip_id),
            fare_minor_units,
            hex::encode(currency_code),
            *charge_status as i32,
            *fare_class as i32
        ),
    }
}

fn scene_from_text(text: &str) -> Option<Option<SceneFacts>> {
    if text == "-" {
        return Some(None);
    }
    let mut parts = text.split(':');
    let tag = parts.next()?;
    let mut next = || parts.next();
    let facts = match tag {
        "h" => SceneFacts::Hospital {
            medical_insurance_linked: match next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            },
        },
        "s" => SceneFacts::Scenic {
            entries_today: next()?.parse().ok()?,
            remaining_capacity: next()?.parse().ok()?,
        },
        "g" => SceneFacts::Government {
            assurance_level: AssuranceLevel::try_from(next()?.parse::<i32>().ok()?).ok()?,
        },
        "t" => SceneFacts::Transit {
            trip_id: String::from_utf8(hex::decode(next()?).ok()?).ok()?,
            fare_minor_units: next()?.parse().ok()?,
            currency_code: String::from_utf8(hex::decode(next()?).ok()?).ok()?,
            charge_status: ChargeStatus::try_from(next()?.parse::<i32>().ok()?).ok()?,
            fare_class: FareClass::try_from(next()?.parse::<i32>().ok()?).ok()?,
        },
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Some(facts))
}

impl StoredAnswer {
    /// `2 <kind> <epoch> <revocation age ms|-> <key set age ms|-> <decided_at>
    /// <allow|refusal> <fail_open 0|1> <scene facts|->` for a live decision, the same
    /// with `3` and a last field `uploaded` for an upload's (so a live answer still
    /// reads on a verifier from before version 3); the scene facts are
    /// `h:<insurance 0|1>`, `s:<entries>:<remaining>`, `g:<assurance>`,
    /// `t:<trip id hex>:<fare minor units>:<currency hex>:<charge status>:<fare
    /// class>` (enum values as the proto numbers them). No pseudonym, name or account.
    /// A live answer with a face check is version `4`, the check last
    /// ([`FaceCheck::code`]); an upload never has one.
    pub fn encode(&self) -> String {
        let face = self.face.map(|f| format!(" {}", f.code()));
        let (version, uploaded) = match (&face, self.uploaded) {
            (_, true) => ("3", " uploaded".to_owned()),
            (Some(face), false) => ("4", face.clone()),
            (None, false) => ("2", String::new()),
        };
        format!(
            "{version} {} {} {} {} {} {} {} {}{uploaded}",
            kind_name(self.code_kind),
            self.basis.revocation_epoch,
            millis(self.basis.revocation_age),
            millis(self.basis.key_set_age),
            self.decided_at,
            self.refusal.map_or("allow", PolicyRefusal::code),
            u8::from(self.fail_open),
            scene_text(self.scene.as_ref()),
        )
    }

    /// Reads what [`StoredAnswer::encode`] wrote, and the first format (`1 <kind>
    /// <epoch> <ages> <decided_at>`, an ALLOW) that marks written before it still hold.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let version = parts.next()?;
        if !matches!(version, "1" | "2" | "3" | "4") {
            return None;
        }
        let code_kind = match parts.next()? {
            "cp1" => PresentedKind::Online,
            "cp2" => PresentedKind::Offline,
            "face" => PresentedKind::Face,
            _ => return None,
        };
        let age = |part: &str| -> Option<Option<Duration>> {
            if part == "-" {
                Some(None)
            } else {
                part.parse().ok().map(|ms| Some(Duration::from_millis(ms)))
            }
        };
        let revocation_epoch = parts.next()?.parse().ok()?;
        let revocation_age = age(parts.next()?)?;
        let key_set_age = age(parts.next()?)?;
        let decided_at = parts.next()?.parse().ok()?;
        let basis = Basis {
            revocation_epoch,
            revocation_age,
            key_set_age,
        };
        let mut answer = StoredAnswer::allow(code_kind, basis, decided_at);
        if version != "1" {
            answer.refusal = match parts.next()? {
                "allow" => None,
                name => Some(PolicyRefusal::from_code(name)?),
            };
            answer.fail_open = match parts.next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            answer.scene = scene_from_text(parts.next()?)?;
        }
        if version == "3" {
            if parts.next()? != "uploaded" {
                return None;
            }
            answer.uploaded = true;
        }
        if version == "4" {
            answer.face = Some(FaceCheck::from_code(parts.next()?)?);
        }
        if parts.next().is_some() {
            return None;
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basis() -> Basis {
        Basis {
            revocation_epoch: 42,
            revocation_age: Some(Duration::from_millis(1500)),
            key_set_age: None,
        }
    }

    #[test]
    fn stored_answers_round_trip_and_junk_is_refused() {
        let plain = StoredAnswer::allow(citypass_token::CodeKind::Offline, basis(), 1_800_000_000);
        let mut answers = vec![plain.clone()];
        let scenes = [
            SceneFacts::Hospital {
                medical_insurance_linked: true,
            },
            SceneFacts::Scenic {
                entries_today: 2,
                remaining_capacity: 4_999,
            },
            SceneFacts::Government {
                assurance_level: AssuranceLevel::InPerson,
            },
            SceneFacts::Transit {
                trip_id: "trip 1:x".into(),
                fare_minor_units: 300,
                currency_code: "CNY".into(),
                charge_status: ChargeStatus::Pending,
                fare_class: FareClass::Student,
            },
        ];
        for scene in scenes {
            answers.push(StoredAnswer {
                scene: Some(scene),
                fail_open: true,
                ..plain.clone()
            });
        }
        for refusal in PolicyRefusal::ALL {
            answers.push(StoredAnswer {
                refusal: Some(refusal),
                ..plain.clone()
            });
        }
        answers.push(StoredAnswer {
            uploaded: true,
            ..plain.clone()
        });
        answers.push(StoredAnswer {
            scene: Some(SceneFacts::Hospital {
                medical_insurance_linked: false,
            }),
            face: Some(crate::face::FaceCheck {
                result: crate::face::FaceResult::NoMatch,
                band: Some(crate::face::ScoreBand::Low),
                id_card_required: true,
            }),
            ..plain.clone()
        });
        for answer in answers {
            assert_eq!(StoredAnswer::decode(&answer.encode()), Some(answer));
        }
        // A live answer keeps version 2 (older verifiers read it); an upload's is 3.
        assert!(plain.encode().starts_with("2 "));
        // The first format still reads, as an ALLOW.
        assert_eq!(
            StoredAnswer::decode("1 cp2 42 1500 - 1800000000"),
            Some(plain)
        );
        for junk in [
            "",
            PENDING,
            "3 cp1 1 - - 1 allow 0 -",
            "3 cp1 1 - - 1 allow 0 - live",
            "4 cp1 1 - - 1 allow 0 - uploaded",
            "1 cp3 1 - - 1",
            "1 cp1 x - - 1",
            "1 cp1 1 - - 1 9",
            "2 cp1 1 - - 1",
            "2 cp1 1 - - 1 maybe 0 -",
            "2 cp1 1 - - 1 allow 2 -",
            "2 cp1 1 - - 1 allow 0 h:2",
            "2 cp1 1 - - 1 allow 0 s:1",
            "2 cp1 1 - - 1 allow 0 g:99",
            "2 cp1 1 - - 1 allow 0 x:1",
            "2 cp1 1 - - 1 allow 0 - extra",
        ] {
            assert_eq!(StoredAnswer::decode(junk), None, "{junk}");
        }
    }
}
