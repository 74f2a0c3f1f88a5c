//! Read offsets that advance only when the data before them was
//! acknowledged, kept in a `file_storage` key/value store.
//!
//! Each file is known by its fingerprint; its *committed* offset moves to
//! the end of a batch once that batch is settled `Delivered` or `Rejected`,
//! in the order batches were sent, so an offset never passes a batch that
//! is still in flight. A `Failed` batch freezes the offsets of its files for
//! the rest of the run: its lines (and those after them) are read again
//! after a restart (at least once; the receiver itself does not resend).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::extensions::file_storage::KvStore;
use crate::pipeline::ack::{BatchStatusReceiver, DeliveryStatus};

/// The one key holding every file's checkpoint (one atomic write).
const KEY: &str = "file_offsets";

#[derive(Debug, Clone)]
struct Entry {
    fingerprint: Vec<u8>,
    committed: u64,
    frozen: bool,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    files: Vec<SavedFile>,
}

#[derive(Serialize, Deserialize)]
struct SavedFile {
    /// Base64 of the first bytes.
    fingerprint: String,
    offset: u64,
}

/// A file's state as saved by an earlier run.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub fingerprint: Vec<u8>,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Checkpoints {
    kv: Option<KvStore>,
    files: Mutex<BTreeMap<u64, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Checkpoints {
    /// Loads the saved state; `None` as the second value when there was none
    /// (first run, or no storage).
    pub fn load(kv: Option<KvStore>) -> anyhow::Result<(Arc<Self>, Option<Vec<Resumed>>)> {
        let saved = match &kv {
            Some(kv) => kv.get(KEY)?,
            None => None,
        };
        let resumed = match saved {
            None => None,
            Some(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(s) => Some(
                    s.files
                        .into_iter()
                        .filter_map(|f| {
                            let fp = base64::engine::general_purpose::STANDARD
                                .decode(f.fingerprint)
                                .ok()?;
                            Some(Resumed {
                                fingerprint: fp,
                                offset: f.offset,
                            })
                        })
                        .collect(),
                ),
                Err(e) => {
                    let file = kv.as_ref().and_then(|kv| kv.path(KEY).ok());
                    tracing::warn!(file = ?file, error = %e, "ignoring unreadable file offsets; files are read per start_at");
                    None
                }
            },
        };
        Ok((
            Arc::new(Checkpoints {
                kv,
                files: Mutex::new(BTreeMap::new()),
            }),
            resumed,
        ))
    }

    pub fn register(&self, id: u64, fingerprint: Vec<u8>, committed: u64) {
        lock(&self.files).insert(
            id,
            Entry {
                fingerprint,
                committed,
                frozen: false,
            },
        );
    }

    pub fn update_fingerprint(&self, id: u64, fingerprint: Vec<u8>) {
        if let Some(e) = lock(&self.files).get_mut(&id) {
            e.fingerprint = fingerprint;
        }
    }

    pub fn forget(&self, id: u64) {
        lock(&self.files).remove(&id);
    }

    /// The committed offset of file `id`.
    pub fn committed(&self, id: u64) -> Option<u64> {
        lock(&self.files).get(&id).map(|e| e.committed)
    }

    fn settle(&self, offsets: &[(u64, u64)], status: DeliveryStatus) {
        let mut files = lock(&self.files);
        for (id, offset) in offsets {
            if let Some(e) = files.get_mut(id) {
                if status == DeliveryStatus::Failed {
                    e.frozen = true;
                } else if !e.frozen && *offset > e.committed {
                    e.committed = *offset;
                }
            }
        }
    }

    /// Writes every file's committed offset (blocking I/O).
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(kv) = &self.kv else { return Ok(()) };
        let saved = Saved {
            files: lock(&self.files)
                .values()
                .map(|e| SavedFile {
                    fingerprint: base64::engine::general_purpose::STANDARD.encode(&e.fingerprint),
                    offset: e.committed,
                })
                .collect(),
        };
        kv.set(KEY, &serde_json::to_vec(&saved)?)
    }
}

