//! The `file_storage` extension (contrib `extension/storage/filestorage`):
//! state that must survive a restart or a `kill -9`, kept under one directory
//! and namespaced per component like the collector (`exporter_otlp_backend`).
//!
//! Two services:
//! - [`KvStore`]: a small key/value store for checkpoints (file offsets, kmsg
//!   sequence numbers). One file per key, replaced atomically.
//! - [`PersistentQueue`]: a FIFO of opaque byte items for the exporter
//!   helper's persistent sending queue. One file per item.
//!
//! On-disk layout:
//! ```text
//! <directory>/
//!   <kind>_<type>_<name>/             one namespace per component
//!     kv/
//!       <escaped key>                 a framed value
//!       .<escaped key>.<nonce>.<n>.tmp   a value being written (ignored; removed
//!                                        by the next run)
//!     queue/
//!       .lock                         flock: one live queue handle per namespace
//!       00000000000000000042.item     a framed item; the number orders the FIFO
//!       .00000000000000000043.tmp     an item being written (removed at open)
//! ```
//! Every value and item file is framed as `"OSQ1" | len: u32 LE | crc32: u32 LE |
//! body`.
//!
//! Why plain files rather than an embedded database (the collector uses
//! bbolt): the access pattern is tiny (a few checkpoint keys, a FIFO of whole
//! requests written once and deleted once), and "write a temp file, rename it
//! into place" is atomic on every POSIX file system, so a crash at any point
//! leaves either the old state or the new one. There is no compaction, no
//! page format to recover, and the state can be inspected with `ls`. The CRC
//! frame additionally catches what rename cannot: with `fsync: false`, a
//! power loss may persist the rename before the data (a zero-length or
//! garbage file); such files are skipped with a warning, never trusted.
//!
//! A write that fails (a full disk, above all) is reported once per
//! extension when writes start failing and once when they work again, not
//! once per item: callers wait and retry (the persistent queue pushes back,
//! checkpoints are saved again), so a full disk costs no acknowledged data.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Deserialize;

use crate::component::{
    ComponentConfig, ExtensionConfig, ExtensionFactory, Factory, Stability, StartFuture,
};
use crate::config::{from_node, ComponentId, ConfigError, GoDuration, Node, ValidationError};
use crate::extensions::Extensions;
use crate::secure_fs;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `file_storage` settings, with the collector's defaults except where noted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where the state lives; one subdirectory per component.
    pub directory: PathBuf,
    /// The collector's bbolt open timeout. Accepted for compatibility: files
    /// here are opened without waiting on a lock, so it has no effect.
    pub timeout: GoDuration,
    /// fsync every write (and the directory after a rename). Off by default,
    /// like the collector: `kill -9` does not lose the page cache, so the
    /// at-least-once promise across a process crash holds without it; only a
    /// power loss or kernel crash can lose the last seconds of unsynced writes
    /// (and the CRC frame then makes sure a torn file is skipped, not read).
    /// Turn it on when the host itself may die (contrib#50102).
    pub fsync: bool,
    /// Create `directory` (with its parents, mode `directory_permissions`)
    /// when missing. Our default is true (the collector's is false) because
    /// the agent is installed as a single binary with a default config whose
    /// storage directory a package may not have created; failing to start
    /// over a missing state directory would help nobody.
    pub create_directory: bool,
    /// Mode of the directories this extension creates, octal digits as in
    /// the collector. Ours is `"0700"` (the collector's is `"0750"`): the
    /// state holds queued telemetry, which may carry command lines and log
    /// text, so no group reads it by default. Applied exactly (not minus
    /// the umask, unlike the collector); existing directories keep theirs.
    pub directory_permissions: String,
    /// The collector's bbolt compaction settings. Accepted so that collector
    /// configs load; there is no database file to compact here (items are
    /// files that are deleted once delivered), so they have no effect, and
    /// a warning says so at start when any is set.
    pub compaction: CompactionConfig,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: PathBuf::from("/var/lib/oomscope/file_storage"),
            timeout: GoDuration::from_secs(1),
            fsync: false,
            create_directory: true,
            directory_permissions: DEFAULT_DIRECTORY_PERMISSIONS.to_string(),
            compaction: CompactionConfig::default(),
        }
    }
}

/// The default of `directory_permissions` (stricter than the collector's 0750).
pub const DEFAULT_DIRECTORY_PERMISSIONS: &str = "0700";

impl FileStorageConfig {
    /// `directory_permissions` as a mode (validated).
    fn directory_mode(&self) -> anyhow::Result<u32> {
        let mode =
            secure_fs::parse_octal_mode(&self.directory_permissions).map_err(anyhow::Error::msg)?;
        if mode & 0o700 != 0o700 {
            anyhow::bail!(
                "{:?} leaves the owner without read, write or search permission; \
                 the agent could not use the directory",
                self.directory_permissions
            );
        }
        Ok(mode)
    }
}

impl ComponentConfig for FileStorageConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.directory.as_os_str().is_empty() {
            return Err(ValidationError::at("directory", "must not be empty"));
        }
        if let Err(e) = self.directory_mode() {
            return Err(ValidationError::at(
                "directory_permissions",
                format!("{e:#}"),
            ));
        }
        Ok(())
    }
}

/// Makes `file_storage` extensions.
pub struct FileStorageExtensionFactory;

impl Factory for FileStorageExtensionFactory {
    fn type_names(&self) -> &'static [&'static str] {
        &["file_storage"]
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn description(&self) -> &'static str {
        "keeps persistent sending queues and receiver checkpoints on disk"
    }
}

