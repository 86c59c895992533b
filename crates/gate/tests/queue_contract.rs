//! The upload queue store's contract, on memory and on a file: what is saved is loaded
//! (oldest first, every field), a save replaces the whole queue, and a queue opened
//! again on the store (a restart) holds what was not uploaded.

use std::sync::Arc;

use citypass_gate::{
    FileQueueStore, MemoryQueueStore, QueueError, QueueStore, QueuedScan, UploadQueue,
};

fn scan(n: u64) -> QueuedScan {
    QueuedScan {
        scan_id: format!("s-{n}"),
        qr_text: format!("CP2:code-{n}"),
        scanned_at: 1_800_000_000 + n,
        direction: if n.is_multiple_of(2) { "entry" } else { "" }.to_owned(),
        station_id: format!("station-{n}"),
    }
}

async fn memory() -> Arc<dyn QueueStore> {
    Arc::new(MemoryQueueStore::default())
}

/// A file store in a directory of its own, removed with it.
struct FileBackend {
    store: FileQueueStore,
    _dir: tempfile::TempDir,
}

impl QueueStore for FileBackend {
    fn load(&self) -> Result<Vec<QueuedScan>, QueueError> {
        self.store.load()
    }

    fn save(&self, scans: &[QueuedScan]) -> Result<(), QueueError> {
        self.store.save(scans)
    }
}

async fn file() -> Arc<dyn QueueStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    Arc::new(FileBackend {
        store: FileQueueStore::new(dir.path().join("upload-queue.json")),
        _dir: dir,
    })
}

mod cases {
    use super::*;

    pub async fn what_is_saved_is_loaded_oldest_first(store: Arc<dyn QueueStore>) {
        assert!(
            store.load().unwrap().is_empty(),
            "empty before the first save"
        );
        let scans: Vec<QueuedScan> = (0..5).map(scan).collect();
        store.save(&scans).unwrap();
        assert_eq!(store.load().unwrap(), scans);
        store.save(&scans[3..]).unwrap();
        assert_eq!(
            store.load().unwrap(),
            scans[3..],
            "a save replaces the queue"
        );
        store.save(&[]).unwrap();
        assert!(store.load().unwrap().is_empty());
    }

    pub async fn a_reopened_queue_holds_what_was_not_uploaded(store: Arc<dyn QueueStore>) {
        let mut queue = UploadQueue::open(store.clone(), 10).unwrap();
        for n in 0..3 {
            queue.push(scan(n)).unwrap();
        }
        drop(queue);
        let mut queue = UploadQueue::open(store.clone(), 10).unwrap();
        assert_eq!(queue.len(), 3);
        assert!(matches!(queue.push(scan(1)), Err(QueueError::Duplicate)));
        assert_eq!(store.load().unwrap(), (0..3).map(scan).collect::<Vec<_>>());
    }
}

citypass_testkit::contract_suite!(
    memory_backend => super::memory().await,
    file_backend => super::file().await;
    [
        cases::what_is_saved_is_loaded_oldest_first,
        cases::a_reopened_queue_holds_what_was_not_uploaded,
    ]
);

/// A file written by another program, or cut short, is an error, never a panic or an
/// empty queue.
#[test]
fn a_damaged_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload-queue.json");
    std::fs::write(&path, b"[{\"scan_id\": \"s-1\"").unwrap();
    let store = FileQueueStore::new(&path);
    assert!(matches!(store.load(), Err(QueueError::Store(_))));
    assert!(UploadQueue::open(store, 10).is_err());
}

/// The file holds codes: owner-only.
#[cfg(unix)]
#[test]
fn the_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload-queue.json");
    FileQueueStore::new(&path).save(&[scan(1)]).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