/// A batch sent (or offsets that advanced without a record).
pub struct InFlight {
    /// (file id, offset after the batch's last entry of that file).
    pub offsets: Vec<(u64, u64)>,
    /// `None`: nothing was sent (lines dropped by the filter); already settled.
    pub status: Option<BatchStatusReceiver>,
    /// Holds one of the receiver's in-flight slots until settled.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// How long acknowledgements are awaited once the receiver is shutting down.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(10);

/// How long after a failed save (a full disk) the offsets are saved again
/// when no new acknowledgement comes to trigger it.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// Applies settled batches in the order they were sent, and saves.
pub async fn track(
    mut rx: mpsc::Receiver<InFlight>,
    checkpoints: Arc<Checkpoints>,
    shutdown: CancellationToken,
) {
    // The last save failed: what was acknowledged is not on disk yet.
    let mut unsaved = false;
    loop {
        let next = if unsaved {
            tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep(SAVE_RETRY) => {
                    unsaved = !save(&checkpoints).await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(item) = next else { break };
        let status = match item.status {
            None => DeliveryStatus::Delivered,
            Some(status_rx) if shutdown.is_cancelled() => {
                tokio::time::timeout(SHUTDOWN_ACK_WAIT, status_rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(DeliveryStatus::Failed)
            }
            Some(status_rx) => status_rx.await.unwrap_or(DeliveryStatus::Failed),
        };
        drop(item.permit);
        checkpoints.settle(&item.offsets, status);
        if status == DeliveryStatus::Failed {
            tracing::warn!("a batch of file lines was not delivered; its lines will be read again after a restart (with storage)");
        }
        // Coalesce: save once the settled run is done.
        if rx.is_empty() {
            unsaved = !save(&checkpoints).await;
        }
    }
    save(&checkpoints).await;
}

/// Saves on a blocking thread; false when it failed. A write that fails is
/// reported by the storage extension (once while it keeps failing), so it
/// is only a debug message here.
async fn save(checkpoints: &Arc<Checkpoints>) -> bool {
    let cp = Arc::clone(checkpoints);
    match tokio::task::spawn_blocking(move || cp.save()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(
                error = format!("{e:#}"),
                "cannot save file offsets; saving again later"
            );
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "saving file offsets panicked");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentId;
    use crate::extensions::file_storage::{FileStorage, FileStorageConfig};

    /// Offsets whose save failed (a full disk; here the store's directory
    /// is gone) are saved again without a new acknowledgement to trigger it.
    #[tokio::test]
    async fn a_failed_save_is_tried_again() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = FileStorageConfig {
            directory: dir.path().to_path_buf(),
            ..FileStorageConfig::default()
        };
        let storage = FileStorage::open(&cfg, &ComponentId::new("file_storage", None))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let kv = storage
            .kv("receiver", &ComponentId::new("filelog", None))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let kv_dir = dir.path().join("receiver_filelog_/kv");
        let moved = dir.path().join("moved");
        std::fs::rename(&kv_dir, &moved).unwrap_or_else(|e| panic!("{e}"));
        let (checkpoints, _) =
            Checkpoints::load(Some(kv.clone())).unwrap_or_else(|e| panic!("{e:#}"));
        checkpoints.register(1, b"fingerprint".to_vec(), 0);
        let (tx, rx) = mpsc::channel(4);
        let tracker = tokio::spawn(track(
            rx,
            Arc::clone(&checkpoints),
            CancellationToken::new(),
        ));
        let sent = tx
            .send(InFlight {
                offsets: vec![(1, 42)],
                status: None,
                permit: None,
            })
            .await;
        assert!(sent.is_ok());
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::rename(&moved, &kv_dir).unwrap_or_else(|e| panic!("{e}"));
        let saved = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, resumed) =
                    Checkpoints::load(Some(kv.clone())).unwrap_or_else(|e| panic!("{e:#}"));
                if resumed.is_some_and(|r| r.first().is_some_and(|f| f.offset == 42)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(saved.is_ok(), "the failed save was not tried again");
        drop(tx);
        assert!(tokio::time::timeout(Duration::from_secs(30), tracker)
            .await
            .is_ok());
    }
}