impl ExtensionFactory for FileStorageExtensionFactory {
    fn decode(&self, node: &Node) -> Result<Box<dyn ExtensionConfig>, ConfigError> {
        Ok(Box::new(from_node::<FileStorageConfig>(node)?))
    }
}

impl ExtensionConfig for FileStorageConfig {
    fn start<'a>(
        &'a self,
        id: &'a ComponentId,
        host: &'a mut Extensions,
        _shutdown: CancellationToken,
    ) -> StartFuture<'a, Option<JoinHandle<()>>> {
        Box::pin(async move {
            if self.compaction != CompactionConfig::default() {
                // Accepted so collector configs load, but said out loud: there
                // is nothing to compact (each item is a file deleted once
                // delivered, so space is given back at once).
                tracing::warn!(
                    extension = %id,
                    "compaction has no effect in this agent: queued items are files deleted \
                     as soon as they are delivered, so there is no database to compact; \
                     remove the compaction section"
                );
            }
            let storage = FileStorage::open(self, id)?;
            host.storages.insert(id.clone(), storage);
            Ok(None)
        })
    }
}

/// `compaction`: accepted, no effect (see [`FileStorageConfig::compaction`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// No effect.
    pub directory: Option<PathBuf>,
    /// No effect.
    pub on_start: bool,
    /// No effect.
    pub on_rebound: bool,
    /// No effect.
    pub rebound_needed_threshold_mib: u64,
    /// No effect.
    pub rebound_trigger_threshold_mib: u64,
    /// No effect.
    pub max_transaction_size: u64,
    /// No effect.
    pub check_interval: GoDuration,
    /// No effect.
    pub cleanup_on_start: bool,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            directory: None,
            on_start: false,
            on_rebound: false,
            rebound_needed_threshold_mib: 100,
            rebound_trigger_threshold_mib: 10,
            max_transaction_size: 65536,
            check_interval: GoDuration::from_secs(5),
            cleanup_on_start: false,
        }
    }
}

/// A started `file_storage` extension.
#[derive(Debug)]
pub struct FileStorage {
    id: ComponentId,
    directory: PathBuf,
    /// Mode of the directories it creates (`directory_permissions`).
    dir_mode: u32,
    fsync: bool,
    /// Tells this run's temp files from those a crashed run left behind.
    nonce: u64,
    /// Shared by every store and queue of this extension: one disk.
    health: Arc<WriteHealth>,
}

/// After a failing-writes warning, the next one (after a recovery) waits at
/// least this long, so that a disk hovering at full (small writes fit, large
/// ones do not) is not reported once per write.
const REWARN_INTERVAL: Duration = Duration::from_secs(10);

/// Whether writes to the storage directory work, so that a full disk is
/// reported once when writes start failing and once when they work again.
#[derive(Debug)]
struct WriteHealth {
    id: String,
    directory: PathBuf,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    failing: bool,
    /// The current failing period was logged (so its end is logged too).
    reported: bool,
    failed_writes: u64,
    last_warning: Option<Instant>,
}

