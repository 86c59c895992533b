//! The in-memory venue store: one process's counts (`citypass dev`, tests, benches),
//! by the same rules as the Redis script.

use std::collections::HashMap;
use std::sync::Mutex;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;

use super::{Admission, Entry, VenueError, VenueStore};

#[derive(Debug, Default)]
struct Day {
    total: u32,
    visitors: HashMap<[u8; 16], u32>,
    scans: HashMap<[u8; 16], Admission>,
    forget_at: u64,
}

/// Counts in memory, at most `capacity` venue-days at once (days past are forgotten
/// first; when still full, entries are refused with [`VenueError::Full`]).
#[derive(Debug)]
pub struct MemoryVenueStore {
    capacity: usize,
    days: Mutex<HashMap<(String, i64), Day>>,
}

impl MemoryVenueStore {
    /// A store for at most `capacity` venue-days.
    pub fn new(capacity: usize) -> Self {
        MemoryVenueStore {
            capacity,
            days: Mutex::new(HashMap::new()),
        }
    }

    fn enter_now(&self, entry: &Entry<'_>) -> Result<Admission, VenueError> {
        let mut days = self
            .days
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (entry.venue.to_owned(), entry.day);
        if !days.contains_key(&key) && days.len() >= self.capacity {
            let now = citypass_token::unix_now();
            days.retain(|_, day| day.forget_at >= now);
            if days.len() >= self.capacity {
                return Err(VenueError::Full);
            }
        }
        let day = days.entry(key).or_default();
        day.forget_at = day.forget_at.max(entry.forget_at);
        if let Some(first) = day.scans.get(&entry.scan) {
            return Ok(*first);
        }
        let mine = day.visitors.get(&entry.visitor).copied().unwrap_or(0);
        if mine >= entry.entries_per_day {
            return Ok(Admission::AlreadyEntered);
        }
        if day.total >= entry.capacity {
            return Ok(Admission::CapacityReached);
        }
        day.total += 1;
        day.visitors.insert(entry.visitor, mine + 1);
        let admitted = Admission::Entered {
            entries_today: mine + 1,
            remaining_capacity: entry.capacity - day.total,
        };
        day.scans.insert(entry.scan, admitted);
        Ok(admitted)
    }
}

impl VenueStore for MemoryVenueStore {
    fn enter<'a>(
        &'a self,
        entry: Entry<'a>,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'a, Result<Admission, VenueError>> {
        Box::pin(std::future::ready(self.enter_now(&entry)))
    }
}
