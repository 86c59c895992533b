//! The offline gate's upload queue: the scans it allowed without the verifier, kept
//! until the verifier has them (`UploadOfflineScans`), so that a code used at two
//! offline gates is found out once they are back.
//!
//! The queue is bounded (`capacity`): when full, a new scan is refused
//! ([`QueueError::Full`]) rather than an older one dropped, so that nothing leaves
//! the queue unsent without the gate knowing. Every change is written through a
//! [`QueueStore`] before it counts (a file on the controller, [`FileQueueStore`]; memory
//! in tests, [`MemoryQueueStore`]), so a restart keeps what was not uploaded.
//!
//! [`UploadQueue::drain`] hands the scans, oldest first, to an [`Uploader`] (the
//! gate's VerifierService client, in the composition) in batches of at most
//! [`MAX_BATCH`] (the RPC's limit). A scan answered [`Disposition::Done`] leaves the
//! queue; [`Disposition::Again`] (the verifier's `UNAVAILABLE`) stays. A failed call, or
//! a batch with scans to send again, pauses on a growing, jittered schedule (`backon`'s
//! exponential backoff, already in the tree) before the next try, at most
//! `max_attempts` tries in a row without progress per drain. This crate runs no clock of
//! its own: the caller gives the sleep (tokio's in a service, anything on a controller).

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};

/// Most scans per `UploadOfflineScans` call.
pub const MAX_BATCH: usize = 64;

/// One scan the gate allowed offline, as it will be uploaded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedScan {
    /// The gate's id for the scan.
    pub scan_id: String,
    /// The scanned text. Never logged.
    pub qr_text: String,
    /// When the gate allowed it (its clock, Unix seconds).
    pub scanned_at: u64,
    /// Metro only: `entry`, `exit`, or empty.
    #[serde(default)]
    pub direction: String,
    /// Metro station or bus stop, or empty.
    #[serde(default)]
    pub station_id: String,
}

impl std::fmt::Debug for QueuedScan {
    /// Without the code text (a person's credential).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedScan")
            .field("scan_id", &self.scan_id)
            .field("scanned_at", &self.scanned_at)
            .finish_non_exhaustive()
    }
}

/// What the verifier's answer means for one uploaded scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Recorded, already recorded, flagged, refused, out of the window, in conflict
    /// or malformed: the verifier has its answer, the scan leaves the queue.
    Done,
    /// The verifier's store did not answer (`UNAVAILABLE`): send it again later.
    Again,
}

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `capacity` scans: the new one is not kept.
    #[error("the upload queue is full ({0} scans)")]
    Full(usize),
    /// A scan with this scan id is queued already.
    #[error("a scan with this scan id is queued already")]
    Duplicate,
    /// The store could not be read or written (the change did not happen).
    #[error("upload queue store: {0}")]
    Store(String),
}

/// Where the queue is kept between restarts: the whole queue, oldest first, written
/// at once (a controller's queue is small: at most `capacity` scans of ~600 bytes).
pub trait QueueStore: Send + Sync {
    /// The queue as last saved (empty if never saved).
    fn load(&self) -> Result<Vec<QueuedScan>, QueueError>;
    /// Replaces the saved queue with `scans`; all or nothing.
    fn save(&self, scans: &[QueuedScan]) -> Result<(), QueueError>;
}

impl<T: QueueStore + ?Sized> QueueStore for std::sync::Arc<T> {
    fn load(&self) -> Result<Vec<QueuedScan>, QueueError> {
        (**self).load()
    }

    fn save(&self, scans: &[QueuedScan]) -> Result<(), QueueError> {
        (**self).save(scans)
    }
}

/// A queue kept in memory (tests; a gate that accepts losing it on restart).
#[derive(Debug, Default)]
pub struct MemoryQueueStore {
    scans: Mutex<Vec<QueuedScan>>,
}

impl QueueStore for MemoryQueueStore {
    fn load(&self) -> Result<Vec<QueuedScan>, QueueError> {
        Ok(self
            .scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn save(&self, scans: &[QueuedScan]) -> Result<(), QueueError> {
        *self
            .scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = scans.to_vec();
        Ok(())
    }
}

/// A queue kept in one JSON file, written aside and renamed (a crash leaves the old
/// file or the new one, never half of one), owner-only on Unix (it holds codes).
#[derive(Debug, Clone)]
pub struct FileQueueStore {
    path: PathBuf,
}

impl FileQueueStore {
    /// The queue in `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileQueueStore { path: path.into() }
    }
}

impl QueueStore for FileQueueStore {
    fn load(&self) -> Result<Vec<QueuedScan>, QueueError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| QueueError::Store(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(QueueError::Store(format!("{}: {e}", self.path.display()))),
        }
    }

