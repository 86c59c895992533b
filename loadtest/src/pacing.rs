//! The open loop's clock, shared by the unary and the stream runs: request `i` is due
//! at `start + i / rate`; the sender waits for that time and for a slot under the
//! in-flight cap (a wait that counts in the latency, and a cap hit that is reported);
//! each answer is recorded with its latency from the due time; at the end, every slot
//! back means every request answered. See [`crate::open_loop`] for why.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::LoadError;
use crate::mix::CodeKind;
use crate::record::{Outcome, Recording, latency_histogram, micros};

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests per second.
    pub rate: u32,
    /// Requests in flight at most.
    pub in_flight_cap: usize,
    /// How long after the last request is due its answers may take.
    pub drain: Duration,
    /// Whether to show a progress bar (on standard error, when it is a terminal).
    pub progress: bool,
}

/// A bar of `n` answers labelled `label`, hidden unless `load.progress`.
pub fn progress_bar(load: Load, n: usize, label: &str) -> ProgressBar {
    if !load.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>28} [{bar:30}] {pos}/{len} answered, {elapsed} of about {duration}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{label} at {}/s", load.rate));
    bar
}

/// What an open-loop run saw.
#[derive(Debug)]
pub struct Run {
    /// Requests sent (every request of the plan).
    pub sent: u64,
    /// Answers and latencies.
    pub recording: Recording,
    /// When the last request was actually sent, from the start.
    pub last_send: Duration,
    /// How often a request found the in-flight cap reached.
    pub cap_hits: u64,
    /// The most requests in flight at once.
    pub max_in_flight: usize,
    /// How late each request was sent after its due time, microseconds: the
    /// generator's own lateness (its timer's resolution, a busy core), which is part
    /// of every latency and must stay well below the latencies to be measured.
    pub send_lag: Histogram<u64>,
}

/// Where answers are recorded, from any task: the recording, the run's start and its
/// progress bar.
#[derive(Clone)]
pub(crate) struct Recorder {
    recording: Arc<Mutex<Recording>>,
    start: Instant,
    bar: ProgressBar,
}

impl Recorder {
    /// Records an answer that arrived at `answered` to a request due at `due`.
    pub(crate) fn answered(
        &self,
        kind: CodeKind,
        outcome: Outcome,
        due: Instant,
        answered: Instant,
    ) {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(
                kind,
                outcome,
                answered.saturating_duration_since(due),
                answered.saturating_duration_since(self.start),
            );
        self.bar.inc(1);
    }
}

/// One run's sender side: when each request is due, the slots under the cap, and what
/// the sending saw.
pub(crate) struct Pacer {
    load: Load,
    cap: u32,
    slots: Arc<Semaphore>,
    interval: f64,
    recorder: Recorder,
    cap_hits: u64,
    max_in_flight: usize,
    sent: u64,
    last_send: Duration,
    send_lag: Histogram<u64>,
}

impl Pacer {
    /// A run of `n` requests at `load`, its bar labelled `label`, starting now (with a
    /// little lead, so that the first requests are not late from the start).
    pub(crate) fn new(load: Load, n: usize, label: &str) -> Result<Self, LoadError> {
        let cap = u32::try_from(load.in_flight_cap)
            .map_err(|_| LoadError::Settings("the in-flight cap is too large".to_owned()))?;
        Ok(Pacer {
            load,
            cap,
            slots: Arc::new(Semaphore::new(load.in_flight_cap)),
            interval: 1.0 / f64::from(load.rate),
            recorder: Recorder {
                recording: Arc::new(Mutex::new(Recording::default())),
                start: Instant::now() + Duration::from_millis(20),
                bar: progress_bar(load, n, label),
            },
            cap_hits: 0,
            max_in_flight: 0,
            sent: 0,
            last_send: Duration::ZERO,
            send_lag: latency_histogram(),
        })
    }

    /// Where answers are recorded.
    pub(crate) fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// The slots under the in-flight cap (a reader that answers for a forgotten slot
    /// adds its permit back).
    pub(crate) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// Waits until request `i` is due and a slot is free; the slot and the due time.
    pub(crate) async fn due(
        &mut self,
        i: usize,
    ) -> Result<(OwnedSemaphorePermit, Instant), LoadError> {
        let due = self.recorder.start + Duration::from_secs_f64(i as f64 * self.interval);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.cap_hits += 1;
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LoadError::Settings("the in-flight slots closed".to_owned()))?
            }
        };
        self.max_in_flight = self
            .max_in_flight
            .max(self.load.in_flight_cap - self.slots.available_permits());
        Ok((slot, due))
    }

    /// Notes how late a request due at `due` is being sent.
    pub(crate) fn lag(&mut self, due: Instant) {
        self.send_lag
            .saturating_record(micros(Instant::now().saturating_duration_since(due)));
    }

    /// Notes a request sent.
    pub(crate) fn sent(&mut self) {
        self.sent += 1;
        self.last_send = Instant::now().saturating_duration_since(self.recorder.start);
    }

    /// Waits, up to `load.drain`, for every slot back: every request answered (or
    /// failed).
    pub(crate) async fn drain(&self) -> Result<(), LoadError> {
        let drained =
            tokio::time::timeout(self.load.drain, self.slots.acquire_many(self.cap)).await;
        self.recorder.bar.finish_and_clear();
        if drained.is_err() {
            return Err(LoadError::Unanswered(
                self.load.in_flight_cap - self.slots.available_permits(),
            ));
        }
        Ok(())
    }

    /// What the run saw.
    pub(crate) fn finish(self) -> Run {
        let recording = self
            .recorder
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Run {
            sent: self.sent,
            recording,
            last_send: self.last_send,
            cap_hits: self.cap_hits,
            max_in_flight: self.max_in_flight,
            send_lag: self.send_lag,
        }
    }
}
