//! Single use across every gate: first use wins, and a gate's retry gets its first
//! answer back.
//!
//! # The mark and the answer, in one step
//!
//! A code that passes every other step leaves a **mark**: its `cti` for an online code;
//! its certificate serial and counter for an offline code (a phone's counter only goes
//! up within a certificate, so a lower counter is an older copy: `COUNTER_REPLAY`). The
//! mark is written **together with the answer the gate gets and the gate's scan**
//! (gate id and `scan_id`), in one atomic step (one Lua script on the mark's key), so
//! no crash can leave a mark without its answer: a gate that retries the same scan
//! after a timeout finds its own scan on the mark and gets the stored answer
//! (`idempotent_replay`), never a false `REPLAYED`. Another scan on the mark is a
//! replay.
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
//! data: random code ids, hashes, and the stored answer (decision, kind, epoch, ages).
//!
//! Marks live until the code expires plus twice the skew (an offline certificate's
//! counters until the certificate does, plus as much): the verifier accepts a code up
//! to and including the second `exp + skew` by its own clock, and Redis, whose clock
//! expires the mark, may run ahead of it by up to the skew. `forget_at` is the last
//! second a mark is kept, whole (Redis: `PEXPIREAT (forget_at + 1) × 1000`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use citypass_runtime::Deadline;
use citypass_token::{CertSerial, CodeKind, Cti};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::model::Basis;

/// What a code leaves when it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// An online code: its `cti`.
    Token { cti: Cti },
    /// An offline code: its certificate's serial and its counter.
    Offline { serial: CertSerial, counter: u64 },
}

/// The answer stored with a mark: what a retried scan gets back. Only ALLOW answers are
/// stored (a mark is left only by a code that passed every step before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The kind of code.
    pub code_kind: CodeKind,
    /// What the first decision used.
    pub basis: Basis,
    /// When it was taken (Unix seconds).
    pub decided_at: u64,
}

/// One use of a code at one gate.
#[derive(Debug, Clone, Copy)]
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
    /// The answer to store with the mark.
    pub answer: StoredAnswer,
}

/// What the store says about a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First use: the mark and the answer are stored.
    First,
    /// The same gate and scan id again: the answer stored by the first try.
    Retry(StoredAnswer),
    /// Used before, by another scan.
    Replayed,
    /// An offline code whose counter is not above one already used for its
    /// certificate.
    CounterReplay,
    /// The scan id was used by this gate with another code.
    ScanIdConflict,
}

/// Why the store could not answer. The decision then fails closed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Redis failed.
    #[error("replay store backend failed")]
    Backend(#[source] redis::RedisError),
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
}

/// The owner of a mark: which gate and scan made it (hashed: fixed length, no text of
/// the gate's in the store).
fn owner(gate_id: &str, scan_id: &str) -> [u8; 16] {
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

fn kind_name(kind: CodeKind) -> &'static str {
    match kind {
        CodeKind::Online => "cp1",
        CodeKind::Offline => "cp2",
    }
}

fn millis(age: Option<Duration>) -> String {
    age.map_or_else(|| "-".to_owned(), |a| a.as_millis().to_string())
}

impl StoredAnswer {
    /// `1 <kind> <epoch> <revocation age ms|-> <key set age ms|-> <decided_at>`.
    pub fn encode(&self) -> String {
        format!(
            "1 {} {} {} {} {}",
            kind_name(self.code_kind),
            self.basis.revocation_epoch,
            millis(self.basis.revocation_age),
            millis(self.basis.key_set_age),
            self.decided_at
        )
    }

    /// Reads what [`StoredAnswer::encode`] wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let code_kind = match parts.next()? {
            "cp1" => CodeKind::Online,
            "cp2" => CodeKind::Offline,
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
        if parts.next().is_some() {
            return None;
        }
        Some(StoredAnswer {
            code_kind,
            basis: Basis {
                revocation_epoch,
                revocation_age,
                key_set_age,
            },
            decided_at,
        })
    }
}

// ---------------------------------------------------------------------------------
// Memory.

#[derive(Debug, Clone, Copy)]
struct Owned {
    owner: [u8; 16],
    answer: StoredAnswer,
}