    fn save(&self, scans: &[QueuedScan]) -> Result<(), QueueError> {
        let failed = |e: std::io::Error| QueueError::Store(format!("{}: {e}", self.path.display()));
        let bytes = serde_json::to_vec(scans).map_err(|e| QueueError::Store(e.to_string()))?;
        let aside = self.path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&aside).map_err(failed)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&aside, &self.path).map_err(failed)
    }
}

/// The gate's side of `UploadOfflineScans`: one call with `batch` (at most
/// [`MAX_BATCH`] scans), answered with one disposition per scan in the batch's order,
/// or `Err` when the call failed (no answer, or an answer of another length).
pub trait Uploader {
    /// Uploads `batch`.
    fn upload(
        &self,
        batch: &[QueuedScan],
    ) -> impl Future<Output = Result<Vec<Disposition>, UploadFailed>>;
}

/// An upload call that failed as a whole (transport, status, malformed answer); the
/// reason names no scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upload failed: {0}")]
pub struct UploadFailed(pub String);

/// The pauses of [`UploadQueue::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// The first pause after a failure.
    pub min_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
    /// Tries in a row without progress before `drain` gives up for now.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            min_pause: Duration::from_secs(1),
            max_pause: Duration::from_secs(60),
            max_attempts: 8,
        }
    }
}

/// What one [`UploadQueue::drain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Scans the verifier answered for good (they left the queue).
    pub done: usize,
    /// Upload calls made.
    pub calls: usize,
    /// Calls that failed as a whole (the reason is the uploader's to log).
    pub failures: usize,
    /// Scans still queued when it returned.
    pub left: usize,
}

/// The queue; see the module documentation.
pub struct UploadQueue<S: QueueStore> {
    store: S,
    capacity: usize,
    scans: VecDeque<QueuedScan>,
}

impl<S: QueueStore> std::fmt::Debug for UploadQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadQueue")
            .field("capacity", &self.capacity)
            .field("len", &self.scans.len())
            .finish_non_exhaustive()
    }
}

impl<S: QueueStore> UploadQueue<S> {
    /// The queue `store` holds, keeping at most `capacity` (at least 1) scans. A store
    /// holding more than `capacity` keeps them all (the limit applies to new scans).
    pub fn open(store: S, capacity: usize) -> Result<Self, QueueError> {
        let scans = store.load()?.into();
        Ok(UploadQueue {
            store,
            capacity: capacity.max(1),
            scans,
        })
    }

    /// Scans queued.
    pub fn len(&self) -> usize {
        self.scans.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.scans.is_empty()
    }

    /// Keeps `scan` (written to the store before it counts).
    pub fn push(&mut self, scan: QueuedScan) -> Result<(), QueueError> {
        if self.scans.len() >= self.capacity {
            return Err(QueueError::Full(self.capacity));
        }
        if self.scans.iter().any(|s| s.scan_id == scan.scan_id) {
            return Err(QueueError::Duplicate);
        }
        self.scans.push_back(scan);
        if let Err(err) = self.save() {
            self.scans.pop_back();
            return Err(err);
        }
        Ok(())
    }

    /// Uploads the queue, oldest first, in batches of at most [`MAX_BATCH`], pausing
    /// with `sleep` after a failed call or a batch with scans to send again (see the
    /// module documentation). Returns when the queue is empty, or after
    /// `retry.max_attempts` tries in a row without progress, or when the store fails.
    pub async fn drain<U, F, Fut>(
        &mut self,
        uploader: &U,
        retry: RetrySettings,
        sleep: F,
    ) -> Result<Drained, QueueError>
    where
        U: Uploader,
        F: Fn(Duration) -> Fut,
        Fut: Future<Output = ()>,
    {
        let builder = ExponentialBuilder::default()
            .with_min_delay(retry.min_pause)
            .with_max_delay(retry.max_pause)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        let mut pauses = builder.build();
        let mut drained = Drained::default();
        let mut fruitless = 0u32;
        // Scans answered `Again` this drain wait behind the rest: one busy scan does
        // not hold the queue up.
        let mut offset = 0usize;
        while !self.scans.is_empty() {
            if offset >= self.scans.len() {
                offset = 0;
            }
            let batch: Vec<QueuedScan> = self
                .scans
                .iter()
                .skip(offset)
                .take(MAX_BATCH)
                .cloned()
                .collect();
            drained.calls += 1;
            let answer = uploader.upload(&batch).await.and_then(|dispositions| {
                if dispositions.len() == batch.len() {
                    Ok(dispositions)
                } else {
                    Err(UploadFailed("an answer of another length".to_owned()))
                }
            });
            let (progressed, pause_now) = match answer {
                Ok(dispositions) => {
                    let done: Vec<&str> = batch
                        .iter()
                        .zip(&dispositions)
                        .filter(|(_, d)| **d == Disposition::Done)
                        .map(|(scan, _)| scan.scan_id.as_str())
                        .collect();
                    if !done.is_empty() {
                        let before = self.scans.clone();
                        self.scans.retain(|s| !done.contains(&s.scan_id.as_str()));
                        if let Err(err) = self.save() {
                            self.scans = before;
                            return Err(err);
                        }
                        drained.done += done.len();
                    }
                    let kept = batch.len() - done.len();
                    offset += kept;
                    // Pause once every scan left was tried and some were kept.
                    (!done.is_empty(), kept > 0 && offset >= self.scans.len())
                }
                Err(_) => {
                    drained.failures += 1;
                    (false, true)
                }
            };
            if progressed {
                fruitless = 0;
                pauses = builder.build();
            }
            if pause_now {
                fruitless += 1;
                if fruitless >= retry.max_attempts.max(1) {
                    break;
                }
                let pause = pauses
                    .next()
                    .unwrap_or(retry.max_pause)
                    .min(retry.max_pause);
                sleep(pause).await;
            }
        }
        drained.left = self.scans.len();
        Ok(drained)
    }

