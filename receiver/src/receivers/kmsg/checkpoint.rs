//! Where reading resumes after a restart: the sequence number of the last
//! kernel record whose batch was acknowledged, with the boot it belongs to.
//!
//! Batches are acknowledged out of order (several are in flight); the
//! checkpoint is the end of the longest run of settled batches from the
//! oldest one on, so every record at or before it was delivered (or refused
//! for good). A batch that `Failed` stops the checkpoint for the rest of the
//! run: its records are read again after a restart (at-least-once).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::extensions::file_storage::KvStore;
use crate::pipeline::DeliveryStatus;

/// The key of the checkpoint in the receiver's key/value store.
pub const CHECKPOINT_KEY: &str = "kmsg_checkpoint";

/// Where this boot's id is.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `/proc/sys/kernel/random/boot_id` of the boot the sequence number
    /// belongs to (sequence numbers restart at boot).
    pub boot_id: String,
    /// The last record delivered.
    pub seq: u64,
}

/// This boot's id; `None` (with a warning) when it cannot be read, in which
/// case no checkpoint can be trusted.
pub fn read_boot_id(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the boot id is empty; kmsg checkpoints are not used");
            None
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read the boot id; kmsg checkpoints are not used");
            None
        }
    }
}

/// The stored sequence number to resume after, when it is from this boot.
/// A checkpoint from another boot, or an unreadable one, is ignored (logged).
pub fn load(store: &KvStore, boot_id: &str) -> anyhow::Result<Option<u64>> {
    let Some(bytes) = store.get(CHECKPOINT_KEY)? else {
        return Ok(None);
    };
    let checkpoint: Checkpoint = match serde_json::from_slice(&bytes) {
        Ok(checkpoint) => checkpoint,
        Err(err) => {
            let file = store.path(CHECKPOINT_KEY).ok();
            tracing::warn!(file = ?file, error = %err, "ignoring an unreadable kmsg checkpoint; reading starts per start_at");
            return Ok(None);
        }
    };
    if checkpoint.boot_id != boot_id {
        tracing::info!(
            checkpoint_boot_id = %checkpoint.boot_id,
            boot_id,
            "the kmsg checkpoint is from another boot; ignoring it"
        );
        return Ok(None);
    }
    Ok(Some(checkpoint.seq))
}

pub fn store(store: &KvStore, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(checkpoint)?;
    store.set(CHECKPOINT_KEY, &bytes)
}

/// How long after a failed write (a full disk) the checkpoint is written
/// again when no newer value comes to trigger it.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Writes each new checkpoint value (coalesced: only the latest one counts)
/// until every [`AckTracker`] handle is gone. A failed write is tried again
/// (the storage extension reports failing writes, once while they fail).
pub fn spawn_writer(
    kv: KvStore,
    boot_id: String,
    mut updates: watch::Receiver<Option<u64>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut written: Option<u64> = None;
        loop {
            let seq = *updates.borrow_and_update();
            let mut failed = false;
            if let Some(seq) = seq.filter(|&seq| Some(seq) != written) {
                if write(&kv, &boot_id, seq).await {
                    written = Some(seq);
                } else {
                    failed = true;
                }
            }
            let changed = if failed {
                tokio::select! {
                    changed = updates.changed() => changed,
                    () = tokio::time::sleep(WRITE_RETRY) => continue,
                }
            } else {
                updates.changed().await
            };
            if changed.is_err() {
                // Every sender is gone: the last value was handled above,
                // unless it arrived together with the close.
                let last = *updates.borrow();
                if let Some(seq) = last.filter(|&seq| Some(seq) != written) {
                    write(&kv, &boot_id, seq).await;
                }
                return;
            }
        }
    })
}

/// Stores `seq` on a blocking thread; false when that failed.
async fn write(kv: &KvStore, boot_id: &str, seq: u64) -> bool {
    let kv = kv.clone();
    let checkpoint = Checkpoint {
        boot_id: boot_id.to_owned(),
        seq,
    };
    match tokio::task::spawn_blocking(move || store(&kv, &checkpoint)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(
                error = format!("{err:#}"),
                seq,
                "cannot store the kmsg checkpoint; will try again"
            );
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "the kmsg checkpoint write failed");
            false
        }
    }
}

/// One batch (or a run of records that produced nothing) in sending order.
#[derive(Debug)]
struct Entry {
    id: u64,
    /// Every record up to this sequence number is in this batch or before it.
    through: u64,
    status: Option<DeliveryStatus>,
}

#[derive(Debug)]
struct Inner {
    next_id: u64,
    entries: VecDeque<Entry>,
    /// A batch failed: the checkpoint stays before it until a restart.
    stalled: bool,
    committed: Option<u64>,
    updates: watch::Sender<Option<u64>>,
    /// Whose checkpoint this is, for the warning when a batch fails.
    receiver: &'static str,
}

/// Turns out-of-order batch acknowledgements into the highest contiguous
/// delivered sequence number. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AckTracker {
    inner: Arc<Mutex<Inner>>,
}

impl AckTracker {
    /// A tracker and the receiving end of its checkpoint values.
    pub fn new() -> (AckTracker, watch::Receiver<Option<u64>>) {
        AckTracker::for_receiver("kmsg")
    }

