//! The Redis venue store, on a single Redis or a Redis Cluster: one hash per venue-day
//! (`<prefix>{v:<venue>:<day>}`: `total`, `p:<visitor>` counts, `s:<scan>` the counts a
//! scan got), changed by one Lua script per entry, so every step of an entry is one
//! slot's and atomic.

use std::time::Duration;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;

use super::{Admission, Entry, VenueError, VenueStore};
use crate::replay::RedisConnection;

/// Counts one entry. KEYS[1] the venue-day; ARGV[1] the scan, ARGV[2] the visitor,
/// ARGV[3] the capacity, ARGV[4] entries per visitor, ARGV[5] when to forget (Unix
/// ms). {1, "<entries>:<remaining>"}: counted (now or before), {2}: already entered,
/// {3}: capacity reached.
const ENTER: &str = r"
local done = redis.call('HGET', KEYS[1], 's:' .. ARGV[1])
if done then return {1, done} end
local mine = tonumber(redis.call('HGET', KEYS[1], 'p:' .. ARGV[2]) or '0')
if mine >= tonumber(ARGV[4]) then return {2} end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if total >= tonumber(ARGV[3]) then return {3} end
total = redis.call('HINCRBY', KEYS[1], 'total', 1)
mine = redis.call('HINCRBY', KEYS[1], 'p:' .. ARGV[2], 1)
local counts = mine .. ':' .. (tonumber(ARGV[3]) - total)
redis.call('HSET', KEYS[1], 's:' .. ARGV[1], counts)
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return {1, counts}
";

/// The Redis store; see the module documentation. Each entry is bounded by the call's
/// deadline and the store's timeout.
#[derive(Clone)]
pub struct RedisVenueStore {
    connection: RedisConnection,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisVenueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVenueStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisVenueStore {
    /// A store on `connection` (the replay store's: [`crate::RedisReplayStore::connection`]),
    /// every key starting with `prefix`.
    pub fn new(connection: RedisConnection, prefix: impl Into<String>, timeout: Duration) -> Self {
        RedisVenueStore {
            connection,
            prefix: prefix.into(),
            timeout,
        }
    }

    /// The key of a venue-day.
    pub fn key(&self, venue: &str, day: i64) -> String {
        format!("{}{{v:{venue}:{day}}}", self.prefix)
    }

    async fn enter_now(&self, entry: &Entry<'_>) -> Result<Admission, VenueError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(ENTER)
            .arg(1)
            .arg(self.key(entry.venue, entry.day))
            .arg(hex::encode(entry.scan))
            .arg(hex::encode(entry.visitor))
            .arg(entry.capacity)
            .arg(entry.entries_per_day)
            .arg(entry.forget_at.saturating_add(1).saturating_mul(1000));
        let reply: Vec<redis::Value> = self
            .connection
            .query(&command)
            .await
            .map_err(VenueError::Backend)?;
        match reply.first() {
            Some(redis::Value::Int(1)) => {
                let counts = match reply.get(1) {
                    Some(redis::Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
                    _ => None,
                };
                let (entries, remaining) = counts
                    .and_then(|c| c.split_once(':'))
                    .ok_or(VenueError::Corrupt)?;
                Ok(Admission::Entered {
                    entries_today: entries.parse().map_err(|_| VenueError::Corrupt)?,
                    remaining_capacity: remaining.parse().map_err(|_| VenueError::Corrupt)?,
                })
            }
            Some(redis::Value::Int(2)) => Ok(Admission::AlreadyEntered),
            Some(redis::Value::Int(3)) => Ok(Admission::CapacityReached),
            _ => Err(VenueError::Corrupt),
        }
    }
}

impl VenueStore for RedisVenueStore {
    fn enter<'a>(
        &'a self,
        entry: Entry<'a>,
        deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Admission, VenueError>> {
        Box::pin(async move {
            let limit = deadline.map_or(self.timeout, |d| d.remaining().min(self.timeout));
            tokio::time::timeout(limit, self.enter_now(&entry))
                .await
                .map_err(|_| VenueError::Timeout)?
        })
    }
}
