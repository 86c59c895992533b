//! The in-memory fraud log (`citypass dev`, tests): the newest `capacity` signals of
//! one process.

use std::collections::VecDeque;
use std::sync::Mutex;

use citypass_runtime::Deadline;
use futures::future::BoxFuture;

use super::{FraudError, FraudLog, FraudSignal, SignalPage};

/// Signals with their sequence numbers (the page tokens), oldest first.
#[derive(Debug, Default)]
struct Kept {
    next: u64,
    signals: VecDeque<(u64, FraudSignal)>,
}

/// The in-memory log: bounded, forgetting the oldest signal when full.
#[derive(Debug)]
pub struct MemoryFraudLog {
    capacity: usize,
    inner: Mutex<Kept>,
}

impl MemoryFraudLog {
    /// A log of at most `capacity` signals.
    pub fn new(capacity: usize) -> Self {
        MemoryFraudLog {
            capacity: capacity.max(1),
            inner: Mutex::new(Kept::default()),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FraudLog for MemoryFraudLog {
    fn record(
        &self,
        signal: FraudSignal,
        _deadline: Option<Deadline>,
    ) -> BoxFuture<'_, Result<(), FraudError>> {
        let mut kept = self.kept();
        let seq = kept.next;
        kept.next += 1;
        kept.signals.push_back((seq, signal));
        while kept.signals.len() > self.capacity {
            kept.signals.pop_front();
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn list(
        &self,
        page_size: usize,
        page_token: Option<String>,
    ) -> BoxFuture<'_, Result<SignalPage, FraudError>> {
        let before = match page_token.as_deref().map(str::parse::<u64>) {
            None => u64::MAX,
            Some(Ok(seq)) => seq,
            Some(Err(_)) => return Box::pin(std::future::ready(Err(FraudError::BadPageToken))),
        };
        let kept = self.kept();
        let mut older = kept.signals.iter().rev().filter(|(seq, _)| *seq < before);
        let page: Vec<&(u64, FraudSignal)> = older.by_ref().take(page_size).collect();
        let more = older.next().is_some();
        let next_page_token = match page.last() {
            Some((seq, _)) if more => Some(seq.to_string()),
            _ => None,
        };
        Box::pin(std::future::ready(Ok(SignalPage {
            signals: page.into_iter().map(|(_, s)| s.clone()).collect(),
            next_page_token,
        })))
    }
}