impl WriteHealth {
    fn new(id: String, directory: PathBuf) -> Arc<Self> {
        Arc::new(WriteHealth {
            id,
            directory,
            state: Mutex::new(HealthState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, HealthState> {
        // Plain fields updated in single statements: consistent if poisoned.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Passes `result` through, noting whether the write worked.
    fn observe<T>(&self, file: &Path, result: io::Result<T>) -> io::Result<T> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(file, e),
        }
        result
    }

    fn failed(&self, file: &Path, error: &io::Error) {
        let mut st = self.state();
        st.failed_writes = st.failed_writes.saturating_add(1);
        if st.failing && st.reported {
            return;
        }
        st.failing = true;
        // A failing period that began too soon after the last warning is
        // reported once that interval has passed, if it still lasts.
        let now = Instant::now();
        if st
            .last_warning
            .is_some_and(|at| now.duration_since(at) < REWARN_INTERVAL)
        {
            return;
        }
        st.reported = true;
        st.last_warning = Some(now);
        tracing::warn!(
            extension = %self.id,
            directory = %self.directory.display(),
            file = %file.display(),
            %error,
            "cannot write to storage; queued data and checkpoints wait and are written \
             when writing works again (logged once until then)"
        );
    }

    fn succeeded(&self) {
        let mut st = self.state();
        if !st.failing {
            return;
        }
        st.failing = false;
        let failed_writes = std::mem::take(&mut st.failed_writes);
        if std::mem::take(&mut st.reported) {
            tracing::info!(
                extension = %self.id,
                directory = %self.directory.display(),
                failed_writes,
                "writing to storage works again"
            );
        }
    }
}

impl FileStorage {
    /// Checks (or creates) the directory and that it is writable.
    pub fn open(cfg: &FileStorageConfig, id: &ComponentId) -> anyhow::Result<Arc<FileStorage>> {
        let dir = &cfg.directory;
        let dir_mode = cfg
            .directory_mode()
            .with_context(|| format!("{id}: directory_permissions"))?;
        // The configured directory itself may be a symbolic link (that is
        // configuration); nothing inside it is followed.
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!(
                "{id}: directory {} exists but is not a directory",
                dir.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound && cfg.create_directory => {
                secure_fs::create_dir_all(dir, dir_mode)
                    .with_context(|| format!("{id}: cannot create directory {}", dir.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => anyhow::bail!(
                "{id}: directory {} does not exist (create it, or set create_directory: true)",
                dir.display()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{id}: cannot access directory {}", dir.display()))
            }
        }
        let nonce = rand::random::<u64>();
        let probe = dir.join(format!(".probe.{nonce:016x}.tmp"));
        secure_fs::create_new_file(&probe, secure_fs::FILE_MODE)
            .and_then(|_| fs::remove_file(&probe))
            .with_context(|| format!("{id}: directory {} is not writable", dir.display()))?;
        Ok(Arc::new(FileStorage {
            id: id.clone(),
            directory: dir.clone(),
            dir_mode,
            fsync: cfg.fsync,
            nonce,
            health: WriteHealth::new(id.to_string(), dir.clone()),
        }))
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The key/value store of one component (`owner_kind`: `receiver`,
    /// `processor`, `exporter`, `extension`). Several handles on one store
    /// may live at once; writes of one key are last-writer-wins.
    pub fn kv(&self, owner_kind: &str, owner: &ComponentId) -> anyhow::Result<KvStore> {
        let dir = self.component_dir(owner_kind, owner, "kv")?;
        // Temp files of an earlier run (crashed mid-write) are garbage; those
        // of this run may belong to a live write by another handle.
        let own = format!(".{:016x}.", self.nonce);
        for name in list_names(&dir)? {
            if name.starts_with('.') && name.ends_with(".tmp") && !name.contains(&own) {
                remove_leftover(&dir.join(&name));
            }
        }
        Ok(KvStore {
            inner: Arc::new(KvInner {
                dir,
                fsync: self.fsync,
                nonce: self.nonce,
                counter: AtomicU64::new(0),
                health: Arc::clone(&self.health),
            }),
        })
    }

    /// The persistent queue of one component. Only one handle per component
    /// may be open at a time (in this process or any other): two consumers
    /// of one queue would send and delete each other's items.
    pub fn queue(&self, owner_kind: &str, owner: &ComponentId) -> anyhow::Result<PersistentQueue> {
        let dir = self.component_dir(owner_kind, owner, "queue")?;
        PersistentQueue::open_with(dir, self.fsync, self.dir_mode, Arc::clone(&self.health))
    }

    /// `<directory>/<namespace>/<service>`, created if needed. A symbolic
    /// link at either level is refused, not followed.
    fn component_dir(
        &self,
        owner_kind: &str,
        owner: &ComponentId,
        service: &str,
    ) -> anyhow::Result<PathBuf> {
        let ns_dir = self.directory.join(namespace(owner_kind, owner));
        let dir = ns_dir.join(service);
        let existed = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        for d in [&ns_dir, &dir] {
            secure_fs::ensure_own_dir(d, self.dir_mode)
                .with_context(|| format!("{}: cannot use {}", self.id, d.display()))?;
        }
        if !existed && self.fsync {
            // Make the new entries durable, so a checkpoint written next
            // does not vanish with its directory on power loss.
            for d in [dir.parent(), Some(self.directory.as_path())]
                .into_iter()
                .flatten()
            {
                sync_dir(d)
                    .with_context(|| format!("{}: cannot fsync {}", self.id, d.display()))?;
            }
        }
        Ok(dir)
    }
}

/// `<kind>_<type>_<name>` like the collector (`receiver_filelog_logs`; an id
/// without a name gives `exporter_otlp_`), characters other than
/// `[A-Za-z0-9_-]` escaped. Unlike the collector, `_` is escaped in the kind
/// and the name too, so that two ids never share a directory (`a_b/c` and
/// `a/b_c` would otherwise both be `..._a_b_c`).
pub fn namespace(owner_kind: &str, owner: &ComponentId) -> String {
    let kind = escape(owner_kind, "-");
    let type_name = escape(&owner.type_name, "_-");
    let name = owner
        .name
        .as_deref()
        .map(|n| escape(n, "-"))
        .unwrap_or_default();
    format!("{kind}_{type_name}_{name}")
}

/// Keeps ASCII alphanumerics and `extra`; every other byte becomes `~` and two
/// hex digits (UTF-8 bytes, so the mapping is injective and names stay ASCII).
fn escape(s: &str, extra: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}

/// Longest escaped key: file names are limited to 255 bytes, and temp files
/// add a prefix and suffix.
const MAX_KEY_FILE_NAME: usize = 200;

/// A component's checkpoints. Cheap to clone. Methods do blocking file I/O
/// (small files; an fsync when enabled): call them from `spawn_blocking` on a
/// hot async path.
#[derive(Clone, Debug)]
pub struct KvStore {
    inner: Arc<KvInner>,
}

#[derive(Debug)]
struct KvInner {
    dir: PathBuf,
    fsync: bool,
    nonce: u64,
    counter: AtomicU64,
    health: Arc<WriteHealth>,
}

impl KvStore {
    /// The value of `key`; `None` when absent, or when the stored value is
    /// corrupt (torn by a power loss), which is logged.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let bytes = match secure_fs::read_no_follow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if secure_fs::is_symlink_error(&e) => {
                // The next `set` renames over the link itself.
                tracing::warn!(file = %path.display(), "a stored value is a symbolic link (not written by oomscope); ignoring it without following it, its owner starts as if nothing was stored");
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        match unframe(&bytes) {
            Ok(value) => Ok(Some(value.to_vec())),
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "ignoring a corrupt stored value; its owner starts as if nothing was stored");
                Ok(None)
            }
        }
    }

    /// Replaces the value of `key` atomically: readers (and the next run after
    /// a crash) see the old value or the new one, never a mix.
    pub fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let file_name = key_file_name(key)?;
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = format!(".{file_name}.{:016x}.{n}.tmp", self.inner.nonce);
        let header = frame_header(value).with_context(|| format!("value of key {key:?}"))?;
        let written = write_atomic(
            &self.inner.dir,
            &tmp,
            &file_name,
            &[&header, value],
            self.inner.fsync,
        );
        self.inner
            .health
            .observe(&self.inner.dir.join(&file_name), written)
            .with_context(|| format!("cannot store key {key:?} in {}", self.inner.dir.display()))
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
        if self.inner.fsync {
            sync_dir(&self.inner.dir)
                .with_context(|| format!("cannot fsync {}", self.inner.dir.display()))?;
        }
        Ok(())
    }

    /// The file holding `key` (for messages about it).
    pub fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        Ok(self.inner.dir.join(key_file_name(key)?))
    }
}

/// Escaped keys never start with `.`, so they never collide with temp files.
fn key_file_name(key: &str) -> anyhow::Result<String> {
    if key.is_empty() {
        anyhow::bail!("storage key must not be empty");
    }
    let name = escape(key, "_-");
    if name.len() > MAX_KEY_FILE_NAME {
        anyhow::bail!(
            "storage key {key:?} is too long ({} bytes escaped, at most {MAX_KEY_FILE_NAME})",
            name.len()
        );
    }
    Ok(name)
}

/// One item taken from a [`PersistentQueue`]: delivered or given up ->
/// [`PersistentQueue::remove`]; to be tried again later -> [`PersistentQueue::release`].
#[derive(Debug)]
pub struct QueueItem {
    pub seq: u64,
    pub data: Bytes,
}

/// What [`PersistentQueue::pop`] found at the head of the queue.
#[derive(Debug)]
pub enum Popped {
    Item(QueueItem),
    /// The head item (`seq`) could not be read; it was logged and removed
    /// (corrupt) or left on disk for the next run (I/O error). Counts as
    /// taken.
    Skipped {
        seq: u64,
    },
}

/// The start of a waiting item, read by [`PersistentQueue::pending_heads`].
#[derive(Debug)]
pub struct ItemHead {
    pub seq: u64,
    /// Up to the number of bytes asked for, from the start of the data.
    pub head: Vec<u8>,
    /// The length of the whole data (as its frame says).
    pub len: usize,
}

/// A crash-safe FIFO of byte items, one file per item. Methods do blocking
/// file I/O: call them from `spawn_blocking`.
///
/// Items are written to a temp file and renamed to `<seq>.item` only once
/// complete (and fsynced, with `fsync: true`), so an item is either fully
/// there or absent. An item taken by [`pop`](Self::pop) stays on disk until
/// [`remove`](Self::remove)d: after a crash it is read again (at-least-once).
#[derive(Debug)]
pub struct PersistentQueue {
    dir: PathBuf,
    fsync: bool,
    health: Arc<WriteHealth>,
    state: Mutex<QueueState>,
    /// Held (flock) while the queue is open; released on drop or process death.
    _lock: File,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Written and not taken, in FIFO order. Sorted because concurrent pushes
    /// may finish their writes out of order.
    pending: BTreeSet<u64>,
    /// Taken and not yet removed or released.
    in_flight: BTreeSet<u64>,
    next_seq: u64,
}

/// An item larger than this is refused (the frame has a u32 length).
const MAX_ITEM_BYTES: usize = u32::MAX as usize;

impl PersistentQueue {
    /// Opens (or creates) the queue in `dir` and resumes the items found there.
    pub fn open(dir: PathBuf, fsync: bool) -> anyhow::Result<PersistentQueue> {
        let health = WriteHealth::new("persistent queue".into(), dir.clone());
        Self::open_with(dir, fsync, secure_fs::DIR_MODE, health)
    }

    fn open_with(
        dir: PathBuf,
        fsync: bool,
        dir_mode: u32,
        health: Arc<WriteHealth>,
    ) -> anyhow::Result<PersistentQueue> {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            secure_fs::create_dir_all(parent, dir_mode)
                .with_context(|| format!("cannot create queue directory {}", parent.display()))?;
        }
        secure_fs::ensure_own_dir(&dir, dir_mode)
            .with_context(|| format!("cannot use queue directory {}", dir.display()))?;
        let lock_path = dir.join(".lock");
        let lock = open_lock_file(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
                "persistent queue {} is in use by another component or another oomscope process",
                dir.display()
            ),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
            }
        }
        let mut state = QueueState::default();
        for name in list_names(&dir)? {
            if let Some(seq) = name
                .strip_suffix(".item")
                .and_then(|n| n.parse::<u64>().ok())
            {
                state.pending.insert(seq);
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                // We hold the lock, so no one else is writing: a crash left it.
                remove_leftover(&dir.join(&name));
            } else if name != ".lock" {
                tracing::warn!(file = %dir.join(&name).display(), "ignoring an unexpected file in the persistent queue directory");
            }
        }
        state.next_seq = state.pending.last().map_or(1, |s| s.saturating_add(1));
        if !state.pending.is_empty() {
            tracing::info!(directory = %dir.display(), items = state.pending.len(), "resuming persistent queue");
        }
        Ok(PersistentQueue {
            dir,
            fsync,
            health,
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    pub fn directory(&self) -> &Path {
        &self.dir
    }

    /// The file of item `seq` (for messages about it).
    pub fn item_path(&self, seq: u64) -> PathBuf {
        self.dir.join(item_name(seq))
    }

    /// Items waiting to be taken.
    pub fn len(&self) -> usize {
        self.state().pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items taken and not yet removed or released.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight.len()
    }

    /// Appends an item; returns once it is on disk (durably with `fsync`).
    pub fn push(&self, data: &[u8]) -> anyhow::Result<u64> {
        if data.len() > MAX_ITEM_BYTES {
            anyhow::bail!(
                "queue item of {} bytes is larger than {MAX_ITEM_BYTES}",
                data.len()
            );
        }
        let seq = {
            let mut st = self.state();
            let seq = st.next_seq;
            st.next_seq = seq.saturating_add(1);
            seq
        };
        let header = frame_header(data)?;
        let name = item_name(seq);
        let path = self.dir.join(&name);
        let written = write_atomic(
            &self.dir,
            &format!(".{seq:020}.tmp"),
            &name,
            &[&header, data],
            self.fsync,
        );
        self.health
            .observe(&path, written)
            .with_context(|| format!("cannot write queue item {}", path.display()))?;
        self.state().pending.insert(seq);
        Ok(seq)
    }

    /// Takes the oldest waiting item; `None` when nothing waits.
    pub fn pop(&self) -> Option<Popped> {
        let seq = {
            let mut st = self.state();
            let seq = st.pending.pop_first()?;
            st.in_flight.insert(seq);
            seq
        };
        let path = self.dir.join(item_name(seq));
        let bytes = match secure_fs::read_no_follow(&path) {
            Ok(b) => b,
            Err(e) if secure_fs::is_symlink_error(&e) => {
                tracing::warn!(file = %path.display(), "a queue item is a symbolic link (not written by oomscope); removing the link without following it");
                if let Err(e) = self.remove(seq) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot remove a symbolic link from the persistent queue");
                }
                return Some(Popped::Skipped { seq });
            }
            Err(e) => {
                self.state().in_flight.remove(&seq);
                if e.kind() == io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), "queue item vanished from disk; skipping it");
                } else {
                    tracing::error!(file = %path.display(), error = %e, "cannot read queue item; leaving it for the next run");
                }
                return Some(Popped::Skipped { seq });
            }
        };
        match unframe(&bytes) {
            // The body is shared, not copied, out of the bytes read.
            Ok(_) => Some(Popped::Item(QueueItem {
                seq,
                data: Bytes::from(bytes).slice(FRAME_HEADER..),
            })),
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "skipping a corrupt queue item");
                if let Err(e) = self.remove(seq) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot remove a corrupt queue item");
                }
                Some(Popped::Skipped { seq })
            }
        }
    }

    /// The first `head` bytes of every waiting item, oldest first, with the
    /// length of its data, so that the queue's owner can recount what it
    /// holds after a restart without reading whole items. An item whose
    /// head cannot be read is left out (its `pop` then skips it).
    pub fn pending_heads(&self, head: usize) -> Vec<ItemHead> {
        use std::io::Read as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let seqs: Vec<u64> = self.state().pending.iter().copied().collect();
        let mut heads = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let path = self.dir.join(item_name(seq));
            let read = (|| -> io::Result<Vec<u8>> {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)?;
                let mut bytes = Vec::with_capacity(FRAME_HEADER + head);
                file.take(u64::try_from(FRAME_HEADER + head).unwrap_or(u64::MAX))
                    .read_to_end(&mut bytes)?;
                Ok(bytes)
            })();
            let bytes = match read {
                Ok(bytes) if bytes.len() >= FRAME_HEADER && &bytes[..4] == FRAME_MAGIC => bytes,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(file = %path.display(), error = %e, "cannot read the head of a queue item");
                    continue;
                }
            };
            let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            heads.push(ItemHead {
                seq,
                head: bytes[FRAME_HEADER..].to_vec(),
                len,
            });
        }
        heads
    }

    /// The whole data of waiting item `seq`, checked, without taking it
    /// (for recounting an item whose head does not say its size).
    pub fn read_pending(&self, seq: u64) -> Result<Vec<u8>, String> {
        let path = self.dir.join(item_name(seq));
        let bytes = secure_fs::read_no_follow(&path).map_err(|e| e.to_string())?;
        unframe(&bytes).map(<[u8]>::to_vec)
    }

    /// Deletes a taken item (delivered, or given up).
    pub fn remove(&self, seq: u64) -> anyhow::Result<()> {
        self.state().in_flight.remove(&seq);
        let path = self.dir.join(item_name(seq));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // A delete that did not happen means a duplicate after restart,
            // not a loss; no directory fsync is needed for the same reason.
            Err(e) => {
                Err(e).with_context(|| format!("cannot delete queue item {}", path.display()))
            }
        }
    }

    /// Puts a taken item back at the head of the queue (it stays on disk).
    pub fn release(&self, seq: u64) {
        let mut st = self.state();
        if st.in_flight.remove(&seq) {
            st.pending.insert(seq);
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        // The state is a pair of sets updated in single statements: still
        // consistent if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn item_name(seq: u64) -> String {
    format!("{seq:020}.item")
}

const FRAME_MAGIC: &[u8; 4] = b"OSQ1";
const FRAME_HEADER: usize = 12;

/// The header of the frame `magic | len u32 LE | crc32 u32 LE | body`; the
/// body follows it in the file without being copied next to it first.
fn frame_header(body: &[u8]) -> anyhow::Result<[u8; FRAME_HEADER]> {
    let len = u32::try_from(body.len())
        .map_err(|_| anyhow::anyhow!("{} bytes is too large to store", body.len()))?;
    let mut header = [0u8; FRAME_HEADER];
    header[..4].copy_from_slice(FRAME_MAGIC);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    Ok(header)
}

#[cfg(test)]
fn frame(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok([&frame_header(body)?[..], body].concat())
}

fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < FRAME_HEADER {
        return Err(format!(
            "truncated: {} bytes, shorter than the {FRAME_HEADER}-byte header",
            bytes.len()
        ));
    }
    let (header, body) = bytes.split_at(FRAME_HEADER);
    if &header[..4] != FRAME_MAGIC {
        return Err("bad magic (not written by oomscope, or damaged)".into());
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let len = word(4) as usize;
    if body.len() != len {
        return Err(format!(
            "length mismatch: header says {len} bytes, file has {}",
            body.len()
        ));
    }
    if crc32fast::hash(body) != word(8) {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// Writes `parts` one after the other to `dir/tmp_name`, then renames it to
/// `dir/final_name`.
fn write_atomic(
    dir: &Path,
    tmp_name: &str,
    final_name: &str,
    parts: &[&[u8]],
    fsync: bool,
) -> io::Result<()> {
    let tmp = dir.join(tmp_name);
    let result = (|| {
        // A new file, never one found there (not a link planted under the
        // temp name); the rename replaces a link at the final name itself.
        let mut f = secure_fs::create_new_file(&tmp, secure_fs::FILE_MODE)?;
        for part in parts {
            f.write_all(part)?;
        }
        if fsync {
            f.sync_data()?;
        }
        drop(f);
        fs::rename(&tmp, dir.join(final_name))?;
        if fsync {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The queue's lock file, mode 0600; a symbolic link in its place is
/// removed, not followed.
fn open_lock_file(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(secure_fs::FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open() {
        Err(e) if secure_fs::is_symlink_error(&e) => {
            tracing::warn!(file = %path.display(), "the queue's lock file is a symbolic link (not made by oomscope); replacing the link without following it");
            fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    file.set_permissions(std::fs::Permissions::from_mode(secure_fs::FILE_MODE))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn list_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        // Our names are ASCII; anything else is not ours.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn remove_leftover(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "removed an incomplete write left by an earlier run")
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove an incomplete write left by an earlier run")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path, fsync: bool) -> Arc<FileStorage> {
        let cfg = FileStorageConfig {
            directory: dir.to_path_buf(),
            fsync,
            ..FileStorageConfig::default()
        };
        let opened = FileStorage::open(&cfg, &ComponentId::new("file_storage", None));
        match opened {
            Ok(s) => s,
            Err(e) => panic!("open: {e:#}"),
        }
    }

    fn id(s: &str) -> ComponentId {
        match s.parse() {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_and_strict_fields() {
        let cfg: FileStorageConfig =
            serde_json::from_value(serde_json::json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.directory,
            PathBuf::from("/var/lib/oomscope/file_storage")
        );
        assert_eq!(cfg.timeout, GoDuration::from_secs(1));
        assert!(!cfg.fsync);
        assert!(cfg.create_directory);
        assert!(cfg.validate().is_ok());
        let with_compaction =
            serde_json::json!({"directory": "/x", "compaction": {"on_start": true}});
        assert!(serde_json::from_value::<FileStorageConfig>(with_compaction).is_ok());
        assert!(
            serde_json::from_value::<FileStorageConfig>(serde_json::json!({"dir": "/x"})).is_err()
        );
        let empty = FileStorageConfig {
            directory: PathBuf::new(),
            ..FileStorageConfig::default()
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn namespaces_like_the_collector_and_never_collide() {
        assert_eq!(
            namespace("exporter", &id("otlp/backend")),
            "exporter_otlp_backend"
        );
        assert_eq!(
            namespace("receiver", &id("filelog/logs")),
            "receiver_filelog_logs"
        );
        assert_eq!(namespace("exporter", &id("otlp")), "exporter_otlp_");
        assert_eq!(
            namespace("exporter", &id("otlp/a.b:c")),
            "exporter_otlp_a~2Eb~3Ac"
        );
        assert_ne!(
            namespace("exporter", &id("a_b/c")),
            namespace("exporter", &id("a/b_c"))
        );
        assert_ne!(
            namespace("exporter", &id("a_b")),
            namespace("exporter", &id("a/b"))
        );
    }

    #[test]
    fn open_creates_the_directory_or_says_why_not() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let nested = tmp.path().join("a/b");
        let s = storage(&nested, false);
        assert!(s.directory().is_dir());

        let missing = FileStorageConfig {
            directory: tmp.path().join("missing"),
            create_directory: false,
            ..FileStorageConfig::default()
        };
        let err = format!(
            "{:#}",
            FileStorage::open(&missing, &id("file_storage/x"))
                .err()
                .unwrap_or_else(|| panic!("must fail"))
        );
        assert!(
            err.contains("file_storage/x") && err.contains("does not exist"),
            "{err}"
        );

        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let not_dir = FileStorageConfig {
            directory: file,
            ..FileStorageConfig::default()
        };
        let err = format!(
            "{:#}",
            FileStorage::open(&not_dir, &id("file_storage"))
                .err()
                .unwrap_or_else(|| panic!("must fail"))
        );
        assert!(err.contains("not a directory"), "{err}");
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .mode()
            & 0o7777
    }

    /// Directories 0700 (or `directory_permissions`), checkpoint, queue and
    /// lock files 0600, whatever the umask.
    #[test]
    fn state_is_created_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let top = tmp.path().join("state");
        let s = storage(&top, false);
        assert_eq!(mode_of(&top), 0o700);
        let kv = s
            .kv("receiver", &id("kmsg"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        kv.set("seq", b"42").unwrap_or_else(|e| panic!("{e:#}"));
        let ns = top.join("receiver_kmsg_");
        assert_eq!(mode_of(&ns), 0o700);
        assert_eq!(mode_of(&ns.join("kv")), 0o700);
        assert_eq!(
            mode_of(&kv.path("seq").unwrap_or_else(|e| panic!("{e}"))),
            0o600
        );
        let q = s
            .queue("exporter", &id("otlp"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let seq = q.push(b"item").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(mode_of(q.directory()), 0o700);
        assert_eq!(mode_of(&q.item_path(seq)), 0o600);
        assert_eq!(mode_of(&q.directory().join(".lock")), 0o600);

        let group = FileStorageConfig {
            directory: tmp.path().join("group/state"),
            directory_permissions: "0750".into(),
            ..FileStorageConfig::default()
        };
        let s = FileStorage::open(&group, &id("file_storage")).unwrap_or_else(|e| panic!("{e:#}"));
        s.kv("receiver", &id("filelog"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(mode_of(&tmp.path().join("group")), 0o750);
        assert_eq!(mode_of(&group.directory), 0o750);
        assert_eq!(
            mode_of(&group.directory.join("receiver_filelog_/kv")),
            0o750
        );
    }

    #[test]
    fn directory_permissions_are_checked() {
        for (bad, says) in [
            ("0x1ed", "octal"),
            ("9", "octal"),
            ("0500", "owner"),
            ("77777", "at most"),
        ] {
            let cfg = FileStorageConfig {
                directory_permissions: bad.into(),
                ..FileStorageConfig::default()
            };
            let err = cfg
                .validate()
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            let text = format!("{err:?}");
            assert!(
                text.contains("directory_permissions") && text.contains(says),
                "{text}"
            );
        }
        let cfg: FileStorageConfig = serde_json::from_value(
            serde_json::json!({"directory": "/x", "directory_permissions": "0750", "create_directory": false}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_ok());
        assert_eq!(FileStorageConfig::default().directory_permissions, "0700");
    }

    /// Symbolic links planted where checkpoints and queue items go are never
    /// followed: what they point to outside stays as it was.
    #[test]
    fn planted_links_are_not_followed() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap_or_else(|e| panic!("{e}"));
        let victim = outside.join("victim");
        fs::write(&victim, b"precious").unwrap_or_else(|e| panic!("{e}"));
        let top = tmp.path().join("state");
        let s = storage(&top, false);

        // A checkpoint file replaced by a link: not read, then replaced.
        let kv = s
            .kv("receiver", &id("filelog"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let key_file = kv.path("offset").unwrap_or_else(|e| panic!("{e}"));
        symlink(&victim, &key_file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kv.get("offset").ok().flatten(), None);
        kv.set("offset", b"7").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(kv.get("offset").ok().flatten(), Some(b"7".to_vec()));
        assert!(!fs::symlink_metadata(&key_file)
            .unwrap_or_else(|e| panic!("{e}"))
            .file_type()
            .is_symlink());

        // The queue's lock, its next temp file and an item replaced by links.
        let qdir = top.join("exporter_otlp_").join("queue");
        fs::create_dir_all(&qdir).unwrap_or_else(|e| panic!("{e}"));
        symlink(&victim, qdir.join(".lock")).unwrap_or_else(|e| panic!("{e}"));
        symlink(&victim, qdir.join("00000000000000000005.item")).unwrap_or_else(|e| panic!("{e}"));
        let q = s
            .queue("exporter", &id("otlp"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        symlink(&victim, qdir.join(format!(".{:020}.tmp", 6))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.push(b"mine").unwrap_or_else(|e| panic!("{e:#}")), 6);
        assert!(
            matches!(q.pop(), Some(Popped::Skipped { .. })),
            "the linked item is skipped"
        );
        match q.pop() {
            Some(Popped::Item(item)) => assert_eq!(&item.data[..], b"mine"),
            other => panic!("{other:?}"),
        }
        assert!(!qdir.join("00000000000000000005.item").exists());
        drop(q);

        // A component directory replaced by a link: refused, with the path.
        symlink(&outside, top.join("receiver_kmsg_")).unwrap_or_else(|e| panic!("{e}"));
        let err = format!(
            "{:#}",
            s.kv("receiver", &id("kmsg"))
                .err()
                .unwrap_or_else(|| panic!("must fail"))
        );
        assert!(
            err.contains("receiver_kmsg_") && err.contains("symbolic link"),
            "{err}"
        );

        assert_eq!(
            fs::read(&victim).unwrap_or_else(|e| panic!("{e}")),
            b"precious"
        );
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names, ["victim"], "nothing was created outside");
    }

    #[test]
    fn kv_get_set_delete() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = storage(tmp.path(), true);
        let kv = s
            .kv("receiver", &id("filelog/app"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(kv.get("offset/var/log/a.log").ok().flatten(), None);
        kv.set("offset/var/log/a.log", b"42")
            .unwrap_or_else(|e| panic!("{e:#}"));
        kv.set("offset/var/log/a.log", b"43")
            .unwrap_or_else(|e| panic!("{e:#}"));
        kv.set("other", b"").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            kv.get("offset/var/log/a.log").ok().flatten(),
            Some(b"43".to_vec())
        );
        assert_eq!(kv.get("other").ok().flatten(), Some(Vec::new()));
        assert!(tmp
            .path()
            .join("receiver_filelog_app/kv/offset~2Fvar~2Flog~2Fa~2Elog")
            .is_file());

        // Another component's store is separate.
        let other = s
            .kv("receiver", &id("filelog/sys"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(other.get("other").ok().flatten(), None);

        kv.delete("other").unwrap_or_else(|e| panic!("{e:#}"));
        kv.delete("never-set").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(kv.get("other").ok().flatten(), None);
        assert!(kv.set("", b"x").is_err());
        assert!(kv.set(&"k".repeat(300), b"x").is_err());

        // Survives reopening.
        drop(kv);
        let s2 = storage(tmp.path(), false);
        let kv = s2
            .kv("receiver", &id("filelog/app"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            kv.get("offset/var/log/a.log").ok().flatten(),
            Some(b"43".to_vec())
        );
    }

    #[test]
    fn kv_ignores_leftover_temp_and_corrupt_values() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = storage(tmp.path(), false);
        let kv = s
            .kv("receiver", &id("kmsg"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        kv.set("seq", b"100").unwrap_or_else(|e| panic!("{e:#}"));
        let dir = tmp.path().join("receiver_kmsg_/kv");
        // A crash in the middle of the next set: the temp file is half written.
        let leftover = dir.join(".seq.00000000deadbeef.0.tmp");
        let full = frame(b"200").unwrap_or_else(|e| panic!("{e:#}"));
        fs::write(&leftover, &full[..7]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            kv.get("seq").ok().flatten(),
            Some(b"100".to_vec()),
            "old value stays"
        );

        // The next run removes the leftover and still reads the old value.
        let s2 = storage(tmp.path(), false);
        let kv2 = s2
            .kv("receiver", &id("kmsg"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!leftover.exists());
        assert_eq!(kv2.get("seq").ok().flatten(), Some(b"100".to_vec()));

        // A torn value (power loss without fsync) reads as absent, not garbage.
        fs::write(dir.join("seq"), &full[..full.len() - 1]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kv2.get("seq").ok().flatten(), None);
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        fs::write(dir.join("seq"), &flipped).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kv2.get("seq").ok().flatten(), None);
    }

    fn pop_item(q: &PersistentQueue) -> Option<QueueItem> {
        loop {
            match q.pop()? {
                Popped::Item(item) => return Some(item),
                Popped::Skipped { .. } => continue,
            }
        }
    }

    #[test]
    fn queue_is_fifo_and_resumes_after_reopen() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = storage(tmp.path(), true);
        let owner = id("otlp/backend");
        let q = s
            .queue("exporter", &owner)
            .unwrap_or_else(|e| panic!("{e:#}"));
        for i in 0..5u8 {
            q.push(&[i; 3]).unwrap_or_else(|e| panic!("{e:#}"));
        }
        assert_eq!(q.len(), 5);
        let first = pop_item(&q).unwrap_or_else(|| panic!("item"));
        assert_eq!(first.data, vec![0; 3]);
        q.remove(first.seq).unwrap_or_else(|e| panic!("{e:#}"));
        // Taken but neither removed nor released: the process "dies" here.
        let second = pop_item(&q).unwrap_or_else(|| panic!("item"));
        assert_eq!(second.data, vec![1; 3]);
        assert_eq!((q.len(), q.in_flight()), (3, 1));

        // One handle at a time.
        let busy = s
            .queue("exporter", &owner)
            .err()
            .unwrap_or_else(|| panic!("must be locked"));
        assert!(format!("{busy:#}").contains("in use"), "{busy:#}");
        drop(q);

        let q = s
            .queue("exporter", &owner)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(q.len(), 4, "the in-flight item is resumed");
        let got: Vec<u8> = std::iter::from_fn(|| pop_item(&q))
            .map(|i| i.data[0])
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        // New items continue the sequence after the resumed ones.
        let seq = q.push(b"x").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(seq > 5);
        let item = pop_item(&q).unwrap_or_else(|| panic!("item"));
        q.release(item.seq);
        assert_eq!(
            pop_item(&q).map(|i| i.data),
            Some(Bytes::from_static(b"x")),
            "released items are taken again"
        );
    }

    #[test]
    fn queue_skips_corrupt_items_and_removes_leftover_temp_files() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = storage(tmp.path(), false);
        let owner = id("otlp");
        let q = s
            .queue("exporter", &owner)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let seqs: Vec<u64> = (0..4u8)
            .map(|i| q.push(&[i; 64]).unwrap_or_else(|e| panic!("{e:#}")))
            .collect();
        drop(q);
        let dir = tmp.path().join("exporter_otlp_/queue");
        // Truncated, garbage, and empty items; plus a half-written temp file.
        let truncate = |seq: u64, len: u64| {
            let f = OpenOptions::new()
                .write(true)
                .open(dir.join(item_name(seq)))
                .unwrap_or_else(|e| panic!("{e}"));
            f.set_len(len).unwrap_or_else(|e| panic!("{e}"));
        };
        truncate(seqs[0], 30);
        truncate(seqs[2], 0);
        fs::write(
            dir.join(item_name(seqs[3])),
            b"not a frame at all, just bytes",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let tmp_file = dir.join(format!(".{:020}.tmp", 99));
        fs::write(&tmp_file, b"OSQ1").unwrap_or_else(|e| panic!("{e}"));

        let q = s
            .queue("exporter", &owner)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!tmp_file.exists());
        let mut popped = Vec::new();
        while let Some(p) = q.pop() {
            popped.push(match p {
                Popped::Item(item) => Some(item.data[0]),
                Popped::Skipped { .. } => None,
            });
        }
        assert_eq!(popped, vec![None, Some(1), None, None]);
        // Corrupt items are gone; the good one stays until removed.
        assert!(!dir.join(item_name(seqs[0])).exists());
        assert!(dir.join(item_name(seqs[1])).exists());
    }

    #[test]
    fn frame_round_trip_and_rejections() {
        let framed = frame(b"hello").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(unframe(&framed), Ok(&b"hello"[..]));
        assert!(unframe(&framed[..5]).is_err());
        let mut longer = framed.clone();
        longer.push(0);
        assert!(unframe(&longer).is_err());
    }
}
