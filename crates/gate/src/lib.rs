//! The gate decision for a gate that works on its own: signature, time, scope,
//! revocation, replay.
//!
//! A gate controller (or the demo) holds the issuer's public key set and the latest
//! signed revocation snapshot, and checks codes with no network at all. It depends only
//! on `citypass-token` and the revocation formats, so it runs on small controllers
//! without the service stack. The online verifier service applies the same rules plus revocation, shared
//! replay marks and scene policy. What it allowed offline it keeps in its upload queue
//! ([`upload_queue`]) until the verifier has it.
#![forbid(unsafe_code)]

mod counter;
mod decision;
mod replay;
pub mod upload_queue;

pub use counter::CounterMemory;
pub use decision::{
    Decision, DenyReason, Gate, GateConfig, Presented, ReadCode, SnapshotRefused, check_code,
    check_revocation, check_subject_revocation, read_code,
};
pub use replay::ReplayMemory;
pub use upload_queue::{
    Disposition, Drained, FileQueueStore, MAX_BATCH, MemoryQueueStore, QueueError, QueueStore,
    QueuedScan, RetrySettings, UploadFailed, UploadQueue, Uploader,
};
