//! Where reading resumes after a restart: the journal cursor of the last
//! entry whose batch was acknowledged (or, while a stack trace is still
//! being grouped, of the entry that started it, to be read again).
//!
//! Entries read in this run are numbered (positions); batches register the
//! position everything up to which they carry with `kmsg`'s
//! [`AckTracker`], which turns out-of-order acknowledgements into the
//! highest contiguous settled position, and the cursor that position stands
//! for is kept here until then. A batch that `Failed` stops the checkpoint
//! for the rest of the run (its records are read again after a restart).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::extensions::file_storage::KvStore;
use crate::pipeline::DeliveryStatus;
use crate::receivers::kmsg::checkpoint::AckTracker;

/// The key of the checkpoint in the receiver's key/value store.
pub const CHECKPOINT_KEY: &str = "journald_checkpoint";

/// How the cursor's own entry is treated on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resume {
    /// The entry was delivered: reading resumes after it.
    After,
    /// The entry started a record that was not sent yet: read it again.
    At,
}

/// The stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub cursor: String,
    pub resume: Resume,
}

/// The stored checkpoint; an unreadable one is ignored with a warning.
pub fn load(store: &KvStore) -> anyhow::Result<Option<Checkpoint>> {
    let Some(bytes) = store.get(CHECKPOINT_KEY)? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if !checkpoint.cursor.is_empty() && !checkpoint.cursor.contains('\0') => {
            Ok(Some(checkpoint))
        }
        Ok(_) => {
            tracing::warn!(
                "ignoring a journald checkpoint without a cursor; reading starts per start_at"
            );
            Ok(None)
        }
        Err(err) => {
            let file = store.path(CHECKPOINT_KEY).ok();
            tracing::warn!(file = ?file, error = %err, "ignoring an unreadable journald checkpoint; reading starts per start_at");
            Ok(None)
        }
    }
}

pub fn store(store: &KvStore, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    store.set(CHECKPOINT_KEY, &serde_json::to_vec(checkpoint)?)
}

/// Cursors of registered positions kept at most (one per batch or empty
/// stretch waiting for an earlier batch; beyond this the oldest are
/// dropped, which only holds the checkpoint back).
const MAX_PENDING_CURSORS: usize = 16 * 1024;

/// The cursor each registered position stands for, until it is committed.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CursorBook {
    cursors: Arc<Mutex<BTreeMap<u64, Checkpoint>>>,
}

impl CursorBook {
    fn cursors(&self) -> MutexGuard<'_, BTreeMap<u64, Checkpoint>> {
        // No critical section can panic midway.
        self.cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `None`: no cursor could be had for `through`; an earlier one then
    /// stands for it (the checkpoint only lags behind).
    fn keep(&self, through: u64, checkpoint: Option<Checkpoint>) {
        let Some(checkpoint) = checkpoint else {
            return;
        };
        let mut cursors = self.cursors();
        cursors.insert(through, checkpoint);
        while cursors.len() > MAX_PENDING_CURSORS {
            cursors.pop_first();
        }
    }

    /// The checkpoint of the highest registered position at or before the
    /// committed `through` (every entry up to it was settled); the cursors
    /// at or before it are forgotten.
    pub fn take_committed(&self, through: u64) -> Option<Checkpoint> {
        let mut cursors = self.cursors();
        let later = cursors.split_off(&(through.saturating_add(1)));
        let taken = std::mem::replace(&mut *cursors, later);
        taken.into_iter().next_back().map(|(_, c)| c)
    }
}

/// [`AckTracker`] plus the cursor each registered position stands for.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct CursorTracker {
    acks: AckTracker,
    book: CursorBook,
}

impl CursorTracker {
    pub fn new() -> (CursorTracker, watch::Receiver<Option<u64>>) {
        let (acks, updates) = AckTracker::for_receiver("journald");
        (
            CursorTracker {
                acks,
                book: CursorBook::default(),
            },
            updates,
        )
    }

    /// The cursors, for the writer (which must not keep the tracker alive).
    pub fn book(&self) -> CursorBook {
        self.book.clone()
    }

    /// A batch carrying the entries up to position `through` is about to be
    /// sent; `checkpoint` is where a restart resumes once it is settled.
    pub fn register(&self, through: u64, checkpoint: Option<Checkpoint>) -> u64 {
        self.book.keep(through, checkpoint);
        self.acks.register(through)
    }

    /// Entries up to `through` produced nothing to send.
    pub fn skip_through(&self, through: u64, checkpoint: Option<Checkpoint>) {
        self.book.keep(through, checkpoint);
        self.acks.skip_through(through);
    }

    pub fn settle(&self, id: u64, status: DeliveryStatus) {
        self.acks.settle(id, status);
    }
}