    /// [`AckTracker::new`] for another receiver type (`journald`), named in
    /// its warning.
    pub fn for_receiver(receiver: &'static str) -> (AckTracker, watch::Receiver<Option<u64>>) {
        let (updates, rx) = watch::channel(None);
        (
            AckTracker {
                inner: Arc::new(Mutex::new(Inner {
                    next_id: 0,
                    entries: VecDeque::new(),
                    stalled: false,
                    committed: None,
                    updates,
                    receiver,
                })),
            },
            rx,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic midway; a poisoned lock still
        // holds consistent data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A batch carrying records up to `through` is about to be sent; its id
    /// is settled later with [`AckTracker::settle`].
    pub fn register(&self, through: u64) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        if !inner.stalled {
            inner.entries.push_back(Entry {
                id,
                through,
                status: None,
            });
        }
        id
    }

    /// Records up to `through` were read and none of them is to be sent
    /// (filtered out): done as soon as everything before them is.
    pub fn skip_through(&self, through: u64) {
        let id = self.register(through);
        self.settle(id, DeliveryStatus::Delivered);
    }

    /// The outcome of batch `id`.
    pub fn settle(&self, id: u64, status: DeliveryStatus) {
        let mut inner = self.lock();
        if inner.stalled {
            return;
        }
        if let Some(entry) = inner.entries.iter_mut().find(|entry| entry.id == id) {
            entry.status = Some(status);
        }
        let mut advanced = None;
        while let Some(front) = inner.entries.front() {
            match front.status {
                None => break,
                Some(DeliveryStatus::Delivered | DeliveryStatus::Rejected) => {
                    advanced = Some(front.through);
                    inner.entries.pop_front();
                }
                Some(DeliveryStatus::Failed) => {
                    tracing::warn!(
                        through = front.through,
                        receiver = inner.receiver,
                        "a batch of records was not delivered; the receiver's checkpoint stays before it until a restart, which reads those records again"
                    );
                    inner.stalled = true;
                    inner.entries.clear();
                    break;
                }
            }
        }
        if let Some(seq) = advanced {
            if inner.committed.is_none_or(|committed| seq > committed) {
                inner.committed = Some(seq);
                inner.updates.send_replace(Some(seq));
            }
        }
    }

    /// The highest sequence number all of whose records were settled.
    pub fn committed(&self) -> Option<u64> {
        self.lock().committed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::ComponentId;
    use crate::extensions::file_storage::{FileStorage, FileStorageConfig};

    fn kv(dir: &Path) -> KvStore {
        let cfg = FileStorageConfig {
            directory: dir.to_owned(),
            ..FileStorageConfig::default()
        };
        let id: ComponentId = "file_storage".parse().unwrap();
        let storage = FileStorage::open(&cfg, &id).unwrap();
        storage.kv("receiver", &"kmsg".parse().unwrap()).unwrap()
    }

    #[test]
    fn advances_over_contiguous_settled_batches_only() {
        let (tracker, rx) = AckTracker::new();
        let a = tracker.register(10);
        let b = tracker.register(20);
        let c = tracker.register(30);
        tracker.settle(b, DeliveryStatus::Delivered);
        assert_eq!(tracker.committed(), None, "b waits for a");
        tracker.settle(a, DeliveryStatus::Rejected);
        assert_eq!(tracker.committed(), Some(20));
        assert_eq!(*rx.borrow(), Some(20));
        tracker.skip_through(35);
        assert_eq!(tracker.committed(), Some(20), "c is still in flight");
        tracker.settle(c, DeliveryStatus::Delivered);
        assert_eq!(tracker.committed(), Some(35));
    }

    #[test]
    fn a_failed_batch_stops_the_checkpoint() {
        let (tracker, _rx) = AckTracker::new();
        let a = tracker.register(10);
        let b = tracker.register(20);
        let c = tracker.register(30);
        tracker.settle(a, DeliveryStatus::Delivered);
        tracker.settle(c, DeliveryStatus::Delivered);
        tracker.settle(b, DeliveryStatus::Failed);
        assert_eq!(tracker.committed(), Some(10));
        let d = tracker.register(40);
        tracker.settle(d, DeliveryStatus::Delivered);
        assert_eq!(tracker.committed(), Some(10));
    }

    #[test]
    fn a_checkpoint_from_another_boot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store_ = kv(dir.path());
        assert_eq!(load(&store_, "boot-a").unwrap(), None);
        store(
            &store_,
            &Checkpoint {
                boot_id: "boot-a".into(),
                seq: 42,
            },
        )
        .unwrap();
        assert_eq!(load(&store_, "boot-a").unwrap(), Some(42));
        assert_eq!(load(&store_, "boot-b").unwrap(), None);
        store_.set(CHECKPOINT_KEY, b"not json").unwrap();
        assert_eq!(load(&store_, "boot-a").unwrap(), None);
    }

    /// A write that fails (a full disk; here the store's directory is gone)
    /// is tried again without a newer value to trigger it.
    #[tokio::test]
    async fn the_writer_tries_a_failed_write_again() {
        let dir = tempfile::tempdir().unwrap();
        let store_ = kv(dir.path());
        let kv_dir = dir.path().join("receiver_kmsg_/kv");
        let moved = dir.path().join("moved");
        std::fs::rename(&kv_dir, &moved).unwrap();
        let (tracker, rx) = AckTracker::new();
        let writer = spawn_writer(store_.clone(), "boot-a".into(), rx);
        tracker.skip_through(7);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::fs::rename(&moved, &kv_dir).unwrap();
        let stored = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while load(&store_, "boot-a").unwrap() != Some(7) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(stored.is_ok(), "the failed write was not tried again");
        drop(tracker);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_writer_stores_the_latest_value_and_ends_with_the_tracker() {
        let dir = tempfile::tempdir().unwrap();
        let store_ = kv(dir.path());
        let (tracker, rx) = AckTracker::new();
        let writer = spawn_writer(store_.clone(), "boot-a".into(), rx);
        tracker.skip_through(7);
        tracker.skip_through(9);
        drop(tracker);
        tokio::time::timeout(std::time::Duration::from_secs(30), writer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(load(&store_, "boot-a").unwrap(), Some(9));
    }
}