#[derive(Debug)]
struct Certificate {
    highest: u64,
    forget_at: u64,
    uses: HashMap<u64, Owned>,
}

#[derive(Debug, Default)]
struct Memory {
    scans: HashMap<[u8; 16], ([u8; 32], u64)>,
    tokens: HashMap<Cti, (Owned, u64)>,
    certificates: HashMap<CertSerial, Certificate>,
    /// The offline uses held under all certificates: each is an entry of its own, or
    /// one phone's certificate could fill the memory past its capacity.
    offline_uses: usize,
}

impl Memory {
    fn len(&self) -> usize {
        self.scans.len() + self.tokens.len() + self.certificates.len() + self.offline_uses
    }

    fn prune(&mut self, now: u64) {
        self.scans.retain(|_, (_, forget_at)| *forget_at >= now);
        self.tokens.retain(|_, (_, forget_at)| *forget_at >= now);
        let mut forgotten = 0;
        self.certificates.retain(|_, c| {
            let keep = c.forget_at >= now;
            if !keep {
                forgotten += c.uses.len();
            }
            keep
        });
        self.offline_uses -= forgotten;
    }
}

/// The in-memory store (`citypass dev`, tests): one process's marks, bounded; when
/// full of live marks it refuses ([`ReplayError::Full`]) rather than forget one.
#[derive(Debug)]
pub struct MemoryReplayStore {
    capacity: usize,
    inner: Mutex<Memory>,
}

impl MemoryReplayStore {
    /// A store for at most `capacity` live entries (scan claims and marks).
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            capacity,
            inner: Mutex::new(Memory::default()),
        }
    }

    fn record_now(&self, used: &Use<'_>, now: u64) -> Result<Outcome, ReplayError> {
        let mut memory = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // At most three new entries: the scan claim, a mark (or certificate) and a use.
        if memory.len() + 3 > self.capacity {
            memory.prune(now);
            if memory.len() + 3 > self.capacity {
                return Err(ReplayError::Full);
            }
        }
        let owner = owner(used.gate_id, used.scan_id);
        match memory.scans.get(&owner) {
            Some((fingerprint, _)) if *fingerprint != used.fingerprint => {
                return Ok(Outcome::ScanIdConflict);
            }
            Some(_) => {}
            None => {
                memory
                    .scans
                    .insert(owner, (used.fingerprint, used.forget_at));
            }
        }
        let mine = Owned {
            owner,
            answer: used.answer,
        };
        match used.mark {
            Mark::Token { cti } => match memory.tokens.get(&cti) {
                Some((first, _)) if first.owner == owner => Ok(Outcome::Retry(first.answer)),
                Some(_) => Ok(Outcome::Replayed),
                None => {
                    memory.tokens.insert(cti, (mine, used.forget_at));
                    Ok(Outcome::First)
                }
            },
            Mark::Offline { serial, counter } => {
                let certificate =
                    memory
                        .certificates
                        .entry(serial)
                        .or_insert_with(|| Certificate {
                            highest: 0,
                            forget_at: used.forget_at,
                            uses: HashMap::new(),
                        });
                if let Some(first) = certificate.uses.get(&counter) {
                    return Ok(if first.owner == owner {
                        Outcome::Retry(first.answer)
                    } else {
                        Outcome::Replayed
                    });
                }
                if !certificate.uses.is_empty() && counter <= certificate.highest {
                    return Ok(Outcome::CounterReplay);
                }
                certificate.highest = counter;
                certificate.forget_at = certificate.forget_at.max(used.forget_at);
                certificate.uses.insert(counter, mine);
                memory.offline_uses += 1;
                Ok(Outcome::First)
            }
        }
    }
}

impl ReplayStore for MemoryReplayStore {
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        now: u64,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Outcome, ReplayError>> {
        Box::pin(std::future::ready(self.record_now(&used, now)))
    }
}

// ---------------------------------------------------------------------------------
// Redis.

/// Claims a scan id for a code fingerprint. KEYS[1] the claim; ARGV[1] the
/// fingerprint, ARGV[2] when to forget it (Unix ms). 2: claimed now, 1: claimed
/// before by the same code, 0: claimed by another code.
const CLAIM_SCAN: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  if held == ARGV[1] then return 1 end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 2
";