/// How long after a failed write (a full disk) it is tried again when no
/// newer value comes to trigger it.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// Writes each newly committed checkpoint (coalesced) until every tracker
/// handle is gone.
pub fn spawn_writer(
    kv: KvStore,
    tracker: CursorBook,
    mut updates: watch::Receiver<Option<u64>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut unwritten: Option<Checkpoint> = None;
        loop {
            if let Some(through) = *updates.borrow_and_update() {
                if let Some(checkpoint) = tracker.take_committed(through) {
                    unwritten = Some(checkpoint);
                }
            }
            if let Some(checkpoint) = unwritten.take() {
                if !write(&kv, &checkpoint).await {
                    unwritten = Some(checkpoint);
                }
            }
            let changed = if unwritten.is_some() {
                tokio::select! {
                    changed = updates.changed() => changed,
                    () = tokio::time::sleep(WRITE_RETRY) => continue,
                }
            } else {
                updates.changed().await
            };
            if changed.is_err() {
                // The trackers are gone: the last value, if it came with
                // the close.
                if let Some(through) = *updates.borrow() {
                    if let Some(checkpoint) = tracker.take_committed(through) {
                        unwritten = Some(checkpoint);
                    }
                }
                if let Some(checkpoint) = unwritten {
                    write(&kv, &checkpoint).await;
                }
                return;
            }
        }
    })
}

async fn write(kv: &KvStore, checkpoint: &Checkpoint) -> bool {
    let kv = kv.clone();
    let value = checkpoint.clone();
    match tokio::task::spawn_blocking(move || store(&kv, &value)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(
                error = format!("{err:#}"),
                "cannot store the journald checkpoint; will try again"
            );
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "the journald checkpoint write failed");
            false
        }
    }
}

/// What a journal cursor says (`s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<monotonic>;t=<realtime>;x=<hash>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorFields {
    /// The writer's sequence-number space.
    pub seqnum_id: Option<String>,
    pub seqnum: Option<u64>,
    /// Microseconds since the epoch.
    pub realtime_usec: Option<u64>,
}

impl CursorFields {
    pub fn parse(cursor: &str) -> CursorFields {
        let mut fields = CursorFields::default();
        for part in cursor.split(';') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            match key {
                "s" => fields.seqnum_id = Some(value.to_owned()),
                "i" => fields.seqnum = u64::from_str_radix(value, 16).ok(),
                "t" => fields.realtime_usec = u64::from_str_radix(value, 16).ok(),
                _ => {}
            }
        }
        fields
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::extensions::file_storage::{FileStorage, FileStorageConfig};

    fn checkpoint(c: &str) -> Option<Checkpoint> {
        Some(Checkpoint {
            cursor: c.to_owned(),
            resume: Resume::After,
        })
    }

    #[test]
    fn the_committed_cursor_is_the_latest_settled_one() {
        let (tracker, rx) = CursorTracker::new();
        let a = tracker.register(10, checkpoint("a"));
        let b = tracker.register(20, checkpoint("b"));
        tracker.settle(b, DeliveryStatus::Delivered);
        assert_eq!(*rx.borrow(), None, "b waits for a");
        tracker.settle(a, DeliveryStatus::Delivered);
        assert_eq!(*rx.borrow(), Some(20));
        assert_eq!(tracker.book().take_committed(20), checkpoint("b"));
        assert_eq!(tracker.book().take_committed(20), None, "taken once");
        tracker.skip_through(25, checkpoint("c"));
        let d = tracker.register(30, checkpoint("d"));
        assert_eq!(*rx.borrow(), Some(25));
        tracker.settle(d, DeliveryStatus::Failed);
        assert_eq!(*rx.borrow(), Some(25), "a failed batch stops it");
    }

    #[test]
    fn cursors_parse() {
        let f = CursorFields::parse(
            "s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c6013a8894ec7a7bd0ba48ae3a0ba;m=2fe9e6c60;t=5eb1ac1b31fd5;x=8ea2a2a3c2db7a4d",
        );
        assert_eq!(
            f.seqnum_id.as_deref(),
            Some("739ad463348b4ceca5a9e69c95a3c93f")
        );
        assert_eq!(f.seqnum, Some(0x4ece7));
        assert_eq!(f.realtime_usec, Some(0x5eb1ac1b31fd5));
        assert_eq!(CursorFields::parse("garbage"), CursorFields::default());
    }

    #[tokio::test]
    async fn the_writer_stores_the_committed_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileStorageConfig {
            directory: dir.path().to_owned(),
            ..FileStorageConfig::default()
        };
        let storage = FileStorage::open(&cfg, &"file_storage".parse().unwrap()).unwrap();
        let kv = storage
            .kv("receiver", &"journald".parse().unwrap())
            .unwrap();
        assert_eq!(load(&kv).unwrap(), None);
        let (tracker, rx) = CursorTracker::new();
        let writer = spawn_writer(kv.clone(), tracker.book(), rx);
        tracker.skip_through(3, checkpoint("x"));
        tracker.skip_through(
            9,
            Some(Checkpoint {
                cursor: "y".into(),
                resume: Resume::At,
            }),
        );
        drop(tracker);
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            load(&kv).unwrap(),
            Some(Checkpoint {
                cursor: "y".into(),
                resume: Resume::At
            })
        );
        kv.set(CHECKPOINT_KEY, b"{").unwrap();
        assert_eq!(load(&kv).unwrap(), None);
    }
}
