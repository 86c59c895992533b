//! GetDevice answers reused for a few seconds, bounded.
//!
//! GetDevice sits on the hot path of every device-signed call, so answers are reused
//! for a short `ttl`. That delay is the longest an unbind or a suspension takes to
//! reach the services that read devices. Misses are remembered too, but only for
//! [`MISS_TTL`]: GetDevice runs before the device's signature can be checked (the key
//! comes from the answer), so junk requests repeating an unknown device id would
//! otherwise each cost a database lookup at identity; a device bound a moment ago is
//! refused for at most that second.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use citypass_token::DeviceId;
use tokio::time::Instant;

use crate::device::DeviceRecord;
use crate::error::IdentityError;

/// How long a GetDevice miss is remembered (never longer than the cache's `ttl`).
pub const MISS_TTL: Duration = Duration::from_secs(1);

/// A remembered GetDevice answer (`None`: a miss) and when it goes stale.
type Remembered = (Instant, Option<Arc<DeviceRecord>>);

/// GetDevice answers reused for `ttl` (misses for [`MISS_TTL`]), at most `capacity`
/// devices (see the module documentation).
pub struct DeviceCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<DeviceId, Remembered>>,
}

impl std::fmt::Debug for DeviceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl DeviceCache {
    /// Remembers answers for `ttl` (zero: no caching), at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        DeviceCache {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `device`: remembered if fresh, else `fetch()`'s (remembered,
    /// unless it failed). `fetch` is called only on a miss.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        device: &DeviceId,
        fetch: F,
    ) -> Result<Option<Arc<DeviceRecord>>, IdentityError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Arc<DeviceRecord>>, IdentityError>>,
    {
        if self.ttl.is_zero() {
            return fetch().await;
        }
        if let Some(answer) = self.cached(device) {
            return Ok(answer);
        }
        let found = fetch().await?;
        self.remember(*device, &found);
        Ok(found)
    }

    /// Devices held now (stale ones until the next sweep).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remembered answer, if still fresh: `Some(None)` is a remembered miss.
    fn cached(&self, device: &DeviceId) -> Option<Option<Arc<DeviceRecord>>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(device) {
            Some((expiry, record)) if *expiry > Instant::now() => Some(record.clone()),
            _ => None,
        }
    }

    fn remember(&self, device: DeviceId, found: &Option<Arc<DeviceRecord>>) {
        let now = Instant::now();
        let ttl = match found {
            Some(_) => self.ttl,
            None => self.ttl.min(MISS_TTL),
        };
        // A TTL beyond the clock's range (configurations bound it; a library caller
        // might not) is not remembered rather than a panic.
        let Some(expiry) = now.checked_add(ttl) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&device) {
            entries.retain(|_, (expiry, _)| *expiry > now);
            if entries.len() >= self.capacity / 4 * 3 {
                // Mostly live entries: rather than sweep again at every insert, start
                // afresh (forgetting a cache entry only costs a lookup).
                entries.clear();
            }
        }
        entries.insert(device, (expiry, found.clone()));
    }
}