/// Marks an online code with its answer, in one step. KEYS[1] the mark; ARGV[1] the
/// owner, ARGV[2] the answer, ARGV[3] when to forget (Unix ms). {2}: first use,
/// {1, answer}: the owner's retry, {0}: replayed.
const MARK_TOKEN: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner == ARGV[1] then return {1, redis.call('HGET', KEYS[1], 'answer')} end
  return {0}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'answer', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return {2}
";

/// Marks an offline code's counter with its answer, in one step. KEYS[1] the
/// certificate's hash; ARGV[1] the owner, ARGV[2] the answer, ARGV[3] when to forget
/// (Unix ms), ARGV[4] the counter as 20 zero-padded digits (so that string order is
/// number order, without Lua's doubles). {2}: first use, {1, answer}: the owner's
/// retry, {0}: replayed, {3}: counter not above the highest used.
const MARK_OFFLINE: &str = r"
local counter = ARGV[4]
local owner = redis.call('HGET', KEYS[1], 'o:' .. counter)
if owner then
  if owner == ARGV[1] then return {1, redis.call('HGET', KEYS[1], 'a:' .. counter)} end
  return {0}
end
local highest = redis.call('HGET', KEYS[1], 'highest')
if highest and highest >= counter then return {3} end
redis.call('HSET', KEYS[1], 'highest', counter, 'o:' .. counter, ARGV[1], 'a:' .. counter, ARGV[2])
local at = tonumber(ARGV[3])
local current = redis.call('PEXPIRETIME', KEYS[1])
if current < at then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return {2}
";

/// A single Redis (reconnecting in the background) or a Redis Cluster (commands
/// routed by their key's slot).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Connection::Single(connection) => command.query_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => command.query_async(&mut connection.clone()).await,
        }
    }
}