    fn save(&self) -> Result<(), QueueError> {
        let scans: Vec<QueuedScan> = self.scans.iter().cloned().collect();
        self.store.save(&scans)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn scan(n: usize) -> QueuedScan {
        QueuedScan {
            scan_id: format!("s-{n}"),
            qr_text: format!("CP2:code-{n}"),
            scanned_at: 1_800_000_000 + n as u64,
            direction: String::new(),
            station_id: String::new(),
        }
    }

    /// An uploader answering from a script: per call, `Err` or a disposition per scan
    /// (by scan id: `Again` for those listed, else `Done`); records each batch's ids.
    #[derive(Default)]
    struct Scripted {
        batches: RefCell<Vec<Vec<String>>>,
        failing_calls: RefCell<usize>,
        again_once: RefCell<Vec<String>>,
        short_answer: bool,
    }

    impl Uploader for Scripted {
        async fn upload(&self, batch: &[QueuedScan]) -> Result<Vec<Disposition>, UploadFailed> {
            assert!(batch.len() <= MAX_BATCH, "a batch of {}", batch.len());
            self.batches
                .borrow_mut()
                .push(batch.iter().map(|s| s.scan_id.clone()).collect());
            if *self.failing_calls.borrow() > 0 {
                *self.failing_calls.borrow_mut() -= 1;
                return Err(UploadFailed("no answer".to_owned()));
            }
            if self.short_answer {
                return Ok(vec![Disposition::Done]);
            }
            let mut again = self.again_once.borrow_mut();
            Ok(batch
                .iter()
                .map(|s| match again.iter().position(|id| *id == s.scan_id) {
                    Some(i) => {
                        again.remove(i);
                        Disposition::Again
                    }
                    None => Disposition::Done,
                })
                .collect())
        }
    }

    fn retry(max_attempts: u32) -> RetrySettings {
        RetrySettings {
            min_pause: Duration::from_millis(100),
            max_pause: Duration::from_millis(800),
            max_attempts,
        }
    }

    /// Drains with a sleep that records its pauses and returns at once.
    fn drain(
        queue: &mut UploadQueue<std::sync::Arc<MemoryQueueStore>>,
        uploader: &Scripted,
        settings: RetrySettings,
    ) -> (Drained, Vec<Duration>) {
        let pauses = RefCell::new(Vec::new());
        let drained = block_on(queue.drain(uploader, settings, |pause| {
            pauses.borrow_mut().push(pause);
            std::future::ready(())
        }))
        .expect("the memory store never fails");
        (drained, pauses.into_inner())
    }

    fn block_on<F: Future>(work: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(work)
    }

    fn queue_of(
        n: usize,
    ) -> (
        UploadQueue<std::sync::Arc<MemoryQueueStore>>,
        std::sync::Arc<MemoryQueueStore>,
    ) {
        let store = std::sync::Arc::new(MemoryQueueStore::default());
        let mut queue = UploadQueue::open(store.clone(), 1_000).unwrap();
        for i in 0..n {
            queue.push(scan(i)).unwrap();
        }
        (queue, store)
    }

    #[test]
    fn scans_go_oldest_first_in_batches_of_at_most_64() {
        let (mut queue, store) = queue_of(150);
        let uploader = Scripted::default();
        let (drained, pauses) = drain(&mut queue, &uploader, retry(4));
        let sizes: Vec<usize> = uploader.batches.borrow().iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 22]);
        let order: Vec<String> = uploader.batches.borrow().concat();
        assert_eq!(
            order,
            (0..150).map(|i| format!("s-{i}")).collect::<Vec<_>>()
        );
        assert_eq!(
            drained,
            Drained {
                done: 150,
                calls: 3,
                failures: 0,
                left: 0
            }
        );
        assert!(pauses.is_empty());
        assert!(queue.is_empty());
        assert!(
            store.load().unwrap().is_empty(),
            "the store follows the queue"
        );
    }

    #[test]
    fn a_scan_the_verifier_could_not_store_stays_and_goes_again_after_a_pause() {
        let (mut queue, store) = queue_of(3);
        let uploader = Scripted {
            again_once: RefCell::new(vec!["s-1".to_owned()]),
            ..Scripted::default()
        };
        // Only s-1 is left after the first call: it is in the store, then sent again.
        let (drained, pauses) = drain(&mut queue, &uploader, retry(4));
        assert_eq!(
            *uploader.batches.borrow(),
            [vec!["s-0", "s-1", "s-2"], vec!["s-1"]]
        );
        assert_eq!(pauses.len(), 1, "one pause before sending it again");
        assert!(pauses[0] >= Duration::from_millis(100), "{pauses:?}");
        assert_eq!((drained.done, drained.left), (3, 0));
        assert!(store.load().unwrap().is_empty());
    }

    #[test]
    fn failed_calls_pause_growing_and_bounded_then_give_up_keeping_the_scans() {
        let (mut queue, store) = queue_of(2);
        let uploader = Scripted {
            failing_calls: RefCell::new(usize::MAX),
            ..Scripted::default()
        };
        let (drained, pauses) = drain(&mut queue, &uploader, retry(6));
        assert_eq!(drained.calls, 6);
        assert_eq!(drained.failures, 6);
        assert_eq!((drained.done, drained.left), (0, 2));
        assert_eq!(pauses.len(), 5, "no pause after the last try");
        assert!(
            pauses.iter().all(|p| *p <= Duration::from_millis(800)),
            "{pauses:?}"
        );
        assert!(
            pauses[4] >= Duration::from_millis(400),
            "it grew: {pauses:?}"
        );
        assert_eq!(store.load().unwrap().len(), 2, "kept for the next drain");

        // Back: the next drain sends them.
        *uploader.failing_calls.borrow_mut() = 1;
        let (drained, pauses) = drain(&mut queue, &uploader, retry(6));
        assert_eq!((drained.done, drained.left, drained.failures), (2, 0, 1));
        assert_eq!(pauses.len(), 1);
    }

    #[test]
    fn an_answer_of_another_length_is_a_failed_call() {
        let (mut queue, _) = queue_of(2);
        let uploader = Scripted {
            short_answer: true,
            ..Scripted::default()
        };
        let (drained, _) = drain(&mut queue, &uploader, retry(2));
        assert_eq!((drained.done, drained.failures, drained.left), (0, 2, 2));
    }

    #[test]
    fn the_queue_is_bounded_and_takes_a_scan_id_once() {
        let store = std::sync::Arc::new(MemoryQueueStore::default());
        let mut queue = UploadQueue::open(store.clone(), 2).unwrap();
        queue.push(scan(0)).unwrap();
        assert!(matches!(queue.push(scan(0)), Err(QueueError::Duplicate)));
        queue.push(scan(1)).unwrap();
        assert!(matches!(queue.push(scan(2)), Err(QueueError::Full(2))));
        assert_eq!(queue.len(), 2);
        assert_eq!(store.load().unwrap().len(), 2);
    }

    /// A store whose writes fail.
    struct Broken;

    impl QueueStore for Broken {
        fn load(&self) -> Result<Vec<QueuedScan>, QueueError> {
            Ok(vec![scan(0)])
        }

        fn save(&self, _scans: &[QueuedScan]) -> Result<(), QueueError> {
            Err(QueueError::Store("disk full".to_owned()))
        }
    }

    #[test]
    fn a_change_the_store_does_not_take_does_not_happen() {
        let mut queue = UploadQueue::open(Broken, 10).unwrap();
        assert!(matches!(queue.push(scan(1)), Err(QueueError::Store(_))));
        assert_eq!(queue.len(), 1);
        let uploader = Scripted::default();
        let result = block_on(queue.drain(&uploader, retry(2), |_| std::future::ready(())));
        assert!(matches!(result, Err(QueueError::Store(_))));
        assert_eq!(
            queue.len(),
            1,
            "still queued: the verifier will say ALREADY_RECORDED"
        );
    }

    #[test]
    fn debug_leaves_the_code_out() {
        let text = format!("{:?}", scan(7));
        assert!(!text.contains("CP2"), "{text}");
    }
}
