//! The Redis replay store, on a single Redis or a Redis Cluster: each step one Lua
//! script on one key whose hash tag is the mark (see the parent module for the keys,
//! the reservation and its settlement). A reserved mark's answer is `p` (PENDING).

use std::time::Duration;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    Arrival, Mark, Outcome, PENDING, ReplayError, ReplayStore, Settled, StoredAnswer, Use, owner,
};

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

/// Marks an online code with its answer (or `p`, reserved), in one step. KEYS[1] the
/// mark; ARGV[1] the owner, ARGV[2] the answer, ARGV[3] when to forget (Unix ms). {2}:
/// first use, {1, answer}: the owner's retry (`p` if never settled), {0}: replayed.
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

/// Marks an offline code's counter with its answer (or `p`), in one step. KEYS[1] the
/// certificate's hash; ARGV[1] the owner, ARGV[2] the answer, ARGV[3] when to forget
/// (Unix ms), ARGV[4] the counter as 20 zero-padded digits (so that string order is
/// number order, without Lua's doubles), ARGV[5] `live` or `late` (an uploaded use:
/// no order rule, see `Arrival`). {2}: first use, {1, answer}: the owner's retry,
/// {0}: replayed, {3}: counter not above the highest used (live only).
const MARK_OFFLINE: &str = r"
local counter = ARGV[4]
local owner = redis.call('HGET', KEYS[1], 'o:' .. counter)
if owner then
  if owner == ARGV[1] then return {1, redis.call('HGET', KEYS[1], 'a:' .. counter)} end
  return {0}
end
local highest = redis.call('HGET', KEYS[1], 'highest')
if ARGV[5] == 'live' and highest and highest >= counter then return {3} end
if not highest or highest < counter then redis.call('HSET', KEYS[1], 'highest', counter) end
redis.call('HSET', KEYS[1], 'o:' .. counter, ARGV[1], 'a:' .. counter, ARGV[2])
local at = tonumber(ARGV[3])
local current = redis.call('PEXPIRETIME', KEYS[1])
if current < at then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return {2}
";

/// Settles a reserved online mark. KEYS[1] the mark; ARGV[1] the owner, ARGV[2] the
/// answer. {1}: settled now, {3, answer}: settled before, {0}: not this owner's mark
/// (or gone).
const SETTLE_TOKEN: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] then return {0} end
local answer = redis.call('HGET', KEYS[1], 'answer')
if answer == 'p' then
  redis.call('HSET', KEYS[1], 'answer', ARGV[2])
  return {1}
end
return {3, answer}
";

/// Settles a reserved offline counter. KEYS[1] the certificate's hash; ARGV[1] the
/// owner, ARGV[2] the answer, ARGV[3] the counter (20 digits). As `SETTLE_TOKEN`.
const SETTLE_OFFLINE: &str = r"
local counter = ARGV[3]
local owner = redis.call('HGET', KEYS[1], 'o:' .. counter)
if owner ~= ARGV[1] then return {0} end
local answer = redis.call('HGET', KEYS[1], 'a:' .. counter)
if answer == 'p' then
  redis.call('HSET', KEYS[1], 'a:' .. counter, ARGV[2])
  return {1}
end
return {3, answer}
";