/// The Redis store (every replica shares it), on a single Redis or a Redis Cluster; see
/// the module documentation. Each call's Redis work is bounded by the call's deadline
/// and the store's timeout.
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: Connection,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// Connects with `client` (failing if Redis does not answer within `timeout`);
    /// every key starts with `prefix`.
    pub async fn connect(
        client: redis::Client,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, ReplayError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(ReplayError::Backend)?;
        RedisReplayStore {
            connection: Connection::Single(connection),
            prefix: prefix.into(),
            timeout,
        }
        .checked()
        .await
    }

    /// Connects to the Redis Cluster that `nodes` (URLs of some of its primaries)
    /// belong to; every key starts with `prefix`, commands time out after `timeout`.
    /// For `rediss://` nodes, `ca_pem` is the CA bundle that signs their certificates
    /// (the system's roots when `None`).
    pub async fn connect_cluster(
        nodes: &[String],
        prefix: impl Into<String>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ReplayError> {
        citypass_runtime::tls::provider();
        let mut builder = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(1);
        if let Some(ca) = ca_pem
            && nodes.iter().any(|node| node.starts_with("rediss://"))
        {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            });
        }
        let client = builder.build().map_err(ReplayError::Backend)?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(ReplayError::Backend)?;
        RedisReplayStore {
            connection: Connection::Cluster(connection),
            prefix: prefix.into(),
            timeout,
        }
        .checked()
        .await
    }

    /// The store, once its Redis has run what the mark scripts need (`PEXPIRETIME`,
    /// Redis 7.0): an older server is refused at start, not at the first offline scan.
    /// The probe reads one key of this store's own (a slot of its own on a cluster).
    async fn checked(self) -> Result<Self, ReplayError> {
        let mut probe = redis::cmd("EVAL");
        probe
            .arg("return redis.call('PEXPIRETIME', KEYS[1])")
            .arg(1)
            .arg(format!("{}{{probe}}", self.prefix));
        match self.connection.query::<i64>(&probe).await {
            Ok(_) => Ok(self),
            Err(err) if err.is_io_error() => Err(ReplayError::Backend(err)),
            Err(err) if err.to_string().to_ascii_lowercase().contains("unknown") => Err(
                ReplayError::Unsupported("PEXPIRETIME is missing (Redis 7.0 or later is needed)"),
            ),
            Err(err) => Err(ReplayError::Backend(err)),
        }
    }

    /// The key of a scan claim, a token mark or a certificate's counters.
    pub fn key(&self, what: Key<'_>) -> String {
        match what {
            Key::Scan(owner) => format!("{}{{s:{}}}", self.prefix, hex::encode(owner)),
            Key::Mark(Mark::Token { cti }) => {
                format!("{}{{t:{}}}", self.prefix, hex::encode(cti))
            }
            Key::Mark(Mark::Offline { serial, .. }) => {
                format!("{}{{o:{}}}", self.prefix, hex::encode(serial))
            }
        }
    }

    async fn record_now(&self, used: &Use<'_>) -> Result<Outcome, ReplayError> {
        let owner = owner(used.gate_id, used.scan_id);
        // `forget_at` is the last second the mark is needed, whole: expire at its end.
        let forget_at_ms = used
            .forget_at
            .saturating_add(1)
            .saturating_mul(1000)
            .to_string();
        let mut claim = redis::cmd("EVAL");
        claim
            .arg(CLAIM_SCAN)
            .arg(1)
            .arg(self.key(Key::Scan(&owner)))
            .arg(hex::encode(used.fingerprint))
            .arg(&forget_at_ms);
        let claimed: i64 = self
            .connection
            .query(&claim)
            .await
            .map_err(ReplayError::Backend)?;
        if claimed == 0 {
            return Ok(Outcome::ScanIdConflict);
        }
        let mut command = redis::cmd("EVAL");
        match used.mark {
            Mark::Token { .. } => command.arg(MARK_TOKEN),
            Mark::Offline { .. } => command.arg(MARK_OFFLINE),
        };
        command
            .arg(1)
            .arg(self.key(Key::Mark(used.mark)))
            .arg(hex::encode(owner))
            .arg(used.answer.encode())
            .arg(&forget_at_ms);
        if let Mark::Offline { counter, .. } = used.mark {
            command.arg(format!("{counter:020}"));
        }
        let reply: Vec<redis::Value> = self
            .connection
            .query(&command)
            .await
            .map_err(ReplayError::Backend)?;
        let status = match reply.first() {
            Some(redis::Value::Int(status)) => *status,
            _ => return Err(ReplayError::Corrupt),
        };
        match status {
            2 => Ok(Outcome::First),
            0 => Ok(Outcome::Replayed),
            3 => Ok(Outcome::CounterReplay),
            1 => {
                let text = match reply.get(1) {
                    Some(redis::Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
                    _ => None,
                };
                text.and_then(StoredAnswer::decode)
                    .map(Outcome::Retry)
                    .ok_or(ReplayError::Corrupt)
            }
            _ => Err(ReplayError::Corrupt),
        }
    }
}

/// What a Redis key is about (see [`RedisReplayStore::key`]).
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A scan claim, by its owner hash.
    Scan(&'a [u8; 16]),
    /// A mark.
    Mark(Mark),
}

impl ReplayStore for RedisReplayStore {
    fn record<'a>(
        &'a self,
        used: Use<'a>,
        _now: u64,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Outcome, ReplayError>> {
        Box::pin(async move {
            let limit = match deadline {
                Some(deadline) => deadline.remaining().min(self.timeout),
                None => self.timeout,
            };
            tokio::time::timeout(limit, self.record_now(&used))
                .await
                .map_err(|_| ReplayError::Timeout)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_round_trip_and_junk_is_refused() {
        let answer = StoredAnswer {
            code_kind: CodeKind::Offline,
            basis: Basis {
                revocation_epoch: 42,
                revocation_age: Some(Duration::from_millis(1500)),
                key_set_age: None,
            },
            decided_at: 1_800_000_000,
        };
        assert_eq!(StoredAnswer::decode(&answer.encode()), Some(answer));
        for junk in [
            "",
            "2 cp1 1 - - 1",
            "1 cp3 1 - - 1",
            "1 cp1 x - - 1",
            "1 cp1 1 - - 1 9",
        ] {
            assert_eq!(StoredAnswer::decode(junk), None, "{junk}");
        }
    }
}