/// The text of a script's `{1, answer}` reply.
fn answer_text(reply: &[redis::Value]) -> Option<&str> {
    match reply.get(1) {
        Some(redis::Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// The status of a script's reply.
fn status(reply: &[redis::Value]) -> Result<i64, ReplayError> {
    match reply.first() {
        Some(redis::Value::Int(status)) => Ok(*status),
        _ => Err(ReplayError::Corrupt),
    }
}

/// A single Redis (reconnecting in the background) or a Redis Cluster (commands
/// routed by their key's slot): the replay store's, shared with the venue store.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    /// Runs `command` (on a cluster, at its key's slot).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
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

    /// The connection, for other stores on the same Redis (venue counts, the fraud
    /// log).
    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// The key of a scan claim, a token mark or a certificate's counters.
    pub fn key(&self, what: Key<'_>) -> String {
        match what {
            Key::Scan(owner) => format!("{}{{s:{}}}", self.prefix, hex::encode(owner)),
            Key::Mark(Mark::Token { cti }) => {
                format!("{}{{t:{}}}", self.prefix, hex::encode(cti))
            }
            Key::Mark(Mark::Face { digest }) => {
                format!("{}{{f:{}}}", self.prefix, hex::encode(digest))
            }
            Key::Mark(Mark::Offline { serial, .. }) => {
                format!("{}{{o:{}}}", self.prefix, hex::encode(serial))
            }
        }
    }

    /// The EVAL of a mark's script, `scripts.0` for a token and `scripts.1` for an
    /// offline code, with the arguments every mark script starts with: the mark's key,
    /// the scan's owner, and `answer`. The script's own arguments follow.
    fn mark_script(
        &self,
        used: &Use<'_>,
        scripts: (&str, &str),
        owner: &[u8; 16],
        answer: String,
    ) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command
            .arg(match used.mark {
                // A face-pass mark is one use, like a code's cti.
                Mark::Token { .. } | Mark::Face { .. } => scripts.0,
                Mark::Offline { .. } => scripts.1,
            })
            .arg(1)
            .arg(self.key(Key::Mark(used.mark)))
            .arg(hex::encode(owner))
            .arg(answer);
        command
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
        let answer = used
            .answer
            .as_ref()
            .map_or_else(|| PENDING.to_owned(), StoredAnswer::encode);
        let mut command = self.mark_script(used, (MARK_TOKEN, MARK_OFFLINE), &owner, answer);
        command.arg(&forget_at_ms);
        if let Mark::Offline { counter, .. } = used.mark {
            command
                .arg(format!("{counter:020}"))
                .arg(match used.arrival {
                    Arrival::Live => "live",
                    Arrival::Late => "late",
                });
        }
        let reply: Vec<redis::Value> = self
            .connection
            .query(&command)
            .await
            .map_err(ReplayError::Backend)?;
        match status(&reply)? {
            2 => Ok(Outcome::First),
            0 => Ok(Outcome::Replayed),
            3 => Ok(Outcome::CounterReplay),
            1 => match answer_text(&reply) {
                Some(PENDING) => Ok(Outcome::Pending),
                text => text
                    .and_then(StoredAnswer::decode)
                    .map(Outcome::Retry)
                    .ok_or(ReplayError::Corrupt),
            },
            _ => Err(ReplayError::Corrupt),
        }
    }

    async fn settle_now(
        &self,
        used: &Use<'_>,
        answer: &StoredAnswer,
    ) -> Result<Settled, ReplayError> {
        let owner = owner(used.gate_id, used.scan_id);
        let mut command = self.mark_script(
            used,
            (SETTLE_TOKEN, SETTLE_OFFLINE),
            &owner,
            answer.encode(),
        );
        if let Mark::Offline { counter, .. } = used.mark {
            command.arg(format!("{counter:020}"));
        }
        let reply: Vec<redis::Value> = self
            .connection
            .query(&command)
            .await
            .map_err(ReplayError::Backend)?;
        match status(&reply)? {
            0 => Ok(Settled::Lost),
            1 => Ok(Settled::Now),
            3 => answer_text(&reply)
                .and_then(StoredAnswer::decode)
                .map(Settled::Before)
                .ok_or(ReplayError::Corrupt),
            _ => Err(ReplayError::Corrupt),
        }
    }

    /// The time `deadline` and the store's timeout leave.
    fn limit(&self, deadline: Option<Deadline>) -> Duration {
        match deadline {
            Some(deadline) => deadline.remaining().min(self.timeout),
            None => self.timeout,
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
            tokio::time::timeout(self.limit(deadline), self.record_now(&used))
                .await
                .map_err(|_| ReplayError::Timeout)?
        })
    }

    fn settle<'a>(
        &'a self,
        used: Use<'a>,
        answer: StoredAnswer,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Settled, ReplayError>> {
        Box::pin(async move {
            tokio::time::timeout(self.limit(deadline), self.settle_now(&used, &answer))
                .await
                .map_err(|_| ReplayError::Timeout)?
        })
    }
}
